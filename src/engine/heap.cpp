// heap.cpp — heaps: a chain of tier arenas with explicit fallback semantics.
#include "hetmem/heap.hpp"

#include <cerrno>
#include <cstring>

#include "hetmem/detail/node_memory.hpp"
#include "hetmem/detail/tier_arena.hpp"
#include "owners.hpp"
#include "va_window.hpp"

namespace hetmem {

heap::~heap() = default;

result<std::unique_ptr<heap>> heap::create(const tier &t, heap_options options) {
  if (options.fill_limit_percent == 0 || options.fill_limit_percent > 100)
    return error{EINVAL, "heap on " + t.name + ": fill limit " + std::to_string(options.fill_limit_percent) +
                             "% is outside 1-100"};
  std::unique_ptr<heap> h(new (std::nothrow) heap());
  if (!h) return error{ENOMEM, "out of memory"};
  h->tier_ = t;
  h->options_ = options;
  std::vector<tier> chain{t};
  if (options.when_full == on_full::next_tier) {
    for (const auto &n : t.next) chain.push_back(n);
    for (auto &c : chain) c = softened(c);  // the kernel gets the same say
  }
  if (chain.size() > max_chain) chain.resize(max_chain);
  for (std::size_t i = 0; i < chain.size(); ++i) {
    const bool last = i + 1 == chain.size();
    // The last tier of a chain is the last resort: no watermark keeps memory out of it.
    const unsigned limit = last && chain.size() > 1 ? 100 : options.fill_limit_percent;
    auto a = detail::tier_arena::get(chain[i], limit);
    if (!a) {
      if (i == 0) return error{a.error().code, "heap on " + t.name + ": " + a.error().message};
      break;  // a fallback that cannot be used (not allowed by the cpuset, say) ends the chain
    }
    h->chain_[h->chain_len_++] = *a;
  }
  return h;
}

void *heap::allocate_fallback(std::size_t bytes, std::size_t alignment, bool zeroed) noexcept {
  if (errno == EINVAL) return nullptr;  // a bad request, not a full tier
  char first[256];
  std::snprintf(first, sizeof first, "%s", detail::thread_error());
  for (unsigned i = 1; i < chain_len_; ++i) {
    if (void *p = zeroed ? chain_[i]->allocate_zeroed(bytes, alignment) : chain_[i]->allocate(bytes, alignment)) {
      fallbacks_.fetch_add(1, std::memory_order_relaxed);
      return p;
    }
  }
  char last[256];
  std::snprintf(last, sizeof last, "%s", detail::thread_error());
  detail::set_thread_error("no tier could take %zu bytes: %s; last of %u tiers, %s", bytes, first, chain_len_, last);
  errno = ENOMEM;
  return nullptr;
}

result<void *> heap::try_allocate(std::size_t bytes, std::size_t alignment) {
  if (void *p = allocate(bytes, alignment)) return p;
  const int err = errno ? errno : ENOMEM;
  return error{err, "cannot allocate " + std::to_string(bytes) + " bytes: " + detail::thread_error()};
}

void *heap::allocate_zeroed(std::size_t n, std::size_t size) noexcept {
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(n, size, &bytes)) {
    detail::set_thread_error("%zu x %zu bytes overflows", n, size);
    errno = ENOMEM;
    return nullptr;
  }
  // Memory fresh from the kernel is not cleared again (tier_arena::allocate_zeroed).
  if (void *p = chain_[0]->allocate_zeroed(bytes)) [[likely]]
    return p;
  return allocate_fallback(bytes, 0, true);
}

void *heap::reallocate(void *p, std::size_t bytes) noexcept {
  if (!p) return allocate(bytes);
  detail::va_owner *o = detail::va_window::owner_of(p);
  if (o == nullptr) {
    detail::set_thread_error("reallocate of %p, which hetmem did not allocate", p);
    errno = EINVAL;
    return nullptr;
  }
  if (o->type == detail::va_owner::kind::arena) {
    if (void *q = detail::tier_arena::reallocate(p, bytes)) return q;
  }
  // A reservation's block, or its tier is full: move it to wherever this heap allocates now.
  const std::size_t old = usable_size(p);
  void *q = allocate(bytes);
  if (!q) return nullptr;
  std::memcpy(q, p, old < bytes ? old : bytes);
  deallocate(p);
  return q;
}

void heap::deallocate(void *p) noexcept { detail::tier_arena::deallocate(p); }
void heap::deallocate(void *p, std::size_t bytes, std::size_t alignment) noexcept {
  detail::tier_arena::deallocate(p, bytes, alignment);
}

std::vector<std::string> heap::chain() const {
  std::vector<std::string> out;
  for (unsigned i = 0; i < chain_len_; ++i) out.push_back(chain_[i]->description().name);
  return out;
}

namespace {
tier_stats stats_for(const detail::tier_arena *a, const tier &t, unsigned limit) {
  tier_stats s;
  s.tier = t.name;
  s.fill_limit_percent = limit;
  if (a) {
    auto c = a->counters();
    s.allocated_bytes = c.allocated_bytes;
    s.cached_bytes = c.cached_bytes;
    s.mapped_bytes = c.mapped_bytes;
    s.resident_bytes = c.resident_bytes;
    s.refused_extents = c.refused_extents;
  }
  char root[256];
  detail::copy_sysfs_root(root, sizeof root);
  if (t.where.mode != policy_mode::default_policy)
    for (auto n : t.where.nodes.to_vector()) {
      detail::node_memory m;
      if (!detail::read_node_memory(root, n, &m)) continue;
      s.capacity_bytes += m.total;
      s.free_bytes += m.free;
      s.available_bytes += m.available;
    }
  return s;
}
}  // namespace

std::vector<tier_stats> heap::stats() const {
  std::vector<tier_stats> out;
  for (unsigned i = 0; i < chain_len_; ++i)
    out.push_back(stats_for(chain_[i], chain_[i]->description(), chain_[i]->fill_limit_percent()));
  return out;
}

tier_stats stats_of(const tier &t, unsigned fill_limit_percent) {
  return stats_for(detail::tier_arena::find(t, fill_limit_percent), t, fill_limit_percent);
}

const tier *tier_of(const void *p) noexcept {
  detail::va_owner *o = detail::va_window::owner_of(p);
  if (!o) return nullptr;
  if (o->type == detail::va_owner::kind::reservation) return detail::reservation_tier(o);
  return &detail::tier_arena::of(p)->description();
}

std::size_t usable_size(const void *p) noexcept { return detail::tier_arena::usable_size(p); }

const char *last_error() noexcept { return detail::thread_error(); }

void *memory_resource::do_allocate(std::size_t bytes, std::size_t alignment) {
  void *p = heap_->allocate(bytes, alignment);
  if (!p) throw std::bad_alloc();
  return p;
}

void memory_resource::do_deallocate(void *p, std::size_t bytes, std::size_t alignment) {
  heap_->deallocate(p, bytes, alignment);
}

bool memory_resource::do_is_equal(const std::pmr::memory_resource &other) const noexcept {
  const auto *o = dynamic_cast<const memory_resource *>(&other);
  return o && o->heap_ == heap_;
}

}  // namespace hetmem
