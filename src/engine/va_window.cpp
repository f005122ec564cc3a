#include "va_window.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <mutex>

#include "hetmem/detail/os.hpp"

namespace hetmem::detail {

constinit va_window va_window::instance_;

namespace {
constinit std::mutex window_mutex;  // guards reservation and slot ownership changes
constexpr int reserve_flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
}  // namespace

void va_window::lock_for_fork() noexcept { window_mutex.lock(); }
void va_window::unlock_after_fork() noexcept { window_mutex.unlock(); }

bool va_window::reserve() noexcept {
  // Largest first; each attempt is a PROT_NONE mapping, which costs neither memory nor commit.
  for (unsigned lg = 45; lg >= 34; --lg) {
    const std::size_t total = std::size_t{1} << lg;
    const std::size_t slot = total / slots;
    void *p = os().mmap(nullptr, total + slot, PROT_NONE, reserve_flags, -1, 0);
    if (p == MAP_FAILED) continue;
    // Align the window to a slot so every slot starts on a huge-page (and larger) boundary.
    const auto raw = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t aligned = (raw + slot - 1) & ~(slot - 1);
    if (aligned > raw) os().munmap(p, aligned - raw);
    const std::uintptr_t end = raw + total + slot;
    if (end > aligned + total) os().munmap(reinterpret_cast<void *>(aligned + total), end - (aligned + total));
    // The page marks: one byte per page of the window, in one range reserved as the window is,
    // so that a mark's address is computed from the pointer alone (free() reads it in parallel
    // with the slot's owner instead of after it). A slot's part is mapped when it is claimed.
    void *m = os().mmap(nullptr, total >> page_shift, PROT_NONE, reserve_flags, -1, 0);
    if (m == MAP_FAILED) {
      os().munmap(reinterpret_cast<void *>(aligned), total);
      continue;
    }
    marks_ = static_cast<std::uint8_t *>(m);
    base_ = aligned;
    shift_ = static_cast<unsigned>(std::countr_zero(slot));
    total_.store(total, std::memory_order_release);
    return true;
  }
  errno = ENOMEM;
  return false;
}

va_window *va_window::get() noexcept {
  // total_ is published last by reserve(): non-zero means the window is there.
  if (instance_.total_.load(std::memory_order_acquire) != 0) return &instance_;
  std::lock_guard<std::mutex> lock(window_mutex);
  if (instance_.total_.load(std::memory_order_relaxed) != 0) return &instance_;
  return instance_.reserve() ? &instance_ : nullptr;
}

void *va_window::claim(va_owner *owner, std::size_t bytes, std::size_t *run_bytes) noexcept {
  const std::size_t slot = slot_bytes();
  if (bytes == 0) bytes = 1;
  if (bytes > total_.load(std::memory_order_relaxed)) return nullptr;
  const std::size_t want = (bytes + slot - 1) / slot;
  std::lock_guard<std::mutex> lock(window_mutex);
  for (std::size_t first = 0; first + want <= slots;) {
    std::size_t n = 0;
    while (n < want && slots_[first + n].owner.load(std::memory_order_relaxed) == nullptr) ++n;
    if (n == want) {
      const std::size_t mark_bytes = slot >> page_shift;
      for (std::size_t i = 0; i < want; ++i) {
        if (slots_[first + i].marks == nullptr) {
          std::uint8_t *at = marks_ + (first + i) * mark_bytes;
          void *m = os().mmap(at, mark_bytes, PROT_READ | PROT_WRITE, reserve_flags | MAP_FIXED, -1, 0);
          if (m == MAP_FAILED) return nullptr;
          slots_[first + i].marks = at;
        }
      }
      for (std::size_t i = 0; i < want; ++i) {
        slots_[first + i].arena_id.store(owner->arena_id, std::memory_order_release);
        slots_[first + i].owner.store(owner, std::memory_order_release);
      }
      *run_bytes = want * slot;
      return reinterpret_cast<void *>(base_ + first * slot);
    }
    first += n + 1;
  }
  return nullptr;
}

void va_window::release(void *start, std::size_t run_bytes) noexcept {
  // Drop the memory but keep the range reserved, so nobody else's mmap lands in the window.
  os().mmap(start, run_bytes, PROT_NONE, reserve_flags | MAP_FIXED, -1, 0);
  const std::size_t first = (reinterpret_cast<std::uintptr_t>(start) - base_) >> shift_;
  const std::size_t n = run_bytes >> shift_;
  std::lock_guard<std::mutex> lock(window_mutex);
  for (std::size_t i = 0; i < n && first + i < slots; ++i) {
    slots_[first + i].owner.store(nullptr, std::memory_order_release);
    slots_[first + i].arena_id.store(0, std::memory_order_release);
    if (slots_[first + i].marks)
      os().madvise(slots_[first + i].marks, slot_bytes() >> page_shift, MADV_DONTNEED);  // all zero
  }
}

void va_window::mark_pages(const void *p, std::size_t bytes, std::uint8_t mark) noexcept {
  va_window *w = &instance_;
  std::uintptr_t d = reinterpret_cast<std::uintptr_t>(p) - w->base_;
  const std::uintptr_t last = d + (bytes ? bytes - 1 : 0);
  const std::uintptr_t slot_mask = (std::uintptr_t{1} << w->shift_) - 1;
  // Per slot the range touches: the marks of consecutive pages are consecutive bytes (stored
  // one by one as relaxed atomics, see load_mark).
  while (true) {
    const std::uintptr_t slot = d >> w->shift_;
    const std::uintptr_t slot_last = std::min(last, (slot << w->shift_) | slot_mask);
    const std::uintptr_t first_page = (d & slot_mask) >> page_shift, last_page = (slot_last & slot_mask) >> page_shift;
    for (std::uintptr_t page = first_page; page <= last_page; ++page)
      __atomic_store_n(w->slots_[slot].marks + page, mark, __ATOMIC_RELAXED);
    if (slot_last == last) break;
    d = slot_last + 1;
  }
}

unsigned va_window::free_slots() const noexcept {
  unsigned n = 0;
  for (const auto &e : slots_) n += e.owner.load(std::memory_order_relaxed) == nullptr ? 1u : 0u;
  return n;
}

}  // namespace hetmem::detail
