// The real machines of ../shared/fixtures/hwloc: every node must classify as its README says.
#include <catch2/catch_test_macros.hpp>

#include <map>

#include "hetmem/hwloc_check.hpp"
#include "hetmem/policy.hpp"
#include "hetmem/topology.hpp"
#include "tree.hpp"

using namespace hetmem;

namespace {

struct expectation {
  const char *fixture;
  std::map<std::uint32_t, memory_kind> kinds;  // every online node
};

const memory_kind D = memory_kind::ddr, H = memory_kind::hbm, P = memory_kind::pmem, G = memory_kind::device,
                  N = memory_kind::none;

const std::vector<expectation> &expectations() {
  static const std::vector<expectation> e = {
      {"ddr-2s-xeon-silver4108", {{0, D}, {1, D}}},
      {"ddr-2s4n-kunpeng920", {{0, D}, {1, D}, {2, D}, {3, D}}},
      {"ddr-2s-nvdimm-devdax", {{0, D}, {1, D}}},
      {"optane-2lm-clx-snc2", {{0, P}, {1, P}, {2, P}, {3, P}}},
      {"optane-kmem-clx-initiators-gi",
       {{0, N}, {1, N}, {2, N}, {3, N}, {4, N}, {5, D}, {6, D}, {7, P}, {8, D}, {9, D}, {10, P}}},
      {"qemu-dram-hbm-nvm-dax-hmat", {{0, D}, {1, D}, {2, H}, {4, H}, {6, P}, {8, P}, {9, P}}},
      {"knl-snc4-hybrid50-synthetic", {{0, D}, {1, D}, {2, D}, {3, D}, {4, H}, {5, H}, {6, H}, {7, H}}},
      {"knl-a2a-cache-synthetic", {{0, D}}},
      {"power9-v100-gpu-numa", {{0, D}, {8, D}, {250, G}, {251, G}, {252, G}, {253, G}, {254, G}, {255, G}}},
      {"gb10-unified-1node", {{0, D}}},
      {"edge-sparse-nodeids-magnycours", {{0, D}, {1, D}, {2, D}, {33, D}, {34, D}, {45, D}, {72, D}, {73, D}}},
      {"edge-offline-node0-haswell", {{1, D}}},
  };
  return e;
}

topology load_fixture(const std::string &dir, const char *name,
                      sysfs::read_scope scope = sysfs::read_scope::everything) {
  load_options lo;
  lo.root = dir + "/" + name;
  lo.overrides = "";
  lo.probe_file = "";
  lo.scope = scope;
  auto t = load_topology(lo);
  REQUIRE(t);
  return std::move(t).value();
}

std::string order(const topology &t, std::uint32_t initiator) { return test::tier_order(t, initiator); }

bool any_note(const topology &t, const std::string &needle) {
  for (const auto &n : t.notes)
    if (n.find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("all twelve real-machine fixtures classify as expected", "[fixtures]") {
  std::string why;
  auto dir = test::fixtures_dir(why);
  if (!dir) SKIP(why);
  for (const auto &e : expectations()) {
    INFO("fixture " << e.fixture);
    auto t = load_fixture(*dir, e.fixture);
    REQUIRE(t.nodes.size() == e.kinds.size());
    for (const auto &n : t.nodes) {
      INFO("node " << n.id << ": " << (n.reasons.empty() ? "" : n.reasons.front().text));
      REQUIRE(e.kinds.count(n.id) == 1);
      CHECK(n.kind == e.kinds.at(n.id));
      CHECK_FALSE(n.reasons.empty());
      CHECK(n.disagreements.empty());
    }
  }
}

// The preload reads less at start-up (read_scope::placement); what it decides from must not change.
TEST_CASE("the preload's lighter read gives every fixture the same kinds, tiers and default policy", "[fixtures]") {
  std::string why;
  auto dir = test::fixtures_dir(why);
  if (!dir) SKIP(why);
  std::size_t pools_skipped = 0, targets_skipped = 0, access0_skipped = 0;
  for (const auto &e : expectations()) {
    INFO("fixture " << e.fixture);
    const auto full = load_fixture(*dir, e.fixture);
    const auto light = load_fixture(*dir, e.fixture, sysfs::read_scope::placement);
    CHECK(light.snapshot.scope == sysfs::read_scope::placement);
    CHECK(light.hmat_reported == full.hmat_reported);
    CHECK(light.hmat_access_class == full.hmat_access_class);
    REQUIRE(light.nodes.size() == full.nodes.size());
    for (std::size_t i = 0; i < full.nodes.size(); ++i) {
      const auto &f = full.nodes[i];
      const auto &l = light.nodes[i];
      INFO("node " << f.id);
      CHECK(l.id == f.id);
      CHECK(l.kind == f.kind);
      CHECK(l.certainty == f.certainty);
      REQUIRE(l.reasons.size() == f.reasons.size());
      for (std::size_t r = 0; r < f.reasons.size(); ++r) CHECK(l.reasons[r].text == f.reasons[r].text);
      CHECK(l.disagreements == f.disagreements);
      CHECK(l.capacity_bytes == f.capacity_bytes);
      CHECK(l.performance.read_bandwidth_mbps == f.performance.read_bandwidth_mbps);
      CHECK(l.performance.read_latency_ns == f.performance.read_latency_ns);
      CHECK(l.kernel_tier == f.kernel_tier);
      CHECK(l.dax_devices == f.dax_devices);
      CHECK(l.allowed == f.allowed);
      // What the lighter read leaves out, and that the full read had it to leave.
      const auto &fs = *full.snapshot.find_node(f.id);
      const auto &ls = *light.snapshot.find_node(f.id);
      CHECK(ls.hugepages.empty());
      pools_skipped += fs.hugepages.size();
      for (std::size_t y = 0; y < 2; ++y) {
        CHECK(ls.access[y].targets.empty());
        targets_skipped += fs.access[y].targets.count();
        if (y == 0 && !ls.access[0].present && fs.access[0].present) {
          // Left unread only where access1 decides alone.
          CHECK(ls.access[1].performance.any());
          CHECK_FALSE(ls.access[1].initiators.empty());
          ++access0_skipped;
          continue;
        }
        CHECK(ls.access[y].present == fs.access[y].present);
        CHECK(ls.access[y].initiators == fs.access[y].initiators);
      }
    }
    for (const auto &i : full.initiators) CHECK(test::tier_order(light, i.node) == test::tier_order(full, i.node));
    // The same notes, but for a devdax device's size (not read).
    REQUIRE(light.notes.size() == full.notes.size());
    for (std::size_t n = 0; n < full.notes.size(); ++n)
      if (full.notes[n].find("as a devdax character device") == std::string::npos)
        CHECK(light.notes[n] == full.notes[n]);
    auto full_plan = policy::default_plan(full);
    auto light_plan = policy::default_plan(light);
    REQUIRE(static_cast<bool>(full_plan) == static_cast<bool>(light_plan));
    if (full_plan) CHECK(policy::explain(*light_plan) == policy::explain(*full_plan));
  }
  // Every kind of skipped fact occurs in the fixtures: the comparisons above were not vacuous.
  CHECK(pools_skipped > 0);
  CHECK(targets_skipped > 0);
  CHECK(access0_skipped > 0);
}

TEST_CASE("fixture traps", "[fixtures]") {
  std::string why;
  auto dir = test::fixtures_dir(why);
  if (!dir) SKIP(why);

  SECTION("Optane 2LM: all-zero HMAT is not reported, the 96 GiB memory-side cache is") {
    auto t = load_fixture(*dir, "optane-2lm-clx-snc2");
    CHECK_FALSE(t.hmat_reported);
    CHECK(any_note(t, "every value is 0"));
    for (const auto &n : t.nodes) {
      CHECK(n.performance.access_class == -1);
      REQUIRE(n.memory_side_caches.size() == 1);
      CHECK(*n.memory_side_caches[0].size_bytes == 103079215104ull);
    }
  }
  SECTION("generic initiator: access0 would make DRAM look like HBM; access1 is used") {
    auto t = load_fixture(*dir, "optane-kmem-clx-initiators-gi");
    CHECK(t.hmat_access_class == 1);
    CHECK(*t.find(5)->performance.read_bandwidth_mbps == 131072);
    CHECK(*t.find(7)->performance.read_latency_ns == 77);
    CHECK(t.find(4)->is_generic_initiator);
    CHECK(order(t, 0) == "5 > 7 > 6 > 8,9 > 10");
  }
  SECTION("devdax only, and a kmem dax pointing at a node that does not exist") {
    auto t = load_fixture(*dir, "ddr-2s-nvdimm-devdax");
    CHECK(t.find(5) == nullptr);
    CHECK(any_note(t, "dax1.4 is bound to kmem with target node 5, which is not online"));
    CHECK(any_note(t, "dax0.0: 100 GiB of persistent memory as a devdax character device"));
  }
  SECTION("empty has_cpu: CPUs come from cpulist") {
    auto t = load_fixture(*dir, "ddr-2s-xeon-silver4108");
    CHECK(t.find(0)->cpus.to_string() == "0-7,16-23");
    CHECK(order(t, 0) == "0 > 1");
    CHECK(order(t, 1) == "1 > 0");
  }
  SECTION("sparse node ids and distances by online order") {
    auto t = load_fixture(*dir, "edge-sparse-nodeids-magnycours");
    CHECK(*t.snapshot.distance(33, 0) == 22);
    CHECK(*t.snapshot.distance(33, 2) == 10 + 6);
    CHECK(t.initiator(33)->tiers.front().nodes == std::vector<std::uint32_t>{33});
  }
  SECTION("offline node 0: a distance row with a column per possible node") {
    auto t = load_fixture(*dir, "edge-offline-node0-haswell");
    CHECK(*t.snapshot.distance(1, 1) == 10);
  }
  SECTION("KNL SNC4 hybrid: MCDRAM near each quadrant ranks first for it, far MCDRAM last") {
    auto t = load_fixture(*dir, "knl-snc4-hybrid50-synthetic");
    CHECK(order(t, 0) == "7 > 0 > 1,2,3 > 4,5,6");
    CHECK(order(t, 1) == "4 > 1 > 0,2,3 > 5,6,7");
    CHECK(t.find(0)->memory_side_cache_note.find("MCDRAM") != std::string::npos);
  }
  SECTION("KNL all-to-all cache mode: DDR behind a 16 GiB MCDRAM cache") {
    auto t = load_fixture(*dir, "knl-a2a-cache-synthetic");
    CHECK(t.find(0)->memory_side_cache_note.rfind("16.0 GiB MCDRAM cache", 0) == 0);
  }
  SECTION("POWER9 GPU memory is device memory, ranked after every DDR node") {
    auto t = load_fixture(*dir, "power9-v100-gpu-numa");
    CHECK(t.find(250)->gpu == "0035:05:00.0");
    CHECK(order(t, 0) == "0 > 8 > 250,251,252,253,254,255");
  }
  SECTION("QEMU HMAT: soft-reserved HBM, NVDIMM PMEM, per-initiator order") {
    auto t = load_fixture(*dir, "qemu-dram-hbm-nvm-dax-hmat");
    CHECK(t.find(2)->certainty == confidence::high);
    CHECK(order(t, 0) == "0 > 8 > 2,4 > 1 > 6,9");
    CHECK(order(t, 2) == "2 > 9 > 4 > 0,1 > 6,8");
  }
}

TEST_CASE("hwloc agrees with every fixture verdict where it has one", "[fixtures][hwloc]") {
  std::string why;
  auto dir = test::fixtures_dir(why);
  if (!dir) SKIP(why);
  for (const auto &e : expectations()) {
    INFO("fixture " << e.fixture);
    auto t = load_fixture(*dir, e.fixture);
    auto hw = hwloc_view(t.root);
    REQUIRE(hw);
    crosscheck(t, *hw);
    for (const auto &n : t.nodes) {
      INFO("node " << n.id);
      CHECK(n.disagreements.empty());
      // hwloc lists every memory node except the POWER9 GPU memory.
      if (n.has_memory && n.kind != memory_kind::device) {
        bool seen = false;
        for (const auto &r : n.reasons) seen = seen || r.source == evidence_source::hwloc;
        CHECK(seen);
      }
    }
  }
  auto t = load_fixture(*dir, "qemu-dram-hbm-nvm-dax-hmat");
  auto hw = hwloc_view(t.root);
  REQUIRE(hw);
  bool hbm = false;
  for (const auto &n : hw->nodes) hbm = hbm || (n.os_index == 2 && n.subtype == "HBM");
  CHECK(hbm);  // the cross-check really reads hwloc's subtypes
}
