// fuzz_parsers.cpp — libFuzzer target for every text parser of the sysfs-reader, the saved probe report and the
// node-kind override string. The first input byte picks the parser; the rest is the content.
//
// Build with clang: cmake -DHETMEM_BUILD_FUZZERS=ON -DCMAKE_CXX_COMPILER=clang++ (see README).
// The same entry point is linked into the unit tests, which replay tests/fuzz/corpus/ (seeds
// and every crash ever found), so regressions are caught without clang.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "hetmem/probe_report.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/topology.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char *>(data + 1), size - 1);
  using namespace hetmem::sysfs;
  switch (data[0] % 15) {
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
    case 10:
      (void)find_status_field(text, "Mems_allowed_list");
      break;
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
  }
  return 0;
}
