// Single sysfs accesses failing, injected through hetmem/sysfs/fault_injection.hpp over the
// trees of real machines (../shared/fixtures/hwloc) and of our VMs: every file, directory,
// link and path check the reader makes is failed in turn. Each failure must be a diagnostic
// naming that path and the errno's text, the rest of the machine still classified (every node
// a kind with reasons), and nothing else lost; an interrupted read (EINTR) must change nothing.
#include <catch2/catch_test_macros.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "hetmem/sysfs/fault_injection.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/topology.hpp"
#include "tree.hpp"

using namespace hetmem;
using sysfs::detail::fault_injector;
using sysfs::detail::file_access;
using sysfs::detail::scoped_fault_injector;

namespace {

using access_list = std::vector<std::pair<file_access, std::string>>;

// Every access the reader makes, in order, each once.
struct recorder {
  std::mutex mutex;
  access_list seen;
  std::set<std::pair<file_access, std::string>> known;
  static int inject(void *self, file_access a, const char *path) noexcept {
    auto *r = static_cast<recorder *>(self);
    std::lock_guard<std::mutex> lock(r->mutex);
    try {
      if (r->known.emplace(a, path).second) r->seen.emplace_back(a, path);
    } catch (...) {
    }
    return 0;
  }
};

// Fails one access (all of its calls, or the first `times`) with `err`.
struct one_fault {
  file_access access;
  std::string path;
  int err;
  int times = -1;  // -1: always
  int hits = 0;
  static int inject(void *self, file_access a, const char *path) noexcept {
    auto *f = static_cast<one_fault *>(self);
    if (a != f->access || f->path != path) return 0;
    if (f->times >= 0 && f->hits >= f->times) return 0;
    ++f->hits;
    return f->err;
  }
};

// What a caller can see of a topology: kinds, confidence, capacities, reasons, tier orders,
// notes. Two loads that lost nothing print the same.
std::string summary(const topology &t) {
  std::string s;
  for (const auto &n : t.nodes) {
    s += "node " + std::to_string(n.id) + " " + std::string(to_string(n.kind)) + " " +
         std::string(to_string(n.certainty)) + " " + std::to_string(n.capacity_bytes.value_or(0)) + " cpus " +
         n.cpus.to_string() + "\n";
    for (const auto &r : n.reasons) s += "  " + r.text + "\n";
  }
  for (const auto &i : t.initiators)
    s += "initiator " + std::to_string(i.node) + ": " + test::tier_order(t, i.node) + "\n";
  for (const auto &n : t.notes) s += "note " + n + "\n";
  s += std::to_string(t.snapshot.diagnostics.size()) + " diagnostic(s)\n";
  return s;
}

result<topology> load(const std::string &root) {
  load_options lo;
  lo.root = root;
  lo.overrides = "";
  lo.probe_file = "";
  return load_topology(lo);
}

// The trees to run over: ours (always) and the shared fixtures (when present).
std::vector<std::string> trees(std::string &skipped) {
  std::vector<std::string> roots;
  for (const char *vm : {"ddr-hbm-slow", "two-socket-hbm", "pmem-kmem", "memside-cache"})
    roots.push_back(std::string(HETMEM_TEST_TREES) + "/vm-" + vm);
  auto dir = test::fixtures_dir(skipped);
  if (dir)
    for (const char *fx : {"qemu-dram-hbm-nvm-dax-hmat", "optane-kmem-clx-initiators-gi", "power9-v100-gpu-numa",
                           "knl-snc4-hybrid50-synthetic", "edge-sparse-nodeids-magnycours"})
      roots.push_back(*dir + "/" + fx);
  return roots;
}

access_list record(const std::string &root, std::string &baseline) {
  recorder rec;
  const fault_injector inj{&recorder::inject, &rec};
  scoped_fault_injector scope(&inj);
  auto t = load(root);
  REQUIRE(t);
  baseline = summary(*t);
  return rec.seen;
}

}  // namespace

TEST_CASE("every sysfs access failing in turn: a diagnostic naming it, the rest classified", "[reader][faults]") {
  std::string skipped;
  const auto roots = trees(skipped);
  if (!skipped.empty()) WARN("only the VM trees: " << skipped);
  std::size_t injected = 0;
  for (const auto &root : roots) {
    INFO("tree " << root);
    REQUIRE(std::filesystem::is_directory(root));
    std::string baseline;
    const access_list accesses = record(root, baseline);
    REQUIRE(accesses.size() > 20);
    for (const auto &[access, path] : accesses) {
      // EIO where the file's read fails (an attribute whose show() errs), EACCES elsewhere.
      const int err = access == file_access::read_file ? EIO : EACCES;
      INFO(sysfs::detail::to_string(access) << " " << path << " fails with " << std::strerror(err));
      one_fault fault{access, path, err};
      const fault_injector inj{&one_fault::inject, &fault};
      scoped_fault_injector scope(&inj);
      auto t = load(root);
      CHECK(fault.hits > 0);
      ++injected;
      if (access == file_access::open_root) {
        // Only an unusable root fails the whole read, and the error says which root and why.
        REQUIRE_FALSE(t);
        CHECK(t.error().code == err);
        CHECK(t.error().message.find(root) != std::string::npos);
        CHECK(t.error().message.find(std::strerror(err)) != std::string::npos);
        continue;
      }
      REQUIRE(t);
      bool named = false;
      for (const auto &d : t->snapshot.diagnostics)
        named |= d.path == path && d.code == err && d.message.find(std::strerror(err)) != std::string::npos;
      CHECK(named);
      CHECK_FALSE(t->nodes.empty());
      for (const auto &n : t->nodes) {
        INFO("node " << n.id);
        CHECK_FALSE(n.reasons.empty());
      }
      bool noted = false;
      for (const auto &n : t->notes) noted |= n.find("could not be used") != std::string::npos;
      CHECK(noted);
    }
  }
  INFO(injected << " failures injected");
  CHECK(injected > 500);
}

TEST_CASE("an interrupted read (EINTR) is retried: nothing changes", "[reader][faults]") {
  std::string skipped;
  for (const auto &root : trees(skipped)) {
    INFO("tree " << root);
    std::string baseline;
    for (const auto &[access, path] : record(root, baseline)) {
      if (access != file_access::read_file) continue;
      INFO("read of " << path << " interrupted twice");
      one_fault fault{access, path, EINTR, 2};
      const fault_injector inj{&one_fault::inject, &fault};
      scoped_fault_injector scope(&inj);
      auto t = load(root);
      REQUIRE(t);
      CHECK(fault.hits == 2);
      CHECK(summary(*t) == baseline);
    }
  }
}

TEST_CASE("read_text_file goes through the same seam", "[reader][faults]") {
  const std::string path = "/proc/self/status";
  for (auto [access, err] : {std::pair{file_access::open_file, EACCES}, std::pair{file_access::read_file, EIO}}) {
    one_fault fault{access, path, err};
    const fault_injector inj{&one_fault::inject, &fault};
    scoped_fault_injector scope(&inj);
    auto r = sysfs::read_text_file(path, 1 << 20);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == err);
    CHECK(r.error().message.find(path) != std::string::npos);
    CHECK(r.error().message.find(std::strerror(err)) != std::string::npos);
  }
  one_fault fault{file_access::read_file, path, EINTR, 3};
  const fault_injector inj{&one_fault::inject, &fault};
  scoped_fault_injector scope(&inj);
  auto r = sysfs::read_text_file(path, 1 << 20);
  REQUIRE(r);
  CHECK(r->find("VmRSS") != std::string::npos);
  CHECK(fault.hits == 3);
}

TEST_CASE("with no injector the seam is transparent, and the previous one comes back", "[reader][faults]") {
  CHECK(sysfs::detail::injected_fault(file_access::open_file, "x") == 0);
  one_fault fault{file_access::open_file, "x", EIO};
  const fault_injector inj{&one_fault::inject, &fault};
  {
    scoped_fault_injector outer(&inj);
    CHECK(sysfs::detail::injected_fault(file_access::open_file, "x") == EIO);
    {
      scoped_fault_injector inner(nullptr);
      CHECK(sysfs::detail::injected_fault(file_access::open_file, "x") == 0);
    }
    CHECK(sysfs::detail::injected_fault(file_access::open_file, "x") == EIO);
  }
  CHECK(sysfs::detail::injected_fault(file_access::open_file, "x") == 0);
}

namespace {
// Counts the read() calls the reader makes, per path.
struct read_counter {
  std::mutex mutex;
  std::map<std::string, int> reads;
  static int inject(void *self, file_access a, const char *path) noexcept {
    auto *c = static_cast<read_counter *>(self);
    if (a != file_access::read_file) return 0;
    std::lock_guard<std::mutex> lock(c->mutex);
    try {
      ++c->reads[path];
    } catch (...) {
    }
    return 0;
  }
};
}  // namespace

// Every program under the preload reads its machine's topology at start-up, some thirty small
// files: a read() at end of file after each would be a fifth of their system calls.
TEST_CASE("a file of at most a page is read in one read(); larger ones and /proc's to their end", "[reader][faults]") {
  test::temp_tree t;
  t.file("small", "0-3\n").file("page", std::string(4096, 'x')).file("big", std::string(5000, 'y'));
  read_counter counter;
  const fault_injector inj{&read_counter::inject, &counter};
  scoped_fault_injector scope(&inj);
  auto read = [&](const std::string &path) {
    auto r = sysfs::read_text_file(path, 1 << 20);
    REQUIRE(r);
    return std::pair{*r, counter.reads[path]};
  };
  CHECK(read(t.root() + "/small") == std::pair{std::string("0-3\n"), 1});
  // Exactly a page: the read filled what was asked, so the end is not known yet.
  CHECK(read(t.root() + "/page") == std::pair{std::string(4096, 'x'), 2});
  CHECK(read(t.root() + "/big") == std::pair{std::string(5000, 'y'), 3});
  // procfs reports size 0: read until a read returns nothing.
  auto [status, status_reads] = read("/proc/self/status");
  CHECK(status.find("VmRSS") != std::string::npos);
  CHECK(status_reads >= 2);
  // A live sysfs attribute (st_size 4096, the text shorter): one read, the text whole.
  const std::string online = "/sys/devices/system/node/online";
  if (!std::filesystem::exists(online)) {
    SKIP(online << " is absent (a kernel without NUMA): the live sysfs half did not run");
  }
  auto [text, reads] = read(online);
  CHECK(reads == 1);
  REQUIRE_FALSE(text.empty());
  CHECK(text.back() == '\n');
}
