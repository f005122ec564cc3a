// hetmem/topology.hpp — what memory this machine has, what kind each node is, and which tier
// is best for each initiator.
//
// Contract:
// - classify() is a pure function of a sysfs snapshot (plus user overrides): the same tree
//   gives the same answer on any machine. load_topology() = read_snapshot() + classify().
// - Every node's verdict carries its reasons, ordered by trust, and every conflict between
//   sources is reported in `disagreements`; where evidence is too thin the kind is
//   `unknown` and the reasons say why.
// - Tiers are ordered per initiator (a node with CPUs): local targets first (by HMAT initiator
//   links, else nearest by SLIT), best kind first; remote targets after, nearest first.
// - noexcept; allocation failure is an ENOMEM error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hetmem/probe_report.hpp"
#include "hetmem/result.hpp"
#include "hetmem/sysfs/model.hpp"

namespace hetmem {

enum class memory_kind { ddr, hbm, pmem, cxl, device, unknown, none };
[[nodiscard]] std::string_view to_string(
    memory_kind kind) noexcept;  // "DDR","HBM","PMEM","CXL","device","unknown","none"
[[nodiscard]] std::optional<memory_kind> parse_memory_kind(std::string_view text) noexcept;  // case-insensitive

enum class confidence { high, medium, low };
[[nodiscard]] std::string_view to_string(confidence c) noexcept;

// Where a piece of evidence came from, roughly in order of trust.
enum class evidence_source {
  user_override,      // HETMEM_NODE_KINDS / --kind
  dax_kmem,           // /sys/bus/dax: a kmem-onlined dax device and its parent bus
  nvidia_numa,        // /proc/driver/nvidia/gpus/*/numa_status
  probe,              // a saved `hetmem probe` report of this machine (measured, not claimed)
  hmat_access1,       // nodeN/access1 (best CPU initiator)
  hmat_access0,       // nodeN/access0 (best initiator of any kind)
  memory_side_cache,  // nodeN/memory_side_cache or hwloc-dump-hwdata
  memory_tiers,       // /sys/devices/virtual/memory_tiering
  hwloc,              // hwloc's own verdict (cross-check)
  slit,               // nodeN/distance
  topology,           // CPU-less-ness, zones (has_normal_memory), capacity
  cpu_model,          // /proc/cpuinfo
};
[[nodiscard]] std::string_view to_string(evidence_source s) noexcept;

struct reason {
  evidence_source source;
  std::string text;
};

// Performance of a node as seen from its local initiators (HMAT). nullopt = not reported.
struct node_performance {
  int access_class = -1;  // 1, 0, or -1 when HMAT gives nothing usable
  std::optional<std::uint64_t> read_latency_ns, write_latency_ns;
  std::optional<std::uint64_t> read_bandwidth_mbps, write_bandwidth_mbps;
};

struct node_info {
  std::uint32_t id = 0;
  memory_kind kind = memory_kind::unknown;
  confidence certainty = confidence::low;
  std::vector<reason> reasons;             // most trusted first; reasons.front() is the deciding one
  std::vector<std::string> disagreements;  // sources that contradict the verdict
  sysfs::id_set cpus;
  bool is_generic_initiator = false;
  bool has_memory = false;
  std::optional<std::uint64_t> capacity_bytes;
  std::optional<std::uint64_t> free_bytes;
  node_performance performance;
  sysfs::id_set local_initiators;  // initiator nodes for which this memory is local
  std::vector<sysfs::memory_side_cache> memory_side_caches;
  std::string memory_side_cache_note;                    // e.g. "16 GiB MCDRAM cache (hwloc-dump-hwdata)"
  std::optional<std::uint64_t> memory_side_cache_bytes;  // size of the cache in front of this node
  std::optional<std::uint32_t> kernel_tier;              // memory_tierN containing this node
  std::vector<std::string> dax_devices;                  // kmem dax devices that make up this node
  std::string gpu;                                       // PCI address when it is NVIDIA GPU memory
  bool allowed = true;                                   // in the caller's cpuset.mems.effective
  std::optional<probe_node_result> measured;             // from the probe report used, if any
};

struct tier_group {
  std::uint32_t rank = 0;  // 0 = best for this initiator
  memory_kind kind = memory_kind::unknown;
  bool local = false;
  std::optional<std::uint32_t> distance;  // SLIT distance from the initiator (shared by the group)
  std::vector<std::uint32_t> nodes;
};

struct initiator_view {
  std::uint32_t node = 0;
  sysfs::id_set cpus;
  std::vector<tier_group> tiers;  // best first
};

struct topology {
  std::string root;
  bool hmat_reported = false;  // some node has usable access0/access1 performance
  int hmat_access_class = -1;  // the class most nodes were judged by (1 preferred)
  std::vector<node_info> nodes;
  std::vector<initiator_view> initiators;
  std::vector<std::string> notes;     // machine-wide findings ("no HMAT reported: ...")
  sysfs::snapshot snapshot;           // the facts it was built from
  std::optional<probe_report> probe;  // the saved probe used as evidence (classify_options::probe)
  std::string probe_origin;           // where it came from (a path, "HETMEM_PROBE=...")

  [[nodiscard]] const node_info *find(std::uint32_t node) const noexcept;
  [[nodiscard]] const initiator_view *initiator(std::uint32_t node) const noexcept;
  [[nodiscard]] const initiator_view *initiator_for_cpu(std::uint32_t cpu) const noexcept;
  // The initiator of the CPU this thread runs on, when the topology describes this machine.
  [[nodiscard]] const initiator_view *initiator_for_calling_thread() const noexcept;
};

struct kind_override {
  std::uint32_t node;
  memory_kind kind;
};
// "2=hbm,4=hbm,6=pmem" -> overrides; the error names the bad token and its position.
[[nodiscard]] result<std::vector<kind_override>> parse_kind_overrides(std::string_view text);

struct classify_options {
  std::vector<kind_override> overrides;
  // Measured performance (hetmem probe --save). Used as evidence ahead of HMAT, which becomes
  // a cross-check, when it describes this machine (probe_mismatch()); otherwise a note says
  // why it was not used.
  std::optional<probe_report> probe;
  std::string probe_origin;  // named in reasons and notes
};

[[nodiscard]] result<topology> classify(sysfs::snapshot snap, const classify_options &options = {}) noexcept;

// The kernel's weighted interleave weights (snapshot.weighted_interleave) beside HMAT's
// bandwidths: for each weighted node with memory, its share of the weights (so of the pages)
// and of the bandwidth (the lesser of read and write, as the kernel's auto mode takes it), in
// percent. comparable: every such node has a bandwidth and there are two or more; differ: a
// node's two shares are more than 5 points apart.
struct interleave_weight_check {
  struct node_share {
    std::uint32_t node = 0;
    double page_share = 0, bandwidth_share = 0;
  };
  std::vector<node_share> nodes;
  bool comparable = false;
  bool differ = false;
  // "shares of the pages 19%/77%/3%, of HMAT's bandwidth 19%/77%/4%: they agree"; "" when not comparable.
  [[nodiscard]] std::string shares_text() const;
};
[[nodiscard]] interleave_weight_check check_interleave_weights(const topology &t);

struct load_options {
  std::string root;                       // empty: sysfs::default_root()
  std::optional<std::string> overrides;   // empty: $HETMEM_NODE_KINDS
  std::optional<std::string> probe_file;  // empty: $HETMEM_PROBE; "" = none. A file that cannot be read is an error.
  sysfs::read_scope scope = sysfs::read_scope::everything;  // placement: the preload's lighter read
};
[[nodiscard]] result<topology> load_topology(const load_options &options = {}) noexcept;

}  // namespace hetmem
