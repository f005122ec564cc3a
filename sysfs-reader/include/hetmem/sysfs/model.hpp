// hetmem/sysfs/model.hpp — the plain data model of what Linux says about memory and NUMA.
//
// Contract: this is a faithful, policy-free transcription of sysfs/procfs. An absent file is
// `std::nullopt` ("not reported"), never a guessed default. HMAT latency/bandwidth values of 0
// are recorded as not reported (a real Optane 2LM server exports all zeros) with
// `zero_values_seen` set, so the classifier can say so. Content that could not be parsed is
// also not reported and leaves a `diagnostic` naming the file and the problem.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hetmem/sysfs/id_set.hpp"
#include "hetmem/sysfs/parse.hpp"

namespace hetmem::sysfs {

// Limits that bound memory whatever the input. Linux's MAX_NUMNODES is at most 1 << 10.
inline constexpr std::uint32_t max_node_id = 4095;
inline constexpr std::uint32_t max_cpu_id = (1u << 20) - 1;
inline constexpr std::size_t max_attribute_bytes = std::size_t{64} * 1024;  // sysfs attributes are <= PAGE_SIZE
inline constexpr std::size_t max_dir_entries = 65536;

// One problem found while reading: `path` is relative to the root ("sys/devices/system/node/node3/distance").
struct diagnostic {
  std::string path;
  std::string message;
  int code = EINVAL;  // errno class: EINVAL malformed, ERANGE beyond a limit, EACCES, ELOOP, EFBIG...
};

// nodeT/accessY/initiators/{read,write}_{latency,bandwidth}.
struct hmat_performance {
  std::optional<std::uint64_t> read_latency_ns;
  std::optional<std::uint64_t> write_latency_ns;
  std::optional<std::uint64_t> read_bandwidth_mbps;  // MB/s as the kernel ABI documents it
  std::optional<std::uint64_t> write_bandwidth_mbps;
  bool zero_values_seen = false;  // at least one file said 0 (= not reported)

  [[nodiscard]] bool any_latency() const noexcept { return read_latency_ns || write_latency_ns; }
  [[nodiscard]] bool any_bandwidth() const noexcept { return read_bandwidth_mbps || write_bandwidth_mbps; }
  [[nodiscard]] bool any() const noexcept { return any_latency() || any_bandwidth(); }
};

// nodeN/accessY/ (Y = 0: best initiator of any kind; Y = 1: best CPU initiator).
struct access_class {
  bool present = false;  // accessY/initiators exists (the kernel always creates it with accessY)
  id_set initiators;     // nodeN/accessY/initiators/nodeI links (in a memory target)
  id_set targets;        // nodeN/accessY/targets/nodeT links (in an initiator)
  hmat_performance performance;
};

// nodeN/memory_side_cache/indexY/. Higher index = nearer to the CPU.
struct memory_side_cache {
  std::uint32_t index = 0;
  std::optional<std::uint64_t> size_bytes;
  std::optional<std::uint64_t> line_size_bytes;
  std::optional<std::uint32_t> indexing;      // 0 direct-mapped, else indexed
  std::optional<std::uint32_t> write_policy;  // 0 write-back, 1 write-through
  std::optional<std::uint32_t> address_mode;  // 1 extended-linear
};

// nodeN/hugepages/hugepages-<size>kB/.
struct hugepage_pool {
  std::uint64_t page_size_kb = 0;
  std::optional<std::uint64_t> total;
  std::optional<std::uint64_t> free;
  std::optional<std::uint64_t> surplus;
};

struct node {
  std::uint32_t id = 0;
  id_set cpus;                 // from cpulist, else cpumap
  bool cpus_reported = false;  // false if neither file could be read
  std::optional<std::uint64_t> mem_total_kb;
  std::optional<std::uint64_t> mem_free_kb;
  std::vector<std::uint32_t> distance_row;  // raw SLIT row; see snapshot::distance()
  std::array<access_class, 2> access{};     // access0, access1
  std::vector<memory_side_cache> memory_side_caches;
  std::vector<hugepage_pool> hugepages;
};

// /sys/devices/virtual/memory_tiering/memory_tierN/nodelist.
// The kernel's memory tier N holds the memory types whose abstract distance falls in
// [N * 128, N * 128 + 127] (MEMTIER_CHUNK_BITS = 7); DRAM's default is 576, in tier 4. An
// abstract distance from HMAT is 576 scaled by the node's latency over DRAM's and DRAM's
// bandwidth over the node's.
inline constexpr std::uint32_t memory_tier_chunk = 128;
inline constexpr std::uint32_t memory_tier_dram_distance = 4 * memory_tier_chunk + memory_tier_chunk / 2;

struct memory_tier {
  std::uint32_t id = 0;  // smaller = faster; the values are not stable across kernels
  id_set nodes;
  [[nodiscard]] std::uint64_t first_abstract_distance() const noexcept { return std::uint64_t{id} * memory_tier_chunk; }
  [[nodiscard]] std::uint64_t last_abstract_distance() const noexcept {
    return first_abstract_distance() + memory_tier_chunk - 1;
  }
};

enum class dax_driver { unbound, kmem, device_dax, other };
enum class dax_parent {
  unknown,
  nvdimm,         // .../ACPI0012:00/ndbus*/region*/...       (NVDIMM / Optane PMem)
  legacy_pmem,    // .../e820_pmem/ndbus*/...                  (memmap= fake pmem)
  soft_reserved,  // .../platform/hmem.N/...                   (EFI_MEMORY_SP: HBM or firmware-mapped CXL)
  cxl_ram,        // .../ACPI0017:00/.../regionN/dax_regionN/  (CXL volatile region)
  cxl_pmem,       // .../ACPI0017:00/.../nvdimm-bridge*/ndbus* (CXL persistent region)
};

// /sys/bus/dax/devices/daxX.Y.
struct dax_device {
  std::string name;         // "dax1.0"
  std::string device_path;  // the link's target below sys/, e.g. "devices/platform/hmem.1/dax1.0"
  dax_parent parent = dax_parent::unknown;
  dax_driver driver = dax_driver::unbound;
  std::string driver_name;                  // basename of the driver link ("kmem", "device_dax", ...)
  std::optional<std::int64_t> target_node;  // the node it becomes under kmem (-1: none)
  std::optional<std::int64_t> numa_node;    // nearest CPU node
  std::optional<std::uint64_t> size_bytes;
};

// /proc/driver/nvidia/gpus/<pci address>/numa_status.
struct nvidia_gpu_memory {
  std::string pci_address;
  nvidia_numa_status status;
};

// /sys/kernel/mm/mempolicy/weighted_interleave/.
struct weighted_interleave_state {
  bool present = false;  // directory exists (Linux >= 6.9)
  std::optional<bool> auto_mode;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> weights;  // (node, weight)
};

// How much of the tree a read covers.
// - everything: all that the model below holds.
// - placement: what classification and placement use, for a program's start-up under the
//   preload (half the system calls on a machine with several tiers). Not read, left empty:
//   the nodes' hugepage pools, HMAT targets lists (accessY/targets), access0 where access1
//   names its initiators and gives performance, a write latency or bandwidth where the read
//   one is given, has_cpu, dax devices' numa_node and size, and the kernel's knobs
//   (demotion_enabled, numa_balancing, weighted_interleave, numa_fake). The kinds, reasons and
//   tier order classify() gives are the same; only notes about the skipped facts are missing.
enum class read_scope { everything, placement };

struct snapshot {
  std::string root;                           // as given ("/" for the live system)
  read_scope scope = read_scope::everything;  // what was read (see read_scope)

  // /sys/devices/system/node/<mask>; nullopt when the file is absent.
  std::optional<id_set> possible, online, has_cpu, has_memory, has_normal_memory, has_generic_initiator;
  bool numa_dir_present = true;  // false: a kernel without CONFIG_NUMA (one implicit node)

  std::vector<node> nodes;  // online nodes, ascending id

  bool memory_tiers_reported = false;  // the memory_tiering directory exists (Linux >= 6.1)
  std::vector<memory_tier> memory_tiers;

  std::vector<dax_device> dax_devices;
  std::vector<nvidia_gpu_memory> nvidia_gpus;

  std::optional<bool> demotion_enabled;         // /sys/kernel/mm/numa/demotion_enabled
  std::optional<std::uint32_t> numa_balancing;  // /proc/sys/kernel/numa_balancing (bit 1: tiering)
  weighted_interleave_state weighted_interleave;

  std::optional<id_set> allowed_mems;  // the caller's cpuset.mems.effective
  std::string allowed_mems_source;     // which file said so

  cpu_identity cpu;
  std::optional<knl_hwdata> knl;  // /var/run/hwloc/knl_memoryside_cache (hwloc-dump-hwdata)
  bool numa_fake = false;         // "numa=fake=" on /proc/cmdline: SLIT rewritten, HMAT stale

  std::vector<diagnostic> diagnostics;

  [[nodiscard]] const node *find_node(std::uint32_t id) const noexcept;
  // SLIT distance from node `from` to node `to`, read from `from`'s row; nullopt when unknown.
  [[nodiscard]] std::optional<std::uint32_t> distance(std::uint32_t from, std::uint32_t to) const noexcept;
  // The ids of `nodes`, as a set.
  [[nodiscard]] id_set node_ids() const;
};

}  // namespace hetmem::sysfs
