// hetmem/migrate.hpp — moving pages between tiers on request: a range, an allocation, all a tier
// arena holds, or another process's memory.
//
// Contract:
// - The kernel decides and reports: pages are asked where they are (move_pages without target
//   nodes), the ones to move are moved with move_pages(MPOL_MF_MOVE) in batches (never one
//   system call per page), and every count in the report is the kernel's own status word.
// - A tier with several nodes: each page goes to the tier's node nearest (SLIT distance) to
//   the node it is on, ties to the lower id.
// - Transparent huge pages move as one unit: the kernel migrates the whole 2 MiB folio for its
//   first base page; the other base pages of it report busy while it moves and are asked again.
// - Pages already on a target node, not faulted in, or (with only_from) on other nodes are left
//   alone and counted; a page that failed says why (busy, no memory, shared, other).
// - Moving another process's pages needs the rights move_pages(2) asks for (the same user, or
//   CAP_SYS_NICE); the error says so. Data is never touched by hetmem: the kernel copies it.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "hetmem/placement.hpp"
#include "hetmem/result.hpp"
#include "hetmem/tier.hpp"

namespace hetmem {

struct migration_options {
  pid_t pid = 0;                           // 0: the calling process
  node_set only_from;                      // not empty: move only pages now on these nodes
  std::uint64_t max_bytes_per_second = 0;  // 0: as fast as the kernel goes
  // Pages per move_pages call. 0: automatic. Each call costs the kernel a drain of every CPU's
  // LRU caches on top of the moves, so without a rate limit calls are large (up to 262144 pages,
  // 1 GiB of 4 KiB pages, at 28 bytes of bookkeeping per page); with one, about 50 ms of it.
  std::size_t batch_pages = 0;
  // Ask the kernel where pages are before moving them (counts already_there apart from moved).
  // false: one move_pages call per batch instead of two (faster; a page already on its target
  // counts as moved). only_from and a target tier of several nodes always ask.
  bool ask_first = true;
  // Called after each batch with the pages examined so far and the total (for progress bars).
  std::function<void(std::uint64_t done, std::uint64_t total)> progress;
};

struct migration_report {
  std::uint64_t pages = 0;          // pages in the ranges
  std::uint64_t not_present = 0;    // never faulted in, swapped out, or not mapped
  std::uint64_t already_there = 0;  // on a target node before
  std::uint64_t not_selected = 0;   // on a node outside only_from
  std::uint64_t moved = 0;          // on a target node afterwards
  std::uint64_t busy = 0;           // -EBUSY: pinned, locked or under I/O; try again later
  std::uint64_t no_memory = 0;      // -ENOMEM: the target nodes are full
  std::uint64_t shared = 0;         // -EACCES: mapped by other processes too
  std::uint64_t other_failed = 0;   // any other per-page error (first_error says which)
  int first_error = 0;              // errno of the first per-page failure
  std::vector<std::pair<std::uint32_t, std::uint64_t>> moved_to;  // pages moved per target node
  double seconds = 0;
  std::size_t page_size = 4096;

  [[nodiscard]] std::uint64_t failed() const noexcept { return busy + no_memory + shared + other_failed; }
  [[nodiscard]] std::uint64_t bytes_moved() const noexcept { return moved * page_size; }
  // "moved 262144 pages (1.0 GiB) to node 1 in 0.41 s (2.4 GiB/s); 3 busy; 12 already there"
  [[nodiscard]] std::string summary() const;
};

// A range of a process's address space, [start, end).
struct address_range {
  std::uintptr_t start = 0, end = 0;
  std::string what;  // the mapping's name from /proc/PID/maps ("[heap]", a file, "" anonymous)
};

// The mappings of process `pid` (0: this one) that hold data: anonymous and private writable
// ones by default, every mapping with pages with `include_files`; never [vsyscall], [vvar] or
// [vdso]. From /proc/PID/maps; ESRCH when there is no such process.
[[nodiscard]] result<std::vector<address_range>> process_ranges(pid_t pid, bool include_files = false);

// Moves the pages of [addr, addr+bytes) (widened to whole pages) to `to`'s nodes.
[[nodiscard]] result<migration_report> migrate(const void *addr, std::size_t bytes, const tier &to,
                                               const migration_options &options = {});
// The same for several ranges (of options.pid), one report.
[[nodiscard]] result<migration_report> migrate(const std::vector<address_range> &ranges, const tier &to,
                                               const migration_options &options = {});
// The pages a hetmem allocation occupies (neighbours sharing those pages move with it). Its
// tier arena stays what tier_of() says; where() tells where its pages are now.
[[nodiscard]] result<migration_report> migrate_allocation(const void *p, const tier &to,
                                                          const migration_options &options = {});
// Everything the tier arenas of `from` (any fill limit) hold in this process.
[[nodiscard]] result<migration_report> migrate_tier_memory(const tier &from, const tier &to,
                                                           const migration_options &options = {});

}  // namespace hetmem
