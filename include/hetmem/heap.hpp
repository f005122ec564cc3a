// hetmem/heap.hpp — allocate on a chosen tier: make a heap on a tier (hetmem/tier.hpp), and use
// it directly, as a std::pmr::memory_resource, through hetmem::allocator<T>, or through an
// owning hetmem::buffer (hetmem/buffer.hpp).
//
// Contract:
// - Every heap says what happens when its tier is full (heap_options): on_full::fail returns
//   nullptr / an ENOMEM error naming the exhausted tier; on_full::next_tier moves on to the
//   next tier in the initiator's order (tier::next). A fill limit (watermark) makes a tier
//   count as full once its nodes are that many percent in use; it applies to every tier of the
//   chain but the last.
// - With on_full::next_tier a bind tier is placed "preferred" (preferred-many for several
//   nodes): the kernel may put a page elsewhere rather than invoke the OOM killer when the
//   node fills between hetmem's check and the page fault. where() tells the truth per page.
// - heap::allocate() is noexcept and returns nullptr (errno ENOMEM, or EINVAL for a bad
//   alignment); hetmem::last_error() then names the tier(s) and the cause. try_allocate()
//   returns a result carrying the same message. memory_resource and allocator<T> throw
//   std::bad_alloc, as the standard requires.
// - Memory comes from process-wide tier arenas that outlive heaps: hetmem::deallocate(p) frees
//   any hetmem pointer, from any thread, with or without its heap. Heaps are thread-safe.
// - tier_of(p) is O(1) and allocation-free.
//
//   auto topo = hetmem::load_topology();
//   auto hbm  = hetmem::tier_by_kind(*topo, hetmem::memory_kind::hbm);   // local HBM of this thread
//   auto heap = hetmem::heap::create(*hbm, {.when_full = hetmem::on_full::next_tier});
//   std::vector<double, hetmem::allocator<double>> v(hetmem::allocator<double>(**heap));
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include "hetmem/placement.hpp"
#include "hetmem/result.hpp"
#include "hetmem/tier.hpp"
#include "hetmem/topology.hpp"

namespace hetmem {

namespace detail {
class tier_arena;
[[nodiscard]] void *arena_allocate(tier_arena *a, std::size_t bytes, std::size_t alignment) noexcept;
[[nodiscard]] void *arena_allocate(tier_arena *a, std::size_t bytes) noexcept;  // default alignment
}  // namespace detail

enum class on_full {
  fail,       // strict: ENOMEM, and the error names the exhausted tier
  next_tier,  // preferred: the next tier by rank for the initiator the tier was chosen for
};

struct heap_options {
  on_full when_full = on_full::fail;
  unsigned fill_limit_percent = 100;  // watermark (1-100): a tier this full takes no new memory
};

// What a tier holds and has left. Counts are per tier arena: heaps on the same tier with the
// same placement and fill limit share one.
struct tier_stats {
  std::string tier;
  unsigned fill_limit_percent = 100;
  std::uint64_t allocated_bytes = 0;  // handed out and not yet freed (usable sizes)
  std::uint64_t cached_bytes = 0;     // freed, held in thread caches for reuse
  std::uint64_t mapped_bytes = 0;     // placed address space obtained from the kernel
  std::uint64_t resident_bytes = 0;   // jemalloc's count of resident pages (data + metadata)
  std::uint64_t refused_extents = 0;  // growth refused (fill limit, failed mbind)
  // The tier's nodes as the kernel reports them now (node meminfo); 0 when unreadable.
  std::uint64_t capacity_bytes = 0;
  std::uint64_t free_bytes = 0;
  std::uint64_t available_bytes = 0;  // free + inactive file + reclaimable slab
};

class heap {
 public:
  [[nodiscard]] static result<std::unique_ptr<heap>> create(const tier &t, heap_options options = {});
  ~heap();
  heap(const heap &) = delete;
  heap &operator=(const heap &) = delete;

  [[nodiscard]] void *allocate(std::size_t bytes, std::size_t alignment = 0) noexcept {
    void *p =
        alignment == 0 ? detail::arena_allocate(chain_[0], bytes) : detail::arena_allocate(chain_[0], bytes, alignment);
    if (p || chain_len_ == 1) [[likely]]
      return p;
    return allocate_fallback(bytes, alignment);
  }
  [[nodiscard]] result<void *> try_allocate(std::size_t bytes, std::size_t alignment = 0);
  // Zeroed memory for n * size bytes (overflow-checked).
  [[nodiscard]] void *allocate_zeroed(std::size_t n, std::size_t size) noexcept;
  // Resizes within the tier the pointer is on; nullptr (p untouched) on failure.
  [[nodiscard]] void *reallocate(void *p, std::size_t bytes) noexcept;
  void deallocate(void *p) noexcept;
  void deallocate(void *p, std::size_t bytes, std::size_t alignment) noexcept;

  [[nodiscard]] const tier &get_tier() const noexcept { return tier_; }
  [[nodiscard]] const heap_options &options() const noexcept { return options_; }
  // The tiers this heap may use, in order (the first is get_tier()).
  [[nodiscard]] std::vector<std::string> chain() const;
  // Statistics of each tier in chain(), in order.
  [[nodiscard]] std::vector<tier_stats> stats() const;
  // Allocations that went to a later tier because an earlier one was full.
  [[nodiscard]] std::uint64_t fallbacks() const noexcept { return fallbacks_.load(std::memory_order_relaxed); }

 private:
  heap() = default;
  void *allocate_fallback(std::size_t bytes, std::size_t alignment, bool zeroed = false) noexcept;
  static constexpr unsigned max_chain = 8;
  tier tier_;
  heap_options options_;
  detail::tier_arena *chain_[max_chain] = {};
  unsigned chain_len_ = 0;
  std::atomic<std::uint64_t> fallbacks_{0};
};

// Frees memory from any hetmem heap or reservation; nullptr is ignored. A pointer hetmem did
// not allocate is ignored too (and reported once on stderr): never a crash, never corruption.
void deallocate(void *p) noexcept;
// The tier `p` was allocated on (by hetmem's bookkeeping; where() asks the kernel), or nullptr
// when hetmem did not allocate it. O(1).
[[nodiscard]] const tier *tier_of(const void *p) noexcept;
// Usable bytes at `p` (0 if hetmem did not allocate it).
[[nodiscard]] std::size_t usable_size(const void *p) noexcept;
// The calling thread's message about its last failed allocation ("" if none).
[[nodiscard]] const char *last_error() noexcept;
// Statistics of one tier (its arena with the given fill limit, if it has one yet).
[[nodiscard]] tier_stats stats_of(const tier &t, unsigned fill_limit_percent = 100);

// A std::pmr::memory_resource on a heap (which must outlive it).
class memory_resource final : public std::pmr::memory_resource {
 public:
  explicit memory_resource(heap &h) noexcept : heap_(&h) {}
  [[nodiscard]] heap &get_heap() const noexcept { return *heap_; }

 private:
  void *do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void *p, std::size_t bytes, std::size_t alignment) override;
  [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource &other) const noexcept override;
  heap *heap_;
};

// A standard allocator on a heap (which must outlive the containers using it).
template <class T>
class allocator {
 public:
  using value_type = T;
  explicit allocator(heap &h) noexcept : heap_(&h) {}
  template <class U>
  allocator(const allocator<U> &other) noexcept : heap_(&other.get_heap()) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] T *allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    void *p = heap_->allocate(n * sizeof(T), alignof(T));
    if (!p) throw std::bad_alloc();
    return static_cast<T *>(p);
  }
  void deallocate(T *p, std::size_t n) noexcept { heap_->deallocate(p, n * sizeof(T), alignof(T)); }
  [[nodiscard]] heap &get_heap() const noexcept { return *heap_; }

  template <class U>
  friend bool operator==(const allocator &a, const allocator<U> &b) noexcept {
    return &a.get_heap() == &b.get_heap();
  }

 private:
  heap *heap_;
};

}  // namespace hetmem
