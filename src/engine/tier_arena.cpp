// tier_arena.cpp — jemalloc arenas on placed memory, the address window that maps pointers to
// them, and the per-thread, per-arena caches that keep tiers apart at jemalloc-like speed.
#include "hetmem/detail/tier_arena.hpp"

#include <fcntl.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "direct_path.hpp"
#include "hetmem/detail/node_memory.hpp"
#include "hetmem/detail/os.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "owners.hpp"
#include "va_window.hpp"

// jemalloc's options, read once as it initialises ($HETMEM_JE_MALLOC_CONF comes after and
// overrides them): one automatic arena. Tier memory comes from hetmem's manual arenas; the
// automatic ones hold only bookkeeping (hetmem's thread caches, jemalloc's tcache stacks),
// which needs no spreading over CPUs. Each further automatic arena would cost a process its
// metadata (~85 KiB once a thread lands on it) and a page of jemalloc's statistics at the first
// mallctl, which hetmem always makes (arenas.create).
const char *hetmem_je_malloc_conf = "narenas:1";  // declared extern "C" by jemalloc.h

// direct_path.hpp spells two of jemalloc's flags without its header.
static_assert(hetmem::detail::direct_path::tcache_none == MALLOCX_TCACHE_NONE);
static_assert(MALLOCX_LG_ALIGN(6) == 6, "direct_path::allocate_aligned passes log2(alignment) as the flags");

namespace hetmem::detail {

// direct_path.hpp's state: the direct arena's id (0: none), which fast paths are on, and which
// this thread may take (bound to the direct arena while they were on).
constinit std::atomic<unsigned> direct_path::arena_id{0};
constinit std::atomic<unsigned char> direct_path::enabled_mode{direct_path::mode_off};
constinit thread_local unsigned char direct_path::thread_mode = direct_path::mode_off;
constinit std::atomic<std::size_t> direct_path::span_bytes{0};
constinit std::atomic<std::uintptr_t> direct_path::span_begin{0};

namespace {
// direct_path's lock and the span as noted (published by enable()). The lock is held for a few
// instructions, only by callers that hold a grow mutex or arenas_mutex (which the fork handlers
// take), or by enable() at start-up: never across fork().
constinit std::atomic_flag span_busy = ATOMIC_FLAG_INIT;
std::size_t span_noted = 0;
struct span_lock {
  span_lock() noexcept {
    while (span_busy.test_and_set(std::memory_order_acquire)) {
    }
  }
  ~span_lock() { span_busy.clear(std::memory_order_release); }
  span_lock(const span_lock &) = delete;
  span_lock &operator=(const span_lock &) = delete;
};
}  // namespace

void direct_path::note_run(std::uintptr_t start, std::size_t bytes) noexcept {
  const span_lock lock;
  if (span_noted == 0) {
    span_begin.store(start, std::memory_order_relaxed);
    span_noted = bytes;
  } else if (start == span_begin.load(std::memory_order_relaxed) + span_noted) {
    span_noted += bytes;
  } else {
    return;  // a run apart from the span; its blocks are freed by the full path
  }
  if (enabled_mode.load(std::memory_order_relaxed) != mode_off) span_bytes.store(span_noted, std::memory_order_release);
}

void direct_path::enable(bool with_malloc) noexcept {
  const span_lock lock;
  enabled_mode.store(with_malloc ? mode_all : mode_free, std::memory_order_relaxed);
  span_bytes.store(span_noted, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// Arena state and the extent hooks.

struct hooks_block {
  extent_hooks_t hooks;  // first member: jemalloc hands back &hooks
  tier_arena::state *owner;
};

struct tier_arena::state : va_owner {
  state() : va_owner{kind::arena} {}
  tier_arena *arena = nullptr;
  hooks_block hooks{};
  compiled_placement compiled;
  unsigned nodes[64] = {};
  unsigned node_count = 0;
  char root[256] = {};
  char name[96] = {};
  std::mutex grow_mutex;
  std::uintptr_t cur = 0, end = 0;  // the unused part of the current slot run
  std::uintptr_t run_begin = 0;     // where the current slot run starts
  std::atomic<std::uint64_t> mapped{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> spilled{0};           // extents placed on an overflow target (tier_arena::overflow_to)
  std::atomic<bool> overflowed{false};             // since then, purged ranges are placed as this state's again
  std::atomic<std::int64_t> retired_allocated{0};  // from exited threads and uncached paths
  // The kernel refuses memory it cannot back (vm.overcommit_memory=2): extents are handed to
  // jemalloc as address space only when it asks so, and mapped (charged) as it commits them,
  // and given back when it decommits them, as jemalloc does itself on such kernels. Otherwise
  // jemalloc's larger and larger retained extents would hold commit charge no block uses.
  bool lazy_commit = false;
  // File-backed tiers (devdax device or an unnamed file in a DAX directory).
  int fd = -1;
  bool devdax = false;
  std::uint64_t file_used = 0, file_max = 0, file_align = 0;
  std::atomic<unsigned> shard_threads[8] = {};  // threads using each shard (tier_arena::max_shards)
};

namespace {

constexpr int map_flags = MAP_PRIVATE | MAP_ANONYMOUS;
constinit std::mutex arenas_mutex;  // creation
// Making a CPU shard's jemalloc arena after the tier's creation (tier_arena::take_shard). Not
// arenas_mutex: a thread's first allocation may come from inside an arena's creation (the
// engine's own allocations, under the preload), with arenas_mutex held.
constinit std::mutex shards_mutex;
constinit std::atomic<tier_arena *> arenas[max_tier_arenas + 1] = {};
constinit unsigned arena_count = 0;

thread_local bool hook_reported = false;  // an extent hook left a message for this thread
// Set while this thread creates a jemalloc arena: its first metadata block is not held to the
// fill limit, so a tier can be set up while one of its nodes is full (it takes memory later,
// once the node has room, or its shards fall over to the tier's other nodes).
thread_local bool creating_arena = false;

// Whether the kernel under `root` ("" = "/") runs with vm.overcommit_memory=2.
bool strict_overcommit(const char *root) noexcept {
  char path[320];
  if (!join_text(path, sizeof path, {root, "/proc/sys/vm/overcommit_memory"})) return false;
  char text[16];
  return read_text(path, text, sizeof text) > 0 && text[0] == '2';
}

std::size_t page_bytes() noexcept {
  static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

void report(tier_arena::state *s, const char *fmt_what, const char *detail_text) noexcept {
  set_thread_error("%s: %s%s", s->name, fmt_what, detail_text);
  hook_reported = true;
}

// True when the tier's nodes can take `size` more bytes within the fill limit. A node whose
// meminfo cannot be read does not count (no evidence, no refusal).
bool capacity_allows(tier_arena::state *s, std::size_t size, unsigned fill_limit) noexcept {
  if (s->node_count == 0) return true;
  std::uint64_t total = 0, available = 0;
  bool any = false;
  for (unsigned i = 0; i < s->node_count; ++i) {
    node_memory m;
    if (!read_node_memory(s->root, s->nodes[i], &m)) continue;
    total += m.total;
    available += m.available;
    any = true;
  }
  if (!any || total == 0) return true;
  const std::uint64_t used_after = total - available + size;
  // used_after * 100 > fill_limit * total, without overflow for any realistic size.
  const bool over = size > available || static_cast<long double>(used_after) * 100.0L >
                                            static_cast<long double>(fill_limit) * static_cast<long double>(total);
  if (!over) return true;
  char a[32], t[32], n[32];
  char why[200];
  std::snprintf(why, sizeof why, "%s available of %s; %s more would pass the fill limit of %u%%",
                format_size(a, sizeof a, available), format_size(t, sizeof t, total), format_size(n, sizeof n, size),
                fill_limit);
  report(s, "tier is full: ", why);
  s->refused.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace

struct arena_hooks {
  static tier_arena::state *owner(extent_hooks_t *h) { return reinterpret_cast<hooks_block *>(h)->owner; }

  // Address space for `size` bytes at `align` from the tier's slots (grow_mutex held); 0 when
  // the window is exhausted (reported).
  static std::uintptr_t carve(tier_arena::state *s, std::size_t size, std::size_t align) {
    std::uintptr_t start = (s->cur + align - 1) & ~(align - 1);
    if (s->cur == 0 || start < s->cur || start + size > s->end || start + size < start) {
      va_window *w = va_window::get();
      std::size_t run = 0;
      void *r = w && size <= SIZE_MAX - align ? w->claim(s, size + align, &run) : nullptr;
      if (!r) {
        report(s, "hetmem's address window is exhausted", " (too many tiers or too much memory in use)");
        return 0;
      }
      s->cur = s->run_begin = reinterpret_cast<std::uintptr_t>(r);
      s->end = s->cur + run;
      // Once the arena is the direct one; before that, use_thread_tcache notes the run.
      if (s->arena_id == direct_path::arena_id.load(std::memory_order_acquire)) direct_path::note_run(s->cur, run);
      start = (s->cur + align - 1) & ~(align - 1);
    }
    return start;
  }

  static void *alloc_file(tier_arena::state *s, std::size_t size, std::size_t alignment, bool *zero, bool *commit) {
    const std::size_t falign = static_cast<std::size_t>(s->file_align);
    const std::size_t align = std::max({alignment, page_bytes(), falign});
    const std::size_t need = (size + falign - 1) / falign * falign;
    std::lock_guard<std::mutex> lock(s->grow_mutex);
    if (need > s->file_max - s->file_used) {
      char u[32], m[32], n[32], why[160];
      std::snprintf(why, sizeof why, "%s of %s used, %s more asked", format_size(u, sizeof u, s->file_used),
                    format_size(m, sizeof m, s->file_max), format_size(n, sizeof n, need));
      report(s, "file tier is full: ", why);
      s->refused.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    const std::uintptr_t start = carve(s, need, align);
    if (!start) return nullptr;
    void *p = os().mmap(reinterpret_cast<void *>(start), need, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, s->fd,
                        static_cast<long>(s->file_used));
    if (p == MAP_FAILED) {
      report(s, "mmap of the backing file failed: ", error_text(errno));
      os().mmap(reinterpret_cast<void *>(start), need, PROT_NONE, map_flags | MAP_NORESERVE | MAP_FIXED, -1, 0);
      return nullptr;
    }
    s->file_used += need;
    s->cur = start + need;
    s->mapped.fetch_add(need, std::memory_order_relaxed);
    *zero = !s->devdax;  // a fresh stretch of a sparse file reads as zeros; a device keeps old data
    *commit = true;
    return p;
  }

  // Explicit 2 MiB pages: mapped with MAP_HUGETLB, placed, then faulted in at once, so that an
  // empty pool (globally or on the tier's nodes) is an ENOMEM here and never a SIGBUS later.
  static void *alloc_hugetlb(tier_arena::state *s, std::size_t size, std::size_t alignment, bool *zero, bool *commit) {
    constexpr std::size_t huge = std::size_t{2} << 20;
    const std::size_t align = std::max(alignment, huge);
    const std::size_t need = (size + huge - 1) / huge * huge;
    std::lock_guard<std::mutex> lock(s->grow_mutex);
    const std::uintptr_t start = carve(s, need, align);
    if (!start) return nullptr;
    constexpr int map_huge_2mb = 21 << 26;  // MAP_HUGE_SHIFT 26, log2(2 MiB) = 21
    void *p = os().mmap(reinterpret_cast<void *>(start), need, PROT_READ | PROT_WRITE,
                        map_flags | MAP_FIXED | MAP_HUGETLB | map_huge_2mb, -1, 0);
    auto undo = [&] {
      os().mmap(reinterpret_cast<void *>(start), need, PROT_NONE, map_flags | MAP_NORESERVE | MAP_FIXED, -1, 0);
      s->refused.fetch_add(1, std::memory_order_relaxed);
    };
    if (p == MAP_FAILED) {
      const int err = errno;
      report(s, "no 2 MiB pages in the hugetlb pool (vm.nr_hugepages): mmap(MAP_HUGETLB) says ", error_text(err));
      undo();
      return nullptr;
    }
    char why[200];
    if (int err = apply_placement(s->compiled, p, need, why, sizeof why); err != 0) {
      report(s, "", why);
      undo();
      return nullptr;
    }
    if (os().madvise(p, need, 23 /* MADV_POPULATE_WRITE */) != 0) {
      const int err = errno;
      report(s, "the tier's nodes have too few free 2 MiB pages in the hugetlb pool: ", error_text(err));
      undo();
      return nullptr;
    }
    s->cur = start + need;
    s->mapped.fetch_add(need, std::memory_order_relaxed);
    *zero = true;
    *commit = true;
    return p;
  }

  static void *alloc(extent_hooks_t *h, void *new_addr, std::size_t size, std::size_t alignment, bool *zero,
                     bool *commit, unsigned) {
    tier_arena::state *s = owner(h);
    if (new_addr != nullptr) return nullptr;  // no growing in place: jemalloc asks elsewhere
    if (s->fd >= 0) return alloc_file(s, size, alignment, zero, commit);
    if (s->compiled.source.thp == huge_pages::hugetlb_2m) return alloc_hugetlb(s, size, alignment, zero, commit);
    const bool address_space_only = s->lazy_commit && !*commit;
    const compiled_placement *where = &s->compiled;
    if (!address_space_only && (where = placement_for(s, size)) == nullptr) return nullptr;
    const std::size_t align = std::max(alignment, page_bytes());
    std::lock_guard<std::mutex> lock(s->grow_mutex);
    const std::uintptr_t start = carve(s, size, align);
    if (!start) return nullptr;
    // Without lazy commit the range is mapped and placed now; with it, it stays reserved
    // (PROT_NONE, uncharged) until commit().
    if (!address_space_only && !map_and_place(s, reinterpret_cast<void *>(start), size, *where)) return nullptr;
    s->cur = start + size;
    s->mapped.fetch_add(size, std::memory_order_relaxed);
    *zero = true;  // fresh anonymous memory (also once committed)
    *commit = !address_space_only;
    return reinterpret_cast<void *>(start);
  }
  // The placement for `size` more bytes of `s`: its own while its nodes stay within the fill
  // limit (or while its arena is being created). Past it, for the direct arena with an overflow
  // (tier_arena::overflow_to), the first target within its own fill limit: the tier's other
  // nodes in shard order, then each later tier of the chain, its node nearest to the calling
  // thread first. nullptr (reported) when every one refuses.
  static const compiled_placement *placement_for(tier_arena::state *s, std::size_t size) {
    tier_arena *a = s->arena;
    if (creating_arena || capacity_allows(s, size, a->fill_limit_)) return &s->compiled;
    if (!a->overflow_on_.load(std::memory_order_acquire)) return nullptr;
    auto spill = [s](tier_arena::state *t) {
      s->spilled.fetch_add(1, std::memory_order_relaxed);
      s->overflowed.store(true, std::memory_order_relaxed);
      return &t->compiled;
    };
    if (a->per_node_)
      for (unsigned k = 0; k < a->shards_; ++k)
        if (tier_arena::state *t = a->shard_state_[k]; t != s && capacity_allows(t, size, a->fill_limit_))
          return spill(t);
    unsigned cpu = 0, node = UINT32_MAX;
    if (::getcpu(&cpu, &node) != 0) node = UINT32_MAX;
    for (unsigned i = 0; i < a->overflow_count_; ++i) {
      tier_arena *b = a->overflow_[i];
      const unsigned n = b->per_node_ ? b->shards_ : 1U;
      const unsigned first = b->per_node_ && node < 64 ? b->nearest_shard_[node] % n : 0;
      for (unsigned k = 0; k < n; ++k)
        if (tier_arena::state *t = b->shard_state_[(first + k) % n]; capacity_allows(t, size, b->fill_limit_))
          return spill(t);
    }
    return nullptr;
  }
  // Maps [p, p+size) of the window read-write and places it by `where`; on failure (reported)
  // the range is reserved again (PROT_NONE) and false is returned.
  static bool map_and_place(tier_arena::state *s, void *p, std::size_t size, const compiled_placement &where) {
    if (os().mmap(p, size, PROT_READ | PROT_WRITE, map_flags | MAP_FIXED, -1, 0) == MAP_FAILED) {
      report(s, "mmap failed: ", error_text(errno));
      os().mmap(p, size, PROT_NONE, map_flags | MAP_NORESERVE | MAP_FIXED, -1, 0);
      return false;
    }
    char why[200];
    if (apply_placement(where, p, size, why, sizeof why) != 0) {
      report(s, "", why);
      s->refused.fetch_add(1, std::memory_order_relaxed);
      os().mmap(p, size, PROT_NONE, map_flags | MAP_NORESERVE | MAP_FIXED, -1, 0);
      return false;
    }
    return true;
  }
  // Keep the address range (jemalloc retains it, purged): it stays in this tier's slots.
  static bool dalloc(extent_hooks_t *, void *, std::size_t, bool, unsigned) { return true; }
  static void destroy(extent_hooks_t *h, void *addr, std::size_t size, bool, unsigned) {
    os().mmap(addr, size, PROT_NONE, map_flags | MAP_NORESERVE | MAP_FIXED, -1, 0);
    owner(h)->mapped.fetch_sub(size, std::memory_order_relaxed);
  }
  // Without lazy_commit every extent is committed from the start: nothing to do. With it, the
  // part jemalloc commits is mapped and placed now; a refusal (the kernel's commit limit, the
  // fill limit, placement) fails the commit, and the range stays reserved.
  static bool commit(extent_hooks_t *h, void *addr, std::size_t, std::size_t offset, std::size_t length, unsigned) {
    tier_arena::state *s = owner(h);
    if (!s->lazy_commit) return false;
    const compiled_placement *where = placement_for(s, length);
    return where == nullptr || !map_and_place(s, static_cast<char *>(addr) + offset, length, *where);
  }
  // With lazy_commit: the pages and their commit charge go back, the range stays reserved (and
  // is placed again when committed again). Otherwise refused: jemalloc purges instead.
  static bool decommit(extent_hooks_t *h, void *addr, std::size_t, std::size_t offset, std::size_t length, unsigned) {
    if (!owner(h)->lazy_commit) return true;
    return os().mmap(static_cast<char *>(addr) + offset, length, PROT_NONE, map_flags | MAP_NORESERVE | MAP_FIXED, -1,
                     0) == MAP_FAILED;
  }
  static bool purge_forced(extent_hooks_t *h, void *addr, std::size_t, std::size_t offset, std::size_t length,
                           unsigned) {
    // Anonymous memory: MADV_DONTNEED keeps the range's mempolicy (refaulted pages are placed
    // the same way). A file: MADV_REMOVE punches a hole, so the blocks go back and the range
    // reads as zeros; a devdax device cannot, and says so (jemalloc then keeps the pages).
    // Once the arena has placed extents on an overflow target, a purged range (empty now) is
    // placed as the arena's own again: its pages come back on the tier's nodes when it is reused.
    tier_arena::state *s = owner(h);
    const bool file = s->fd >= 0;
    char *p = static_cast<char *>(addr) + offset;
    if (os().madvise(p, length, file ? MADV_REMOVE : MADV_DONTNEED) != 0) return true;
    if (!file && s->overflowed.load(std::memory_order_relaxed)) {
      char why[200];
      (void)apply_placement(s->compiled, p, length, why, sizeof why);  // else it keeps the target's
    }
    return false;
  }
  static bool split(extent_hooks_t *, void *, std::size_t, std::size_t, std::size_t, bool, unsigned) { return false; }
  static bool merge(extent_hooks_t *, void *, std::size_t, void *, std::size_t, bool, unsigned) { return false; }
};

// ---------------------------------------------------------------------------------------------
// Thread caches: per thread, per arena, one LIFO bin per size class, in front of an explicit
// jemalloc tcache owned by that thread for that arena.

namespace {

// A LIFO stack of pointers (like jemalloc's cache bins): pushing and popping never touch the
// objects themselves, so a free followed by a malloc carries no store-to-load dependency.
struct bin {
  void **stack = nullptr;
  std::atomic<std::uint32_t> count{0};  // written by the owner only; read by counters()
  std::uint32_t cap = 0;
};

struct arena_cache {
  // Bytes this thread took from jemalloc minus bytes it gave back: what it handed out plus what
  // sits in its bins. Changed only on the slow paths (refill, flush, large blocks), by the
  // owning thread (relaxed load + store); counters() subtracts the bins.
  std::atomic<std::int64_t> allocated{0};
  int arena_flag = 0;  // MALLOCX_ARENA of this thread's shard
  unsigned shard = 0;
  int tcache_flag = MALLOCX_TCACHE_NONE;
  unsigned tcache = 0;
  bool has_tcache = false;
  bool direct = false;  // the tcache arena: jemalloc's own malloc/free, the thread bound to the shard
  bin bins[cached_classes];
};

struct thread_cache {
  std::atomic<arena_cache *> arenas[max_tier_arenas + 1] = {};
  thread_cache *prev = nullptr, *next = nullptr;
};

constexpr std::uint32_t bin_cap(unsigned c) noexcept {
  const std::size_t n = 65536 / class_bytes(c);
  return static_cast<std::uint32_t>(std::clamp<std::size_t>(n, 4, 64));
}

inline arena_cache *cache_of(thread_cache *tc, unsigned id) noexcept {
  return tc->arenas[id].load(std::memory_order_relaxed);
}

enum : std::uint8_t { tc_fresh = 0, tc_live = 1, tc_dead = 2, tc_starting = 3 };
thread_local thread_cache *tl_cache = nullptr;
thread_local std::uint8_t tl_state = tc_fresh;
// The thread's last used cache of a tier arena with bins (never the direct arena's): its id and
// cache in thread-locals of their own, so that the fast paths reach the bins without the load
// through tl_cache->arenas[id], which in free() waits for the id read from the window. 0 and
// nullptr when none; cleared before the caches are freed at thread exit.
thread_local unsigned tl_last_id = 0;
thread_local arena_cache *tl_last_ac = nullptr;

constinit std::mutex registry_mutex;
constinit thread_cache *registry = nullptr;
pthread_key_t exit_key;
constinit std::once_flag key_once;

inline void bump(std::atomic<std::int64_t> &c, std::int64_t d) noexcept {
  c.store(c.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
}
inline void set_count(bin &b, std::uint32_t n) noexcept { b.count.store(n, std::memory_order_relaxed); }
inline std::uint32_t count_of(const bin &b) noexcept { return b.count.load(std::memory_order_relaxed); }

// hetmem's own bookkeeping: jemalloc's arena 0 (ordinary memory), never a tier's arena (a
// thread bound to the direct arena would otherwise put it there).
void *internal_alloc(std::size_t bytes) noexcept {
  return hetmem_je_mallocx(bytes, MALLOCX_ARENA(0) | MALLOCX_TCACHE_NONE | MALLOCX_ZERO);
}
void internal_free(void *p) noexcept {
  if (p) hetmem_je_dallocx(p, MALLOCX_TCACHE_NONE);
}

// Frees all but the `keep` most recently cached objects (the oldest go first).
void flush_bin(bin &b, arena_cache &ac, std::uint32_t keep, std::uint32_t object_bytes) noexcept {
  const std::uint32_t n = count_of(b);
  if (n <= keep) return;
  const std::uint32_t drop = n - keep;
  // Sized: jemalloc then needs no lookup to find the size class.
  for (std::uint32_t i = 0; i < drop; ++i) hetmem_je_sdallocx(b.stack[i], object_bytes, ac.tcache_flag);
  std::memmove(b.stack, b.stack + drop, keep * sizeof(void *));
  set_count(b, keep);
  bump(ac.allocated, -static_cast<std::int64_t>(drop) * object_bytes);
}

void flush_all(thread_cache *tc, bool destroy_tcaches) noexcept {
  for (unsigned id = 1; id <= max_tier_arenas; ++id) {
    arena_cache *ac = cache_of(tc, id);
    if (!ac) continue;
    for (unsigned c = 0; c < cached_classes; ++c) flush_bin(ac->bins[c], *ac, 0, classes.bytes[c]);
    if (ac->has_tcache) {
      if (destroy_tcaches) {
        hetmem_je_mallctl("tcache.destroy", nullptr, nullptr, &ac->tcache, sizeof ac->tcache);
        ac->has_tcache = false;
        ac->tcache_flag = MALLOCX_TCACHE_NONE;
      } else {
        hetmem_je_mallctl("tcache.flush", nullptr, nullptr, &ac->tcache, sizeof ac->tcache);
      }
    }
  }
}

void thread_exit(void *arg) {
  auto *tc = static_cast<thread_cache *>(arg);
  direct_path::thread_mode = direct_path::mode_off;
  tl_last_id = 0;
  tl_last_ac = nullptr;
  tl_cache = nullptr;
  tl_state = tc_dead;  // later allocations on this thread go uncached
  flush_all(tc, true);
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    if (tc->prev) tc->prev->next = tc->next;
    if (tc->next) tc->next->prev = tc->prev;
    if (registry == tc) registry = tc->next;
    for (unsigned id = 1; id <= max_tier_arenas; ++id)
      if (tier_arena *a = arenas[id].load(std::memory_order_acquire); a && cache_of(tc, id))
        a->retire_thread(cache_of(tc, id)->allocated.load(std::memory_order_relaxed), cache_of(tc, id)->shard);
  }
  for (auto &ac : tc->arenas) internal_free(ac.load(std::memory_order_relaxed));
  internal_free(tc);
}

thread_cache *thread_cache_init() noexcept {
  if (tl_state != tc_fresh) return nullptr;
  std::call_once(key_once, [] {
    if (pthread_key_create(&exit_key, thread_exit) != 0) exit_key = static_cast<pthread_key_t>(-1);
  });
  if (exit_key == static_cast<pthread_key_t>(-1)) {
    tl_state = tc_dead;
    return nullptr;
  }
  // pthread_setspecific may calloc (keys past the first 32): under the preload that comes back
  // here, and must go uncached instead of recursing.
  tl_state = tc_starting;
  auto *tc = static_cast<thread_cache *>(internal_alloc(sizeof(thread_cache)));
  if (!tc) {
    tl_state = tc_fresh;
    return nullptr;
  }
  new (tc) thread_cache();
  if (pthread_setspecific(exit_key, tc) != 0) {
    internal_free(tc);
    tl_state = tc_dead;
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    tc->next = registry;
    if (registry) registry->prev = tc;
    registry = tc;
  }
  tl_cache = tc;
  tl_state = tc_live;
  return tc;
}

// The direct arena (direct_path::arena_id, set by use_thread_tcache): jemalloc's own fast paths,
// no bins, no page marks.
inline bool is_direct(unsigned arena_id) noexcept {
  return arena_id == direct_path::arena_id.load(std::memory_order_relaxed);
}

// Frees a block of the direct arena (`bytes` its requested size, or 0 when unknown): into the
// thread's automatic tcache when the thread is bound to the arena; a thread that never
// allocated there gives it straight back (its automatic tcache, on one of jemalloc's own
// arenas, would hide the block from the tier's statistics).
inline void free_direct(void *p, unsigned arena_id, std::size_t bytes) noexcept {
  thread_cache *tc = tl_cache;
  const bool bound = tc && cache_of(tc, arena_id);
  if (bytes)
    hetmem_je_sdallocx(p, bytes, bound ? 0 : MALLOCX_TCACHE_NONE);
  else if (bound) [[likely]]
    hetmem_je_free(p);
  else
    hetmem_je_dallocx(p, MALLOCX_TCACHE_NONE);
}

arena_cache *arena_cache_init(thread_cache *tc, unsigned id, unsigned je_arena, unsigned shard) noexcept {
  std::size_t slots = 0;
  for (unsigned c = 0; c < cached_classes; ++c) slots += bin_cap(c);
  auto *ac = static_cast<arena_cache *>(internal_alloc(sizeof(arena_cache) + slots * sizeof(void *)));
  if (!ac) return nullptr;
  new (ac) arena_cache();
  auto **stacks = reinterpret_cast<void **>(ac + 1);
  ac->arena_flag = static_cast<int>(MALLOCX_ARENA(je_arena));
  ac->shard = shard;
  for (unsigned c = 0; c < cached_classes; ++c) {
    ac->bins[c].cap = bin_cap(c);
    ac->bins[c].stack = stacks;
    stacks += bin_cap(c);
  }
  std::size_t sz = sizeof ac->tcache;
  if (id == direct_path::arena_id.load(std::memory_order_acquire)) {
    // jemalloc's own fast paths with the thread's automatic tcache: the thread is bound to its
    // shard (thread.arena), so plain malloc allocates there and free takes the inlined path;
    // hetmem's bins stay empty. Only this arena's objects ever enter the automatic tcache
    // (every other call names an explicit tcache or none).
    unsigned bound = je_arena;
    if (hetmem_je_mallctl("thread.arena", nullptr, nullptr, &bound, sizeof bound) == 0) ac->direct = true;
    ac->tcache_flag = 0;
    direct_path::thread_mode = ac->direct && tc == tl_cache ? direct_path::enabled_mode.load(std::memory_order_relaxed)
                                                            : static_cast<unsigned char>(direct_path::mode_off);
  } else if (hetmem_je_mallctl("tcache.create", &ac->tcache, &sz, nullptr, 0) == 0) {
    ac->has_tcache = true;
    ac->tcache_flag = static_cast<int>(MALLOCX_TCACHE(ac->tcache));
  }  // else (too many explicit tcaches): bins still work, misses go straight to the arena
  tc->arenas[id].store(ac, std::memory_order_release);
  return ac;
}

[[gnu::noinline, gnu::cold]] void foreign_pointer(const void *p) noexcept {
  set_thread_error("free of %p, which hetmem did not allocate: ignored", p);
  static std::atomic<bool> said{false};
  if (!said.exchange(true)) {
    char msg[160];
    int n = std::snprintf(msg, sizeof msg, "hetmem: %s (reported once)\n", thread_error());
    if (n > 0) (void)!::write(2, msg, std::min(static_cast<std::size_t>(n), sizeof msg - 1));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// tier_arena

namespace {
std::size_t mark(void *p) noexcept;
}

namespace {
bool same_tier(const tier &x, const tier &y) {
  const placement &a = x.where, &b = y.where;
  if (x.file.has_value() != y.file.has_value() ||
      (x.file && (x.file->path != y.file->path || x.file->max_bytes != y.file->max_bytes)))
    return false;
  return x.name == y.name && x.kind == y.kind && a.mode == b.mode && a.nodes == b.nodes && a.weights == b.weights &&
         a.move_existing == b.move_existing && a.strict == b.strict && a.thp == b.thp;
}
}  // namespace

namespace {
// Opens a file tier's backing: the devdax device (its size and alignment from sysfs), or an
// unnamed sparse file of max_bytes in the directory.
result<void> open_backing(const file_backing &f, const char *root, tier_arena::state &s) {
  struct stat st {};
  if (::stat(f.path.c_str(), &st) != 0) return error{errno, f.path + ": " + error_text(errno)};
  s.devdax = S_ISCHR(st.st_mode);
  if (s.devdax) {
    char subsystem[64];
    if (!is_devdax_device(root, major(st.st_rdev), minor(st.st_rdev), subsystem, sizeof subsystem))
      return error{ENODEV, f.path + ": a character device that is not devdax" +
                               (subsystem[0] ? " (its subsystem is '" + std::string(subsystem) + "')" : std::string())};
    s.fd = ::open(f.path.c_str(), O_RDWR | O_CLOEXEC);
    if (s.fd < 0) return error{errno, "opening " + f.path + ": " + error_text(errno)};
    const std::string dev = f.path.substr(f.path.find_last_of('/') + 1);
    auto read_u64 = [&](const char *attr, std::uint64_t fallback) -> std::uint64_t {
      char path[512], text[64];
      std::snprintf(path, sizeof path, "%s/sys/bus/dax/devices/%s/%s", root, dev.c_str(), attr);
      return read_text(path, text, sizeof text) > 0 ? static_cast<std::uint64_t>(std::strtoull(text, nullptr, 0))
                                                    : fallback;
    };
    const std::uint64_t size = read_u64("size", f.max_bytes);
    s.file_align = read_u64("align", 2u << 20);
    if (s.file_align == 0 || (s.file_align & (s.file_align - 1)) != 0) s.file_align = 2u << 20;
    s.file_max = std::min<std::uint64_t>(f.max_bytes, size) / s.file_align * s.file_align;
  } else {
    s.fd = ::open(f.path.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (s.fd < 0)
      return error{errno, "creating an unnamed file in " + f.path + ": " + error_text(errno) +
                              (errno == EOPNOTSUPP ? " (the file system lacks O_TMPFILE)" : "")};
    s.file_align = page_bytes();
    s.file_max = f.max_bytes / s.file_align * s.file_align;
    if (::ftruncate(s.fd, static_cast<off_t>(s.file_max)) != 0) {
      const int err = errno;
      ::close(s.fd);
      s.fd = -1;
      return error{err, "sizing the file in " + f.path + ": " + error_text(err)};
    }
  }
  if (s.file_max == 0) return error{EINVAL, f.path + ": max_bytes is smaller than one mapping unit"};
  return {};
}
}  // namespace

namespace {
// The text of `<root>/sys/devices/system/node/<name>` ("" when unreadable).
std::string node_file(const char *root, const std::string &name) {
  char text[8192];
  read_text((std::string(root) + "/sys/devices/system/node/" + name).c_str(), text, sizeof text);
  return text;
}

// For each node id below 64: the shard whose node is nearest to it by SLIT distance (ties: the
// first shard), or 0xff when the distances cannot be read. A thread on a node the tier does
// not contain (a CPU node near HBM, say) then uses its nearest node, not just any.
void nearest_shards(const char *root, const std::uint32_t *shard_nodes, unsigned shards, std::uint8_t *out) {
  std::fill(out, out + 64, std::uint8_t{0xff});
  auto online = sysfs::parse_id_list(node_file(root, "online"), 1023);
  if (!online) return;
  const auto ids = online->to_vector();
  for (auto from : ids) {
    if (from >= 64) break;
    auto row = sysfs::parse_distance_row(node_file(root, "node" + std::to_string(from) + "/distance"));
    if (!row || row->size() != ids.size()) continue;
    std::uint32_t best = UINT32_MAX;
    for (unsigned k = 0; k < shards; ++k) {
      const auto at = online->index_of(shard_nodes[k]);
      if (at < 0) continue;
      const std::uint32_t d = (*row)[static_cast<std::size_t>(at)];
      if (d < best) {
        best = d;
        out[from] = static_cast<std::uint8_t>(k);
      }
    }
  }
}
}  // namespace

// fork(): a child must find every engine mutex free. Two sets, ordered around jemalloc's own
// handlers (jemalloc locks its mutexes in a pthread_atfork handler it registers when it
// initialises, from its constructor):
// - arenas_mutex, shards_mutex and registry_mutex are held while jemalloc is called, so they are taken
//   before jemalloc's: their handler is registered after jemalloc's (prepare handlers run in
//   reverse order of registration), on the first arena creation;
// - the grow mutexes and the window's mutex are taken inside jemalloc's extent hooks, with
//   jemalloc's mutexes held, so they are taken after jemalloc's: their handler is registered
//   first, from a constructor that runs before jemalloc's.
// Both child handlers just unlock: the child has one thread, the one that forked.
struct fork_access {
  static unsigned shards(const tier_arena *a) noexcept { return a->shards_; }
  static tier_arena::state *shard_state(const tier_arena *a, unsigned k) noexcept { return a->shard_state_[k]; }
};
namespace {
template <typename F>
void for_each_state(F &&f) noexcept {
  for (unsigned id = 1; id <= arena_count; ++id) {
    tier_arena *a = arenas[id].load(std::memory_order_acquire);
    if (!a) continue;
    tier_arena::state *last = nullptr;
    for (unsigned k = 0; k < fork_access::shards(a); ++k) {
      tier_arena::state *s = fork_access::shard_state(a, k);
      if (s && s != last) f(s);
      last = s;
    }
  }
}
void early_prepare() noexcept {
  arenas_mutex.lock();
  shards_mutex.lock();
  registry_mutex.lock();
}
void early_release() noexcept {
  registry_mutex.unlock();
  shards_mutex.unlock();
  arenas_mutex.unlock();
}
void late_prepare() noexcept {
  for_each_state([](tier_arena::state *s) { s->grow_mutex.lock(); });
  va_window::lock_for_fork();
}
void late_release() noexcept {
  va_window::unlock_after_fork();
  for_each_state([](tier_arena::state *s) { s->grow_mutex.unlock(); });
}
[[gnu::constructor(101)]] void register_late_fork_handlers() noexcept {
  (void)pthread_atfork(late_prepare, late_release, late_release);
}
constinit std::once_flag early_fork_once;
}  // namespace

// The arena for (t, fill limit) among those made so far; arenas_mutex held.
tier_arena *tier_arena::find_locked(const tier &t, unsigned fill_limit_percent) noexcept {
  for (unsigned id = 1; id <= arena_count; ++id) {
    tier_arena *a = arenas[id].load(std::memory_order_relaxed);
    if (a && a->fill_limit_ == fill_limit_percent && same_tier(a->tier_, t)) return a;
  }
  return nullptr;
}

result<tier_arena *> tier_arena::get(const tier &t, unsigned fill_limit_percent) {
  if (fill_limit_percent == 0 || fill_limit_percent > 100)
    return error{EINVAL, "fill limit " + std::to_string(fill_limit_percent) + "% is outside 1-100"};
  auto r = [&] {
    std::lock_guard<std::mutex> lock(arenas_mutex);
    return get_locked(t, fill_limit_percent);
  }();
  // jemalloc has initialised by now (and registered its fork handlers); not under the lock,
  // as fork() holds glibc's handler-list lock while it runs the prepare handlers.
  if (r) std::call_once(early_fork_once, [] { (void)pthread_atfork(early_prepare, early_release, early_release); });
  return r;
}

result<tier_arena *> tier_arena::get_locked(const tier &t, unsigned fill_limit_percent) {
  if (tier_arena *a = find_locked(t, fill_limit_percent)) return a;
  if (arena_count == max_tier_arenas)
    return error{ENOSPC, "too many distinct tiers: hetmem keeps at most " + std::to_string(max_tier_arenas) +
                             " (tier, fill limit) arenas per process"};
  auto compiled = compile_placement(t.where);
  if (!compiled) return error{compiled.error().code, t.name + ": " + compiled.error().message};
  if (!va_window::get())
    return error{ENOMEM, "cannot reserve address space for hetmem's window (RLIMIT_AS or a crowded address space)"};

  std::unique_ptr<tier_arena> a(new (std::nothrow) tier_arena());
  if (!a) return error{ENOMEM, "out of memory"};
  a->tier_ = t;
  a->tier_.next.clear();
  a->fill_limit_ = fill_limit_percent;
  a->id_ = arena_count + 1;

  // A state: placement, slots, fill check and hooks. One for the tier, or, for a bind tier over
  // several nodes, one per node (bound to that node alone), so that each node's memory is
  // reused by the threads near it and each node's fullness is judged on its own.
  std::vector<std::unique_ptr<state>> states;
  auto make_state = [&](const placement &where, const std::string &name) -> result<void> {
    auto c = compile_placement(where);
    if (!c) return c.error();
    std::unique_ptr<state> s(new (std::nothrow) state());
    if (!s) return error{ENOMEM, "out of memory"};
    s->arena = a.get();
    s->arena_id = a->id_;
    s->compiled = std::move(c).value();
    if (where.mode != policy_mode::default_policy)
      for (auto n : where.nodes.to_vector())
        if (s->node_count < std::size(s->nodes)) s->nodes[s->node_count++] = n;
    copy_sysfs_root(s->root, sizeof s->root);
    (void)join_text(s->name, sizeof s->name, {std::string_view(name).substr(0, sizeof s->name - 1)});  // cut to fit
    if (t.file) {
      auto opened = open_backing(*t.file, s->root, *s);
      if (!opened) return opened.error();
    }
    s->lazy_commit = !t.file && where.thp != huge_pages::hugetlb_2m && strict_overcommit(s->root);
    s->hooks.hooks = extent_hooks_t{arena_hooks::alloc,        arena_hooks::dalloc,   arena_hooks::destroy,
                                    arena_hooks::commit,       arena_hooks::decommit, nullptr /* purge_lazy */,
                                    arena_hooks::purge_forced, arena_hooks::split,    arena_hooks::merge};
    s->hooks.owner = s.get();
    states.push_back(std::move(s));
    return {};
  };
  const auto nodes = t.where.nodes.to_vector();
  a->per_node_ = !t.file && (t.where.mode == policy_mode::bind || t.where.mode == policy_mode::preferred_many) &&
                 nodes.size() > 1 && nodes.size() <= max_shards;
  if (a->per_node_) {
    for (auto n : nodes) {
      placement one = t.where;
      one.nodes = node_set{n};
      if (one.mode == policy_mode::preferred_many) one.mode = policy_mode::preferred;
      auto r = make_state(one, t.name + ", node " + std::to_string(n));
      if (!r) return error{r.error().code, t.name + ": " + r.error().message};
    }
  } else {
    auto r = make_state(t.where, t.name);
    if (!r) return error{r.error().code, t.name + ": " + r.error().message};
  }
  a->state_ = states.front().get();

  // Shards: jemalloc arenas. Per node: one per node on that node's state. Otherwise several on
  // the one state (the same slots, placement and limits), so that threads taking large blocks
  // do not all queue on one arena's lock. A thread keeps the shard its cache was given.
  // Up to four per CPU this process may run on (jemalloc's own default for its arenas; CPUs
  // counted as jemalloc counts them: sysconf would parse sysfs text), at most max_shards. They
  // are made as threads come to need them: a program with four threads on two CPUs makes four
  // (larson-churn: 1.10x jemalloc's time instead of 1.25x with one per CPU, its hand-offs
  // queueing on two arenas' locks).
  cpu_set_t allowed;
  const long cpus =
      ::sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : ::sysconf(_SC_NPROCESSORS_ONLN);
  a->shards_ = a->per_node_ ? static_cast<unsigned>(nodes.size())
                            : static_cast<unsigned>(std::clamp<long>(4 * cpus, 1, static_cast<long>(max_shards)));
  if (t.file) a->shards_ = 1;  // a bounded file: every arena's metadata would take its share
  for (unsigned k = 0; k < a->shards_; ++k) {
    a->shard_state_[k] = a->per_node_ ? states[k].get() : states.front().get();
    a->shard_node_[k] = a->per_node_ ? nodes[k] : UINT32_MAX;
  }
  for (unsigned k = 0; k < (a->per_node_ ? a->shards_ : 1U); ++k) {
    if (int rc = a->make_shard_locked(); rc != 0)
      return error{rc, t.name + ": jemalloc arenas.create failed: " +
                           (hook_reported ? std::string(thread_error()) : std::string(error_text(rc)))};
  }
  if (a->per_node_) nearest_shards(states.front()->root, a->shard_node_, a->shards_, a->nearest_shard_);
  for (auto &st : states) (void)st.release();  // they live as long as the process, like the arena
  tier_arena *raw = a.release();
  arenas[raw->id_].store(raw, std::memory_order_release);
  ++arena_count;
  return raw;
}

int tier_arena::make_shard_locked() noexcept {
  const unsigned k = made_.load(std::memory_order_relaxed);
  if (k >= shards_) return ENOSPC;
  extent_hooks_t *hp = &shard_state_[k]->hooks.hooks;
  unsigned index = 0;
  std::size_t sz = sizeof index;
  hook_reported = false;
  creating_arena = true;
  // mallctl takes the address of the hooks pointer and its size.
  const int rc = hetmem_je_mallctl("arenas.create", &index, &sz, &hp, sizeof hp);  // NOLINT(bugprone-sizeof-expression)
  creating_arena = false;
  if (rc != 0) return rc;
  je_shard_[k] = index;
  made_.store(k + 1, std::memory_order_release);
  return 0;
}

unsigned tier_arena::threads_on_shard(unsigned k) const noexcept {
  return k < shards_ ? state_->shard_threads[k].load(std::memory_order_relaxed) : 0;
}

unsigned tier_arena::claim_least_used_shard() noexcept {
  // Pick and count in one step: threads that start together would otherwise read the same
  // counts and all take the same shard. Shards not made yet count no threads, so they are
  // taken (and made, by take_shard) in order once every made one has a thread.
  std::atomic<unsigned> *count = state_->shard_threads;
  for (;;) {
    const unsigned planned =
        cannot_make_.load(std::memory_order_relaxed) ? made_.load(std::memory_order_acquire) : shards_;
    unsigned pick = 0;
    unsigned least = count[0].load(std::memory_order_relaxed);
    for (unsigned k = 1; k < planned && least > 0; ++k)
      if (const unsigned c = count[k].load(std::memory_order_relaxed); c < least) {
        pick = k;
        least = c;
      }
    // Fails when another thread claimed this shard since it was read: pick again.
    if (count[pick].compare_exchange_weak(least, least + 1, std::memory_order_relaxed)) return pick;
  }
}

unsigned tier_arena::take_shard(unsigned wanted) noexcept {
  if (wanted < made_.load(std::memory_order_acquire)) return wanted;
  {
    std::lock_guard<std::mutex> lock(shards_mutex);
    while (!cannot_make_.load(std::memory_order_relaxed) && made_.load(std::memory_order_relaxed) <= wanted)
      if (make_shard_locked() != 0) cannot_make_.store(true, std::memory_order_relaxed);  // fewer shards is fine
  }
  const unsigned made = made_.load(std::memory_order_acquire);
  return wanted < made ? wanted : made - 1;
}

bool tier_arena::use_thread_tcache() noexcept {
  std::lock_guard<std::mutex> lock(arenas_mutex);
  if (const unsigned id = direct_path::arena_id.load(std::memory_order_relaxed)) return id == id_;
  if (used_.load(std::memory_order_acquire)) return false;
  bool on = false;
  std::size_t len = sizeof on;
  if (hetmem_je_mallctl("opt.tcache", &on, &len, nullptr, 0) != 0 || !on) return false;
  direct_path::arena_id.store(id_, std::memory_order_release);
  // The runs the shards claimed before (jemalloc's metadata for each shard comes through the
  // hooks as the shard is created), in shard order; a run claimed from now on is noted by carve.
  for (unsigned k = 0; k < shards_; ++k) {
    state *s = shard_state_[k];
    if (k > 0 && s == shard_state_[k - 1]) continue;
    std::lock_guard<std::mutex> grow(s->grow_mutex);
    if (s->end) direct_path::note_run(s->run_begin, s->end - s->run_begin);
  }
  return true;
}

bool tier_arena::overflow_to(tier_arena *const *next, unsigned count) noexcept {
  std::lock_guard<std::mutex> lock(arenas_mutex);
  if (!is_direct(id_) || overflow_on_.load(std::memory_order_relaxed) || count > max_overflow) return false;
  // Anonymous memory only: the extent is mapped in this arena's address space and placed by
  // the target's placement, which a file or a hugetlb tier cannot take.
  auto anonymous = [](const tier_arena *b) {
    return !b->tier_.file && b->state_->compiled.source.thp != huge_pages::hugetlb_2m;
  };
  if (!anonymous(this)) return false;
  for (unsigned i = 0; i < count; ++i)
    if (!next[i] || next[i] == this || !anonymous(next[i])) return false;
  std::copy(next, next + count, overflow_);
  overflow_count_ = count;
  overflow_on_.store(true, std::memory_order_release);
  return true;
}

tier_arena *tier_arena::find(const tier &t, unsigned fill_limit_percent) noexcept {
  std::lock_guard<std::mutex> lock(arenas_mutex);
  return find_locked(t, fill_limit_percent);
}

tier_arena *tier_arena::of(const void *p) noexcept {
  va_owner *o = va_window::owner_of(p);
  return o && o->type == va_owner::kind::arena ? static_cast<state *>(o)->arena : nullptr;
}

void *tier_arena::allocate_default(std::size_t bytes) noexcept {
  // No call and no saved register on the way to a bin of the arena the thread used last.
  if (tl_last_id == id_ && bytes - 1 < max_cached_bytes) [[likely]] {
    bin &b = tl_last_ac->bins[fast_class_of(bytes)];
    if (const std::uint32_t n = count_of(b)) [[likely]] {
      set_count(b, n - 1);
      return b.stack[n - 1];
    }
  }
  return allocate_default_slow(bytes);
}

void *tier_arena::allocate_default_slow(std::size_t bytes) noexcept {
  if (thread_cache *tc = tl_cache) [[likely]] {
    if (arena_cache *ac = cache_of(tc, id_)) [[likely]] {
      if (ac->direct) {
        // Any size: the thread is bound to a manual arena, so even blocks past jemalloc's
        // oversize threshold stay on it (never in jemalloc's own huge arena).
        if (void *p = hetmem_je_malloc(bytes)) [[likely]]
          return p;
        return direct_failed(ac, bytes);
      }
      tl_last_id = id_;
      tl_last_ac = ac;
      if (bytes - 1 < max_cached_bytes) [[likely]] {
        const unsigned c = fast_class_of(bytes);
        bin &b = ac->bins[c];
        if (const std::uint32_t n = count_of(b)) [[likely]] {
          set_count(b, n - 1);
          return b.stack[n - 1];
        }
        return refill(ac, c, bytes);
      }
    }
  }
  return allocate_slow(bytes, 0);
}

void *tier_arena::allocate(std::size_t bytes, std::size_t alignment) noexcept {
  // Every object of the cached classes from 16 bytes up is 16-byte aligned (the 8-byte class
  // only to 8): smaller requests with an alignment take the class of the alignment.
  if (alignment <= 16 && (alignment & (alignment - 1)) == 0) [[likely]]
    return allocate_default(bytes < alignment ? alignment : bytes);
  return allocate_slow(bytes, alignment);
}

namespace {
// jemalloc's experimental.batch_alloc: up to `num` objects of `size` in one call (from the
// explicit tcache's bin, or fresh slabs of the arena), 0 when unavailable.
std::size_t batch_alloc(void **ptrs, std::size_t num, std::size_t size, int flags) noexcept {
  struct packet {
    void **ptrs;
    std::size_t num, size;
    int flags;
  };
  static std::size_t mib[3];
  static std::size_t miblen = 0;
  static const bool have = [] {
    miblen = 3;
    return hetmem_je_mallctlnametomib("experimental.batch_alloc", mib, &miblen) == 0;
  }();
  if (!have) return 0;
  packet in{ptrs, num, size, flags};
  std::size_t filled = 0, len = sizeof filled;
  if (hetmem_je_mallctlbymib(mib, miblen, &filled, &len, &in, sizeof in) != 0) return 0;
  return filled;
}
}  // namespace

// The calling thread's bin for class `c` is empty: half a bin of objects from jemalloc in one
// batch (through the thread's explicit tcache for this arena), or one when batching fails.
void *tier_arena::refill(void *cache, unsigned c, std::size_t bytes) noexcept {
  auto *ac = static_cast<arena_cache *>(cache);
  const std::uint32_t size = classes.bytes[c];
  hook_reported = false;
  bin &b = ac->bins[c];
  // Fewer than a slab's worth: a batch of a slab or more would take fresh slabs and leave the
  // freed regions of partly used ones behind (memory grows).
  static const auto regions_per_slab = [] {
    std::array<std::uint32_t, cached_classes> n{};
    for (unsigned k = 0; k < cached_classes; ++k) {
      char name[64];
      std::snprintf(name, sizeof name, "arenas.bin.%u.nregs", k);
      std::uint32_t v = 0;
      std::size_t len = sizeof v;
      n[k] = hetmem_je_mallctl(name, &v, &len, nullptr, 0) == 0 ? v : 1;
    }
    return n;
  }();
  const std::uint32_t want = std::max<std::uint32_t>(1, std::min(b.cap / 2, regions_per_slab[c] / 2));
  if (const std::size_t got = batch_alloc(b.stack, want, size, ac->arena_flag | ac->tcache_flag)) [[likely]] {
    // Objects of one batch mostly share slab pages: mark only pages not marked for this class.
    const auto m = static_cast<std::uint8_t>(c + 1);
    for (std::size_t i = 0; i < got; ++i) {
      const auto *o = static_cast<const char *>(b.stack[i]);
      if (va_window::page_mark(o) != m || va_window::page_mark(o + size - 1) != m) va_window::mark_pages(o, size, m);
    }
    // Popped from the top: reversed, consecutive allocations get ascending addresses, as
    // from jemalloc's own cache (what a program walking its objects in order is fastest with).
    std::reverse(b.stack, b.stack + got);
    bump(ac->allocated, static_cast<std::int64_t>(got) * size);
    set_count(b, static_cast<std::uint32_t>(got - 1));
    return b.stack[got - 1];
  }
  void *p = hetmem_je_mallocx(size, ac->arena_flag | ac->tcache_flag);
  if (!p && per_node_) p = other_nodes(size, 0, ac->shard);
  if (p) [[likely]] {
    va_window::mark_pages(p, size, static_cast<std::uint8_t>(c + 1));
    bump(ac->allocated, size);
    return p;
  }
  if (!hook_reported) set_thread_error("%s: jemalloc could not allocate %zu bytes", state_->name, bytes);
  errno = ENOMEM;
  return nullptr;
}

// jemalloc's malloc failed on the thread's shard (its node full, for a strict tier).
void *tier_arena::direct_failed(void *cache, std::size_t bytes) noexcept {
  auto *ac = static_cast<arena_cache *>(cache);
  hook_reported = false;
  void *p = per_node_ ? other_nodes(bytes, 0, ac->shard) : nullptr;
  if (p) return p;
  if (!hook_reported) set_thread_error("%s: jemalloc could not allocate %zu bytes", state_->name, bytes);
  errno = ENOMEM;
  return nullptr;
}

// The thread's node is full: the tier's other nodes, in shard order.
void *tier_arena::other_nodes(std::size_t bytes, std::size_t alignment, unsigned tried, int zero_flag) noexcept {
  const unsigned made = made_.load(std::memory_order_acquire);
  for (unsigned k = 0; k < made; ++k) {
    if (k == tried) continue;
    int flags = static_cast<int>(MALLOCX_ARENA(je_shard_[k])) | MALLOCX_TCACHE_NONE | zero_flag;
    if (alignment > 1) flags |= MALLOCX_ALIGN(alignment);
    if (void *p = hetmem_je_mallocx(bytes, flags)) return p;
  }
  return nullptr;
}

void *tier_arena::allocate_zeroed(std::size_t bytes, std::size_t alignment) noexcept {
  if (bytes <= max_cached_bytes && alignment <= 16) {
    void *p = allocate(bytes, alignment);
    if (p) std::memset(p, 0, bytes);
    return p;
  }
  if (alignment > 1 && (alignment & (alignment - 1)) != 0) return allocate_slow(bytes, alignment);  // EINVAL
  return allocate_slow(bytes, alignment, MALLOCX_ZERO);
}

void *tier_arena::allocate_slow(std::size_t bytes, std::size_t alignment, int zero_flag) noexcept {
  if (bytes == 0) bytes = 1;
  if (alignment > 1 && (alignment & (alignment - 1)) != 0) {
    set_thread_error("%s: alignment %zu is not a power of two", state_->name, alignment);
    errno = EINVAL;
    return nullptr;
  }
  // Every thread gets its cache (and with it its shard) on its first allocation of any size.
  const arena_cache *own = nullptr;
  if (tl_state != tc_dead) {
    thread_cache *tc = tl_cache ? tl_cache : thread_cache_init();
    if (tc) {
      own = cache_of(tc, id_);
      if (!own) {
        if (!used_.load(std::memory_order_relaxed)) used_.store(true, std::memory_order_release);
        // Per-node shards: the shard of the node the thread runs on, when the tier has it.
        // Otherwise the least used shard (as jemalloc picks arenas): threads spread evenly,
        // and a thread that exits gives its place back.
        unsigned pick = 0, cpu = 0, node = UINT32_MAX;
        bool found = false;
        if (per_node_ && ::getcpu(&cpu, &node) == 0) {
          for (unsigned k = 0; k < shards_ && !found; ++k)
            if (shard_node_[k] == node) {
              pick = k;
              found = true;
            }
          if (!found && node < 64 && nearest_shard_[node] < shards_) {
            pick = nearest_shard_[node];
            found = true;
          }
        }
        if (found) {
          state_->shard_threads[pick].fetch_add(1, std::memory_order_relaxed);
        } else {
          pick = claim_least_used_shard();
        }
        if (const unsigned made = take_shard(pick); made != pick) {  // fewer shards could be made
          state_->shard_threads[pick].fetch_sub(1, std::memory_order_relaxed);
          state_->shard_threads[made].fetch_add(1, std::memory_order_relaxed);
          pick = made;
        }
        own = arena_cache_init(tc, id_, je_shard_[pick], pick);
      }
    }
    if (own && bytes <= max_cached_bytes && alignment <= 16 && zero_flag == 0) return allocate(bytes, alignment);
  }
  int flags = (own ? own->arena_flag : static_cast<int>(MALLOCX_ARENA(je_shard_[0]))) | MALLOCX_TCACHE_NONE | zero_flag;
  if (alignment > 1) flags |= MALLOCX_ALIGN(alignment);
  hook_reported = false;
  void *p = hetmem_je_mallocx(bytes, flags);
  if (!p && per_node_) p = other_nodes(bytes, alignment, own ? own->shard : 0, zero_flag);
  if (!p) {
    if (!hook_reported) set_thread_error("%s: jemalloc could not allocate %zu bytes", state_->name, bytes);
    errno = ENOMEM;
    return nullptr;
  }
  if (is_direct(id_)) return p;  // counted in jemalloc's books, its pages unmarked
  const auto usable = static_cast<std::int64_t>(mark(p));
  arena_cache *ac = tl_cache ? cache_of(tl_cache, id_) : nullptr;
  if (ac)
    bump(ac->allocated, usable);
  else
    count_uncached(usable);
  return p;
}

namespace {
// Records the size class of the object at `p` on its pages and returns its usable size. A
// large object gets 0 on its first page only, so that a page once part of a small slab never
// misleads a later free: marks are looked up only at the page a block starts on (free,
// usable_size, and refill's check of its objects' first pages), so its other pages' marks are
// never read while it lives, and whatever takes them after it marks its own first pages.
std::size_t mark(void *p) noexcept {
  const std::size_t usable = hetmem_je_sallocx(p, 0);
  if (usable <= max_cached_bytes)
    va_window::mark_pages(p, usable, static_cast<std::uint8_t>(class_of(usable) + 1));
  else
    va_window::mark_pages(p, 1, 0);  // only a block's first page is ever looked up (free, usable size)
  return usable;
}

// Returns `p` (of `usable` bytes, in arena `s`) to the calling thread's bin or to jemalloc.
[[gnu::noinline]] void release_uncached(tier_arena::state *s, void *p, std::size_t usable) noexcept;

// Same, for an object of cached class `c`.
[[gnu::always_inline]] inline void release_class(tier_arena::state *s, void *p, unsigned c) noexcept {
  thread_cache *tc = tl_cache;
  arena_cache *ac = tc ? cache_of(tc, s->arena_id) : nullptr;
  if (!ac) [[unlikely]] {
    release_uncached(s, p, classes.bytes[c]);
    return;
  }
  bin &b = ac->bins[c];
  std::uint32_t n = count_of(b);
  if (n == b.cap) [[unlikely]] {
    flush_bin(b, *ac, b.cap / 2, classes.bytes[c]);
    n = b.cap / 2;
  }
  b.stack[n] = p;
  set_count(b, n + 1);
}

[[gnu::always_inline]] inline void release(tier_arena::state *s, void *p, std::size_t usable) noexcept {
  if (usable <= max_cached_bytes) [[likely]] {
    release_class(s, p, fast_class_of(usable));
    return;
  }
  release_uncached(s, p, usable);
}

// Large objects, and threads without a cache (exited, or out of memory for one).
void release_uncached(tier_arena::state *s, void *p, std::size_t usable) noexcept {
  thread_cache *tc = tl_cache;
  arena_cache *ac = tc ? cache_of(tc, s->arena_id) : nullptr;
  hetmem_je_dallocx(p, MALLOCX_TCACHE_NONE);
  if (ac)
    bump(ac->allocated, -static_cast<std::int64_t>(usable));
  else
    s->arena->count_uncached(-static_cast<std::int64_t>(usable));
}
}  // namespace

namespace {
// The hot path of free: a small object of the tier arena this thread used last, into its bin
// (no call, no saved register). False when `p` is anything else, or that bin is full.
[[gnu::always_inline]] inline bool deallocate_to_last_bin(void *p) noexcept {
  std::uint8_t m = 0;
  if (const unsigned id = va_window::arena_and_mark(p, &m); id == tl_last_id && id != 0 && m != 0) [[likely]] {
    bin &b = tl_last_ac->bins[m - 1u];
    const std::uint32_t n = count_of(b);
    if (n != b.cap) [[likely]] {
      b.stack[n] = p;
      set_count(b, n + 1);
      return true;
    }
  }
  return false;
}

// Frees `p` if hetmem allocated it (a tier arena's or a reservation's) and says whether it did.
[[gnu::noinline]] bool deallocate_owned_slow(void *p) noexcept {
  std::uint8_t m = 0;
  if (const unsigned id = va_window::arena_and_mark(p, &m)) [[likely]] {
    if (is_direct(id)) {
      free_direct(p, id, 0);
      return true;
    }
    if (m) [[likely]] {
      // A small object of another tier arena than the last used, or its bin is full.
      release_class(static_cast<tier_arena::state *>(va_window::owner_of(p)), p, m - 1u);
      return true;
    }
    release(static_cast<tier_arena::state *>(va_window::owner_of(p)), p, hetmem_je_sallocx(p, 0));
    return true;
  }
  va_owner *o = va_window::owner_of(p);
  if (o && o->type == va_owner::kind::reservation) {
    reservation_deallocate(o, p);
    return true;
  }
  return false;
}

inline bool deallocate_owned(void *p) noexcept { return deallocate_to_last_bin(p) || deallocate_owned_slow(p); }

[[gnu::noinline]] void deallocate_slow(void *p) noexcept {
  if (!deallocate_owned_slow(p) && p) foreign_pointer(p);
}
}  // namespace

void tier_arena::deallocate(void *p) noexcept {
  if (deallocate_to_last_bin(p)) [[likely]]
    return;
  deallocate_slow(p);
}

bool tier_arena::is_direct_arena() const noexcept { return is_direct(id_); }

bool tier_arena::deallocate_if_owned(void *p) noexcept { return deallocate_owned(p); }

void *arena_allocate(tier_arena *a, std::size_t bytes, std::size_t alignment) noexcept {
  return a->allocate(bytes, alignment);
}

void *arena_allocate(tier_arena *a, std::size_t bytes) noexcept { return a->allocate_default(bytes); }

}  // namespace hetmem::detail

namespace hetmem {
void deallocate(void *p) noexcept { detail::tier_arena::deallocate(p); }
}  // namespace hetmem

namespace hetmem::detail {

void tier_arena::deallocate(void *p, std::size_t bytes, std::size_t alignment) noexcept {
  if (!p) return;
  va_owner *o = va_window::owner_of(p);
  if (!o || o->type != va_owner::kind::arena || alignment > 16 || bytes == 0 || bytes > max_cached_bytes) {
    deallocate(p);
    return;
  }
  // Allocated as max(bytes, alignment) (allocate() gives small aligned requests the class of the
  // alignment), so freed as that.
  if (bytes < alignment) bytes = alignment;
  auto *s = static_cast<state *>(o);
  if (is_direct(s->arena_id)) {
    free_direct(p, s->arena_id, bytes);
    return;
  }
  release(s, p, classes.bytes[fast_class_of(bytes)]);
}

void *tier_arena::reallocate(void *p, std::size_t bytes) noexcept {
  va_owner *o = va_window::owner_of(p);
  if (!o || o->type != va_owner::kind::arena) {
    errno = EINVAL;
    set_thread_error("reallocate of %p, which is not in a hetmem tier arena", p);
    return nullptr;
  }
  auto *s = static_cast<state *>(o);
  if (bytes == 0) bytes = 1;
  const bool direct = is_direct(s->arena_id);  // counted in jemalloc's books, its pages unmarked
  const auto before = direct ? 0 : static_cast<std::int64_t>(hetmem_je_sallocx(p, 0));
  arena_cache *ac = tl_cache ? cache_of(tl_cache, s->arena_id) : nullptr;
  tier_arena *a = s->arena;
  hook_reported = false;
  // A block that has to move goes to the calling thread's shard (its node, for per-node
  // tiers), then to the tier's other shards.
  const int own = ac ? ac->arena_flag : static_cast<int>(MALLOCX_ARENA(a->je_shard_[0]));
  void *q = hetmem_je_rallocx(p, bytes, own | MALLOCX_TCACHE_NONE);
  for (unsigned k = 0; !q && a->per_node_ && k < a->made_.load(std::memory_order_acquire); ++k)
    if (static_cast<int>(MALLOCX_ARENA(a->je_shard_[k])) != own)
      q = hetmem_je_rallocx(p, bytes, static_cast<int>(MALLOCX_ARENA(a->je_shard_[k])) | MALLOCX_TCACHE_NONE);
  if (!q) {
    if (!hook_reported) set_thread_error("%s: jemalloc could not reallocate to %zu bytes", s->name, bytes);
    errno = ENOMEM;
    return nullptr;
  }
  if (direct) return q;
  const auto delta = static_cast<std::int64_t>(mark(q)) - before;
  if (ac)
    bump(ac->allocated, delta);
  else
    s->arena->count_uncached(delta);
  return q;
}

void tier_arena::window_range(std::uintptr_t *base, std::size_t *bytes) noexcept {
  *base = 0;
  *bytes = 0;
  if (va_window *w = va_window::peek()) {
    *base = w->base();
    *bytes = w->total_bytes();
  }
}

std::size_t tier_arena::window_slot_bytes() noexcept {
  va_window *w = va_window::peek();
  return w->total_bytes() ? w->slot_bytes() : 0;
}

unsigned tier_arena::id_of(const void *p) noexcept {
  std::uint8_t m = 0;
  return va_window::arena_and_mark(p, &m);
}

std::size_t tier_arena::usable_size(const void *p) noexcept {
  std::uint8_t m = 0;
  const unsigned id = va_window::arena_and_mark(p, &m);
  if (id != 0 && m != 0 && !is_direct(id)) return classes.bytes[m - 1];  // a small object of a binned arena
  va_owner *o = va_window::owner_of(p);
  if (!o) return 0;
  if (o->type == va_owner::kind::reservation) return reservation_usable_size(o, p);
  return hetmem_je_sallocx(p, 0);
}

arena_counters tier_arena::counters() const noexcept {
  arena_counters c;
  static const bool statistics = [] {
    bool on = false;
    std::size_t len = sizeof on;
    return hetmem_je_mallctl("config.stats", &on, &len, nullptr, 0) == 0 && on;
  }();
  c.jemalloc_statistics = statistics;
  std::uint64_t epoch = 1;
  std::size_t sz = sizeof epoch;
  if (statistics) hetmem_je_mallctl("epoch", &epoch, &sz, &epoch, sz);
  char name[64];
  auto stat = [&](const char *what, unsigned je_arena) -> std::int64_t {
    if (!statistics) return 0;
    std::snprintf(name, sizeof name, "stats.arenas.%u.%s", je_arena, what);
    std::size_t v = 0, len = sizeof v;
    return hetmem_je_mallctl(name, &v, &len, nullptr, 0) == 0 ? static_cast<std::int64_t>(v) : 0;
  };
  std::int64_t allocated = 0, cached = 0;
  if (is_direct(id_)) {
    // The direct arena: jemalloc's own books (its automatic thread caches hold what threads
    // freed; they are jemalloc's, not hetmem's, so its statistics are the count).
    for (unsigned k = 0; k < made_.load(std::memory_order_acquire); ++k) {
      allocated += stat("small.allocated", je_shard_[k]) + stat("large.allocated", je_shard_[k]);
      cached += stat("tcache_bytes", je_shard_[k]);
    }
  } else {
    allocated = state_->retired_allocated.load(std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(registry_mutex);
    for (thread_cache *tc = registry; tc; tc = tc->next) {
      const arena_cache *ac = tc->arenas[id_].load(std::memory_order_acquire);
      if (!ac) continue;
      allocated += ac->allocated.load(std::memory_order_relaxed);
      for (unsigned k = 0; k < cached_classes; ++k)
        cached += static_cast<std::int64_t>(count_of(ac->bins[k])) * classes.bytes[k];
    }
  }
  allocated -= cached;  // the counts include what sits in the threads' caches
  c.allocated_bytes = allocated > 0 ? static_cast<std::uint64_t>(allocated) : 0;
  c.cached_bytes = cached > 0 ? static_cast<std::uint64_t>(cached) : 0;
  for (unsigned k = 0; k < (per_node_ ? shards_ : 1u); ++k) {
    c.mapped_bytes += shard_state_[k]->mapped.load(std::memory_order_relaxed);
    c.refused_extents += shard_state_[k]->refused.load(std::memory_order_relaxed);
    c.spilled_extents += shard_state_[k]->spilled.load(std::memory_order_relaxed);
  }
  for (unsigned k = 0; k < made_.load(std::memory_order_acquire); ++k)
    c.resident_bytes += static_cast<std::uint64_t>(stat("resident", je_shard_[k]));
  return c;
}

void tier_arena::count_uncached(std::int64_t bytes) noexcept {
  // Always on the first state: with per-node shards a block's own state may be another one,
  // and counters() reads this one.
  state_->retired_allocated.fetch_add(bytes, std::memory_order_relaxed);
}

void tier_arena::retire_thread(std::int64_t bytes, unsigned shard) noexcept {
  count_uncached(bytes);
  if (shard < max_shards) state_->shard_threads[shard].fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace hetmem::detail
