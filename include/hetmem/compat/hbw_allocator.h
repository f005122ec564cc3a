/* hbw_allocator.h — memkind's C++ allocator for high-bandwidth memory, over hetmem's hbwmalloc.
 *
 * Source-compatible with memkind's <hbw_allocator.h>: `hbw::allocator<T>` names the same
 * members (value_type and the pointer/reference typedefs, rebind, address, allocate,
 * deallocate, max_size, construct, destroy) and compares equal to every other
 * hbw::allocator, so code such as `std::vector<double, hbw::allocator<double>>` builds
 * unchanged against libhetmem-hbwmalloc.
 *
 * Contract:
 * - allocate(n) returns hbw_malloc(n * sizeof(T)), placed by the hbwmalloc policy
 *   (hbw_set_policy); it throws std::bad_alloc when n exceeds max_size() (the byte count
 *   would overflow) or when hbw_malloc returns NULL (for example BIND with HBM full or absent).
 * - deallocate(p, n) is hbw_free(p); any hbw::allocator may free what any other allocated.
 * - Objects whose alignment exceeds what hbw_malloc guarantees (16 bytes) are allocated with
 *   hbw_posix_memalign instead, which memkind's allocator does not do (it would misalign them).
 */
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>

#include "hbwmalloc.h"

namespace hbw {

template <class T>
class allocator {
 public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using pointer = T *;
  using const_pointer = const T *;
  using reference = T &;
  using const_reference = const T &;
  using propagate_on_container_move_assignment = std::true_type;
  using is_always_equal = std::true_type;

  template <class U>
  struct rebind {
    using other = allocator<U>;
  };

  allocator() noexcept = default;
  template <class U>
  allocator(const allocator<U> &) noexcept {}  // NOLINT(google-explicit-constructor): as std::allocator

  pointer address(reference x) const noexcept { return &x; }
  const_pointer address(const_reference x) const noexcept { return &x; }

  pointer allocate(size_type n, const void * /*hint*/ = nullptr) {
    if (n > max_size()) throw std::bad_alloc();
    const size_type bytes = n * sizeof(T);
    void *p = nullptr;
    if constexpr (alignof(T) > 16) {
      if (hbw_posix_memalign(&p, alignof(T), bytes) != 0) p = nullptr;
    } else {
      p = hbw_malloc(bytes);
    }
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<pointer>(p);
  }

  void deallocate(pointer p, size_type /*n*/) noexcept { hbw_free(static_cast<void *>(p)); }

  size_type max_size() const noexcept { return static_cast<size_type>(-1) / sizeof(T); }

  template <class U, class... Args>
  void construct(U *p, Args &&...args) {
    ::new (static_cast<void *>(p)) U(static_cast<Args &&>(args)...);
  }

  template <class U>
  void destroy(U *p) {
    p->~U();
  }
};

template <class T, class U>
bool operator==(const allocator<T> &, const allocator<U> &) noexcept {
  return true;
}

template <class T, class U>
bool operator!=(const allocator<T> &, const allocator<U> &) noexcept {
  return false;
}

}  // namespace hbw
