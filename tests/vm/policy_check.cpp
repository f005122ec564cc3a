// policy_check — runs inside the VM topologies: every placement mode of hetmem::placement on
// every memory node, each verified by asking the kernel (move_pages status via hetmem::where).
//   policy_check               all modes on all memory nodes
//   policy_check --excluded N  run inside a cpuset that excludes node N: placing there must be
//                              refused with a message, and a default allocation must avoid N
#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <sched.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <thread>

#include "hetmem/detail/tier_arena.hpp"
#include "hetmem/heap.hpp"
#include "hetmem/placement.hpp"
#include "hetmem/sysfs/reader.hpp"

using namespace hetmem;

namespace {

const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
constexpr std::size_t pages = 1024;
int failures = 0;

void expect(bool ok, const std::string &what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// Maps, places, touches and counts; nullopt-like empty census on error (reported).
page_census run(const placement &p, const std::string &label) {
  auto m = map_anonymous(pages * page);
  if (!m) {
    expect(false, label + ": " + m.error().message);
    return {};
  }
  auto r = place(*m, pages * page, p);
  if (!r) {
    expect(false, label + ": " + r.error().message);
    (void)unmap(*m, pages * page);
    return {};
  }
  std::memset(*m, 1, pages * page);
  auto w = where(*m, pages * page);
  (void)unmap(*m, pages * page);
  if (!w) {
    expect(false, label + ": " + w.error().message);
    return {};
  }
  return *w;
}

std::string census_text(const page_census &c) {
  std::string s;
  for (auto [n, k] : c.per_node) s += " n" + std::to_string(n) + "=" + std::to_string(k);
  return s + (c.not_present ? " absent=" + std::to_string(c.not_present) : "");
}

int excluded_mode(std::uint32_t excluded) {
  auto k = probe_kernel_policy_support();
  expect(k && !k->mems_allowed.contains(excluded), "the cpuset excludes node " + std::to_string(excluded) +
                                                       " (mems_allowed " + (k ? k->mems_allowed.to_string() : "?") +
                                                       ")");
  auto m = map_anonymous(pages * page);
  if (!m) return 2;
  placement p;
  p.mode = policy_mode::bind;
  p.nodes.insert(excluded);
  auto r = place(*m, pages * page, p);
  expect(!r && r.error().message.find("not allowed to this process") != std::string::npos,
         "bind to the excluded node is refused: " + (r ? std::string("accepted") : r.error().message));
  std::memset(*m, 1, pages * page);
  auto w = where(*m, pages * page);
  expect(w && w->on(excluded) == 0, "no page lands on the excluded node:" + (w ? census_text(*w) : std::string()));
  std::printf("policy_check --excluded: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}

}  // namespace

// A node's MemFree, in bytes. The filler takes only free memory: asking a bound mapping to
// reclaim the node's page cache (on a CPU node, the running binaries') can wake the OOM killer.
std::uint64_t node_free(std::uint32_t node) {
  std::ifstream in("/sys/devices/system/node/node" + std::to_string(node) + "/meminfo");
  std::string line;
  while (std::getline(in, line))
    if (auto at = line.find("MemFree:"); at != std::string::npos)
      return std::stoull(line.substr(at + std::strlen("MemFree:"))) * 1024;
  return 0;
}

// How full `node` would be, in percent, with `extra` bytes more in use; "used" is what the
// engine counts: total less (free + inactive file + reclaimable slab).
double node_used_percent(std::uint32_t node, std::size_t extra) {
  std::ifstream in("/sys/devices/system/node/node" + std::to_string(node) + "/meminfo");
  std::string line;
  std::uint64_t total = 0, available = 0;
  while (std::getline(in, line)) {  // "Node 0 MemTotal:  502345 kB"
    std::istringstream fields(line);
    std::string word, key;
    std::uint32_t id = 0;
    std::uint64_t kb = 0;
    if (!(fields >> word >> id >> key >> kb)) continue;
    if (key == "MemTotal:") total = kb * 1024;
    if (key == "MemFree:" || key == "Inactive(file):" || key == "SReclaimable:") available += kb * 1024;
  }
  if (total == 0) return 100;
  return 100.0 * static_cast<double>(total - std::min(total, available) + extra) / static_cast<double>(total);
}

// The kernel's high watermarks of `node`'s zones together, in bytes (/proc/zoneinfo, whose
// "high" lines count pages). Below them kswapd reclaims; near "min", a fault bound to the node
// reclaims directly or, with only anonymous memory there, calls the OOM killer (Linux 7.3 did,
// on a 512 MiB node whose "high" is 34 MiB).
std::uint64_t node_high_watermark(std::uint32_t node) {
  std::ifstream in("/proc/zoneinfo");
  std::string line;
  const std::string header = "Node " + std::to_string(node) + ",";
  bool ours = false;
  std::uint64_t pages = 0;
  while (std::getline(in, line)) {
    if (line.rfind("Node ", 0) == 0) {
      ours = line.rfind(header, 0) == 0;
      continue;
    }
    std::istringstream fields(line);
    std::string key;
    std::uint64_t value = 0;
    if (ours && fields >> key >> value && key == "high") pages += value;
  }
  return pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// Occupies `node` but for its high watermark and 8 MiB (above what the kernel keeps free,
// below the 64 MiB the requests that follow need, page cache included: it is dropped first, as
// the engine counts it available) with bound, faulted-in memory; nullptr (reported) if that
// fails.
void *fill_node(std::uint32_t node, std::size_t *bytes) {
  if (std::FILE *f = std::fopen("/proc/sys/vm/drop_caches", "w")) {  // root in the VM
    std::fputs("3\n", f);
    std::fclose(f);
  }
  const std::uint64_t avail = node_free(node), keep = node_high_watermark(node) + (8u << 20);
  const std::size_t fill = avail > keep ? static_cast<std::size_t>(avail - keep) : 0;
  void *filler = ::mmap(nullptr, fill, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  placement b;
  b.mode = policy_mode::bind;
  b.nodes.insert(node);
  const bool filled =
      filler != MAP_FAILED && place(filler, fill, b) && ::madvise(filler, fill, 23 /* POPULATE_WRITE */) == 0;
  expect(filled, "filled node " + std::to_string(node) + " with " + std::to_string(fill >> 20) + " MiB, " +
                     std::to_string(node_free(node) >> 20) + " MiB left");
  if (!filled) {
    if (filler != MAP_FAILED) ::munmap(filler, fill);
    return nullptr;
  }
  *bytes = fill;
  return filler;
}

// Fills the HBM node this CPU sees first, then asks for more: a strict heap must fail with
// ENOMEM naming the tier, a next-tier heap must land on the next tier (by the kernel's word);
// once the filler is gone, the strict heap works again, on HBM.
void fill_hbm(const topology &topo) {
  auto hbm = tier_by_kind(topo, memory_kind::hbm);
  if (!hbm) return;
  const std::uint32_t node = hbm->where.nodes.first();
  auto strict = heap::create(*hbm);
  auto soft = heap::create(*hbm, {.when_full = on_full::next_tier});
  if (!strict || !soft) {
    expect(false, "heaps on " + hbm->name + ": " + (!strict ? strict.error().message : soft.error().message));
    return;
  }
  std::size_t fill = 0;
  void *filler = fill_node(node, &fill);
  if (!filler) return;

  errno = 0;
  void *p = (*strict)->allocate(64u << 20);
  const std::string why = last_error();
  expect(p == nullptr && errno == ENOMEM && why.find(hbm->name + ": tier is full") != std::string::npos,
         "strict heap on full HBM fails with ENOMEM: " + why);
  if (p) deallocate(p);

  void *q = (*soft)->allocate(64u << 20);
  bool fell_back = false;
  if (q) {
    std::memset(q, 3, 64u << 20);
    auto w = where(q, 64u << 20);
    const tier *t = tier_of(q);
    fell_back = w && w->on(node) == 0 && t && t->kind != memory_kind::hbm && (*soft)->fallbacks() == 1;
    expect(fell_back, "next-tier heap on full HBM lands on " + std::string(t ? t->name : "?") + ":" +
                          (w ? census_text(*w) : std::string(" where failed")));
    deallocate(q);
  } else {
    expect(false, std::string("next-tier heap on full HBM failed: ") + last_error());
  }
  ::munmap(filler, fill);

  void *r = (*strict)->allocate(64u << 20);
  if (r) std::memset(r, 4, 64u << 20);
  auto w = r ? where(r, 64u << 20) : result<page_census>(error{ENOMEM, last_error()});
  expect(r && w && w->on(node) == w->pages, "after the filler is gone the strict heap works again on node " +
                                                std::to_string(node) + ":" + (w ? census_text(*w) : w.error().message));
  if (r) deallocate(r);
}

// Persistent memory that is not a NUMA node: a devdax device and a directory on an ext4 file
// system mounted -o dax, each a file-backed tier. The kernel's word: the mapping is of the
// device / of a file in that directory (/proc/self/maps), and statx says the directory is DAX.
std::string mapping_of(const void *p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  while (std::getline(maps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi) return line;
  }
  return "";
}

void check_file_tier(const std::string &path, bool device) {
  auto t = file_tier(path, 64u << 20);
  if (!t) {
    expect(false, "file tier on " + path + ": " + t.error().message);
    return;
  }
  auto h = heap::create(*t);
  if (!h) {
    expect(false, "heap on " + t->name + ": " + h.error().message);
    return;
  }
  std::vector<std::pair<unsigned char *, std::size_t>> blocks;
  bool mapped = true;
  for (std::size_t size : {64u, 4096u, 200000u, 8u << 20}) {
    auto *p = static_cast<unsigned char *>((*h)->allocate(size));
    if (!p) {
      expect(false, t->name + ": allocating " + std::to_string(size) + " bytes: " + last_error());
      return;
    }
    std::memset(p, static_cast<int>(size & 0xff), size);
    const std::string m = mapping_of(p);
    mapped = mapped && m.find(device ? path : path + "/") != std::string::npos;
    blocks.emplace_back(p, size);
  }
  bool intact = true;
  for (auto [p, size] : blocks) {
    for (std::size_t i = 0; i < size; ++i) intact = intact && p[i] == (size & 0xff);
    deallocate(p);
  }
  expect(mapped && intact, t->name + ": 64 B to 8 MiB blocks are mappings of " +
                               (device ? "the device" : "a file in the directory") + ", data intact");
  errno = 0;
  void *big = (*h)->allocate(100u << 20);
  expect(big == nullptr && errno == ENOMEM && std::string(last_error()).find("file tier is full") != std::string::npos,
         t->name + ": more than its 64 MiB is refused: " + last_error());
}

int file_tiers(const std::string &devdax, const std::string &dir) {
  check_file_tier(devdax, true);
  // The directory's file system must really be DAX: ask statx about a file in it.
  const std::string probe = dir + "/dax-probe";
  std::ofstream(probe) << "x";
  struct statx sx {};
  const bool dax = ::statx(AT_FDCWD, probe.c_str(), 0, STATX_BASIC_STATS, &sx) == 0 &&
                   (sx.stx_attributes_mask & STATX_ATTR_DAX) && (sx.stx_attributes & STATX_ATTR_DAX);
  expect(dax, dir + " is on a DAX file system (statx STATX_ATTR_DAX)");
  ::unlink(probe.c_str());
  check_file_tier(dir, false);
  std::printf("policy_check --file-tiers: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}

// hugetlb tiers: guest-run.sh gives every node a small pool of 2 MiB pages; a hugetlb tier on a
// node must take its pages from that node (move_pages) and they must be 2 MiB pages (smaps).
std::uint64_t kernel_page_size_kb(const void *p) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  bool in = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) in = a >= lo && a < hi;
    if (in && line.rfind("KernelPageSize:", 0) == 0) return std::stoull(line.substr(15));
  }
  return 0;
}

void check_hugetlb(const std::vector<std::uint32_t> &nodes) {
  for (auto n : nodes) {
    std::ifstream pool("/sys/devices/system/node/node" + std::to_string(n) +
                       "/hugepages/hugepages-2048kB/free_hugepages");
    unsigned free_pages = 0;
    pool >> free_pages;
    if (free_pages < 8) {
      // Some nodes (a kmem node's movable memory) may not give hugetlb pages; node 0 must.
      expect(n != 0, "hugetlb pool on node " + std::to_string(n) + ": " + std::to_string(free_pages) +
                         " free 2 MiB pages (skipped)");
      continue;
    }
    tier t;
    t.name = "node " + std::to_string(n) + " hugetlb";
    t.where.mode = policy_mode::bind;
    t.where.nodes.insert(n);
    t.where.thp = huge_pages::hugetlb_2m;
    auto h = heap::create(t);
    void *p = h ? (*h)->allocate(6u << 20) : nullptr;
    if (!p) {
      expect(false, t.name + ": " + (h ? std::string(last_error()) : h.error().message));
      continue;
    }
    std::memset(p, 5, 6u << 20);
    auto w = where(p, 6u << 20);
    const auto kps = kernel_page_size_kb(p);
    expect(w && w->on(n) == w->pages && kps == 2048, t.name + ": 6 MiB in " + std::to_string(kps) + " kB pages:" +
                                                         (w ? census_text(*w) : std::string(" where failed")));
    deallocate(p);
  }
}

// A bind tier over several nodes keeps one jemalloc arena per node: a thread running on node n
// gets node n's memory (small and large blocks), by the kernel's word.
void check_per_node(const std::vector<std::uint32_t> &nodes) {
  std::vector<std::pair<std::uint32_t, int>> cpu_nodes;  // node, its first CPU
  for (auto n : nodes) {
    std::ifstream f("/sys/devices/system/node/node" + std::to_string(n) + "/cpulist");
    std::string list;
    if (std::getline(f, list) && !list.empty() && std::isdigit(static_cast<unsigned char>(list[0])))
      cpu_nodes.emplace_back(n, std::stoi(list));
  }
  if (cpu_nodes.size() < 2) return;
  tier t;
  t.name = "nodes with CPUs";
  t.where.mode = policy_mode::bind;
  for (auto [n, cpu] : cpu_nodes) t.where.nodes.insert(n);
  auto h = heap::create(t);
  if (!h) {
    expect(false, "heap on " + t.name + ": " + h.error().message);
    return;
  }
  for (auto [n, cpu] : cpu_nodes) {
    std::string result;
    std::thread worker([&, n = n, cpu = cpu] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(static_cast<unsigned>(cpu), &set);
      if (sched_setaffinity(0, sizeof set, &set) != 0) {
        result = "FAIL pinning";
        return;
      }
      std::vector<void *> small;
      std::size_t on = 0, total = 0;
      for (int i = 0; i < 300; ++i) small.push_back((*h)->allocate(1000));
      void *large = (*h)->allocate(4u << 20);
      for (void *p : small) {
        std::memset(p, 1, 1000);
        auto w = where(p, 1000);
        on += w ? w->on(n) : 0;
        total += w ? w->pages : 0;
      }
      std::memset(large, 2, 4u << 20);
      auto wl = where(large, 4u << 20);
      const bool ok = on == total && wl && wl->on(n) == wl->pages;
      result = std::string(ok ? "ok" : "FAIL") + " thread on CPU " + std::to_string(cpu) + " (node " +
               std::to_string(n) + "): " + std::to_string(on) + "/" + std::to_string(total) +
               " pages of 1000-byte blocks and the 4 MiB block" + (wl ? census_text(*wl) : std::string()) +
               " on its node";
      for (void *p : small) deallocate(p);
      deallocate(large);
    });
    worker.join();
    expect(result.rfind("ok", 0) == 0, "per-node arenas, " + result.substr(result.find(' ') + 1));
  }
  // The last node full: a thread on it moves on to the tier's other nodes. "Full" is a fill
  // limit between how used the filled node and the others would be after the request, taken
  // from the same node meminfo the engine reads: the guest's own use of a node (kernel, page
  // cache of the binaries) varies from boot to boot, so no fixed percentage separates them.
  const auto [full, cpu] = cpu_nodes.back();
  std::size_t fill = 0;
  void *filler = fill_node(full, &fill);
  if (!filler) return;
  constexpr std::size_t request = 16u << 20;
  const double full_after = node_used_percent(full, request);
  double others_after = 0;
  for (auto [n, c] : cpu_nodes)
    if (n != full) others_after = std::max(others_after, node_used_percent(n, request));
  const auto limit = static_cast<unsigned>((full_after + others_after) / 2);
  if (!(others_after < limit && limit < full_after)) {
    ::munmap(filler, fill);
    expect(false, "per-node fall-over: no fill limit separates the filled node (" + std::to_string(full_after) +
                      "% used after the request) from the others (" + std::to_string(others_after) + "%)");
    return;
  }
  h = heap::create(t, {.fill_limit_percent = limit});
  if (!h) {
    ::munmap(filler, fill);
    expect(false, "heap on " + t.name + ": " + h.error().message);
    return;
  }
  std::printf("     fall-over fill limit %u%%: node %u would be %.1f%% used, the others at most %.1f%%\n", limit, full,
              full_after, others_after);
  std::string result;
  std::thread worker([&, full = full, cpu = cpu] {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<unsigned>(cpu), &set);
    (void)sched_setaffinity(0, sizeof set, &set);
    void *p = (*h)->allocate(request);
    if (!p) {
      result = std::string("FAIL: ") + last_error();
      return;
    }
    std::memset(p, 3, request);
    auto w = where(p, request);
    result = std::string(w && w->on(full) == 0 && w->not_present == 0 ? "ok" : "FAIL") + ":" +
             (w ? census_text(*w) : std::string(" where failed"));
    deallocate(p);
  });
  worker.join();
  ::munmap(filler, fill);
  expect(result.rfind("ok", 0) == 0, "per-node arenas, node " + std::to_string(full) +
                                         " full: a thread there gets the tier's other nodes" +
                                         result.substr(result.find(':') + 1));
}

int main(int argc, char **argv) {
  if (argc == 4 && std::strcmp(argv[1], "--file-tiers") == 0) return file_tiers(argv[2], argv[3]);
  if (argc == 3 && std::strcmp(argv[1], "--excluded") == 0)
    return excluded_mode(static_cast<std::uint32_t>(std::atoi(argv[2])));
  auto snap = sysfs::read_snapshot({"/"});
  auto k = probe_kernel_policy_support();
  if (!snap || !k) {
    std::printf("FAIL setup: %s\n", !snap ? snap.error().message.c_str() : k.error().message.c_str());
    return 1;
  }
  std::vector<std::uint32_t> nodes;
  for (const auto &n : snap->nodes)
    if (n.mem_total_kb.value_or(0) > 0) nodes.push_back(n.id);
  std::printf("memory nodes:");
  for (auto n : nodes) std::printf(" %u", n);
  std::printf("; preferred_many %s, weighted_interleave %s\n", k->preferred_many ? "yes" : "no",
              k->weighted_interleave ? "yes" : "no");

  for (auto n : nodes) {
    for (auto mode : {policy_mode::bind, policy_mode::preferred}) {
      placement p;
      p.mode = mode;
      p.nodes.insert(n);
      auto c = run(p, to_string(mode));
      expect(c.on(n) == pages, std::string(to_string(mode)) + " node " + std::to_string(n) + ":" + census_text(c));
    }
  }
  // The allocation engine: one jemalloc arena per node; small and large blocks land there.
  for (auto n : nodes) {
    tier t;
    t.name = "node " + std::to_string(n);
    t.where.mode = policy_mode::bind;
    t.where.nodes.insert(n);
    auto a = detail::tier_arena::get(t);
    if (!a) {
      expect(false, "tier arena on node " + std::to_string(n) + ": " + a.error().message);
      continue;
    }
    std::vector<void *> blocks;
    std::size_t on = 0, total = 0;
    for (std::size_t size : {64u, 4096u, 100000u, 4u << 20}) {
      for (int i = 0; i < 50; ++i) {
        void *b = (*a)->allocate(size);
        if (!b) break;
        std::memset(b, 1, size);
        blocks.push_back(b);
        auto pg =
            reinterpret_cast<void *>(reinterpret_cast<std::uintptr_t>(b) & ~(static_cast<std::uintptr_t>(page) - 1));
        auto w = where(pg, page);
        on += w && w->on(n) == 1 ? 1u : 0u;
        ++total;
      }
    }
    for (void *b : blocks) detail::tier_arena::deallocate(b);
    expect(total == 200 && on == total, "tier arena on node " + std::to_string(n) + ": " + std::to_string(on) + "/" +
                                            std::to_string(total) + " blocks (64 B to 4 MiB) on the node");
  }
  if (nodes.size() >= 2) {
    placement all;
    all.mode = policy_mode::interleave;
    all.thp = huge_pages::never;  // page-granular: a 2 MiB huge page would be placed whole
    for (auto n : nodes) all.nodes.insert(n);
    auto c = run(all, "interleave");
    bool even = true;
    for (auto n : nodes) even = even && c.on(n) + 1 >= pages / nodes.size() && c.on(n) <= pages / nodes.size() + 1;
    expect(even, "interleave over all nodes, within one page of even:" + census_text(c));

    if (k->weighted_interleave) {
      all.mode = policy_mode::weighted_interleave;  // the kernel's weights (all 1 in the guest)
      c = run(all, "weighted-interleave (kernel)");
      std::size_t placed = 0;
      for (auto n : nodes) placed += c.on(n);
      bool spread = placed == pages;
      for (auto n : nodes) spread = spread && c.on(n) > 0;
      expect(spread, "weighted-interleave by the kernel spreads over every node:" + census_text(c));
    }
    // With huge pages the kernel interleaves whole 2 MiB pages: 4 MiB over the nodes -> 2 of them.
    {
      placement h = all;
      h.mode = policy_mode::interleave;
      h.thp = huge_pages::always;
      auto hc = run(h, "interleave, huge pages");
      std::size_t holders = 0;
      for (auto n : nodes) holders += hc.on(n) ? 1u : 0u;
      expect(holders >= 1 && holders <= 2, "interleave with huge pages places 2 MiB units:" + census_text(hc));
    }
    placement w;
    w.thp = huge_pages::never;
    w.mode = policy_mode::weighted_interleave;
    w.nodes.insert(nodes[0]);
    w.nodes.insert(nodes[1]);
    w.weights = {3, 1};
    c = run(w, "weighted-interleave 3:1");
    expect(c.on(nodes[0]) == pages * 3 / 4 && c.on(nodes[1]) == pages / 4,
           "weighted-interleave 3:1 (per-range weights) gives exactly 3/4 and 1/4:" + census_text(c));

    if (k->preferred_many) {
      placement pm;
      pm.mode = policy_mode::preferred_many;
      pm.nodes.insert(nodes[nodes.size() - 2]);
      pm.nodes.insert(nodes.back());
      c = run(pm, "preferred-many");
      expect(c.on(nodes[nodes.size() - 2]) + c.on(nodes.back()) == pages,
             "preferred-many over the last two nodes keeps every page there:" + census_text(c));
    }
    // Explicit moves, verified by the kernel, with the data intact.
    auto m = map_anonymous(pages * page);
    if (m) {
      placement b;
      b.mode = policy_mode::bind;
      b.nodes.insert(nodes[0]);
      (void)place(*m, pages * page, b);
      for (std::size_t i = 0; i < pages * page; ++i)
        static_cast<unsigned char *>(*m)[i] = static_cast<unsigned char>(i * 7);
      // Drop the bind so the pages may live elsewhere, then move them.
      placement d;
      d.mode = policy_mode::default_policy;
      (void)place(*m, pages * page, d);
      for (std::size_t t = 1; t < nodes.size(); ++t) {
        auto r = move_to(*m, pages * page, nodes[t]);
        auto after = where(*m, pages * page);
        bool intact = true;
        for (std::size_t i = 0; i < pages * page; ++i)
          intact = intact && static_cast<unsigned char *>(*m)[i] == static_cast<unsigned char>(i * 7);
        expect(
            r && r->moved == pages && after && after->on(nodes[t]) == pages && intact,
            "move_to node " + std::to_string(nodes[t]) + ": " +
                (r ? std::to_string(r->moved) + " moved, " + std::to_string(r->busy + r->no_memory + r->other_failed) +
                         " failed (first errno " + std::to_string(r->first_error) + ")"
                   : r.error().message) +
                (after ? census_text(*after) : std::string()) + (intact ? ", data intact" : ", DATA CHANGED"));
      }
      (void)unmap(*m, pages * page);
    }
  }
  check_hugetlb(nodes);
  check_per_node(nodes);
  if (auto topo = load_topology())
    fill_hbm(*topo);
  else
    expect(false, "topology: " + topo.error().message);
  std::printf("policy_check: %zu nodes, %d failure(s)\n", nodes.size(), failures);
  return failures ? 1 : 0;
}
