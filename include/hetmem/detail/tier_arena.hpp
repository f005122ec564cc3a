// hetmem/detail/tier_arena.hpp — the allocation engine's unit: one jemalloc arena (privately
// namespaced) whose memory comes from hetmem::map_anonymous + hetmem::place, so every extent
// it hands out is placed by the kernel as `placement` says.
//
// Contract:
// - allocate() returns nullptr (errno = ENOMEM) when jemalloc cannot get memory under the
//   placement; last_error() then names the cause (the mbind that failed, the node not allowed).
// - deallocate() takes pointers from this arena only.
// - Not yet: per-tier thread caches (allocations bypass jemalloc's tcache, so tiers never mix
//   but small allocations are slower), O(1) pointer-to-tier, statistics. See the issue notes.
// - Extent hooks run under jemalloc's locks and allocate nothing from jemalloc; they do use
//   the system allocator on their error path (to be removed before the preload uses them).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "hetmem/placement.hpp"
#include "hetmem/result.hpp"

namespace hetmem::detail {

class tier_arena {
 public:
  static result<std::unique_ptr<tier_arena>> create(const placement &where);
  ~tier_arena();
  tier_arena(const tier_arena &) = delete;
  tier_arena &operator=(const tier_arena &) = delete;

  [[nodiscard]] void *allocate(std::size_t bytes, std::size_t alignment = 0) noexcept;
  void deallocate(void *p) noexcept;
  [[nodiscard]] std::size_t usable_size(const void *p) const noexcept;
  [[nodiscard]] unsigned arena_index() const noexcept { return index_; }
  [[nodiscard]] const placement &where() const noexcept { return where_; }
  // Why the last extent allocation failed ("" if none has).
  [[nodiscard]] std::string last_error() const;

  struct hooks_block;  // jemalloc's extent_hooks_t followed by a back pointer

 private:
  explicit tier_arena(const placement &where);
  placement where_;
  unsigned index_ = 0;
  std::unique_ptr<hooks_block> hooks_;
  char last_error_[256] = {};

  friend struct tier_arena_hooks;
};

}  // namespace hetmem::detail
