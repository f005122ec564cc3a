// hetmem/reservation.hpp — capacity set aside on a tier for allocations that must not fail.
//
// Contract:
// - create() maps `bytes` on the tier, places them (the tier's placement), and faults every
//   page in before it returns (MADV_POPULATE_WRITE), after checking that the tier's nodes have
//   that much available: a reservation that cannot be had fails at creation with ENOMEM and a
//   message naming the tier, never later.
// - Only allocations made through the reservation use its memory; nothing else can take it.
//   allocate() fails (nullptr, ENOMEM) only when the reservation itself is used up.
// - hetmem::deallocate(), hetmem::tier_of() and hetmem::usable_size() accept its pointers.
// - Destroying it returns the memory to the system at once. Its allocations must be freed
//   first: any still live become invalid.
// - A simple first-fit allocator with coalescing under a mutex: built for a modest number of
//   critical blocks, not for a hot path. 16 bytes of header per block.
#pragma once

#include <cstddef>
#include <memory>

#include "hetmem/result.hpp"
#include "hetmem/tier.hpp"

namespace hetmem {

class reservation {
 public:
  [[nodiscard]] static result<std::unique_ptr<reservation>> create(const tier &t, std::size_t bytes);
  ~reservation();
  reservation(const reservation &) = delete;
  reservation &operator=(const reservation &) = delete;

  [[nodiscard]] void *allocate(std::size_t bytes, std::size_t alignment = 0) noexcept;
  [[nodiscard]] result<void *> try_allocate(std::size_t bytes, std::size_t alignment = 0);
  void deallocate(void *p) noexcept;

  [[nodiscard]] const tier &get_tier() const noexcept;
  [[nodiscard]] std::size_t capacity() const noexcept;         // bytes set aside (page multiple)
  [[nodiscard]] std::size_t allocated_bytes() const noexcept;  // in live blocks, headers included
  [[nodiscard]] std::size_t largest_free_block() const noexcept;
  [[nodiscard]] void *base() const noexcept;  // where the reserved memory starts (for where())

  struct state;

 private:
  explicit reservation(state *s) noexcept : s_(s) {}
  state *s_;
};

}  // namespace hetmem
