// The C++ allocation API: tier selection, heaps, pmr and allocator<T>, checked with the kernel.
#include <catch2/catch_test_macros.hpp>

#include <unistd.h>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory_resource>
#include <string>
#include <vector>

#include "hetmem/heap.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "tree.hpp"

using namespace hetmem;

namespace {
const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
bool on_node(const void *p, std::uint32_t node) {
  auto pg = reinterpret_cast<void *>(reinterpret_cast<std::uintptr_t>(p) & ~(static_cast<std::uintptr_t>(page) - 1));
  auto w = where(pg, page);
  return w && w->on(node) == 1;
}
topology two_socket_hbm(const test::temp_tree &t) {
  auto s = sysfs::read_snapshot({t.root()});
  REQUIRE(s);
  auto topo = classify(std::move(s).value());
  REQUIRE(topo);
  return std::move(topo).value();
}
}  // namespace

TEST_CASE("tier selection follows the per-initiator order and says what is missing", "[heap]") {
  test::temp_tree t;
  t.masks("0-3", "0-1");
  t.node(0, 1 << 22, "0-3", "10 21 13 23").node(1, 1 << 22, "4-7", "21 10 23 13");
  t.node(2, 1 << 20, "", "13 23 10 23").node(3, 1 << 20, "", "23 13 23 10");
  t.hmat(0, 1, "0", 100, 20000).hmat(1, 1, "1", 100, 20000).hmat(2, 1, "0", 120, 100000).hmat(3, 1, "1", 120, 100000);
  auto topo = two_socket_hbm(t);
  auto hbm0 = tier_by_kind(topo, memory_kind::hbm, topo.initiator(0));
  REQUIRE(hbm0);
  CHECK(hbm0->where.nodes.to_string() == "2");  // the HBM local to socket 0
  CHECK(hbm0->where.mode == policy_mode::bind);
  auto hbm1 = tier_by_kind(topo, memory_kind::hbm, topo.initiator(1));
  REQUIRE(hbm1);
  CHECK(hbm1->where.nodes.to_string() == "3");
  auto r1 = tier_by_rank(topo, 1, topo.initiator(0));
  REQUIRE(r1);
  CHECK(r1->kind == memory_kind::ddr);
  CHECK(r1->where.nodes.to_string() == "0");
  CHECK(tier_by_rank(topo, 9, topo.initiator(0)).error().message.find("node 0 has 4 tier(s)") != std::string::npos);
  auto pm = tier_by_kind(topo, memory_kind::pmem, topo.initiator(0));
  REQUIRE_FALSE(pm);
  CHECK(pm.error().message.find("no PMEM memory on this machine (nodes 0=DDR, 1=DDR, 2=HBM, 3=HBM)") !=
        std::string::npos);
  auto big = largest_tier(topo);
  REQUIRE(big);
  CHECK(big->kind == memory_kind::ddr);
  CHECK(big->where.nodes.to_string() == "0-1");
  CHECK(tier_of_nodes(topo, node_set{2, 3})->kind == memory_kind::hbm);
  CHECK(tier_of_nodes(topo, node_set{7}).error().message.find("node 7 is not a memory node") != std::string::npos);
}

TEST_CASE("heap on the fastest tier of this machine: direct, pmr and allocator<T>", "[heap][live]") {
  auto topo = load_topology();
  REQUIRE(topo);
  auto fastest = tier_by_rank(*topo, 0);
  REQUIRE(fastest);
  const std::uint32_t node = fastest->where.nodes.first();
  auto h = heap::create(*fastest);
  REQUIRE(h);
  void *p = (*h)->allocate(1000);
  REQUIRE(p != nullptr);
  std::memset(p, 1, 1000);
  CHECK(on_node(p, node));
  (*h)->deallocate(p);

  std::vector<double, allocator<double>> v{allocator<double>(**h)};
  v.resize(1 << 20, 1.5);  // 8 MiB
  CHECK(on_node(v.data(), node));
  CHECK(on_node(v.data() + v.size() - 1, node));

  memory_resource mr(**h);
  std::pmr::vector<std::pmr::string> strings(&mr);
  for (int i = 0; i < 1000; ++i) strings.emplace_back(std::string(100, static_cast<char>('a' + i % 26)));
  CHECK(on_node(strings.data(), node));
  CHECK(on_node(strings.back().data(), node));  // the elements use the same resource
  CHECK(mr.is_equal(mr));
  memory_resource other(**h);
  CHECK(mr.is_equal(other));
  CHECK_FALSE(mr.is_equal(*std::pmr::new_delete_resource()));

  auto big = (*h)->try_allocate(std::size_t{1} << 62);  // far beyond any machine
  REQUIRE_FALSE(big);
  CHECK(big.error().message.find("cannot allocate 4611686018427387904 bytes on rank 0") != std::string::npos);
  allocator<double> a(**h);
  CHECK_THROWS_AS(a.allocate(std::size_t{1} << 61), std::bad_alloc);
}
