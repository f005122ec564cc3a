// reservation.cpp — pre-faulted, placed memory with its own small first-fit allocator.
#include "hetmem/reservation.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "hetmem/detail/node_memory.hpp"
#include "hetmem/detail/os.hpp"
#include "owners.hpp"
#include "va_window.hpp"

namespace hetmem {
namespace {

constexpr std::size_t header_bytes = 16, min_block = 32;
constexpr std::uintptr_t used_magic = 0x6865746d656d7276ull;  // "hetmemrv"
constexpr int madv_populate_write = 23;                       // Linux 5.14

struct block_header {
  std::size_t size;    // whole block, header included, multiple of 16
  std::uintptr_t tag;  // used_magic ^ address for blocks in use, 0 for free ones
};
struct free_block {
  block_header h;
  free_block *next;  // address order
};

std::uintptr_t tag_of(const block_header *h) { return used_magic ^ reinterpret_cast<std::uintptr_t>(h); }

}  // namespace

struct reservation::state : detail::va_owner {
  state() : va_owner{kind::reservation} {}
  tier t;
  char *base = nullptr;
  std::size_t size = 0;
  std::size_t run_bytes = 0;
  std::mutex m;
  free_block *free_list = nullptr;
  std::size_t allocated = 0;
  char name[96] = {};

  void *allocate(std::size_t bytes, std::size_t alignment) noexcept {
    if (alignment < 16) alignment = 16;
    if ((alignment & (alignment - 1)) != 0) {
      detail::set_thread_error("reservation on %s: alignment %zu is not a power of two", name, alignment);
      errno = EINVAL;
      return nullptr;
    }
    if (bytes == 0) bytes = 1;
    if (bytes > size) return exhausted(bytes);
    std::size_t need = (bytes + header_bytes + 15) & ~std::size_t{15};
    if (need < min_block) need = min_block;
    std::lock_guard<std::mutex> lock(m);
    free_block *prev = nullptr;
    for (free_block *fb = free_list; fb; prev = fb, fb = fb->next) {
      const auto start = reinterpret_cast<std::uintptr_t>(fb);
      std::uintptr_t payload = (start + header_bytes + alignment - 1) & ~(alignment - 1);
      while (payload - header_bytes - start != 0 && payload - header_bytes - start < min_block) payload += alignment;
      const std::size_t lead = payload - header_bytes - start;
      if (lead > fb->h.size || fb->h.size - lead < need) continue;
      std::size_t tail = fb->h.size - lead - need;
      if (tail < min_block) {
        need += tail;
        tail = 0;
      }
      free_block *after = fb->next;
      if (tail) {
        auto *rest = reinterpret_cast<free_block *>(payload - header_bytes + need);
        rest->h = {tail, 0};
        rest->next = after;
        after = rest;
      }
      if (lead) {
        fb->h.size = lead;
        fb->next = after;
      } else if (prev) {
        prev->next = after;
      } else {
        free_list = after;
      }
      auto *h = reinterpret_cast<block_header *>(payload - header_bytes);
      h->size = need;
      h->tag = tag_of(h);
      allocated += need;
      return reinterpret_cast<void *>(payload);
    }
    return exhausted(bytes);
  }

  void *exhausted(std::size_t bytes) noexcept {
    detail::set_thread_error("reservation on %s is used up: no free block of %zu bytes (capacity %zu)", name, bytes,
                             size);
    errno = ENOMEM;
    return nullptr;
  }

  block_header *header_of(const void *p) const noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    const auto lo = reinterpret_cast<std::uintptr_t>(base);
    if (a < lo + header_bytes || a >= lo + size || (a & 15) != 0) return nullptr;
    auto *h = reinterpret_cast<block_header *>(a - header_bytes);
    return h->tag == tag_of(h) ? h : nullptr;
  }

  void deallocate(void *p) noexcept {
    std::lock_guard<std::mutex> lock(m);
    block_header *h = header_of(p);
    if (!h) {
      detail::set_thread_error("reservation on %s: %p is not a live block (double free?): ignored", name, p);
      return;
    }
    h->tag = 0;
    allocated -= h->size;
    auto *fb = reinterpret_cast<free_block *>(h);
    free_block *prev = nullptr, *next = free_list;
    while (next && next < fb) {
      prev = next;
      next = next->next;
    }
    fb->next = next;
    if (next && reinterpret_cast<char *>(fb) + fb->h.size == reinterpret_cast<char *>(next)) {
      fb->h.size += next->h.size;
      fb->next = next->next;
    }
    if (prev && reinterpret_cast<char *>(prev) + prev->h.size == reinterpret_cast<char *>(fb)) {
      prev->h.size += fb->h.size;
      prev->next = fb->next;
    } else if (prev) {
      prev->next = fb;
    } else {
      free_list = fb;
    }
  }
};

result<std::unique_ptr<reservation>> reservation::create(const tier &t, std::size_t bytes) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  if (bytes == 0) return error{EINVAL, "reservation on " + t.name + ": zero bytes"};
  if (bytes > (std::size_t{1} << 46)) return error{ENOMEM, "reservation on " + t.name + ": too large"};
  const std::size_t len = (bytes + page - 1) / page * page;
  // The tier must have the memory now: populating a bound range on a full node would wake the
  // OOM killer instead of failing.
  char root[256];
  detail::copy_sysfs_root(root, sizeof root);
  if (t.where.mode != policy_mode::default_policy) {
    std::uint64_t available = 0;
    bool known = false;
    for (auto n : t.where.nodes.to_vector()) {
      detail::node_memory m;
      if (!detail::read_node_memory(root, n, &m)) continue;
      available += m.available;
      known = true;
    }
    char a[32], w[32];
    if (known && available < len)
      return error{ENOMEM, "reservation on " + t.name + ": the tier has " +
                               detail::format_size(a, sizeof a, available) + " available, " +
                               detail::format_size(w, sizeof w, len) + " asked for"};
  }
  auto compiled = detail::compile_placement(t.where);
  if (!compiled) return error{compiled.error().code, "reservation on " + t.name + ": " + compiled.error().message};
  detail::va_window *w = detail::va_window::get();
  if (!w) return error{ENOMEM, "cannot reserve address space for hetmem's window"};
  std::unique_ptr<state> s(new (std::nothrow) state());
  if (!s) return error{ENOMEM, "out of memory"};
  s->t = t;
  s->t.next.clear();
  std::snprintf(s->name, sizeof s->name, "%s", t.name.c_str());
  void *run = w->claim(s.get(), len, &s->run_bytes);
  if (!run) return error{ENOMEM, "reservation on " + t.name + ": hetmem's address window is exhausted"};
  auto fail = [&](int err, const std::string &msg) -> error {
    w->release(run, s->run_bytes);
    return error{err, "reservation on " + t.name + ": " + msg};
  };
  void *p = detail::os().mmap(run, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return fail(errno, std::string("mmap: ") + detail::error_text(errno));
  char why[200];
  if (int err = detail::apply_placement(*compiled, p, len, why, sizeof why); err != 0) return fail(err, why);
  if (detail::os().madvise(p, len, madv_populate_write) != 0) {
    const int err = errno;
    if (err != EINVAL) return fail(err, std::string("faulting the pages in: ") + detail::error_text(err));
    for (std::size_t off = 0; off < len; off += page) static_cast<volatile char *>(p)[off] = 0;  // pre-5.14
  }
  s->base = static_cast<char *>(p);
  s->size = len;
  auto *fb = reinterpret_cast<free_block *>(p);
  fb->h = {len, 0};
  fb->next = nullptr;
  s->free_list = fb;
  std::unique_ptr<reservation> r(new (std::nothrow) reservation(s.get()));
  if (!r) return fail(ENOMEM, "out of memory");
  (void)s.release();
  return r;
}

reservation::~reservation() {
  detail::va_window::get()->release(s_->base, s_->run_bytes);
  delete s_;
}

void *reservation::allocate(std::size_t bytes, std::size_t alignment) noexcept {
  return s_->allocate(bytes, alignment);
}

result<void *> reservation::try_allocate(std::size_t bytes, std::size_t alignment) {
  if (void *p = allocate(bytes, alignment)) return p;
  return error{errno ? errno : ENOMEM, detail::thread_error()};
}

void reservation::deallocate(void *p) noexcept {
  if (p) s_->deallocate(p);
}

const tier &reservation::get_tier() const noexcept { return s_->t; }
std::size_t reservation::capacity() const noexcept { return s_->size; }
std::size_t reservation::allocated_bytes() const noexcept {
  std::lock_guard<std::mutex> lock(s_->m);
  return s_->allocated;
}
std::size_t reservation::largest_free_block() const noexcept {
  std::lock_guard<std::mutex> lock(s_->m);
  std::size_t best = 0;
  for (free_block *fb = s_->free_list; fb; fb = fb->next)
    if (fb->h.size > best) best = fb->h.size;
  return best > header_bytes ? best - header_bytes : 0;
}
void *reservation::base() const noexcept { return s_->base; }

namespace detail {

void reservation_deallocate(va_owner *owner, void *p) noexcept {
  static_cast<reservation::state *>(owner)->deallocate(p);
}

std::size_t reservation_usable_size(va_owner *owner, const void *p) noexcept {
  auto *s = static_cast<reservation::state *>(owner);
  std::lock_guard<std::mutex> lock(s->m);
  const block_header *h = s->header_of(p);
  return h ? h->size - header_bytes : 0;
}

const tier *reservation_tier(va_owner *owner) noexcept { return &static_cast<reservation::state *>(owner)->t; }

}  // namespace detail
}  // namespace hetmem
