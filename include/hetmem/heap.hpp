// hetmem/heap.hpp — allocate on a chosen tier: pick a tier from the topology, make a heap on
// it, and use it directly, as a std::pmr::memory_resource, or through hetmem::allocator<T>.
//
// Contract:
// - A tier is a set of nodes and a placement (bind by default: strict). Choosing one never
//   guesses: when no node matches, the error says what was asked and what the machine has.
// - heap::allocate() is noexcept and returns nullptr (errno ENOMEM) on failure; try_allocate()
//   returns a result whose error names the tier and the cause. memory_resource and allocator<T>
//   throw std::bad_alloc, as the standard requires.
// - A heap must outlive its allocations. Heaps are thread-safe.
//
//   auto topo = hetmem::load_topology();
//   auto hbm  = hetmem::tier_by_kind(*topo, hetmem::memory_kind::hbm);   // local HBM of this thread
//   auto heap = hetmem::heap::create(*hbm);
//   std::vector<double, hetmem::allocator<double>> v(hetmem::allocator<double>(**heap));
#pragma once

#include <cstddef>
#include <memory>
#include <memory_resource>
#include <new>
#include <string>

#include "hetmem/placement.hpp"
#include "hetmem/result.hpp"
#include "hetmem/topology.hpp"

namespace hetmem {

struct tier {
  std::string name;  // "HBM (nodes 2)", "rank 1 for node 0 (nodes 0)", ...
  memory_kind kind = memory_kind::unknown;
  placement where;  // mode bind over the tier's nodes unless changed
};

// The nodes of `kind` best placed for `from` (default: the calling thread's initiator, else the
// first): the first tier group of that kind in `from`'s order (local before remote).
[[nodiscard]] result<tier> tier_by_kind(const topology &t, memory_kind kind, const initiator_view *from = nullptr);
// Rank `rank` (0 = best) in `from`'s tier order.
[[nodiscard]] result<tier> tier_by_rank(const topology &t, std::uint32_t rank, const initiator_view *from = nullptr);
// The kind with the most capacity (all its nodes).
[[nodiscard]] result<tier> largest_tier(const topology &t);
// Exactly these nodes (must be memory nodes of `t`).
[[nodiscard]] result<tier> tier_of_nodes(const topology &t, const node_set &nodes);

namespace detail {
class tier_arena;
}

class heap {
 public:
  [[nodiscard]] static result<std::unique_ptr<heap>> create(const tier &t);
  ~heap();
  heap(const heap &) = delete;
  heap &operator=(const heap &) = delete;

  [[nodiscard]] void *allocate(std::size_t bytes, std::size_t alignment = 0) noexcept;
  [[nodiscard]] result<void *> try_allocate(std::size_t bytes, std::size_t alignment = 0);
  void deallocate(void *p) noexcept;
  [[nodiscard]] const tier &get_tier() const noexcept { return tier_; }

 private:
  heap(tier t, std::unique_ptr<detail::tier_arena> arena);
  tier tier_;
  std::unique_ptr<detail::tier_arena> arena_;
};

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
  void deallocate(T *p, std::size_t) noexcept { heap_->deallocate(p); }
  [[nodiscard]] heap &get_heap() const noexcept { return *heap_; }

  template <class U>
  friend bool operator==(const allocator &a, const allocator<U> &b) noexcept {
    return &a.get_heap() == &b.get_heap();
  }

 private:
  heap *heap_;
};

}  // namespace hetmem
