// The engine's unit: a jemalloc arena on placed memory. Placement is checked with the kernel.
#include <catch2/catch_test_macros.hpp>

#include <sys/mman.h>
#include <unistd.h>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hetmem/detail/os.hpp"
#include "hetmem/detail/tier_arena.hpp"

using namespace hetmem;

namespace {
const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
void *page_of(void *p) {
  return reinterpret_cast<void *>(reinterpret_cast<std::uintptr_t>(p) & ~(static_cast<std::uintptr_t>(page) - 1));
}
placement bind_to(std::uint32_t node) {
  placement p;
  p.mode = policy_mode::bind;
  p.nodes.insert(node);
  return p;
}
}  // namespace

TEST_CASE("tier arena: every size lands on the bound node, data intact", "[engine][live]") {
  auto a = detail::tier_arena::create(bind_to(0));
  REQUIRE(a);
  std::vector<std::pair<unsigned char *, std::size_t>> blocks;
  for (std::size_t size : {1u, 8u, 64u, 100u, 4096u, 10000u, 65536u, 1u << 20, 5u << 20}) {
    for (int i = 0; i < 20; ++i) {
      auto *p = static_cast<unsigned char *>((*a)->allocate(size));
      REQUIRE(p != nullptr);
      CHECK((*a)->usable_size(p) >= size);
      std::memset(p, static_cast<int>(size + static_cast<std::size_t>(i)) & 0xff, size);
      blocks.emplace_back(p, size);
    }
  }
  for (auto [p, size] : blocks) {
    auto w = where(page_of(p), page);
    REQUIRE(w);
    CHECK(w->on(0) == 1);
  }
  auto *aligned = (*a)->allocate(100, 1 << 16);
  REQUIRE(aligned != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(aligned) % (1 << 16) == 0);
  (*a)->deallocate(aligned);
  int i = 0;
  for (auto [p, size] : blocks) {
    bool intact = true;
    for (std::size_t k = 0; k < size; ++k)
      intact = intact && p[k] == ((size + static_cast<std::size_t>(i % 20)) & 0xff);
    CHECK(intact);
    (*a)->deallocate(p);
    ++i;
  }
  CHECK((*a)->allocate(8, 3) == nullptr);  // alignment not a power of two
  CHECK(errno == EINVAL);
}

TEST_CASE("tier arena: a placement that cannot work fails at creation, with its reason", "[engine]") {
  auto a = detail::tier_arena::create(bind_to(1000));
  REQUIRE_FALSE(a);
  CHECK(a.error().message.find("not allowed to this process") != std::string::npos);
}

TEST_CASE("tier arena: when placement starts failing, allocation fails cleanly and says why", "[engine][fault]") {
  auto a = detail::tier_arena::create(bind_to(0));
  REQUIRE(a);
  detail::os_calls failing = detail::system_os_calls();
  failing.mbind = [](void *, unsigned long, int, const unsigned long *, unsigned long, unsigned) -> long {
    errno = ENOMEM;
    return -1;
  };
  detail::scoped_os_calls use(&failing);
  void *p = (*a)->allocate(8u << 20);  // needs a fresh extent
  CHECK(p == nullptr);
  CHECK(errno == ENOMEM);
  CHECK((*a)->last_error().find("mbind(bind to nodes 0)") != std::string::npos);
}
