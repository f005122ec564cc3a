// hetmem/detail/site_registry.hpp — the allocator's own knowledge for automatic tiering: which
// call site allocated each large block that is alive, and what the tiering engine has learned
// about each site (hot, cold, not known yet).
//
// Contract:
// - The allocator side (record, forget, site_of, verdict_of) runs inside malloc and free: no
//   locks, no allocation, no system call, no exception. Any thread may call it at any time,
//   also in a child of fork().
// - create() maps the tables once (about 1.6 MiB of address space, pages touched as used) and
//   the registry lives as long as the process; nothing is ever unmapped.
// - Blocks are keyed by their start address in an open-addressing table of block_slots
//   entries; a block that finds no free entry within probe_limit is not recorded (untracked()
//   counts those; forget() of such a block finds nothing and returns 0). A block must be
//   forgotten before its memory can be handed out again (free calls forget first).
// - Sites are return addresses, numbered 1..site_slots in the order they are first seen; 0
//   means "no site" (the table is full), whose verdict is always unknown.
// - The engine side (for_each_block, for_each_freed, set_verdict, site_address) may run on
//   another thread concurrently with the allocator side: a block entry that changes while it
//   is read is skipped for that pass, never reported half-written.
// - forget() also notes the freed block's range in a ring of the latest freed_slots ones, so
//   that the engine knows the memory is free (jemalloc keeps it resident until it decays) and
//   does not promote it for the writes it had while alive; a ring that wraps between two reads
//   loses its oldest entries (for_each_freed says how many).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "hetmem/result.hpp"

namespace hetmem::detail {

class site_registry {
 public:
  enum class verdict : std::uint32_t { unknown = 0, hot = 1, cold = 2 };
  static constexpr std::size_t block_slots = std::size_t{1} << 16;
  static constexpr std::size_t site_slots = std::size_t{1} << 12;
  static constexpr unsigned probe_limit = 64;
  static constexpr std::size_t freed_slots = 256;

  // A registry for the whole process; ENOMEM (naming mmap's error) when the tables cannot be mapped.
  [[nodiscard]] static result<site_registry *> create();

  // The number of the site at `return_address`, entering it when new; 0 when the table is full.
  [[nodiscard]] unsigned site_of(const void *return_address) noexcept;
  [[nodiscard]] verdict verdict_of(unsigned site) const noexcept {
    if (site == 0 || site > site_slots) return verdict::unknown;
    return static_cast<verdict>(
        std::atomic_ref<std::uint32_t>(sites_[site - 1].verdict).load(std::memory_order_relaxed));
  }
  // Records the live block [block, block + bytes) as allocated at `site` (nothing for site 0);
  // false when it found no entry (counted in untracked()).
  bool record(const void *block, std::size_t bytes, unsigned site) noexcept;
  // Removes the block that starts at `block`: its site, or 0 when it was not recorded.
  unsigned forget(const void *block) noexcept;
  // Counts a block placed on the slow tier at allocation because its site is cold.
  void count_cold_placement(std::size_t bytes) noexcept {
    cold_placed_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    cold_placed_blocks_.fetch_add(1, std::memory_order_relaxed);
  }

  // The engine's side. f(start, bytes, site, serial) for each recorded block; `serial` numbers
  // the blocks in the order they were recorded (wrapping at 2^32), so that a block recorded at
  // the start of a freed one is not taken for it.
  template <class F>
  void for_each_block(F &&f) const {
    for (std::size_t i = 0; i < block_slots; ++i) {
      block_entry &e = blocks_[i];
      const std::uintptr_t key = std::atomic_ref<std::uintptr_t>(e.key).load(std::memory_order_acquire);
      if (key < first_key) continue;
      // A seqlock read without fences: the acquire loads keep the second look at the key after
      // them, and seeing a new size or site (stored with release after the writer claimed the
      // entry) means seeing the claim too, so the key reads differently.
      const std::uint64_t bytes = std::atomic_ref<std::uint64_t>(e.bytes).load(std::memory_order_acquire);
      const std::uint32_t site = std::atomic_ref<std::uint32_t>(e.site).load(std::memory_order_acquire);
      const std::uint32_t serial = std::atomic_ref<std::uint32_t>(e.serial).load(std::memory_order_acquire);
      if (std::atomic_ref<std::uintptr_t>(e.key).load(std::memory_order_relaxed) != key) continue;
      f(key, static_cast<std::size_t>(bytes), static_cast<unsigned>(site), serial);
    }
  }
  // f(start, bytes) for each block forgotten since `cursor` (0 at first; advanced past what was
  // read). The number of freed blocks that were lost to the ring's wrapping, or overwritten
  // while read, is returned.
  template <class F>
  std::uint64_t for_each_freed(std::uint64_t &cursor, F &&f) const {
    const std::uint64_t end = freed_count_.load(std::memory_order_acquire);
    std::uint64_t lost = 0;
    if (end - cursor > freed_slots) {
      lost = end - cursor - freed_slots;
      cursor = end - freed_slots;
    }
    for (; cursor != end; ++cursor) {
      freed_entry &e = freed_[cursor % freed_slots];
      // A seqlock read without fences (ThreadSanitizer has none), as for_each_block's: ticket
      // n + 1 is stored (release) after the entry of the n-th free; another free sets it to 0
      // before it stores a new range (release), so seeing a new start or size (acquire) means
      // seeing that 0 too, and the second look at the ticket reads differently.
      const std::uint64_t ticket = std::atomic_ref<std::uint64_t>(e.ticket).load(std::memory_order_acquire);
      const std::uintptr_t start = std::atomic_ref<std::uintptr_t>(e.start).load(std::memory_order_acquire);
      const std::uint64_t bytes = std::atomic_ref<std::uint64_t>(e.bytes).load(std::memory_order_acquire);
      if (ticket != cursor + 1 || std::atomic_ref<std::uint64_t>(e.ticket).load(std::memory_order_relaxed) != ticket) {
        ++lost;  // not written yet (its free is under way), or rewritten by a later one
        continue;
      }
      f(start, static_cast<std::size_t>(bytes));
    }
    return lost;
  }
  void set_verdict(unsigned site, verdict v) noexcept {
    if (site == 0 || site > site_slots) return;
    std::atomic_ref<std::uint32_t>(sites_[site - 1].verdict)
        .store(static_cast<std::uint32_t>(v), std::memory_order_relaxed);
  }
  [[nodiscard]] const void *site_address(unsigned site) const noexcept;
  [[nodiscard]] std::uint64_t untracked() const noexcept { return untracked_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t cold_placed_bytes() const noexcept {
    return cold_placed_bytes_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t cold_placed_blocks() const noexcept {
    return cold_placed_blocks_.load(std::memory_order_relaxed);
  }

  site_registry(const site_registry &) = delete;
  site_registry &operator=(const site_registry &) = delete;

 private:
  site_registry() = default;
  ~site_registry() = default;
  // Block keys: 0 never used, 1 freed (probing goes on past it), 2 being written, else the start.
  static constexpr std::uintptr_t empty_key = 0, freed_key = 1, writing_key = 2, first_key = 3;
  struct block_entry {
    std::uintptr_t key;
    std::uint64_t bytes;
    std::uint32_t site;
    std::uint32_t serial;
  };
  struct site_entry {
    std::uintptr_t address;  // 0: free
    std::uint32_t verdict;
    std::uint32_t unused;
  };
  struct freed_entry {
    std::uintptr_t start;
    std::uint64_t bytes;
    std::uint64_t ticket;  // n + 1 once the n-th freed block's range is written here; 0 while written
  };
  void note_freed(std::uintptr_t start, std::uint64_t bytes) noexcept;
  // The tables live in the mapping right after the object (not constructed: zero pages are
  // empty entries), so that create() touches none of them.
  block_entry *blocks_ = nullptr;
  site_entry *sites_ = nullptr;
  freed_entry *freed_ = nullptr;
  std::atomic<std::uint64_t> freed_count_{0};
  std::atomic<std::uint64_t> untracked_{0};
  std::atomic<std::uint32_t> serial_{0};
  std::atomic<std::uint64_t> cold_placed_bytes_{0}, cold_placed_blocks_{0};
};

}  // namespace hetmem::detail
