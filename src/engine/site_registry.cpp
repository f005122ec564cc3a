// The allocation-site registry (hetmem/detail/site_registry.hpp): two open-addressing tables
// in one anonymous mapping, updated with compare-and-swap only.
#include "hetmem/detail/site_registry.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "hetmem/detail/os.hpp"

namespace hetmem::detail {
namespace {

// Fibonacci hashing of an address without its low bits (blocks are at least 16-byte aligned,
// return addresses are not).
std::size_t slot_of(std::uintptr_t key, unsigned shift, std::size_t slots) noexcept {
  return static_cast<std::size_t>(((key >> shift) * 0x9E3779B97F4A7C15ULL) >> 40) & (slots - 1);
}

}  // namespace

result<site_registry *> site_registry::create() {
  constexpr std::size_t head = (sizeof(site_registry) + 63) & ~std::size_t{63};
  constexpr std::size_t bytes =
      head + block_slots * sizeof(block_entry) + site_slots * sizeof(site_entry) + freed_slots * sizeof(freed_entry);
  void *m = os().mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    const int e = errno;
    return error{ENOMEM, "allocation sites: cannot map the site tables (" + std::to_string(bytes >> 10) +
                             " KiB): " + std::strerror(e)};
  }
  auto *r = new (m) site_registry();
  r->blocks_ = reinterpret_cast<block_entry *>(static_cast<char *>(m) + head);
  r->sites_ = reinterpret_cast<site_entry *>(static_cast<char *>(m) + head + block_slots * sizeof(block_entry));
  r->freed_ = reinterpret_cast<freed_entry *>(reinterpret_cast<char *>(r->sites_) + site_slots * sizeof(site_entry));
  return r;
}

unsigned site_registry::site_of(const void *return_address) noexcept {
  const auto key = reinterpret_cast<std::uintptr_t>(return_address);
  if (key == 0) return 0;
  const std::size_t home = slot_of(key, 0, site_slots);
  for (unsigned probe = 0; probe < probe_limit; ++probe) {
    const std::size_t i = (home + probe) & (site_slots - 1);
    std::atomic_ref<std::uintptr_t> address(sites_[i].address);
    std::uintptr_t seen = address.load(std::memory_order_acquire);
    if (seen == 0 && address.compare_exchange_strong(seen, key, std::memory_order_acq_rel)) seen = key;
    if (seen == key) return static_cast<unsigned>(i + 1);
  }
  return 0;
}

const void *site_registry::site_address(unsigned site) const noexcept {
  if (site == 0 || site > site_slots) return nullptr;
  return reinterpret_cast<const void *>(
      std::atomic_ref<std::uintptr_t>(sites_[site - 1].address).load(std::memory_order_acquire));
}

bool site_registry::record(const void *block, std::size_t bytes, unsigned site) noexcept {
  const auto key = reinterpret_cast<std::uintptr_t>(block);
  if (site == 0 || key < first_key) return false;
  const std::size_t home = slot_of(key, 4, block_slots);
  for (unsigned probe = 0; probe < probe_limit; ++probe) {
    block_entry &e = blocks_[(home + probe) & (block_slots - 1)];
    std::atomic_ref<std::uintptr_t> k(e.key);
    std::uintptr_t seen = k.load(std::memory_order_relaxed);
    if (seen != empty_key && seen != freed_key) continue;
    if (!k.compare_exchange_strong(seen, writing_key, std::memory_order_acquire)) continue;
    std::atomic_ref<std::uint64_t>(e.bytes).store(bytes, std::memory_order_release);
    std::atomic_ref<std::uint32_t>(e.site).store(site, std::memory_order_release);
    std::atomic_ref<std::uint32_t>(e.serial).store(serial_.fetch_add(1, std::memory_order_relaxed),
                                                   std::memory_order_release);
    k.store(key, std::memory_order_release);
    return true;
  }
  untracked_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

unsigned site_registry::forget(const void *block) noexcept {
  const auto key = reinterpret_cast<std::uintptr_t>(block);
  if (key < first_key) return 0;
  const std::size_t home = slot_of(key, 4, block_slots);
  for (unsigned probe = 0; probe < probe_limit; ++probe) {
    block_entry &e = blocks_[(home + probe) & (block_slots - 1)];
    std::atomic_ref<std::uintptr_t> k(e.key);
    const std::uintptr_t seen = k.load(std::memory_order_acquire);
    if (seen == empty_key) return 0;  // never used: the block is not further on
    if (seen != key) continue;
    const auto site = std::atomic_ref<std::uint32_t>(e.site).load(std::memory_order_relaxed);
    const auto bytes = std::atomic_ref<std::uint64_t>(e.bytes).load(std::memory_order_relaxed);
    // Only the block's owner frees it, so nobody else changes this entry now.
    k.store(freed_key, std::memory_order_release);
    note_freed(key, bytes);
    return site;
  }
  return 0;
}

void site_registry::note_freed(std::uintptr_t start, std::uint64_t bytes) noexcept {
  const std::uint64_t n = freed_count_.fetch_add(1, std::memory_order_relaxed);
  freed_entry &e = freed_[n % freed_slots];
  std::atomic_ref<std::uint64_t> ticket(e.ticket);
  ticket.store(0, std::memory_order_relaxed);
  // Release: whoever sees the new range sees the 0 before it (for_each_freed).
  std::atomic_ref<std::uintptr_t>(e.start).store(start, std::memory_order_release);
  std::atomic_ref<std::uint64_t>(e.bytes).store(bytes, std::memory_order_release);
  ticket.store(n + 1, std::memory_order_release);
}

}  // namespace hetmem::detail
