// hetmem/sysfs/parse.hpp — pure parsers for the text formats of Linux sysfs and procfs.
//
// Contract: every function takes the file's whole content and returns a value or an error
// whose message describes the problem (the caller prefixes the file's path). No function
// throws, allocates without bound, or accepts input silently that it does not understand:
// trailing garbage, overflow, ids past the given limit and embedded NUL bytes are errors.
// A trailing newline and surrounding blanks are accepted everywhere.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hetmem/result.hpp"
#include "hetmem/sysfs/id_set.hpp"

namespace hetmem::sysfs {

// "0-3,8\n" (kernel %*pbl); an empty line is the empty set. Ids above max_id are an error.
result<id_set> parse_id_list(std::string_view text, std::uint32_t max_id);
// "0000,00000000,00000003\n" (kernel %*pb): 32-bit hex words, most significant first.
result<id_set> parse_id_mask(std::string_view text, std::uint32_t max_id);
// One decimal number. parse_int64 accepts a leading '-'.
result<std::uint64_t> parse_uint64(std::string_view text);
result<std::int64_t> parse_int64(std::string_view text);
// "true"/"false", "1"/"0", "y"/"n", "yes"/"no", "on"/"off" (kstrtobool's words).
result<bool> parse_bool(std::string_view text);
// The decimal values of a node's `distance` file, separated by blanks.
result<std::vector<std::uint32_t>> parse_distance_row(std::string_view text);

// nodeN/meminfo: lines "Node N Key:   value [kB]".
struct node_meminfo {
  std::optional<std::uint64_t> total_kb;
  std::optional<std::uint64_t> free_kb;
};
result<node_meminfo> parse_node_meminfo(std::string_view text, std::uint32_t node_id);

// /proc/driver/nvidia/gpus/<bdf>/numa_status: "Node:  255", "Status: online", "Address: <hex>", "Size: <hex>".
struct nvidia_numa_status {
  std::optional<std::int64_t> node;
  std::string status;
  std::optional<std::uint64_t> address;
  std::optional<std::uint64_t> size_bytes;
};
result<nvidia_numa_status> parse_nvidia_numa_status(std::string_view text);

// The first processor block of /proc/cpuinfo (x86 "vendor_id"/"cpu family"/"model"/"model name";
// POWER "cpu"; arm64 "CPU implementer"/"CPU part"). Unknown keys are ignored; a block without
// any known key yields an empty identity, not an error.
struct cpu_identity {
  std::string vendor;      // "GenuineIntel", "AuthenticAMD", "IBM", "ARM implementer 0x48"...
  std::string model_name;  // "Intel(R) Xeon(R) Gold 6230 ...", "POWER9, altivec supported"
  std::optional<std::uint32_t> family;
  std::optional<std::uint32_t> model;
};
result<cpu_identity> parse_cpuinfo(std::string_view text);

// hwloc-dump-hwdata's /var/run/hwloc/knl_memoryside_cache ("key: value" lines).
struct knl_hwdata {
  std::optional<std::uint64_t> cache_size_bytes;
  std::optional<std::uint64_t> line_size_bytes;
  std::string cluster_mode;  // SNC4, SNC2, Quadrant, Hemisphere, All2All
  std::string memory_mode;   // Flat, Cache, Hybrid25, Hybrid50
};
result<knl_hwdata> parse_knl_hwdata(std::string_view text);

// /proc/self/cgroup: the cgroup v2 path ("0::/path") or, failing that, the v1 cpuset path.
struct cgroup_membership {
  std::optional<std::string> unified_path;  // cgroup v2
  std::optional<std::string> cpuset_path;   // cgroup v1 "N:cpuset:/path" (or "N:cpu,cpuset:/path")
};
result<cgroup_membership> parse_proc_self_cgroup(std::string_view text);

// The value of one "Key:\tvalue" line of /proc/self/status (std::nullopt if the key is absent).
std::optional<std::string_view> find_status_field(std::string_view text, std::string_view key);
// Field `n` of /proc/PID/stat, numbered as proc(5) does (3 the state, 14 utime, 39 the CPU last
// run on); counted after the ')' that ends the name, which may hold blanks and ')'. std::nullopt
// for n < 3, past the last field, or without a ')'.
std::optional<std::string_view> find_stat_field(std::string_view text, unsigned n);

// /proc/PID/numa_maps: one line per mapping, "ADDRESS POLICY [key[=value]]...". Pages per node
// ("N<id>=<pages>", in units of kernelpagesize_kB) are summed per node, split into anonymous
// memory (no "file=": anon, heap, stack, shared anonymous) and file-backed mappings (a private
// file mapping's copy-on-write pages count as file-backed: numa_maps does not split them by
// node). Unknown keys are ignored (the kernel adds some now and then); a malformed address,
// count or page size, a node past max_node, or a byte count that overflows is an error naming
// the line.
struct numa_maps_summary {
  struct node_bytes {
    std::uint32_t node = 0;
    std::uint64_t anon_bytes = 0, file_bytes = 0;
  };
  std::vector<node_bytes> nodes;                                // ascending node id; only nodes that hold pages
  std::uint64_t mappings = 0;                                   // lines read
  std::vector<std::pair<std::string, std::uint64_t>> policies;  // "default", "bind:1", ... -> bytes
};
result<numa_maps_summary> parse_numa_maps(std::string_view text, std::uint32_t max_node);

// A cgroup's memory.numa_stat. cgroup v2: lines "KEY N0=<bytes> N1=<bytes> ...". cgroup v1:
// lines "KEY=<pages> N0=<pages> ..." (total, file, anon, unevictable and their hierarchical_
// forms), converted to bytes with page_size. Either way per_node holds bytes.
struct cgroup_numa_stat {
  struct entry {
    std::string key;                                                // "anon", "file", "kernel_stack", ...
    std::vector<std::pair<std::uint32_t, std::uint64_t>> per_node;  // node -> bytes, as listed
  };
  std::vector<entry> entries;
  bool v1 = false;  // the cgroup v1 format (counts were pages)
  [[nodiscard]] const entry *find(std::string_view key) const noexcept;
};
result<cgroup_numa_stat> parse_cgroup_numa_stat(std::string_view text, std::uint32_t max_node,
                                                std::uint64_t page_size = 4096);

// /proc/vmstat and /sys/devices/system/node/nodeN/vmstat: lines "<name> <count>", in the
// kernel's order. A line of any other shape is an error naming it.
struct vmstat_counters {
  std::vector<std::pair<std::string, std::uint64_t>> entries;
  [[nodiscard]] std::optional<std::uint64_t> find(std::string_view key) const noexcept;
};
result<vmstat_counters> parse_vmstat(std::string_view text);

// Lines of a text, without their '\n'.
std::vector<std::string_view> split_lines(std::string_view text);
// The fields of `text` between `separator`s, as std::getline would give them: "a;;b" gives
// "a", "", "b"; a separator at the end adds no empty field; an empty text gives none.
std::vector<std::string_view> split_fields(std::string_view text, char separator);
// Blank-trimmed view.
std::string_view trim(std::string_view text) noexcept;

}  // namespace hetmem::sysfs
