// hetmem/buffer.hpp — an owning, move-only block of memory on a tier.
//
// Contract: a buffer frees its memory when destroyed (hetmem::deallocate, so the heap or
// reservation it came from need not outlive it... but a reservation must). Moving leaves the
// source empty. No copying.
//
//   auto buf = hetmem::buffer::allocate(*heap, 1 << 20);
//   if (!buf) fail(buf.error().message);
//   std::span<float> v = buf->as<float>();
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include "hetmem/heap.hpp"
#include "hetmem/placement.hpp"
#include "hetmem/reservation.hpp"
#include "hetmem/result.hpp"

namespace hetmem {

class buffer {
 public:
  buffer() noexcept = default;
  buffer(buffer &&o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  buffer &operator=(buffer &&o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  buffer(const buffer &) = delete;
  buffer &operator=(const buffer &) = delete;
  ~buffer() { reset(); }

  [[nodiscard]] static result<buffer> allocate(heap &h, std::size_t bytes, std::size_t alignment = 0) {
    auto p = h.try_allocate(bytes, alignment);
    if (!p) return p.error();
    return buffer(static_cast<std::byte *>(*p), bytes);
  }
  [[nodiscard]] static result<buffer> allocate(reservation &r, std::size_t bytes, std::size_t alignment = 0) {
    auto p = r.try_allocate(bytes, alignment);
    if (!p) return p.error();
    return buffer(static_cast<std::byte *>(*p), bytes);
  }

  [[nodiscard]] std::byte *data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return data_ == nullptr; }
  explicit operator bool() const noexcept { return data_ != nullptr; }
  [[nodiscard]] std::span<std::byte> bytes() const noexcept { return {data_, size_}; }
  // The buffer as whole objects of T (T must be trivially copyable or constructed by the caller).
  template <class T>
  [[nodiscard]] std::span<T> as() const noexcept {
    return {reinterpret_cast<T *>(data_), size_ / sizeof(T)};
  }
  // The tier hetmem placed it on, and where its pages are by the kernel's word.
  [[nodiscard]] const tier *on_tier() const noexcept { return tier_of(data_); }
  [[nodiscard]] result<page_census> where() const { return hetmem::where(data_, size_); }

  void reset() noexcept {
    if (data_) hetmem::deallocate(data_);
    data_ = nullptr;
    size_ = 0;
  }
  // Gives up ownership: the caller frees with hetmem::deallocate.
  [[nodiscard]] std::byte *release() noexcept {
    size_ = 0;
    return std::exchange(data_, nullptr);
  }

 private:
  buffer(std::byte *p, std::size_t n) noexcept : data_(p), size_(n) {}
  std::byte *data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace hetmem
