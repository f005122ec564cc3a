// hbw::allocator (hbw_allocator.h) as memkind's C++ users write it: standard containers,
// rebind, equality, the overflow and out-of-memory exceptions, over-aligned types. Run by
// ctest without HBM (PREFERRED falls back to ordinary memory; BIND makes allocate throw) and
// with MEMKIND_HBW_NODES=0 (every block verified on "HBM" by the kernel).
#include <hbw_allocator.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <list>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "check.h"

namespace {

struct alignas(64) cache_line {
  char bytes[64];
};
// Aligned past what a page gives: hbw_malloc's blocks of 8 KiB and up are only page-aligned,
// so without hbw_posix_memalign about half of these would be misaligned.
struct alignas(8192) two_pages {
  char bytes[8192];
};

bool verified(const void *p, std::size_t n, bool expect_hbw) {
  const int r = hbw_verify_memory_region(const_cast<void *>(p), n, HBW_TOUCH_PAGES);
  return r == (expect_hbw ? 0 : -1);
}

}  // namespace

int main(int argc, char **argv) {
  const bool expect_hbw = argc > 1 && std::strcmp(argv[1], "with-hbw") == 0;
  const bool bind = argc > 2 && std::strcmp(argv[2], "bind") == 0;
  if (bind) CHECK(hbw_set_policy(HBW_POLICY_BIND) == 0);

  if (bind && !expect_hbw) {  // BIND with no HBM: nothing to bind to, allocate throws
    bool threw = false;
    try {
      std::vector<int, hbw::allocator<int>> v(1000);
    } catch (const std::bad_alloc &) {
      threw = true;
    }
    CHECK(threw);
    return CHECK_DONE("hbw::allocator (bind, no HBM)");
  }

  {  // a vector that grows through several reallocations; contents survive each
    std::vector<std::uint64_t, hbw::allocator<std::uint64_t>> v;
    for (std::uint64_t i = 0; i < 300000; ++i) v.push_back(i * 2654435761u);
    bool same = true;
    for (std::uint64_t i = 0; i < v.size(); ++i) same = same && v[i] == i * 2654435761u;
    CHECK(same);
    CHECK(verified(v.data(), v.size() * sizeof(v[0]), expect_hbw));
  }
  {  // node-based containers use rebind<> to their node types
    std::list<int, hbw::allocator<int>> l;
    for (int i = 0; i < 1000; ++i) l.push_back(i);
    CHECK(l.size() == 1000 && l.back() == 999);
    using pair = std::pair<const int, double>;
    std::map<int, double, std::less<>, hbw::allocator<pair>> m;
    for (int i = 0; i < 1000; ++i) m[i] = i * 0.5;
    CHECK(m.size() == 1000 && m.at(999) == 499.5);
    using hbw_string = std::basic_string<char, std::char_traits<char>, hbw::allocator<char>>;
    hbw_string s(100000, 'x');
    CHECK(s.size() == 100000 && s[99999] == 'x');
    CHECK(verified(s.data(), s.size(), expect_hbw));
  }
  {  // the members memkind's allocator has, used directly
    hbw::allocator<double> a;
    hbw::allocator<double>::rebind<char>::other c(a);
    CHECK(a == c && !(a != c));
    double *p = a.allocate(16);
    CHECK(p != nullptr);
    a.construct(p, 2.5);
    CHECK(*a.address(*p) == 2.5);
    a.destroy(p);
    c.deallocate(reinterpret_cast<char *>(p), 16 * sizeof(double));  // any hbw::allocator frees
    CHECK(a.max_size() == static_cast<std::size_t>(-1) / sizeof(double));
  }
  {  // allocate(0): hbw_malloc(0) is NULL (memkind's documented answer), so it throws, as memkind's does
    hbw::allocator<int> a;
    bool threw = false;
    try {
      (void)a.allocate(0);
    } catch (const std::bad_alloc &) {
      threw = true;
    }
    CHECK(threw);
  }
  {  // n * sizeof(T) would overflow: bad_alloc, not a short block
    hbw::allocator<std::uint64_t> a;
    bool threw = false;
    try {
      (void)a.allocate(a.max_size() + 1);
    } catch (const std::bad_alloc &) {
      threw = true;
    }
    CHECK(threw);
    threw = false;
    try {  // representable but impossible: hbw_malloc returns NULL, allocate throws
      (void)a.allocate(a.max_size() / 2);
    } catch (const std::bad_alloc &) {
      threw = true;
    }
    CHECK(threw);
  }
  {  // over-aligned element types get their alignment
    std::vector<cache_line, hbw::allocator<cache_line>> v(100);
    CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % 64 == 0);
    v.resize(5000);
    CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % 64 == 0);
    hbw::allocator<two_pages> a;
    std::vector<two_pages *> blocks;
    bool aligned = true;
    for (std::size_t n = 1; n <= 24; ++n) {
      blocks.push_back(a.allocate(n));
      aligned = aligned && reinterpret_cast<std::uintptr_t>(blocks.back()) % alignof(two_pages) == 0;
    }
    CHECK(aligned);
    for (std::size_t n = 1; n <= 24; ++n) a.deallocate(blocks[n - 1], n);
  }
  return CHECK_DONE(expect_hbw ? (bind ? "hbw::allocator (bind, with HBM)" : "hbw::allocator (with HBM)")
                               : "hbw::allocator (no HBM)");
}
