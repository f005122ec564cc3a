// owners.hpp — what the engine's pieces need from each other: a reservation's side of the
// address window (defined in reservation.cpp), and the size classes of the thread caches.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "hetmem/tier.hpp"
#include "va_window.hpp"

namespace hetmem::detail {

// Reservations own slots of the window too; these dispatch a pointer inside one.
void reservation_deallocate(va_owner *owner, void *p) noexcept;
std::size_t reservation_usable_size(va_owner *owner, const void *p) noexcept;
const tier *reservation_tier(va_owner *owner) noexcept;

// jemalloc's size classes (LG_QUANTUM 4, 4 KiB pages) up to 32 KiB: 8, 16, 32, 48, ... 128,
// then four per doubling. The thread caches keep one bin per class.
constexpr unsigned cached_classes = 41;
constexpr std::size_t max_cached_bytes = 32768;

constexpr unsigned class_of(std::size_t s) noexcept {  // 1 <= s <= max_cached_bytes
  if (s <= 8) return 0;
  if (s <= 128) return static_cast<unsigned>((s + 15) >> 4);
  const unsigned k = 63u - static_cast<unsigned>(std::countl_zero(static_cast<std::uint64_t>(s - 1)));
  return 9u + (k - 7u) * 4u + static_cast<unsigned>((s - 1 - (std::size_t{1} << k)) >> (k - 2u));
}

constexpr std::size_t class_bytes(unsigned c) noexcept {
  if (c == 0) return 8;
  if (c <= 8) return std::size_t{16} * c;
  const unsigned k = 7u + (c - 9u) / 4u;
  return (std::size_t{1} << k) + std::size_t{(c - 9u) % 4u + 1u} * (std::size_t{1} << (k - 2u));
}

// Table-driven versions for the hot paths.
struct class_tables {
  std::uint8_t small[129] = {};  // class of sizes 1..1024, indexed by (size + 7) >> 3
  std::uint32_t bytes[cached_classes] = {};
  constexpr class_tables() {
    for (std::size_t i = 1; i <= 128; ++i) small[i] = static_cast<std::uint8_t>(class_of(i * 8));
    small[0] = 0;
    for (unsigned c = 0; c < cached_classes; ++c) bytes[c] = static_cast<std::uint32_t>(class_bytes(c));
  }
};
inline constexpr class_tables classes{};
inline unsigned fast_class_of(std::size_t s) noexcept {  // 1 <= s <= max_cached_bytes
  return s <= 1024 ? classes.small[(s + 7) >> 3] : class_of(s);
}

static_assert(class_bytes(class_of(1)) == 8 && class_bytes(class_of(17)) == 32 && class_bytes(class_of(129)) == 160 &&
              class_bytes(class_of(4096)) == 4096 && class_bytes(class_of(4097)) == 5120 &&
              class_of(max_cached_bytes) == cached_classes - 1);

}  // namespace hetmem::detail
