// hetmem/placement.hpp — placement primitives: map memory, bind it to nodes with a policy,
// ask the kernel where its pages are, and move them.
//
// Contract:
// - Thin: each function is one or a few system calls (mmap, mbind, get_mempolicy, move_pages)
//   with validation in front and an error behind that names the call, the nodes and errno.
// - Truth comes from the kernel: where() and move_to() report what move_pages says, never
//   what was asked for.
// - The caller's cpuset is respected: a node outside get_mempolicy(MPOL_F_MEMS_ALLOWED) is
//   refused up front with EINVAL and a message that says so.
// - No exceptions, no iostreams; allocation only for results and error messages. Safe to
//   call from any thread.
// - Every OS call goes through detail::os_calls (see hetmem/detail/os.hpp), so tests can make
//   any of them fail.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "hetmem/result.hpp"
#include "hetmem/sysfs/id_set.hpp"

namespace hetmem {

using node_set = sysfs::id_set;

enum class policy_mode {
  default_policy,       // MPOL_DEFAULT: the thread's policy (local allocation)
  bind,                 // MPOL_BIND: only these nodes; fail (or reclaim) when they are full
  preferred,            // MPOL_PREFERRED: this one node first, then anywhere
  preferred_many,       // MPOL_PREFERRED_MANY (Linux 5.15): these nodes first, then anywhere
  interleave,           // MPOL_INTERLEAVE: page-wise round robin over the nodes
  weighted_interleave,  // MPOL_WEIGHTED_INTERLEAVE (Linux 6.9), emulated by chunked binds when absent
};
[[nodiscard]] const char *to_string(policy_mode m) noexcept;

// Transparent huge pages for the range. A 2 MiB huge page is placed (and interleaved, and
// moved) as one unit: ask for `never` where page-granular interleaving matters.
// `hugetlb_2m`: explicit 2 MiB pages from the hugetlb pool (vm.nr_hugepages, per node in
// /sys/devices/system/node/nodeN/hugepages). Only the allocation engine can honour it (the
// mapping itself must be made with MAP_HUGETLB); place() leaves such a range as it is.
enum class huge_pages { system_default, never, always, hugetlb_2m };

struct placement {
  policy_mode mode = policy_mode::bind;
  node_set nodes;
  // weighted_interleave: one weight (1-255) per node of `nodes`, in ascending node order.
  // Empty: the kernel's weights (sysfs weighted_interleave/nodeN), or equal weights when emulating.
  std::vector<std::uint8_t> weights;
  bool move_existing = false;                   // MPOL_MF_MOVE: migrate pages already faulted in
  bool strict = false;                          // MPOL_MF_STRICT: fail if existing pages do not conform
  huge_pages thp = huge_pages::system_default;  // madvise(MADV_NOHUGEPAGE / MADV_HUGEPAGE), or hugetlb
};

// What the running kernel supports (probed once, then cached) and the nodes this process may
// use now (read on every call: a cpuset can change while the process runs).
struct kernel_policy_support {
  bool preferred_many = false;
  bool weighted_interleave = false;
  node_set mems_allowed;  // get_mempolicy(MPOL_F_MEMS_ALLOWED)
};
[[nodiscard]] result<kernel_policy_support> probe_kernel_policy_support();

// Anonymous private memory, page aligned (or to `alignment`, a power of two), not yet faulted.
[[nodiscard]] result<void *> map_anonymous(std::size_t bytes, std::size_t alignment = 0);
[[nodiscard]] result<void> unmap(void *addr, std::size_t bytes);

// Applies `p` to [addr, addr+bytes) (page aligned). Weighted interleave on a kernel without it
// is emulated by binding consecutive chunks to nodes in proportion to the weights.
[[nodiscard]] result<void> place(void *addr, std::size_t bytes, const placement &p);

// Pages per node as the kernel reports them (move_pages query) for every page that
// [addr, addr+bytes) touches (any address: the range is widened to whole pages). Pages not yet
// faulted in are counted in `not_present`.
struct page_census {
  std::size_t pages = 0;
  std::size_t not_present = 0;
  std::vector<std::pair<std::uint32_t, std::size_t>> per_node;  // ascending node id
  [[nodiscard]] std::size_t on(std::uint32_t node) const noexcept;
};
[[nodiscard]] result<page_census> where(const void *addr, std::size_t bytes);

// Moves the faulted-in pages of [addr, addr+bytes) to `node` with move_pages in batches. Pages
// reported as failed are asked about again (a huge page moves as one unit, and the kernel may
// report its head busy while it moves it), and busy ones are retried once: the counts say
// where the pages are afterwards, by the kernel's word.
struct move_report {
  std::size_t requested = 0;     // pages present and asked to move
  std::size_t moved = 0;         // now on the target node
  std::size_t busy = 0;          // -EBUSY: pinned or under I/O; try again later
  std::size_t no_memory = 0;     // -ENOMEM: the target node is full
  std::size_t other_failed = 0;  // any other per-page error
  int first_error = 0;           // errno of the first per-page failure, 0 if none
};
[[nodiscard]] result<move_report> move_to(void *addr, std::size_t bytes, std::uint32_t node);

namespace detail {

// A placement validated once (nodes allowed, mode supported, weights sane) and turned into the
// arguments of one mbind, so that hot paths (the allocator's extent hooks) can place memory
// without allocating. Per-range weighted interleave on a kernel without
// MPOL_WEIGHTED_INTERLEAVE (or with weights of its own) needs the chunked emulation:
// `emulated` is then set and the nodes and weights are kept here, so that applying it does not
// allocate either.
struct compiled_placement {
  placement source;
  int mode = 0;                 // MPOL_* value
  unsigned long mask[16] = {};  // 1024 node bits
  unsigned long maxnode = 0;    // 0 for MPOL_DEFAULT
  unsigned flags = 0;           // MPOL_MF_*
  int thp_advice = -1;          // MADV_(NO)HUGEPAGE or -1
  bool emulated = false;
  std::uint32_t emulated_nodes[64] = {};
  std::uint8_t emulated_weights[64] = {};
  unsigned emulated_count = 0;
};
[[nodiscard]] result<compiled_placement> compile_placement(const placement &p);
// Places [addr, addr+bytes) (page aligned) as compiled. Returns 0 or an errno value, and on
// failure writes a message naming the call into why[0..why_len). Allocation-free.
// strerror's text for `err`, without allocating and safe from any thread.
[[nodiscard]] const char *error_text(int err) noexcept;
int apply_placement(const compiled_placement &c, void *addr, std::size_t bytes, char *why,
                    std::size_t why_len) noexcept;

// Moves pages[i] to nodes[i] in process `pid` (0: the caller) with one move_pages call, then asks
// again about the pages that failed (a huge page moves as one unit, and its other base pages
// report busy while the kernel moves it) and gives those still busy elsewhere one more try.
// status[i] ends as the node the page is on, or -errno. Returns 0, or errno when the first call
// itself failed (no such process, no permission, a node not allowed).
[[nodiscard]] int move_pages_confirmed(int pid, std::size_t n, void **pages, const int *nodes, int *status);

}  // namespace detail

}  // namespace hetmem
