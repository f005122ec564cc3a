// hetmem/probe.hpp — measure each memory node's latency and bandwidth from one initiator
// (library hetmem::probe; the data and its comparison with HMAT are in hetmem/probe_report.hpp).
//
// Contract:
// - For each chosen node: map a buffer, bind it to the node (MPOL_BIND, transparent huge pages
//   asked for), fault it in, and ask the kernel where its pages are (move_pages): a node whose
//   buffer did not land there is skipped with the count, never measured by mistake.
// - Latency: one thread, on the first chosen CPU, follows a pointer chain that visits every
//   cache line of the buffer once in a random cyclic order (Sattolo), so every load depends on
//   the previous one and prefetchers cannot help; ns per load, the median of several rounds.
// - Bandwidth: `threads` threads, one per CPU of the initiator, stream over their own slices:
//   reads summed into registers, writes by memset (non-temporal stores for large blocks in
//   glibc); the best pass of those run within `seconds_per_measurement`.
// - The calling thread's CPU affinity is restored before returning. Only the live system
//   (topology root "/") can be probed. A node without room for the buffer (its free memory
//   below the buffer plus 64 MiB) is skipped with that reason instead of pushing it into
//   reclaim.
// - Not for the preload: this allocates freely and starts threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hetmem/probe_report.hpp"
#include "hetmem/result.hpp"
#include "hetmem/sysfs/id_set.hpp"
#include "hetmem/topology.hpp"

namespace hetmem {

struct probe_options {
  std::optional<std::uint32_t> initiator;  // a node with CPUs; default: the calling CPU's node
  std::optional<std::uint32_t> cpu;        // run the latency thread here (implies its node as initiator)
  std::optional<sysfs::id_set> nodes;      // default: every memory node this process may use
  std::size_t buffer_bytes = 0;            // 0: 256 MiB, or 4x the last-level cache when that is larger
  unsigned threads = 0;                    // 0: one per CPU of the initiator this process may run on
  double seconds_per_measurement = 0.25;   // per node: latency, read and write each take about this long
  bool latency = true;
  bool bandwidth = true;
  // Called from the calling thread: overall fraction done (0..1) and what runs now.
  std::function<void(double fraction, std::string_view step)> progress;
};

struct probe_skip {
  std::uint32_t node = 0;
  std::string reason;
};

struct probe_outcome {
  probe_report report;              // the nodes measured
  std::vector<probe_skip> skipped;  // the nodes chosen but not measured, and why
  std::vector<std::string> notes;   // caveats: small buffer against the cache, no huge pages...
  std::optional<std::uint64_t> last_level_cache_bytes;
};

// Errors: EINVAL (a captured tree, an initiator without CPUs, a node that is not a memory node,
// a CPU this process may not run on), EPERM/EINVAL from sched_setaffinity, ENOMEM.
[[nodiscard]] result<probe_outcome> run_probe(const topology &topo, const probe_options &options);

}  // namespace hetmem
