// The C++ allocation API: tier selection, heaps, pmr and allocator<T>, checked with the kernel.
#include <catch2/catch_test_macros.hpp>

#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory_resource>
#include <string>
#include <vector>

#include "hetmem/buffer.hpp"
#include "hetmem/detail/node_memory.hpp"
#include "hetmem/heap.hpp"
#include "hetmem/reservation.hpp"
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
  // The fallback chain: the other tiers in node 0's order, best first.
  REQUIRE(hbm0->next.size() == 3);
  CHECK(hbm0->next[0].where.nodes.to_string() == "0");
  CHECK(hbm0->next[1].where.nodes.to_string() == "1");
  CHECK(hbm0->next[2].where.nodes.to_string() == "3");
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
  CHECK(big.error().message.find("cannot allocate 4611686018427387904 bytes: rank 0 for node") != std::string::npos);
  allocator<double> a(**h);
  CHECK_THROWS_AS(a.allocate(std::size_t{1} << 61), std::bad_alloc);
}

namespace {
tier ddr0(const std::string &name) {
  tier t;
  t.name = name;
  t.kind = memory_kind::ddr;
  t.where.mode = policy_mode::bind;
  t.where.nodes.insert(0);
  return t;
}
struct fake_node0 {
  test::temp_tree tree;
  explicit fake_node0(unsigned free_mb) {
    set(free_mb);
    ::setenv("HETMEM_SYSFS_ROOT", tree.root().c_str(), 1);
  }
  void set(unsigned free_mb) {
    tree.file("sys/devices/system/node/node0/meminfo",
              "Node 0 MemTotal: 1048576 kB\nNode 0 MemFree: " + std::to_string(free_mb * 1024) + " kB\n");
  }
  ~fake_node0() { ::unsetenv("HETMEM_SYSFS_ROOT"); }
};
}  // namespace

TEST_CASE("a full tier: strict heaps fail naming it, next-tier heaps move on", "[heap][fault]") {
  fake_node0 node(1000);  // arenas read the node's meminfo under the root they were made with
  tier fast = ddr0("FAST (nodes 0)");
  fast.next.push_back(ddr0("SLOW (nodes 0)"));
  auto strict = heap::create(fast, {.when_full = on_full::fail, .fill_limit_percent = 61});
  auto soft = heap::create(fast, {.when_full = on_full::next_tier, .fill_limit_percent = 62});
  REQUIRE((strict && soft));
  CHECK((*strict)->chain() == std::vector<std::string>{"FAST (nodes 0)"});
  CHECK((*soft)->chain() == std::vector<std::string>{"FAST (nodes 0)", "SLOW (nodes 0)"});
  {
    node.set(200);  // 80% in use: past both limits; the last tier has no limit
    void *p = (*strict)->allocate(256u << 20);
    CHECK(p == nullptr);
    CHECK(errno == ENOMEM);
    CHECK(std::string(last_error()).find("FAST (nodes 0): tier is full: 200.0 MiB available of 1.0 GiB") == 0);
    auto r = (*strict)->try_allocate(256u << 20);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ENOMEM);
    CHECK(r.error().message.find("cannot allocate 268435456 bytes: FAST (nodes 0): tier is full") == 0);

    void *q = (*soft)->allocate(100u << 20);
    REQUIRE(q != nullptr);
    CHECK(tier_of(q)->name == "SLOW (nodes 0)");
    CHECK((*soft)->fallbacks() == 1);
    auto st = (*soft)->stats();
    REQUIRE(st.size() == 2);
    CHECK(st[0].fill_limit_percent == 62);
    CHECK(st[1].fill_limit_percent == 100);
    CHECK(st[1].allocated_bytes >= 100u << 20);
    CHECK(st[0].capacity_bytes == 1024u << 20);
    CHECK(st[0].free_bytes == 200u << 20);
    void *too_big = (*soft)->allocate(300u << 20);  // more than even the last tier has
    CHECK(too_big == nullptr);
    CHECK(std::string(last_error()).find("no tier could take 314572800 bytes: FAST (nodes 0): tier is full") == 0);
    deallocate(q);
  }
  CHECK_FALSE(heap::create(fast, {.fill_limit_percent = 0}));
}

TEST_CASE("heap: zeroed, reallocated and sized allocations keep data and tier", "[heap][live]") {
  auto h = heap::create(ddr0("DDR (nodes 0)"));
  REQUIRE(h);
  auto *z = static_cast<unsigned char *>((*h)->allocate_zeroed(1000, 3));
  REQUIRE(z != nullptr);
  CHECK(std::all_of(z, z + 3000, [](unsigned char c) { return c == 0; }));
  CHECK((*h)->allocate_zeroed(std::size_t{1} << 40, std::size_t{1} << 40) == nullptr);  // overflow
  CHECK(std::string(last_error()).find("overflows") != std::string::npos);
  std::memset(z, 7, 3000);
  auto *g = static_cast<unsigned char *>((*h)->reallocate(z, 1u << 20));
  REQUIRE(g != nullptr);
  CHECK(std::all_of(g, g + 3000, [](unsigned char c) { return c == 7; }));
  g[(1u << 20) - 1] = 1;
  CHECK(on_node(g + (1u << 20) - 1, 0));
  CHECK(tier_of(g)->name == "DDR (nodes 0)");
  (*h)->deallocate(g);
  void *s = (*h)->allocate(48);
  (*h)->deallocate(s, 48, 8);
}

TEST_CASE("reservations: faulted in, placed, private, and returned", "[heap][live]") {
  auto r = reservation::create(ddr0("critical DDR"), 1u << 20);
  REQUIRE(r);
  CHECK((*r)->capacity() == 1u << 20);
  auto w = where((*r)->base(), (*r)->capacity());
  REQUIRE(w);
  CHECK(w->on(0) == (1u << 20) / page);  // every page faulted in ahead of time, on the node
  CHECK(w->not_present == 0);
  std::vector<void *> blocks;
  while (void *p = (*r)->allocate(1000)) {
    std::memset(p, 3, 1000);
    CHECK(tier_of(p)->name == "critical DDR");
    CHECK(usable_size(p) >= 1000);
    blocks.push_back(p);
  }
  CHECK(blocks.size() >= 1000);  // 1 MiB / (1000 + header)
  CHECK(errno == ENOMEM);
  CHECK(std::string(last_error()).find("reservation on critical DDR is used up") == 0);
  for (std::size_t i = 0; i < blocks.size(); i += 2) deallocate(blocks[i]);  // through the generic path
  for (std::size_t i = 1; i < blocks.size(); i += 2) (*r)->deallocate(blocks[i]);
  CHECK((*r)->allocated_bytes() == 0);
  CHECK((*r)->largest_free_block() == (1u << 20) - 16);  // everything coalesced again
  void *aligned = (*r)->allocate(5000, 4096);
  REQUIRE(aligned != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(aligned) % 4096 == 0);
  (*r)->deallocate(aligned);
  (*r)->deallocate(aligned);  // double free: refused, reported
  CHECK(std::string(last_error()).find("is not a live block") != std::string::npos);
  CHECK((*r)->largest_free_block() == (1u << 20) - 16);

  auto huge = reservation::create(ddr0("greedy"), std::size_t{1} << 45);
  REQUIRE_FALSE(huge);
  CHECK(huge.error().code == ENOMEM);
  CHECK(huge.error().message.find("reservation on greedy: the tier has") == 0);
}

TEST_CASE("buffer: owning, move-only, knows its tier", "[heap][live]") {
  auto h = heap::create(ddr0("DDR (nodes 0)"));
  REQUIRE(h);
  auto b = buffer::allocate(**h, 1u << 16);
  REQUIRE(b);
  CHECK(b->size() == 1u << 16);
  for (auto &x : b->as<std::uint32_t>()) x = 0xabcdef01u;
  auto w = b->where();
  REQUIRE(w);
  CHECK(w->on(0) == w->pages);  // every page the buffer touches (it need not start on one)
  CHECK(b->on_tier()->name == "DDR (nodes 0)");
  buffer moved = std::move(*b);
  CHECK(b->empty());
  CHECK(moved.as<std::uint32_t>()[100] == 0xabcdef01u);
  buffer other;
  other = std::move(moved);
  CHECK(!moved);
  CHECK(other);
  other.reset();
  CHECK(other.empty());
  auto r = reservation::create(ddr0("DDR reserve"), 1u << 16);
  REQUIRE(r);
  {
    auto rb = buffer::allocate(**r, 4000);
    REQUIRE(rb);
    CHECK(rb->on_tier()->name == "DDR reserve");
    CHECK((*r)->allocated_bytes() > 4000);
  }
  CHECK((*r)->allocated_bytes() == 0);
  auto no = buffer::allocate(**r, 1u << 20);
  REQUIRE_FALSE(no);
  CHECK(no.error().message.find("used up") != std::string::npos);
}

namespace {
// The /proc/self/maps line of the mapping holding p.
std::string mapping_of(const void *p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  while (std::getline(maps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi) return line;
  }
  return "";
}
}  // namespace

TEST_CASE("a devdax device is told from other character devices by its sysfs subsystem", "[heap]") {
  test::temp_tree root;
  root.dir("sys/bus/dax").dir("sys/class/mem").dir("sys/dev/char/252:0").dir("sys/dev/char/1:5");
  root.link("sys/dev/char/252:0/subsystem", "../../../bus/dax");
  root.link("sys/dev/char/1:5/subsystem", "../../../class/mem");
  char subsystem[64];
  CHECK(detail::is_devdax_device(root.root().c_str(), 252, 0, subsystem, sizeof subsystem));
  CHECK(std::string(subsystem) == "dax");
  CHECK_FALSE(detail::is_devdax_device(root.root().c_str(), 1, 5, subsystem, sizeof subsystem));
  CHECK(std::string(subsystem) == "mem");
  CHECK_FALSE(detail::is_devdax_device(root.root().c_str(), 9, 9, subsystem, sizeof subsystem));
  CHECK(std::string(subsystem).empty());
}

TEST_CASE("file-backed tiers: memory from a file in a directory, with a size limit", "[heap][live]") {
  test::temp_tree dir;
  CHECK(file_tier(dir.root() + "/missing", 1 << 20).error().message.find("No such file") != std::string::npos);
  dir.file("plain", "x");
  CHECK(file_tier(dir.root() + "/plain", 1 << 20).error().message.find("neither a devdax device nor a directory") !=
        std::string::npos);
  CHECK_FALSE(file_tier(dir.root(), 0));
  // A character device that is not devdax (/dev/null's subsystem is "mem") is refused by name:
  // mapping it as a tier would kill the program with SIGBUS on the first write.
  if (::access("/dev/null", R_OK | W_OK) == 0 && ::access("/sys/dev/char/1:3/subsystem", F_OK) == 0) {
    auto null_tier = file_tier("/dev/null", 1 << 20);
    REQUIRE_FALSE(null_tier);
    CHECK(null_tier.error().message.find("a character device that is not devdax (its subsystem is 'mem')") !=
          std::string::npos);
  } else {
    WARN("no /dev/null or /sys/dev/char/1:3 here: the non-devdax device check is skipped");
  }

  auto t = file_tier(dir.root(), 8u << 20);
  REQUIRE(t);
  CHECK(t->kind == memory_kind::pmem);
  CHECK(t->name == "PMEM file in " + dir.root() + " (max 8.0 MiB)");
  auto h = heap::create(*t);
  REQUIRE(h);
  std::vector<std::pair<unsigned char *, std::size_t>> blocks;
  for (std::size_t size : {64u, 4096u, 100000u, 1u << 20}) {
    auto *p = static_cast<unsigned char *>((*h)->allocate(size));
    REQUIRE(p != nullptr);
    std::memset(p, static_cast<int>(size & 0xff), size);
    CHECK(tier_of(p)->name == t->name);
    // A shared mapping of the (unnamed, deleted) file in that directory, not anonymous memory.
    CHECK(mapping_of(p).find(dir.root()) != std::string::npos);
    blocks.emplace_back(p, size);
  }
  for (auto [p, size] : blocks) {
    CHECK(std::all_of(p, p + size, [&](unsigned char c) { return c == (size & 0xff); }));
    deallocate(p);
  }
  void *too_much = (*h)->allocate(16u << 20);
  CHECK(too_much == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(std::string(last_error()).find("file tier is full") != std::string::npos);
  auto st = (*h)->stats();
  REQUIRE(st.size() == 1);
  CHECK(st[0].mapped_bytes <= 8u << 20);
  CHECK(st[0].refused_extents >= 1);
}
