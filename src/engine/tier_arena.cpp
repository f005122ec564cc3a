#include "hetmem/detail/tier_arena.hpp"

#include <jemalloc/jemalloc.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace hetmem::detail {

struct tier_arena::hooks_block {
  extent_hooks_t hooks;  // first member: jemalloc passes &hooks, we recover the block
  tier_arena *owner;
};

struct tier_arena_hooks {
  static tier_arena *owner(extent_hooks_t *h) { return reinterpret_cast<tier_arena::hooks_block *>(h)->owner; }

  static void note(tier_arena *a, const std::string &msg) {
    std::snprintf(a->last_error_, sizeof a->last_error_, "%s", msg.c_str());
  }

  static void *alloc(extent_hooks_t *h, void *new_addr, std::size_t size, std::size_t alignment, bool *zero,
                     bool *commit, unsigned) {
    tier_arena *a = owner(h);
    if (new_addr != nullptr) return nullptr;  // cannot grow in place: jemalloc asks elsewhere
    auto m = map_anonymous(size, alignment);
    if (!m) {
      note(a, m.error().message);
      return nullptr;
    }
    auto p = place(*m, size, a->where_);
    if (!p) {
      note(a, p.error().message);
      (void)unmap(*m, size);
      return nullptr;
    }
    *zero = true;  // fresh anonymous memory
    *commit = true;
    return *m;
  }
  static bool dalloc(extent_hooks_t *, void *addr, std::size_t size, bool, unsigned) {
    return ::munmap(addr, size) != 0;  // false = done
  }
  static void destroy(extent_hooks_t *, void *addr, std::size_t size, bool, unsigned) { ::munmap(addr, size); }
  static bool commit(extent_hooks_t *, void *, std::size_t, std::size_t, std::size_t, unsigned) {
    return false;  // anonymous memory is always committed
  }
  static bool purge_forced(extent_hooks_t *, void *addr, std::size_t, std::size_t offset, std::size_t length,
                           unsigned) {
    // MADV_DONTNEED keeps the range's mempolicy: refaulted pages are placed the same way.
    return ::madvise(static_cast<char *>(addr) + offset, length, MADV_DONTNEED) != 0;
  }
  static bool split(extent_hooks_t *, void *, std::size_t, std::size_t, std::size_t, bool, unsigned) { return false; }
  static bool merge(extent_hooks_t *, void *, std::size_t, void *, std::size_t, bool, unsigned) { return false; }
};

tier_arena::tier_arena(const placement &where) : where_(where), hooks_(std::make_unique<hooks_block>()) {
  hooks_->hooks = extent_hooks_t{tier_arena_hooks::alloc,        tier_arena_hooks::dalloc, tier_arena_hooks::destroy,
                                 tier_arena_hooks::commit,       nullptr /* decommit */,   nullptr /* purge_lazy */,
                                 tier_arena_hooks::purge_forced, tier_arena_hooks::split,  tier_arena_hooks::merge};
  hooks_->owner = this;
}

result<std::unique_ptr<tier_arena>> tier_arena::create(const placement &where) {
  // Validate the placement once up front, on a scratch page, so that a bad one fails here
  // with its message instead of as a later ENOMEM.
  auto scratch = map_anonymous(4096);
  if (!scratch) return scratch.error();
  auto ok = place(*scratch, 4096, where);
  (void)unmap(*scratch, 4096);
  if (!ok) return ok.error();
  std::unique_ptr<tier_arena> a(new (std::nothrow) tier_arena(where));
  if (!a) return error{ENOMEM, "out of memory"};
  extent_hooks_t *hp = &a->hooks_->hooks;
  unsigned index = 0;
  std::size_t sz = sizeof index;
  // mallctl takes the address of the hooks pointer and its size.
  int rc = hetmem_je_mallctl("arenas.create", &index, &sz, &hp, sizeof hp);  // NOLINT(bugprone-sizeof-expression)
  if (rc != 0) return error{rc, std::string("jemalloc arenas.create failed: ") + std::strerror(rc)};
  a->index_ = index;
  return a;
}

tier_arena::~tier_arena() {
  // Every allocation must have been returned: destroy gives the arena's memory back.
  char cmd[64];
  std::snprintf(cmd, sizeof cmd, "arena.%u.destroy", index_);
  hetmem_je_mallctl(cmd, nullptr, nullptr, nullptr, 0);
}

void *tier_arena::allocate(std::size_t bytes, std::size_t alignment) noexcept {
  if (bytes == 0) bytes = 1;
  int flags = MALLOCX_ARENA(index_) | MALLOCX_TCACHE_NONE;
  if (alignment > 1) {
    if ((alignment & (alignment - 1)) != 0) {
      errno = EINVAL;
      return nullptr;
    }
    flags |= MALLOCX_ALIGN(alignment);
  }
  void *p = hetmem_je_mallocx(bytes, flags);
  if (!p) errno = ENOMEM;
  return p;
}

void tier_arena::deallocate(void *p) noexcept {
  if (p) hetmem_je_dallocx(p, MALLOCX_TCACHE_NONE);
}

std::size_t tier_arena::usable_size(const void *p) const noexcept { return p ? hetmem_je_sallocx(p, 0) : 0; }

std::string tier_arena::last_error() const { return last_error_; }

}  // namespace hetmem::detail
