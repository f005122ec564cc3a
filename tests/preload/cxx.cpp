// cxx.cpp — the C++ allocation operators under libhetmem-preload.so: every form of new and
// delete, alignment, nothrow, bad_alloc and the new-handler, containers and exceptions.
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace {
int failures = 0;
void check(bool ok, const char *what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}
bool aligned_to(const void *p, std::size_t a) { return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0; }
int handler_calls = 0;
void handler() {
  ++handler_calls;
  std::set_new_handler(nullptr);  // next failure: bad_alloc
}
struct alignas(4096) page_object {
  char bytes[100];
};
}  // namespace

int main() {
  auto *i = new int(7);
  auto *a = new int[1000]();
  check(*i == 7 && a[999] == 0, "new, new[] (value-initialised)");
  delete i;
  delete[] a;
  auto *n = new (std::nothrow) char[100];
  check(n != nullptr, "nothrow new[]");
  delete[] n;
  for (std::size_t al : {64ul, 4096ul, 1ul << 21}) {
    void *p = ::operator new(1000, std::align_val_t(al));
    check(aligned_to(p, al), al == 64 ? "aligned new 64" : al == 4096 ? "aligned new 4096" : "aligned new 2 MiB");
    ::operator delete(p, 1000, std::align_val_t(al));
  }
  auto *po = new page_object[3];
  check(aligned_to(po, 4096) && aligned_to(&po[1], 4096), "over-aligned type new[] (alignas 4096)");
  delete[] po;
  void *nt = ::operator new(static_cast<std::size_t>(1) << 62, std::nothrow);
  check(nt == nullptr, "nothrow new of 4 EiB: nullptr");
  void *nta = ::operator new(static_cast<std::size_t>(1) << 62, std::align_val_t(64), std::nothrow);
  check(nta == nullptr, "aligned nothrow new of 4 EiB: nullptr");
  bool threw = false;
  try {
    void *big = ::operator new(static_cast<std::size_t>(1) << 62);
    ::operator delete(big);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  check(threw, "new of 4 EiB throws std::bad_alloc");
  std::set_new_handler(handler);
  threw = false;
  try {
    void *big = ::operator new[](static_cast<std::size_t>(1) << 62);
    ::operator delete[](big);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  check(threw && handler_calls == 1, "the new-handler is called, then bad_alloc");
  std::map<std::string, std::vector<std::string>> m;
  for (int k = 0; k < 20000; ++k)
    m[std::to_string(k % 997)].push_back(std::string(static_cast<std::size_t>(k % 300), 'q'));
  std::size_t total = 0;
  for (auto &[key, v] : m) total += v.size();
  check(total == 20000, "map of vectors of strings");
  bool caught = false;
  try {
    throw std::runtime_error(std::string(5000, 'e'));
  } catch (const std::runtime_error &e) {
    caught = std::string(e.what()).size() == 5000;
  }
  check(caught, "exceptions (their objects are allocated too)");
  auto sp = std::make_shared<std::vector<int>>(100000, 3);
  check((*sp)[99999] == 3, "make_shared");
  std::printf("cxx: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}
