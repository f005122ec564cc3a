// hetmem/detail/tier_arena.hpp — the allocation engine's unit: one jemalloc arena (privately
// namespaced) per distinct (tier, fill limit), whose memory comes from the tier's slots of
// the address window and is placed by mbind before jemalloc sees it.
//
// Contract:
// - Arenas live as long as the process (like memkind's kinds): get() returns the same arena for
//   the same tier (name, kind, placement) and fill limit, so heaps are cheap and any hetmem pointer can be freed
//   without its heap. At most max_tier_arenas distinct ones.
// - of(p) is O(1): the address window says which arena (or reservation) owns p.
// - A bind (or preferred-many) tier over several nodes is sharded per node (each node its own
//   placement, slots, fill check and jemalloc arena): a thread uses its own node's shard (or,
//   on a node outside the tier, the nearest by SLIT distance), the others when that node is
//   full. Other tiers are sharded by threads (same placement; up to four
//   shards per CPU, at most max_shards, each made when a thread first needs it) to spread lock
//   traffic.
// - Thread caches never mix tiers: each thread keeps, per arena, small bins of freed objects
//   (size classes up to 32 KiB, jemalloc's classes) in front of an explicit jemalloc tcache
//   of its own. Bins are flushed when full and when the thread exits.
// - One arena per process may use jemalloc's automatic per-thread caches instead of bins
//   (use_thread_tcache; the preload's catch-all tier): "direct". A thread's first allocation
//   there binds the thread to its shard (thread.arena), after which allocations of any size are
//   jemalloc's own malloc (fast path; a thread bound to a manual arena never uses jemalloc's
//   huge arena) and frees from bound threads jemalloc's own free (threads never bound give the
//   block straight back). Its pages carry no size-class marks: usable size and free ask
//   jemalloc. Its statistics are jemalloc's (allocated minus what sits in bound threads'
//   caches). Tiers still never mix: only that arena's objects ever enter those caches (every
//   other jemalloc call of the engine names an explicit tcache or none, hetmem's own
//   bookkeeping goes to jemalloc's arena 0).
// - allocate() returns nullptr with errno ENOMEM (EINVAL for a bad alignment) and leaves a
//   message in detail::thread_error() naming the tier and the cause: the tier above its fill
//   limit, the mbind that failed, the address window exhausted.
// - A new extent is refused when the tier's nodes would pass the fill limit (percent of their
//   MemTotal in use, counting free + inactive file + reclaimable slab as available); at 100 the
//   check only refuses extents larger than what is available. This is what makes "strict" fail
//   with ENOMEM instead of waking the OOM killer.
// - The hot paths (allocate, deallocate, the extent hooks) do not allocate from the system
//   allocator and throw nothing.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "hetmem/result.hpp"
#include "hetmem/tier.hpp"

namespace hetmem::detail {

constexpr unsigned max_tier_arenas = 64;

struct arena_counters {
  std::uint64_t allocated_bytes = 0;  // handed out and not returned (usable sizes)
  std::uint64_t cached_bytes = 0;     // freed objects held in threads' bins
  std::uint64_t mapped_bytes = 0;     // address space mapped and placed for this arena
  std::uint64_t resident_bytes = 0;   // jemalloc's count of resident pages (data and metadata)
  std::uint64_t refused_extents = 0;  // extents refused by the fill limit or a failed mbind
  std::uint64_t spilled_extents = 0;  // of those, placed on an overflow target (overflow_to)
  // Whether jemalloc keeps statistics in this build. The preload's jemalloc has none (they cost
  // 0.4 ms of every program's start-up: the first mallctl zeroes their tables, a page fault per
  // page); there the direct arena's allocated and cached bytes and every resident_bytes read 0,
  // uncounted. hetmem's own counts (the other arenas' allocated and cached bytes, mapped,
  // refused, spilled) are kept either way.
  bool jemalloc_statistics = true;
};

class tier_arena;
struct arena_hooks;

class tier_arena {
 public:
  // The arena for tier `t` (same name, kind and placement) with `fill_limit_percent` (1-100),
  // created on first request.
  [[nodiscard]] static result<tier_arena *> get(const tier &t, unsigned fill_limit_percent = 100);
  // The existing arena for (tier, fill limit), or nullptr; never creates one.
  [[nodiscard]] static tier_arena *find(const tier &t, unsigned fill_limit_percent) noexcept;
  // The arena owning `p`, or nullptr (not hetmem memory, or a reservation's).
  [[nodiscard]] static tier_arena *of(const void *p) noexcept;

  [[nodiscard]] void *allocate(std::size_t bytes, std::size_t alignment = 0) noexcept;
  // allocate(bytes) with the default alignment, without the alignment checks.
  [[nodiscard]] void *allocate_default(std::size_t bytes) noexcept;
  // allocate(), the block reading as zeros (calloc). A small block is cleared; a large one is
  // asked of jemalloc with MALLOCX_ZERO, which clears only what was used before: pages fresh
  // from the kernel (or purged since) are already zero and stay untouched (not resident).
  [[nodiscard]] void *allocate_zeroed(std::size_t bytes, std::size_t alignment = 0) noexcept;
  // Whether this is the direct arena, the one use_thread_tcache() made (served by jemalloc's own
  // thread caches; the preload's fast paths in src/engine/direct_path.hpp).
  [[nodiscard]] bool is_direct_arena() const noexcept;
  // Shards (jemalloc arenas) planned for the tier, and made so far: per-node shards all at once,
  // CPU shards as threads come to need them.
  [[nodiscard]] unsigned shards_planned() const noexcept { return shards_; }
  [[nodiscard]] unsigned shards_made() const noexcept { return made_.load(std::memory_order_acquire); }
  // Live threads using shard k (0 past the planned ones).
  [[nodiscard]] unsigned threads_on_shard(unsigned k) const noexcept;
  // Frees `p`, which must come from some tier_arena (any thread may free).
  static void deallocate(void *p) noexcept;
  // Frees `p` when hetmem allocated it and returns true; false (p untouched, nothing reported)
  // otherwise: one lookup for callers that hand other pointers elsewhere (the preload, to glibc).
  [[nodiscard]] static bool deallocate_if_owned(void *p) noexcept;
  // Same, with the size (and alignment) it was allocated with: skips a lookup.
  static void deallocate(void *p, std::size_t bytes, std::size_t alignment) noexcept;
  // Grows or shrinks in place when jemalloc can, else moves within the same arena.
  [[nodiscard]] static void *reallocate(void *p, std::size_t bytes) noexcept;
  [[nodiscard]] static std::size_t usable_size(const void *p) noexcept;

  // The address window all tier arenas take their memory from ([*base, *base + *bytes); 0 bytes
  // before the first arena exists).
  static void window_range(std::uintptr_t *base, std::size_t *bytes) noexcept;
  // The window's slot size: each slot belongs to one arena (or reservation) at most.
  [[nodiscard]] static std::size_t window_slot_bytes() noexcept;
  // The arena's number (1..max_tier_arenas), and that of the arena owning `p` (0: none).
  [[nodiscard]] unsigned id() const noexcept { return id_; }
  [[nodiscard]] static unsigned id_of(const void *p) noexcept;
  [[nodiscard]] const tier &description() const noexcept { return tier_; }
  [[nodiscard]] unsigned fill_limit_percent() const noexcept { return fill_limit_; }

  // Makes this arena the process's one arena backed by jemalloc's automatic thread caches (the
  // fastest refills and flushes; for the arena most requests reach). Only before any thread has
  // allocated from it, and for one arena per process: false otherwise, and the arena keeps its
  // explicit tcaches (always correct).
  [[nodiscard]] bool use_thread_tcache() noexcept;
  // The direct arena only: where its new extents go once its own nodes would pass the fill
  // limit, so that a failure of jemalloc's malloc there is final and the preload's malloc needs
  // no fallback of its own. First the tier's other nodes (per-node shards), then the arenas of
  // `next` in order (their node nearest to the calling thread first), each held to its own fill
  // limit. The extent stays this arena's (its address space, its blocks, its counters, with
  // spilled_extents counting them); only its pages go where the target's placement says. Once
  // jemalloc purges such a range, it is placed as this arena's own again, so reused memory
  // comes back to the tier. True when set; false (nothing set) when this is not the direct
  // arena, one was set already, there are more than max_overflow, or this arena or a target
  // is a file or hugetlb tier (anonymous memory placed elsewhere is all an overflow can be).
  [[nodiscard]] bool overflow_to(tier_arena *const *next, unsigned count) noexcept;
  static constexpr unsigned max_overflow = 8;
  // Counters: summed over threads; resident asks jemalloc to refresh its statistics (µs).
  [[nodiscard]] arena_counters counters() const noexcept;

  // Bytes allocated (or, negative, freed) outside any thread's cache.
  void count_uncached(std::int64_t bytes) noexcept;
  // A thread that used this arena exits: its byte count stays, its shard has one user fewer.
  void retire_thread(std::int64_t bytes, unsigned shard) noexcept;

  tier_arena(const tier_arena &) = delete;
  tier_arena &operator=(const tier_arena &) = delete;

  struct state;  // defined in tier_arena.cpp

 private:
  tier_arena() = default;
  static tier_arena *find_locked(const tier &t, unsigned fill_limit_percent) noexcept;
  static result<tier_arena *> get_locked(const tier &t, unsigned fill_limit_percent);
  // `zero_flag`: 0, or MALLOCX_ZERO for allocate_zeroed's large blocks.
  [[gnu::noinline]] void *allocate_slow(std::size_t bytes, std::size_t alignment, int zero_flag = 0) noexcept;
  // allocate_default() past the bins of the arena the thread used last.
  [[gnu::noinline]] void *allocate_default_slow(std::size_t bytes) noexcept;
  [[gnu::noinline]] void *refill(void *cache, unsigned size_class, std::size_t bytes) noexcept;
  [[gnu::noinline]] void *direct_failed(void *cache, std::size_t bytes) noexcept;
  void *other_nodes(std::size_t bytes, std::size_t alignment, unsigned tried, int zero_flag = 0) noexcept;
  // Makes the jemalloc arena of shard `made_` (arenas_mutex held while the tier arena is
  // created, shards_mutex after); 0 or jemalloc's error.
  int make_shard_locked() noexcept;
  // The shard a thread without one takes, made now if it was not yet (may be below `wanted`
  // when jemalloc cannot make more arenas).
  unsigned take_shard(unsigned wanted) noexcept;
  // The least used of the planned shards, its thread count already raised by one: the pick and
  // the count are one compare-and-swap, so threads that come together spread out.
  unsigned claim_least_used_shard() noexcept;

  tier tier_;
  unsigned fill_limit_ = 100;
  unsigned id_ = 0;
  static constexpr unsigned max_shards = 8;
  // Shards: shards_ planned (their states and nodes known from the start), made_ of them with
  // a jemalloc arena (je_shard_[0, made_), published with release). Per-node shards are all made
  // with the arena; CPU shards as threads come to need them, so that a program with one thread
  // carries one arena's metadata (~85 KiB each), not one per CPU.
  unsigned je_shard_[max_shards] = {};
  state *shard_state_[max_shards] = {};
  std::uint32_t shard_node_[max_shards] = {};
  unsigned shards_ = 1;
  std::atomic<unsigned> made_{0};
  std::atomic<bool> cannot_make_{false};  // jemalloc refused a shard: no more are tried
  // A bind (or preferred-many) tier over several nodes: one shard (and state) per node, bound
  // to (or preferring) that node alone.
  bool per_node_ = false;
  std::atomic<bool> used_{false};        // a thread has its cache for this arena
  std::uint8_t nearest_shard_[64] = {};  // per node id: the shard a thread there uses
  // overflow_to's targets: written once, before overflow_on_ is set (release).
  tier_arena *overflow_[max_overflow] = {};
  unsigned overflow_count_ = 0;
  std::atomic<bool> overflow_on_{false};
  state *state_ = nullptr;
  friend struct arena_hooks;
  friend struct fork_access;
};

}  // namespace hetmem::detail
