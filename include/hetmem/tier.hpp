// hetmem/tier.hpp — a tier: a named set of memory nodes with a placement, chosen from the
// topology by kind, by rank for an initiator, as the largest, or by explicit nodes.
//
// Contract:
// - Choosing a tier never guesses: when nothing matches, the error says what was asked for and
//   what the machine has.
// - `next` lists the other tiers in the chosen initiator's rank order (best first, device
//   memory excluded): the fallback chain a heap with on_full::next_tier walks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hetmem/placement.hpp"
#include "hetmem/result.hpp"
#include "hetmem/topology.hpp"

namespace hetmem {

// Persistent memory that is not a NUMA node, used as volatile memory (like memkind's PMEM
// kind): a devdax character device (/dev/daxX.Y) mapped directly, or a directory on a
// DAX-capable file system (ext4/xfs mounted -o dax) in which an unnamed file (O_TMPFILE) holds
// the tier. At most max_bytes are used.
struct file_backing {
  std::string path;
  std::uint64_t max_bytes = 0;
};

struct tier {
  std::string name;  // "HBM (nodes 2)", "rank 1 for node 0 (DDR, nodes 0)", ...
  memory_kind kind = memory_kind::unknown;
  placement where;                   // mode bind over the tier's nodes unless changed
  std::vector<tier> next;            // the other tiers for the same initiator, best first
  std::optional<file_backing> file;  // set for file-backed tiers (where is then unused)
};

// The nodes of `kind` best placed for `from` (default: the calling thread's initiator, else the
// first): the first tier group of that kind in `from`'s order (local before remote).
[[nodiscard]] result<tier> tier_by_kind(const topology &t, memory_kind kind, const initiator_view *from = nullptr);
// Rank `rank` (0 = best, the fastest for `from`) in `from`'s tier order.
[[nodiscard]] result<tier> tier_by_rank(const topology &t, std::uint32_t rank, const initiator_view *from = nullptr);
// The fastest tier for the calling thread: rank 0 of its initiator.
[[nodiscard]] result<tier> fastest_tier(const topology &t);
// The kind with the most capacity (all its allowed nodes).
[[nodiscard]] result<tier> largest_tier(const topology &t);
// `t` with the kernel given a say: bind becomes preferred (one node) or preferred-many (several,
// where the kernel has it), so that a node running short is a fallback rather than the OOM
// killer. Other modes, and file-backed tiers, come back as they are.
[[nodiscard]] tier softened(tier t);
// Exactly these nodes (must be memory nodes of `t`).
[[nodiscard]] result<tier> tier_of_nodes(const topology &t, const node_set &nodes);
// A file-backed PMEM tier on `path`: a devdax device or a directory (see file_backing). The
// path is checked now (exists, right type, readable and writable); max_bytes must be > 0.
[[nodiscard]] result<tier> file_tier(const std::string &path, std::uint64_t max_bytes);

}  // namespace hetmem
