#include <catch2/catch_test_macros.hpp>

#include "hetmem/sysfs/reader.hpp"
#include "hetmem/topology.hpp"
#include "tree.hpp"

using namespace hetmem;
using hetmem::test::temp_tree;

namespace {
topology classify_tree(const temp_tree &t, classify_options opt = {}) {
  auto s = sysfs::read_snapshot({t.root()});
  REQUIRE(s);
  auto topo = classify(std::move(s).value(), opt);
  REQUIRE(topo);
  return std::move(topo).value();
}
bool has_reason(const node_info &n, evidence_source src) {
  for (const auto &r : n.reasons)
    if (r.source == src) return true;
  return false;
}
std::string order(const topology &t, std::uint32_t initiator) { return test::tier_order(t, initiator); }

// Like QEMU's ddr-hbm-slow: DDR with CPUs, CPU-less HBM (4x bandwidth, a bit slower), CPU-less slow node.
void ddr_hbm_slow(temp_tree &t) {
  t.masks("0-2", "0")
      .node(0, 1 << 20, "0-1", "10 20 30")
      .node(1, 1 << 19, "", "20 10 40")
      .node(2, 1 << 20, "", "30 40 10");
  t.file("sys/devices/system/node/has_normal_memory", "0-2\n");
  t.hmat(0, 1, "0", 100, 20000).hmat(1, 1, "0", 120, 80000).hmat(2, 1, "0", 300, 4000);
  t.file("sys/devices/virtual/memory_tiering/memory_tier3/nodelist", "1\n");
  t.file("sys/devices/virtual/memory_tiering/memory_tier4/nodelist", "0\n");
  t.file("sys/devices/virtual/memory_tiering/memory_tier14/nodelist", "2\n");
}
}  // namespace

TEST_CASE("HMAT bandwidth and latency against the DDR reference", "[classify]") {
  temp_tree t;
  ddr_hbm_slow(t);
  auto topo = classify_tree(t);
  CHECK(topo.hmat_reported);
  CHECK(topo.hmat_access_class == 1);
  CHECK(topo.find(0)->kind == memory_kind::ddr);
  CHECK(topo.find(1)->kind == memory_kind::hbm);
  CHECK(topo.find(2)->kind == memory_kind::cxl);
  CHECK(topo.find(2)->certainty == confidence::low);  // inferred: no dax or CXL link
  CHECK(topo.find(1)->reasons.front().source == evidence_source::hmat_access1);
  CHECK(topo.find(1)->reasons.front().text.find("4.0x DDR") != std::string::npos);
  for (const auto &n : topo.nodes) CHECK(n.disagreements.empty());
  CHECK(has_reason(*topo.find(1), evidence_source::memory_tiers));
  CHECK(order(topo, 0) == "1 > 0 > 2");
}

TEST_CASE("the kernel's memory tiers are a cross-check, and conflicts are reported", "[classify]") {
  temp_tree t;
  ddr_hbm_slow(t);
  t.file("sys/devices/virtual/memory_tiering/memory_tier3/nodelist", "2\n");  // kernel thinks the slow node is fast
  t.file("sys/devices/virtual/memory_tiering/memory_tier14/nodelist", "1\n");
  auto topo = classify_tree(t);
  CHECK_FALSE(topo.find(2)->disagreements.empty());
  CHECK_FALSE(topo.find(1)->disagreements.empty());
}

TEST_CASE("access0 naming only a generic initiator is not CPU performance", "[classify]") {
  temp_tree t;
  t.masks("0-2", "0").node(0, 0, "0-3", "10 12 17").node(1, 0, "", "12 10 13").node(2, 1 << 24, "", "17 13 10");
  t.file("sys/devices/system/node/has_generic_initiator", "1\n");
  t.file("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 0 kB\n");
  t.file("sys/devices/system/node/node1/meminfo", "Node 1 MemTotal: 0 kB\n");
  t.hmat(2, 0, "1", 8, 419431);
  auto topo = classify_tree(t);
  CHECK(topo.find(0)->kind == memory_kind::none);
  CHECK(topo.find(1)->kind == memory_kind::none);
  CHECK(topo.find(1)->is_generic_initiator);
  CHECK(topo.find(2)->kind != memory_kind::hbm);
  CHECK(topo.find(2)->performance.access_class == -1);
  CHECK_FALSE(topo.hmat_reported);
}

TEST_CASE("slow CPU-less memory on a soft-reserved dax device is CXL", "[classify]") {
  temp_tree t;
  t.masks("0-1", "0").node(0, 1 << 20, "0-1", "10 20").node(1, 1 << 20, "", "20 10");
  t.hmat(0, 1, "0", 100, 20000).hmat(1, 1, "0", 250, 8000);
  const std::string dev = "sys/devices/platform/hmem.0/dax0.0";
  t.file(dev + "/target_node", "1\n")
      .link(dev + "/driver", "../../../../bus/dax/drivers/kmem")
      .dir("sys/bus/dax/drivers/kmem");
  t.link("sys/bus/dax/devices/dax0.0", "../../../devices/platform/hmem.0/dax0.0");
  auto topo = classify_tree(t);
  CHECK(topo.find(1)->kind == memory_kind::cxl);
  CHECK(topo.find(1)->certainty == confidence::medium);
  CHECK(topo.find(1)->dax_devices == std::vector<std::string>{"dax0.0"});
  // The deciding evidence comes first; the dax hint that led to it follows.
  CHECK(topo.find(1)->reasons.front().source == evidence_source::hmat_access1);
  CHECK(topo.find(1)->reasons[1].source == evidence_source::dax_kmem);
}

TEST_CASE("without HMAT a far CPU-less node is unknown, a near one DDR", "[classify]") {
  temp_tree t;
  t.masks("0-3", "0-1").node(0, 1 << 20, "0", "10 21 21 40").node(1, 1 << 20, "1", "21 10 21 40");
  t.node(2, 1 << 20, "", "21 21 10 40").node(3, 1 << 20, "", "40 40 40 10");
  auto topo = classify_tree(t);
  CHECK(topo.find(2)->kind == memory_kind::ddr);
  CHECK(topo.find(2)->certainty == confidence::low);
  CHECK(topo.find(3)->kind == memory_kind::unknown);
  CHECK(topo.find(3)->reasons.front().text.find("farther") != std::string::npos);
  CHECK_FALSE(topo.hmat_reported);
  // Node 2 is equally near both sockets: local to neither, it ranks with the remote DDR.
  CHECK(topo.find(2)->local_initiators.empty());
  CHECK(order(topo, 0) == "0 > 1,2 > 3");
  CHECK(order(topo, 1) == "1 > 0,2 > 3");
}

TEST_CASE("per-initiator order: local first, best kind first; remote by distance", "[classify]") {
  // Two sockets, each with DDR + a local CPU-less HBM node (Xeon Max flat mode).
  temp_tree t;
  t.masks("0-3", "0-1");
  t.node(0, 1 << 22, "0-3", "10 21 13 23").node(1, 1 << 22, "4-7", "21 10 23 13");
  t.node(2, 1 << 20, "", "13 23 10 23").node(3, 1 << 20, "", "23 13 23 10");
  t.hmat(0, 1, "0", 100, 20000).hmat(1, 1, "1", 100, 20000).hmat(2, 1, "0", 120, 100000).hmat(3, 1, "1", 120, 100000);
  auto topo = classify_tree(t);
  CHECK(topo.find(2)->kind == memory_kind::hbm);
  CHECK(topo.find(3)->kind == memory_kind::hbm);
  CHECK(order(topo, 0) == "2 > 0 > 1 > 3");
  CHECK(order(topo, 1) == "3 > 1 > 0 > 2");
  CHECK(topo.initiator_for_cpu(5)->node == 1);
  CHECK(topo.initiator(0)->tiers[0].local);
  CHECK_FALSE(topo.initiator(0)->tiers[2].local);
}

TEST_CASE("user overrides win, and the evidence they overrule is kept", "[classify]") {
  temp_tree t;
  ddr_hbm_slow(t);
  auto ov = parse_kind_overrides("2=pmem, 7=hbm");
  REQUIRE(ov);
  classify_options co;
  co.overrides = *ov;
  auto topo = classify_tree(t, co);
  CHECK(topo.find(2)->kind == memory_kind::pmem);
  CHECK(topo.find(2)->reasons.front().source == evidence_source::user_override);
  CHECK_FALSE(topo.find(2)->disagreements.empty());
  bool noted = false;
  for (const auto &n : topo.notes) noted = noted || n.find("node 7 ignored") != std::string::npos;
  CHECK(noted);
}

TEST_CASE("override strings: errors name the token", "[classify]") {
  CHECK(parse_kind_overrides("")->empty());
  CHECK(parse_kind_overrides("0=ddr,1=HBM,2:cxl")->size() == 3);
  auto e1 = parse_kind_overrides("0=ddr,1=fast");
  REQUIRE_FALSE(e1);
  CHECK(e1.error().message.find("'fast'") != std::string::npos);
  CHECK(e1.error().message.find("offset 6") != std::string::npos);
  CHECK_FALSE(parse_kind_overrides("x=ddr"));
  CHECK_FALSE(parse_kind_overrides("99999=ddr"));
  CHECK_FALSE(parse_kind_overrides("hbm"));
  CHECK(parse_kind_overrides(std::string(1 << 20, ',')).error().code == E2BIG);
}

TEST_CASE("load_topology reports a bad HETMEM_NODE_KINDS instead of ignoring it", "[classify]") {
  temp_tree t;
  ddr_hbm_slow(t);
  load_options lo;
  lo.root = t.root();
  lo.overrides = "1=superfast";
  auto r = load_topology(lo);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("superfast") != std::string::npos);
}

TEST_CASE("the live system classifies, and a one-node machine says so plainly", "[classify][live]") {
  auto topo = load_topology();
  REQUIRE(topo);
  REQUIRE_FALSE(topo->nodes.empty());
  std::size_t mem_nodes = 0;
  for (const auto &n : topo->nodes) mem_nodes += n.has_memory ? 1 : 0;
  if (mem_nodes == 1 && !topo->hmat_reported) {
    const auto *n = &topo->nodes.front();
    CHECK(n->kind == memory_kind::ddr);
    bool one = false, nohmat = false;
    for (const auto &note : topo->notes) {
      one = one || note.find("one memory node") != std::string::npos;
      nohmat = nohmat || note.find("no HMAT reported") != std::string::npos;
    }
    CHECK(one);
    CHECK(nohmat);
    REQUIRE(topo->initiator_for_calling_thread() != nullptr);
  }
}
