// hetmem/hwloc_check.hpp — hwloc's verdict on the same sysfs root, as a cross-check.
//
// Contract: hwloc_view() loads hwloc's topology of `root` (through HWLOC_FSROOT, which it sets
// for the duration of the call: not thread-safe, call it from a single-threaded tool) and
// returns, per NUMA node, hwloc's memory subtype ("DRAM", "HBM", "MCDRAM", "NVM", "SPM",
// "GPUMemory", "CXL-DRAM", ...; empty when hwloc gives none). crosscheck() adds hwloc's view
// to each node's reasons and records a disagreement where hwloc names a different kind.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hetmem/result.hpp"
#include "hetmem/topology.hpp"

namespace hetmem {

struct hwloc_node {
  std::uint32_t os_index = 0;
  std::string subtype;
  std::uint64_t local_memory_bytes = 0;
};

struct hwloc_report {
  std::string hwloc_version;
  std::vector<hwloc_node> nodes;
};

[[nodiscard]] result<hwloc_report> hwloc_view(const std::string &root);
void crosscheck(topology &t, const hwloc_report &report);

}  // namespace hetmem
