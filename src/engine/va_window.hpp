// va_window.hpp — one reserved range of address space, cut into equal slots, each slot owned by
// one tier arena or reservation. Pointer -> owner is a subtraction, a shift and a load: this is
// what makes tier_of(ptr) O(1) and lets the allocator tell its own pointers from anyone else's.
//
// Contract:
// - The window is reserved (PROT_NONE, MAP_NORESERVE: no memory, no commit charge) on first
//   use, as large as the process allows: 32 TiB, halving down to 16 GiB (sanitizers and
//   RLIMIT_AS leave less room).
// - Owners take runs of consecutive slots and map memory inside them with MAP_FIXED; slots are
//   never shared between owners. Giving a run back re-reserves it as PROT_NONE.
// - Lookups are lock-free and allocation-free; claiming and releasing take a mutex.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace hetmem::detail {

struct va_owner {
  enum class kind : std::uint8_t { arena, reservation };
  kind type;
  std::uint32_t arena_id = 0;  // a tier arena's id (copied into its slots), 0 for others
};

class va_window {
 public:
  static constexpr unsigned slots = 256;

  // The window, reserving it on first call; nullptr (errno set) when no range could be reserved.
  static va_window *get() noexcept;
  // The window without reserving it: its base and size are 0 until get() reserved it.
  static va_window *peek() noexcept { return &instance_; }
  // fork(): the window's mutex is held across it (taken after the arenas' grow mutexes).
  static void lock_for_fork() noexcept;
  static void unlock_after_fork() noexcept;

  // The owner of the slot holding `p`, or nullptr when `p` is outside the window or unowned.
  [[nodiscard]] static va_owner *owner_of(const void *p) noexcept {
    va_window *w = &instance_;
    const std::uintptr_t d = reinterpret_cast<std::uintptr_t>(p) - w->base_;
    if (d >= w->total_.load(std::memory_order_acquire)) return nullptr;  // 0 until reserved
    return w->slots_[d >> w->shift_].owner.load(std::memory_order_acquire);
  }

  // The free path's lookup, one cache line: the tier arena owning `p` (its id; 0 when `p` is
  // outside the window, unowned or a reservation's) and the mark of its page.
  [[nodiscard]] static unsigned arena_and_mark(const void *p, std::uint8_t *mark) noexcept {
    va_window *w = &instance_;
    const std::uintptr_t d = reinterpret_cast<std::uintptr_t>(p) - w->base_;
    if (d >= w->total_.load(std::memory_order_acquire)) return 0;
    const slot_entry &e = w->slots_[d >> w->shift_];
    const unsigned id = e.arena_id.load(std::memory_order_acquire);
    if (id) *mark = load_mark(w->marks_ + (d >> page_shift));
    return id;
  }

  // One byte per 4 KiB page of each owned slot, for the owner's own use (the tier arenas keep
  // the size class of the small-object slab on each page there, so that free() needs no
  // jemalloc lookup). Zero until set. Only for pointers inside an owned slot. Marks are read
  // and written as relaxed atomics (plain byte moves on x86): threads that take objects of one
  // fresh slab each mark its pages with the same value while others free objects there.
  static constexpr unsigned page_shift = 12;
  [[nodiscard]] static std::uint8_t load_mark(const std::uint8_t *m) noexcept {
    return __atomic_load_n(m, __ATOMIC_RELAXED);
  }
  [[nodiscard]] static std::uint8_t page_mark(const void *p) noexcept {
    va_window *w = &instance_;
    const std::uintptr_t d = reinterpret_cast<std::uintptr_t>(p) - w->base_;
    return load_mark(w->slots_[d >> w->shift_].marks + ((d & ((std::uintptr_t{1} << w->shift_) - 1)) >> page_shift));
  }
  // Sets the mark of every page [p, p+bytes) touches.
  static void mark_pages(const void *p, std::size_t bytes, std::uint8_t mark) noexcept;

  // Claims the fewest consecutive free slots covering `bytes` for `owner`; returns the start of
  // the run (slot aligned) and its length in `run_bytes`, or nullptr when no run is free.
  void *claim(va_owner *owner, std::size_t bytes, std::size_t *run_bytes) noexcept;
  // Gives back a run from claim(): its memory is dropped and the slots become free. Only
  // reservations do: tier arenas keep their runs for good, which the preload's direct path
  // relies on (direct_path.hpp: a pointer in the direct arena's span is always its own).
  void release(void *start, std::size_t run_bytes) noexcept;

  [[nodiscard]] std::size_t slot_bytes() const noexcept { return std::size_t{1} << shift_; }
  [[nodiscard]] std::uintptr_t base() const noexcept { return base_; }
  [[nodiscard]] std::size_t total_bytes() const noexcept { return total_.load(std::memory_order_relaxed); }
  [[nodiscard]] unsigned free_slots() const noexcept;

 private:
  constexpr va_window() = default;
  bool reserve() noexcept;

  struct slot_entry {
    std::atomic<va_owner *> owner{nullptr};
    std::atomic<std::uint32_t> arena_id{0};
    std::uint8_t *marks = nullptr;  // its part of marks_, mapped when the slot is first claimed
  };
  std::uintptr_t base_ = 0;
  std::uint8_t *marks_ = nullptr;      // one byte per page of the window (reserved with it)
  std::atomic<std::size_t> total_{0};  // published last: lookups need no other flag
  unsigned shift_ = 0;
  slot_entry slots_[slots] = {};

  static va_window instance_;
};

}  // namespace hetmem::detail
