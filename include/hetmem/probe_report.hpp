// hetmem/probe_report.hpp — what `hetmem probe` measured, as data: the saved file's format, its
// parser, and how the measurements compare with what the firmware (HMAT) claims.
//
// Contract:
// - Pure: nothing here touches the machine. The measuring itself is in hetmem/probe.hpp
//   (library hetmem::probe); this part is in hetmem::topology, because the classifier takes a
//   saved report as evidence (classify_options::probe, load_options::probe_file).
// - The file format is line-based text (docs/probe-format.md):
//     hetmem-probe 1
//     initiator 0
//     cpus 0-7
//     threads 8
//     buffer 268435456
//     node 0 capacity 34359738368 latency_ns 92.4 read_mbps 41000 write_mbps 23000 huge 1.00 placed 1.00
//   '#' starts a comment line; unknown keywords and unknown node keys are ignored (a later
//   hetmem may add some); a bad value, a repeated keyword or node, or a format newer than 1 is
//   an error naming the line and the token. format_probe_report() writes what the parser reads.
// - Ratios are against a reference node measured in the same run: the initiator's own node
//   when it has memory and was measured, else the first measured node with CPUs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hetmem/result.hpp"
#include "hetmem/sysfs/id_set.hpp"

namespace hetmem {

struct topology;
enum class memory_kind;

struct probe_node_result {
  std::uint32_t node = 0;
  std::optional<std::uint64_t> capacity_bytes;  // MemTotal when measured: ties the report to a machine
  std::optional<double> latency_ns;             // dependent loads over a randomised buffer, one thread
  std::optional<double> read_mbps;              // streaming reads, all threads together (MB/s = 10^6 B/s)
  std::optional<double> write_mbps;             // streaming writes, all threads together
  std::optional<double> huge_page_fraction;     // share of the buffer in transparent huge pages (0..1)
  std::optional<double> placed_fraction;        // share of the buffer's pages on `node`, by move_pages (0..1)
};

struct probe_report {
  std::uint32_t initiator = 0;  // the node whose CPUs ran the measurement
  sysfs::id_set cpus;           // the CPUs used (latency on the first of them)
  std::uint32_t threads = 1;    // bandwidth threads
  std::uint64_t buffer_bytes = 0;
  std::string taken_at;                  // ISO 8601 UTC, informational
  std::string kernel;                    // uname -r, informational
  std::string cpu_model;                 // informational
  std::vector<probe_node_result> nodes;  // ascending node id, unique

  [[nodiscard]] const probe_node_result *find(std::uint32_t node) const noexcept;
};

// Parses a saved report. Errors (EINVAL) read "line N: ...".
[[nodiscard]] result<probe_report> parse_probe_report(std::string_view text);
// The text parse_probe_report() reads back (latency to 0.1 ns, bandwidth to 1 MB/s).
[[nodiscard]] std::string format_probe_report(const probe_report &report);
// Reads and parses a file (at most 1 MiB); errors name the path.
[[nodiscard]] result<probe_report> read_probe_report(const std::string &path);

// The measured node the ratios are taken against (see the contract), if any.
[[nodiscard]] std::optional<std::uint32_t> probe_reference_node(const probe_report &report, const topology &topo);

// Why a report cannot describe this topology (a node it measured is not an online memory node
// now, or its capacity changed by more than 5%), or nullopt when it can.
[[nodiscard]] std::optional<std::string> probe_mismatch(const probe_report &report, const topology &topo);

// Measured against claimed, node by node. A node is flagged when its measured ratio to the
// reference (latency, or read bandwidth) and HMAT's ratio for the same pair differ by more
// than 2x, or when HMAT and the measurement order two nodes the opposite way (each by more
// than 25%).
struct probe_comparison_row {
  std::uint32_t node = 0;
  memory_kind kind{};
  probe_node_result measured;
  std::optional<double> latency_ratio, read_ratio, write_ratio;  // measured, to the reference
  std::optional<std::uint64_t> hmat_latency_ns, hmat_read_mbps, hmat_write_mbps;
  std::optional<double> hmat_latency_ratio, hmat_read_ratio;  // HMAT's, to the reference's HMAT values
  std::vector<std::string> flags;                             // disagreements, each a sentence
};
struct probe_comparison {
  std::optional<std::uint32_t> reference;
  std::vector<probe_comparison_row> rows;  // the measured nodes, ascending
  std::vector<std::string> notes;          // no HMAT, no reference, small buffer...
  [[nodiscard]] std::size_t flagged() const noexcept;
};
[[nodiscard]] probe_comparison compare_with_hmat(const probe_report &report, const topology &topo);

}  // namespace hetmem
