// containers_on_tiers — a std::vector on HBM and a pmr container on the largest tier, with the
// kernel's word on where their pages are. Without HBM it says so and uses the best tier.
//
//   $ ./containers_on_tiers
#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory_resource>
#include <string>
#include <vector>

#include "hetmem/heap.hpp"

namespace {
std::string pages_of(const void *p, std::size_t bytes) {
  const auto ps = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  auto first = reinterpret_cast<std::uintptr_t>(p) & ~(ps - 1);
  auto last = (reinterpret_cast<std::uintptr_t>(p) + bytes + ps - 1) & ~(ps - 1);
  auto census = hetmem::where(reinterpret_cast<void *>(first), last - first);
  if (!census) return census.error().message;
  std::string s;
  for (auto [node, count] : census->per_node) s += " node " + std::to_string(node) + ": " + std::to_string(count);
  return s + " pages";
}
}  // namespace

int main() try {
  auto topo = hetmem::load_topology();
  if (!topo) {
    std::fprintf(stderr, "containers_on_tiers: %s\n", topo.error().message.c_str());
    return 1;
  }
  auto hbm = hetmem::tier_by_kind(*topo, hetmem::memory_kind::hbm);
  if (!hbm) {
    std::printf("%s: using the best tier instead\n", hbm.error().message.c_str());
    hbm = hetmem::tier_by_rank(*topo, 0);
    if (!hbm) return 1;
  }
  auto fast = hetmem::heap::create(*hbm);
  if (!fast) {
    std::fprintf(stderr, "containers_on_tiers: %s\n", fast.error().message.c_str());
    return 1;
  }
  std::vector<double, hetmem::allocator<double>> v{hetmem::allocator<double>(**fast)};
  v.assign(1 << 20, 1.0);
  std::printf("std::vector<double> of 8 MiB on %s:%s\n", (*fast)->get_tier().name.c_str(),
              pages_of(v.data(), v.size() * sizeof(double)).c_str());

  auto largest = hetmem::largest_tier(*topo);
  if (!largest) return 1;
  auto big = hetmem::heap::create(*largest);
  if (!big) return 1;
  hetmem::memory_resource mr(**big);
  std::pmr::vector<std::pmr::string> names(&mr);
  for (int i = 0; i < 10000; ++i)
    names.emplace_back("a string long enough to leave the small-string buffer " + std::to_string(i));
  std::printf("std::pmr::vector<std::pmr::string> on %s:%s\n", (*big)->get_tier().name.c_str(),
              pages_of(names.data(), names.size() * sizeof(std::pmr::string)).c_str());
  return 0;
} catch (const std::exception &e) {  // std::bad_alloc from the containers when a tier is full
  std::fprintf(stderr, "containers_on_tiers: %s\n", e.what());
  return 1;
}
