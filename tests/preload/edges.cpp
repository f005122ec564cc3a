// edges.cpp — every allocation entry point at the edges of size_t, under libhetmem-preload.so
// (or any allocator): sizes past PTRDIFF_MAX, SIZE_MAX - k, sizes that overflow when rounded up
// to a page, a size class or an alignment. Each must fail cleanly (NULL with ENOMEM, or the
// status posix_memalign documents; operator new throws std::bad_alloc, its nothrow forms give
// NULL) and leave the block it was asked to resize intact. Then calloc's contract: its memory
// reads as zeros, including memory that was written and freed just before, at every size from
// a few bytes to blocks the allocator takes fresh from the kernel.
// Prints one line per check; exit 1 if any failed.
#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace {
int failures = 0;
// --glibc: the checks glibc and libstdc++ themselves fail are left out (and said to be):
// glibc's posix_memalign sets errno, and GCC 12's aligned operator new rounds SIZE_MAX - k up
// to the alignment, wraps to a small size and returns a block.
bool strict_errno = true, aligned_new = true;
void check(bool ok, const char *what, std::size_t size = 0) {
  std::printf("%s %s", ok ? "ok  " : "FAIL", what);
  if (size) std::printf(" (size %#zx)", size);
  std::printf("\n");
  if (!ok) ++failures;
}

// The sizes no allocator can give: past PTRDIFF_MAX, and those that wrap when rounded.
std::vector<std::size_t> impossible_sizes() {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<std::size_t> v;
  for (std::size_t k = 0; k < 18; ++k) v.push_back(SIZE_MAX - k);
  for (std::size_t k : {std::size_t{31}, std::size_t{63}, std::size_t{64}, page - 1, page, page + 1,
                        std::size_t{2} << 20, (std::size_t{2} << 20) + 1})
    v.push_back(SIZE_MAX - k);
  v.push_back(std::size_t{PTRDIFF_MAX} + 1);
  v.push_back(std::size_t{PTRDIFF_MAX});
  v.push_back(std::size_t{PTRDIFF_MAX} - 1);
  v.push_back(SIZE_MAX / 2 + page);
  v.push_back(SIZE_MAX / 4 * 3);
  return v;
}

// Opaque to the compiler: it may not fold a call with a constant impossible size away.
template <typename T>
T opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}

void impossible(std::size_t n) {
  errno = 0;
  void *p = std::malloc(opaque(n));
  check(!p && errno == ENOMEM, "malloc: NULL, ENOMEM", n);
  std::free(p);
  errno = 0;
  p = std::calloc(1, opaque(n));
  check(!p && errno == ENOMEM, "calloc(1, n): NULL, ENOMEM", n);
  std::free(p);
  errno = 0;
  p = std::calloc(opaque(n), 1);
  check(!p && errno == ENOMEM, "calloc(n, 1): NULL, ENOMEM", n);
  std::free(p);
  errno = 0;
  p = std::realloc(nullptr, opaque(n));
  check(!p && errno == ENOMEM, "realloc(NULL, n): NULL, ENOMEM", n);
  std::free(p);
  for (std::size_t have : {std::size_t{24}, std::size_t{5000}, std::size_t{3} << 20}) {
    auto *q = static_cast<unsigned char *>(std::malloc(have));
    std::memset(q, 0x5a, have);
    const auto kept = reinterpret_cast<std::uintptr_t>(q);  // read through after a failed realloc
    errno = 0;
    void *r = std::realloc(q, opaque(n));
    q = reinterpret_cast<unsigned char *>(opaque(kept));
    bool intact = true;
    for (std::size_t i = 0; i < have; i += 97) intact = intact && q[i] == 0x5a;
    check(!r && errno == ENOMEM && intact,
          have > 4096 ? "realloc(large block, n): NULL, ENOMEM, block intact"
                      : "realloc(small block, n): NULL, ENOMEM, block intact",
          n);
    std::free(r ? r : q);  // a realloc that wrongly succeeded took q
  }
  errno = 0;
  p = reallocarray(nullptr, 1, opaque(n));
  check(!p && errno == ENOMEM, "reallocarray(NULL, 1, n): NULL, ENOMEM", n);
  for (std::size_t a : {std::size_t{8}, std::size_t{16}, std::size_t{64}, std::size_t{4096}, std::size_t{2} << 20}) {
    void *out = reinterpret_cast<void *>(1);
    const int saved = errno = 1234;
    const int rc = posix_memalign(&out, a, opaque(n));
    check(rc == ENOMEM && out == reinterpret_cast<void *>(1) && (errno == saved || !strict_errno),
          strict_errno ? "posix_memalign: ENOMEM, *out and errno untouched" : "posix_memalign: ENOMEM, *out untouched",
          n);
    errno = 0;
    p = aligned_alloc(a, opaque(n));
    check(!p && errno == ENOMEM, "aligned_alloc: NULL, ENOMEM", n);
    errno = 0;
    p = memalign(a, opaque(n));
    check(!p && errno == ENOMEM, "memalign: NULL, ENOMEM", n);
    if (!aligned_new) continue;
    bool threw = false;
    try {
      p = ::operator new (opaque(n), std::align_val_t{a});
      ::operator delete (p, std::align_val_t{a});
    } catch (const std::bad_alloc &) {
      threw = true;
    }
    check(threw, "operator new(n, align): std::bad_alloc", n);
    p = ::operator new (opaque(n), std::align_val_t{a}, std::nothrow);
    check(!p, "operator new(n, align, nothrow): NULL", n);
    ::operator delete (p, std::align_val_t{a});
  }
  errno = 0;
  p = valloc(opaque(n));
  check(!p && errno == ENOMEM, "valloc: NULL, ENOMEM", n);
  errno = 0;
  p = pvalloc(opaque(n));
  check(!p && errno == ENOMEM, "pvalloc: NULL, ENOMEM", n);
  bool threw = false;
  try {
    p = ::operator new(opaque(n));
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  check(threw, "operator new: std::bad_alloc", n);
  threw = false;
  try {
    p = ::operator new[](opaque(n));
    ::operator delete[](p);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  check(threw, "operator new[]: std::bad_alloc", n);
  check(::operator new(opaque(n), std::nothrow) == nullptr, "operator new(n, nothrow): NULL", n);
}

bool all_zero(const unsigned char *p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

// calloc's memory reads as zeros, also when it reuses what was just written and freed: the
// allocator may skip zeroing memory fresh from the kernel, never memory used before.
void calloc_zeroes() {
  const std::size_t sizes[] = {1,
                               8,
                               24,
                               100,
                               1000,
                               4096,
                               20000,
                               40000,
                               100000,
                               std::size_t{1} << 20,
                               (std::size_t{3} << 20) + 100,
                               std::size_t{16} << 20,
                               std::size_t{64} << 20};
  for (std::size_t n : sizes) {
    bool ok = true;
    for (int round = 0; round < 4 && ok; ++round) {
      auto *dirty = static_cast<unsigned char *>(std::malloc(n));
      std::memset(dirty, 0xa5, n);
      std::free(dirty);
      auto *z = static_cast<unsigned char *>(std::calloc(1, n));
      ok = z && all_zero(z, n);
      if (z) std::memset(z, 0x3c, n);  // dirty for the next round
      std::free(z);
    }
    check(ok, "calloc after a freed dirty block of the same size reads as zeros", n);
  }
  // Many blocks live at once, freed, then calloc'd back (the allocator's caches and bins).
  std::vector<void *> live;
  for (std::size_t i = 0; i < 2000; ++i) {
    auto *p = static_cast<unsigned char *>(std::malloc(64 + (i % 7) * 48));
    std::memset(p, 0xff, 64 + (i % 7) * 48);
    live.push_back(p);
  }
  for (void *p : live) std::free(p);
  bool ok = true;
  for (int i = 0; i < 2000; ++i) {
    const std::size_t n = 64 + static_cast<std::size_t>(i % 7) * 48;
    auto *p = static_cast<unsigned char *>(std::calloc(n / 8, 8));
    ok = ok && p && all_zero(p, n);
    live[static_cast<std::size_t>(i)] = p;
  }
  for (void *p : live) std::free(p);
  check(ok, "2000 calloc'd small blocks over freed dirty ones read as zeros");
  // A block shrunk in place and grown back: the tail calloc hands out later is zero too.
  auto *big = static_cast<unsigned char *>(std::malloc(std::size_t{8} << 20));
  std::memset(big, 0x77, std::size_t{8} << 20);
  big = static_cast<unsigned char *>(std::realloc(big, 4096));
  auto *z = static_cast<unsigned char *>(std::calloc(1, std::size_t{6} << 20));
  check(z && all_zero(z, std::size_t{6} << 20), "calloc after a dirty block was shrunk reads as zeros");
  std::free(z);
  std::free(big);
}
}  // namespace

int main(int argc, char **argv) {
  if (argc > 1 && std::strcmp(argv[1], "--glibc") == 0) {
    strict_errno = aligned_new = false;
    std::printf("skipped: posix_memalign's errno and the aligned operator new (glibc's and libstdc++'s own)\n");
  }
  for (std::size_t n : impossible_sizes()) impossible(n);
  calloc_zeroes();
  std::printf("edges: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}
