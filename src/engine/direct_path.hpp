// direct_path.hpp — the direct arena's malloc and free fast paths, small enough to be inlined
// into the preload's malloc and free (engine-private: the preload includes it; not installed).
//
// Contract:
// - The direct arena is the tier arena served by jemalloc's own thread caches
//   (tier_arena::use_thread_tcache); `arena_id` holds its id (0 while there is none).
// - The fast paths are off until the owner of the policy (the preload) calls enable(), which
//   it does only when every unaligned request goes first to the direct arena and nothing is
//   counted per block (policy_runtime::direct_first), before anything is allocated there. It
//   enables free's fast path alone (mode_free), or malloc's too (mode_all) when the direct arena
//   places its extents on the policy's later tiers itself once its own nodes pass their fill
//   limit (tier_arena::overflow_to): then a failure of jemalloc's malloc there is final, and
//   malloc needs no fallback of its own (it hands the request to jemalloc as a tail call).
// - A thread is bound to the direct arena (jemalloc's thread.arena) the first time it
//   allocates there through tier_arena; when the fast paths are enabled by then, `thread_mode`
//   is the enabled mode from that moment until the thread's cache is torn down at its exit (0
//   before and after). Everything here is only a shortcut for such a thread: the caller takes
//   the full path otherwise (which binds the thread, falls back to the tier's other nodes and
//   the chain's next tiers, or reports why it failed).
// - allocate(n), for a thread in mode_all: jemalloc's malloc on the direct arena; nullptr (errno
//   ENOMEM, the engine's thread error naming the tier and the cause) only when the direct arena
//   and every overflow target refused: what the full path would answer too.
// - The span [span_begin, span_begin + span_bytes) is address space the direct arena owns for
//   good: its first run of window slots, grown by every run it claims right after it
//   (note_run, called as the arena claims runs). Tier arenas never give their runs back, so a
//   pointer inside the span is always the direct arena's; a block of the direct arena outside
//   the span (a run that did not follow on) is still freed correctly, by the full path.
//   The span is published (span_bytes non-zero) only once enable() has run: before that, and
//   for policies that count bytes per block (no enable()), every free takes the full path.
//   span_begin is written once, before span_bytes is first made non-zero (release), and read
//   after it (acquire): a reader never pairs a non-zero length with a stale start.
// - try_free(p): when `p` lies in the span, frees it through jemalloc's free on any thread
//   (into the thread's automatic cache: only the direct arena's blocks ever enter those, and a
//   cache flushes each block to the arena that owns it; jemalloc has one automatic arena
//   for its bookkeeping, so a thread never bound costs no arena of its own); false (p untouched)
//   otherwise, nullptr included. No thread-local is read: free's fast path is two loads, a
//   subtraction and a compare.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>

extern "C" {
// jemalloc's functions (the hetmem_je_ prefix), as its own header declares them.
void *hetmem_je_malloc(std::size_t size) noexcept;
void *hetmem_je_calloc(std::size_t count, std::size_t size) noexcept;
void *hetmem_je_realloc(void *p, std::size_t size) noexcept;
void *hetmem_je_mallocx(std::size_t size, int flags) noexcept;
void *hetmem_je_rallocx(void *p, std::size_t size, int flags) noexcept;
void hetmem_je_free(void *p) noexcept;
}

namespace hetmem::detail::direct_path {

// MALLOCX_TCACHE_NONE, as jemalloc's header defines it (not included here).
constexpr int tcache_none = 1 << 8;

// What the fast paths serve: nothing, free only, or malloc and free.
enum : unsigned char { mode_off = 0, mode_free = 1, mode_all = 2 };

extern constinit std::atomic<unsigned> arena_id;
extern constinit std::atomic<unsigned char> enabled_mode;
[[gnu::tls_model("initial-exec")]] extern constinit thread_local unsigned char thread_mode;

// Hidden: loaded straight, not through the GOT (the engine is linked statically into each
// library that uses it).
[[gnu::visibility("hidden")]] extern constinit std::atomic<std::size_t> span_bytes;
[[gnu::visibility("hidden")]] extern constinit std::atomic<std::uintptr_t> span_begin;

// Turns the fast paths on and publishes the span. `with_malloc`: the direct arena overflows to
// the policy's later tiers by itself (mode_all); otherwise only free's fast path is taken
// (mode_free).
void enable(bool with_malloc) noexcept;

// Records that the direct arena claimed the run [start, start + bytes) of the window; the span
// grows when the run follows it. Thread-safe (the arena's shards claim runs concurrently).
void note_run(std::uintptr_t start, std::size_t bytes) noexcept;

[[gnu::always_inline]] inline void *allocate(std::size_t bytes) noexcept { return hetmem_je_malloc(bytes); }

// For a thread in mode_all, like allocate(), through jemalloc's other entry points, whose
// answers are just as final (the thread is bound to the direct arena, so jemalloc serves them
// there, through the thread's automatic cache):
// - allocate_zeroed(n): calloc's block of n bytes. jemalloc knows which extents are fresh from
//   the kernel (the extent hooks report them zeroed, and again once purged) and clears only
//   memory used before.
// - allocate_aligned(n, a): `a` a power of two; n == 0 is taken as 1 (mallocx needs a size).
//   nullptr with errno ENOMEM (mallocx itself leaves errno alone).
// - reallocate(p, n): p in the span, n > 0; in place when it can, else moved within the direct
//   arena; nullptr with errno ENOMEM and p untouched when not.
[[gnu::always_inline]] inline void *allocate_zeroed(std::size_t bytes) noexcept { return hetmem_je_calloc(1, bytes); }
inline void *allocate_aligned(std::size_t bytes, std::size_t alignment) noexcept {
  // MALLOCX_ALIGN(a) is log2(a) in the low bits (jemalloc's own macro, without its header).
  void *p = hetmem_je_mallocx(bytes ? bytes : 1, static_cast<int>(__builtin_ctzll(alignment)));
  if (!p) [[unlikely]]
    errno = ENOMEM;
  return p;
}
inline void *reallocate(void *p, std::size_t bytes) noexcept {
  // Small sizes: jemalloc's realloc through the thread's cache, as jemalloc itself does. Larger
  // ones bypass the cache (rallocx, in place where the extent can grow), as the full path does.
  // Measured on hetmem_bench_preload: without the cache, small-realloc took twice jemalloc's time;
  // keeping the size class or freeing the old block past the cache, 1.3x; through the cache,
  // jemalloc's time, and realloc-growth jemalloc's memory too (the old path's was half of it).
  constexpr std::size_t cached_max = std::size_t{32} * 1024;  // jemalloc's default tcache_max
  void *q = bytes <= cached_max ? hetmem_je_realloc(p, bytes) : hetmem_je_rallocx(p, bytes, tcache_none);
  if (!q) [[unlikely]]
    errno = ENOMEM;  // jemalloc's realloc leaves errno alone when the size is past its largest class
  return q;
}

// Whether `p` lies in the span: a subtraction and a compare (the window's slot table is not read).
[[gnu::always_inline]] inline bool in_span(const void *p) noexcept {
  const std::size_t len = span_bytes.load(std::memory_order_acquire);
  return reinterpret_cast<std::uintptr_t>(p) - span_begin.load(std::memory_order_relaxed) < len;
}

[[gnu::always_inline]] inline bool try_free(void *p) noexcept {
  if (in_span(p)) [[likely]] {
    hetmem_je_free(p);
    return true;
  }
  return false;
}

}  // namespace hetmem::detail::direct_path
