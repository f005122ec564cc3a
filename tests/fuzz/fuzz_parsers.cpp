// fuzz_parsers.cpp — libFuzzer target for every text parser: the sysfs-reader's, the node-kind
// override string, the saved probe report, the policy language (HETMEM_POLICY and config
// files, resolved against a three-node machine), memkind's and autohbw's variables, sizes and
// tiers, HETMEM_TIERING, and (structure-aware) a whole sysfs tree: made on disk from the input,
// FIFOs and links included, then read end to end by the reader, classify() and hwloc's
// cross-check, none of which may crash or hang. The first input byte picks the parser (modulo parser_count); the
// rest is the content. With HETMEM_FUZZ_PARSER=N every input goes to parser N (its first byte
// still skipped), so that a run can give each parser a time budget of its own (check.sh does).
//
// Build with clang: cmake -DHETMEM_BUILD_FUZZERS=ON -DCMAKE_CXX_COMPILER=clang++ (see README).
// The same entry point is linked into the unit tests, which replay tests/fuzz/corpus/ (seeds
// and every crash ever found), so regressions are caught without clang.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hetmem/hwloc_check.hpp"
#include "hetmem/policy.hpp"
#include "hetmem/probe_report.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/tiering.hpp"
#include "hetmem/topology.hpp"

namespace {

constexpr unsigned parser_count = 21;

// HETMEM_FUZZ_PARSER as a parser number, or -1 (the first byte picks).
int only_parser() {
  static const int n = [] {
    const char *e = std::getenv("HETMEM_FUZZ_PARSER");  // NOLINT(concurrency-mt-unsafe): read once
    if (!e || !*e) return -1;
    char *end = nullptr;
    const long v = std::strtol(e, &end, 10);
    return *end == '\0' && v >= 0 && v < parser_count ? static_cast<int>(v) : -1;
  }();
  return n;
}

// DDR with the CPUs, a CPU-less HBM node and a CPU-less slow node, as classify() sees them.
const hetmem::topology &machine() {
  static const hetmem::topology t = [] {
    hetmem::sysfs::snapshot s;
    s.root = "/fuzz";
    const std::uint32_t lat[3] = {100, 120, 300}, bw[3] = {100000, 400000, 20000};
    for (std::uint32_t id = 0; id < 3; ++id) {
      hetmem::sysfs::node n;
      n.id = id;
      if (id == 0) {
        n.cpus.insert(0);
        n.cpus.insert(1);
      }
      n.cpus_reported = true;
      n.mem_total_kb = 1u << 20;
      n.mem_free_kb = 1u << 19;
      n.distance_row =
          id == 0 ? std::vector<std::uint32_t>{10, 12, 30}
                  : (id == 1 ? std::vector<std::uint32_t>{12, 10, 32} : std::vector<std::uint32_t>{30, 32, 10});
      n.access[1].present = true;
      n.access[1].initiators.insert(0);
      n.access[1].performance.read_latency_ns = lat[id];
      n.access[1].performance.read_bandwidth_mbps = bw[id];
      s.nodes.push_back(n);
    }
    auto r = hetmem::classify(s);
    if (!r) __builtin_trap();
    return std::move(r).value();
  }();
  return t;
}

// "first\nsecond": the two strings of a parser that takes two.
std::pair<std::string_view, std::string_view> two(std::string_view text) {
  const std::size_t nl = text.find('\n');
  if (nl == std::string_view::npos) return {text, {}};
  return {text.substr(0, nl), text.substr(nl + 1)};
}

void expect_named_error(const hetmem::error &e) {
  if (e.message.empty() || e.code <= 0) __builtin_trap();  // every error names its cause
}

// A parsed policy resolved on machine() and explained; every error on the way names its cause.
void resolved(const hetmem::result<hetmem::policy::policy> &p, const char *origin) {
  if (!p) {
    expect_named_error(p.error());
    return;
  }
  auto plan = hetmem::policy::resolve({*p, origin}, machine());
  if (plan)
    (void)hetmem::policy::explain(*plan);
  else
    expect_named_error(plan.error());
}

// Parser 20's tree. The input is records separated by NUL bytes, each "T PATH\nCONTENT": T is
// 'd' (a folder), 'p' (a FIFO), 'l' (a symbolic link to CONTENT, which may point anywhere,
// outside the tree too), anything else a file holding CONTENT. PATH is taken relative to the
// tree with "." and ".." components dropped. A fresh tree per input, in a folder of this process.
void build_tree(const std::filesystem::path &root, std::string_view text) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root / "sys/devices/system/node", ec);
  unsigned records = 0;
  while (!text.empty() && records++ < 96) {
    const std::size_t end = std::min(text.find('\0'), text.size());
    const std::string_view rec = text.substr(0, end);
    text.remove_prefix(end < text.size() ? end + 1 : end);
    if (rec.size() < 2) continue;
    const char type = rec[0];
    const std::size_t nl = std::min(rec.find('\n'), rec.size());
    const std::string_view content = nl < rec.size() ? rec.substr(nl + 1) : std::string_view{};
    fs::path rel;
    for (const auto &part : fs::path(std::string(rec.substr(1, nl - 1))))
      if (part != "/" && part != "." && part != ".." && !part.empty()) rel /= part;
    if (rel.empty() || rel.string().size() > 200) continue;
    const fs::path at = root / rel;
    fs::create_directories(at.parent_path(), ec);
    if (type == 'd') {
      fs::create_directories(at, ec);
    } else if (type == 'p') {
      (void)::mkfifo(at.c_str(), 0600);
    } else if (type == 'l') {
      fs::create_symlink(std::string(content.substr(0, 200)), at, ec);
    } else {
      std::ofstream(at, std::ios::binary)
          .write(content.data(), static_cast<std::streamsize>(std::min<std::size_t>(content.size(), 4096)));
    }
  }
}

const std::filesystem::path &tree_root() {
  static const std::filesystem::path p =
      std::filesystem::temp_directory_path() / ("hetmem-fuzz-tree-" + std::to_string(::getpid()));
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char *>(data + 1), size - 1);
  using namespace hetmem::sysfs;
  const int only = only_parser();
  switch (only >= 0 ? static_cast<unsigned>(only) : data[0] % parser_count) {
    case 0: {
      auto r = parse_id_list(text, max_node_id);
      if (r && !r->empty() && r->last() > max_node_id) __builtin_trap();  // the limit holds
      break;
    }
    case 1: {
      auto r = parse_id_mask(text, max_cpu_id);
      if (r) (void)r->count();
      break;
    }
    case 2:
      (void)parse_uint64(text);
      (void)parse_int64(text);
      break;
    case 3:
      (void)parse_bool(text);
      break;
    case 4:
      (void)parse_distance_row(text);
      break;
    case 5:
      (void)parse_node_meminfo(text, 0);
      break;
    case 6:
      (void)parse_nvidia_numa_status(text);
      break;
    case 7:
      (void)parse_cpuinfo(text);
      break;
    case 8:
      (void)parse_knl_hwdata(text);
      break;
    case 9:
      (void)parse_proc_self_cgroup(text);
      break;
    case 10: {  // /proc/PID/status and /proc/PID/stat; /proc/vmstat and nodeN/vmstat
      (void)find_status_field(text, "Mems_allowed_list");
      for (const unsigned n : {3u, 14u, 39u, 1000u})
        if (const auto f = find_stat_field(text, n); f && (f->empty() || f->find(' ') != std::string_view::npos))
          __builtin_trap();  // a field is one non-empty blank-free token
      auto vm = parse_vmstat(text);
      if (!vm && vm.error().message.empty()) __builtin_trap();  // every error names its cause
      if (vm)
        for (const auto &[name, count] : vm->entries)
          if (name.empty() || name.find_first_of(" \t\n") != std::string::npos || vm->find(name) == std::nullopt)
            __builtin_trap();  // a counter is a blank-free name that find() gives back
      break;
    }
    case 11: {
      auto r = hetmem::parse_kind_overrides(text);
      if (!r && r.error().message.empty()) __builtin_trap();  // every error names its cause
      break;
    }
    case 12: {
      auto r = parse_numa_maps(text, max_node_id);
      if (r) {
        for (std::size_t i = 1; i < r->nodes.size(); ++i)
          if (r->nodes[i - 1].node >= r->nodes[i].node) __builtin_trap();  // ascending, unique
      } else if (r.error().message.empty()) {
        __builtin_trap();
      }
      break;
    }
    case 13: {
      auto r = parse_cgroup_numa_stat(text, max_node_id);
      if (!r && r.error().message.empty()) __builtin_trap();
      break;
    }
    case 14: {
      auto r = hetmem::parse_probe_report(text);
      if (!r) {
        if (r.error().message.empty()) __builtin_trap();
        break;
      }
      // What is written back parses again, to the same text.
      const std::string once = hetmem::format_probe_report(*r);
      auto again = hetmem::parse_probe_report(once);
      if (!again || hetmem::format_probe_report(*again) != once) __builtin_trap();
      break;
    }
    case 15: {  // the policy language, as HETMEM_POLICY or a config file, resolved on machine()
      resolved(hetmem::policy::parse(text, "fuzz.conf"), "fuzz.conf");
      break;
    }
    case 16: {  // MEMKIND_MEM_TIERS \n MEMKIND_MEM_THRESHOLDS
      auto [tiers, thresholds] = two(text);
      resolved(hetmem::policy::from_memkind(tiers, thresholds), "MEMKIND_MEM_TIERS");
      break;
    }
    case 17: {  // AUTO_HBW_SIZE \n AUTO_HBW_MEM_TYPE
      auto [limits, type] = two(text);
      resolved(hetmem::policy::from_autohbw(limits, type), "AUTO_HBW_SIZE");
      break;
    }
    case 18: {  // a size, and a tier as the CLI's --to takes one
      if (auto sz = hetmem::policy::parse_size(text); !sz) expect_named_error(sz.error());
      auto t = hetmem::policy::parse_tier(text, "--to");
      if (!t) {
        expect_named_error(t.error());
      } else if (auto r = hetmem::policy::resolve_tier(*t, machine()); !r) {
        expect_named_error(r.error());
      }
      break;
    }
    case 19: {  // HETMEM_TIERING
      auto o = hetmem::parse_tiering_options(std::string(text));
      if (!o) expect_named_error(o.error());
      break;
    }
    case 20: {  // a whole tree, read as `hetmem topo --root TREE` reads it, hwloc's cross-check too
      build_tree(tree_root(), text);
      hetmem::load_options lo;
      lo.root = tree_root().string();
      auto t = hetmem::load_topology(lo);
      // The preload's lighter read must decide the same kinds and tier orders on any tree.
      lo.scope = hetmem::sysfs::read_scope::placement;
      if (auto light = hetmem::load_topology(lo); t && light) {
        if (light->nodes.size() != t->nodes.size()) std::abort();
        for (std::size_t i = 0; i < t->nodes.size(); ++i)
          if (light->nodes[i].kind != t->nodes[i].kind || light->nodes[i].reasons.size() != t->nodes[i].reasons.size())
            std::abort();
        for (const auto &v : t->initiators) {
          const auto *lv = light->initiator(v.node);
          if (!lv || lv->tiers.size() != v.tiers.size()) std::abort();
          for (std::size_t g = 0; g < v.tiers.size(); ++g)
            if (lv->tiers[g].nodes != v.tiers[g].nodes) std::abort();
        }
      }
      if (!t) {
        expect_named_error(t.error());
      } else if (auto hw = hetmem::hwloc_view(lo.root); hw) {
        hetmem::crosscheck(*t, *hw);
      } else {
        expect_named_error(hw.error());
      }
      std::error_code ec;
      std::filesystem::remove_all(tree_root(), ec);
      break;
    }
  }
  return 0;
}
