// The policy language, memkind's and autohbw's variables, resolution against real (VM-gathered)
// topologies, and the allocation-time runtime.
#include <catch2/catch_test_macros.hpp>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "hetmem/detail/policy_runtime.hpp"
#include "hetmem/policy.hpp"
#include "tree.hpp"

using namespace hetmem;
using namespace hetmem::policy;

namespace {

std::string error_of(std::string_view text, std::string_view origin = "HETMEM_POLICY") {
  auto p = parse(text, origin);
  REQUIRE_FALSE(p);
  CHECK(p.error().code == EINVAL);
  return p.error().message;
}

// A topology gathered from one of the project's VM topologies (tests/trees, unpacked by ctest).
std::optional<topology> vm_tree(const std::string &name) {
  const std::string root = std::string(HETMEM_TEST_TREES) + "/vm-" + name;
  if (!std::filesystem::exists(root)) return std::nullopt;
  load_options lo;
  lo.root = root;
  lo.overrides = "";
  auto t = load_topology(lo);
  REQUIRE(t);
  return std::move(*t);
}

plan resolved(std::string_view text, const topology &t) {
  auto p = parse(text);
  REQUIRE(p);
  loaded_policy lp{*p, "HETMEM_POLICY"};
  auto r = resolve(lp, t);
  if (!r) FAIL(r.error().message);
  return *r;
}

}  // namespace

TEST_CASE("policy language: every form parses into its rule", "[policy]") {
  auto p = parse(
      "size>=1M -> hbm>ddr; size<4K -> bind ddr\n"
      "size>64K and size<=512K -> interleave ddr,cxl  # comment\n"
      "weighted ddr, hbm\n"
      "watermark hbm=80%; watermark 95%; strict; callsite",
      "test.conf");
  REQUIRE(p);
  REQUIRE(p->rules.size() == 4);
  CHECK(p->rules[0].min_size == (1u << 20));
  CHECK(p->rules[0].max_size == UINT64_MAX);
  CHECK(p->rules[0].where.kind == route_kind::chain);
  REQUIRE(p->rules[0].where.tiers.size() == 2);
  CHECK(p->rules[0].where.tiers[0].kind == memory_kind::hbm);
  CHECK(p->rules[0].where.tiers[1].kind == memory_kind::ddr);
  CHECK(p->rules[0].text == "size>=1M -> hbm>ddr");
  CHECK(p->rules[0].origin == "test.conf:1");
  CHECK(p->rules[1].max_size == 4095);
  CHECK(p->rules[1].where.kind == route_kind::bind);
  CHECK(p->rules[2].min_size == 65537);
  CHECK(p->rules[2].max_size == 512u << 10);
  CHECK(p->rules[2].where.kind == route_kind::interleave);
  CHECK(p->rules[2].origin == "test.conf:2");
  CHECK(p->rules[3].where.kind == route_kind::weighted);
  CHECK(p->rules[3].unconditional());
  REQUIRE(p->watermarks.size() == 2);
  CHECK(p->watermarks[0].tier->kind == memory_kind::hbm);
  CHECK(p->watermarks[0].percent == 80);
  CHECK_FALSE(p->watermarks[1].tier);
  CHECK(p->watermarks[1].percent == 95);
  CHECK(p->strict);
  CHECK(p->callsite);

  auto r = parse("ratio ddr:3, cxl:1");
  REQUIRE(r);
  CHECK(r->rules[0].where.kind == route_kind::ratio);
  CHECK(r->rules[0].where.shares == std::vector<std::uint64_t>{3, 1});
  auto th = parse("threshold dram:1,kmem_dax:4 start 64 min 1 max 10000");
  REQUIRE(th);
  CHECK(th->rules[0].where.kind == route_kind::threshold);
  REQUIRE(th->rules[0].where.thresholds.size() == 1);
  CHECK(th->rules[0].where.thresholds[0].start == 64);
  CHECK(th->rules[0].where.thresholds[0].min == 1);
  CHECK(th->rules[0].where.thresholds[0].max == 10000);
  CHECK(th->rules[0].where.tiers[1].kind == memory_kind::pmem);
  auto t = parse("node 2+3 > rank 1 > fastest > largest > local > file /dev/dax0.0 1G");
  REQUIRE(t);
  const auto &tiers = t->rules[0].where.tiers;
  REQUIRE(tiers.size() == 6);
  CHECK(tiers[0].nodes.to_string() == "2-3");
  CHECK(tiers[1].rank == 1);
  CHECK(tiers[5].path == "/dev/dax0.0");
  CHECK(tiers[5].file_bytes == (1u << 30));
}

TEST_CASE("policy language: errors name the source, the column and the token, with a caret", "[policy]") {
  CHECK(error_of("size>=1M -> hmb") ==
        "HETMEM_POLICY, column 13: unknown tier 'hmb' (expected hbm, ddr, pmem, cxl, device, fastest, largest, "
        "local, rank N, node N[+N], file PATH SIZE)\n  size>=1M -> hmb\n              ^");
  CHECK(error_of("size>=1Q -> hbm").find("column 7: 'size>=1Q' is not") == std::string::npos);
  CHECK(error_of("size>=1Q -> hbm").find("unknown unit 'Q'") != std::string::npos);
  CHECK(error_of("size>=1M hbm").find("column 10: expected '->' and where such allocations go but found 'hbm'") !=
        std::string::npos);
  CHECK(error_of("ddr; watermark hbm=180%").find("column 20: a watermark is a percentage from 1 to 100") !=
        std::string::npos);
  CHECK(error_of("ratio ddr, cxl:1").find("expected ':' and a share after the tier") != std::string::npos);
  CHECK(error_of("ratio ddr:0,cxl:1").find("expected a share (a whole number from 1) but found '0'") !=
        std::string::npos);
  CHECK(error_of("hbm>ddr cxl").find("expected '>' (a chain), ';' or the end but found 'cxl'") != std::string::npos);
  CHECK(error_of("size>=2M and size<1M -> hbm").find("matches no size") != std::string::npos);
  CHECK(error_of("threshold ddr:1,pmem:1 start 10 min 20").find("min <= start <= max") != std::string::npos);
  CHECK(error_of("  ;  ").find("empty policy") != std::string::npos);
  CHECK(error_of("ddr\nbind !", "/etc/hetmem.conf").find("/etc/hetmem.conf:2, column 6:") == 0);
  CHECK(error_of("node 1024").find("expected node numbers") != std::string::npos);
  CHECK(error_of("rank x").find("expected a rank") != std::string::npos);
  // Enormous input: refused whole, not parsed.
  auto huge = parse(std::string(2u << 20, 'a'));
  REQUIRE_FALSE(huge);
  CHECK(huge.error().code == E2BIG);
}

TEST_CASE("sizes: units, suffixes and overflow", "[policy]") {
  CHECK(*parse_size("4096") == 4096);
  CHECK(*parse_size("64K") == 65536);
  CHECK(*parse_size("1MiB") == (1u << 20));
  CHECK(*parse_size("2g") == (2ull << 30));
  CHECK(*parse_size("1T") == (1ull << 40));
  CHECK_FALSE(parse_size(""));
  CHECK_FALSE(parse_size("K"));
  CHECK_FALSE(parse_size("1KX"));
  CHECK(parse_size("99999999999999999999").error().code == ERANGE);
  CHECK(parse_size("20000000000T").error().code == ERANGE);
}

TEST_CASE("memkind's MEMKIND_MEM_TIERS and MEMKIND_MEM_THRESHOLDS, as its man page defines them", "[policy][compat]") {
  auto p =
      from_memkind("KIND:FS_DAX,PATH:/mnt/pmem0,PMEM_SIZE_LIMIT:10G,RATIO:1;KIND:DRAM,RATIO:4;POLICY:STATIC_RATIO");
  REQUIRE(p);
  const auto &r = p->rules.at(0);
  CHECK(r.unconditional());
  CHECK(r.where.kind == route_kind::ratio);
  CHECK(r.where.tiers[0].what == tier_ref::form::file);
  CHECK(r.where.tiers[0].path == "/mnt/pmem0");
  CHECK(r.where.tiers[0].file_bytes == (10ull << 30));
  CHECK(r.where.tiers[1].what == tier_ref::form::local);
  CHECK(r.where.shares == std::vector<std::uint64_t>{1, 4});
  CHECK(r.origin == "MEMKIND_MEM_TIERS");

  auto d = from_memkind("KIND:DRAM,RATIO:1;KIND:KMEM_DAX,RATIO:4;POLICY:DYNAMIC_THRESHOLD",
                        "INIT_VAL:64,MIN_VAL:1,MAX_VAL:10000");
  REQUIRE(d);
  CHECK(d->rules[0].where.kind == route_kind::threshold);
  CHECK(d->rules[0].where.tiers[1].kind == memory_kind::pmem);
  CHECK(d->rules[0].where.thresholds.at(0).start == 64);
  CHECK(d->rules[0].where.thresholds.at(0).min == 1);
  CHECK(d->rules[0].where.thresholds.at(0).max == 10000);
  auto defaults = from_memkind("KIND:DRAM,RATIO:1;KIND:KMEM_DAX,RATIO:4;POLICY:DYNAMIC_THRESHOLD");
  REQUIRE(defaults);
  CHECK(defaults->rules[0].where.thresholds.at(0).start == 1024);
  CHECK(defaults->rules[0].where.thresholds.at(0).min == 513);
  CHECK(defaults->rules[0].where.thresholds.at(0).max == 1536);

  auto bad = [](std::string_view tiers, std::string_view thresholds, const char *needle) {
    auto got = from_memkind(tiers, thresholds);
    REQUIRE_FALSE(got);
    INFO(got.error().message);
    CHECK(got.error().message.find(needle) != std::string::npos);
  };
  bad("KIND:DRAM,RATIO:1", "", "no POLICY");
  bad("KIND:DRAM,RATIO:1;POLICY:RANDOM", "", "unknown POLICY 'RANDOM'");
  bad("KIND:HBM,RATIO:1;POLICY:STATIC_RATIO", "", "unknown KIND 'HBM'");
  bad("KIND:DRAM,KIND:DRAM,RATIO:1;POLICY:STATIC_RATIO", "", "'KIND' given twice");
  bad("KIND:DRAM,PATH:/tmp,RATIO:1;POLICY:STATIC_RATIO", "", "for KIND:FS_DAX only");
  bad("KIND:DRAM,RATIO:0;POLICY:STATIC_RATIO", "", "RATIO '0'");
  bad("KIND:FS_DAX,RATIO:1;POLICY:STATIC_RATIO", "", "needs PATH");
  bad("KIND:DRAM,RATIO:1;POLICY:DYNAMIC_THRESHOLD", "", "two tiers or more");
  bad("POLICY:STATIC_RATIO;KIND:DRAM,RATIO:1", "", "POLICY must be the last");
  bad("KIND:DRAM,RATIO:1;KIND:KMEM_DAX,RATIO:1;POLICY:DYNAMIC_THRESHOLD", "INIT_VAL:5,INIT_VAL:6", "given twice");
  bad("KIND:DRAM,RATIO:1;KIND:KMEM_DAX,RATIO:1;POLICY:DYNAMIC_THRESHOLD", "INIT_VAL:5000,MAX_VAL:100",
      "MIN_VAL <= INIT_VAL");
  auto only_start = from_memkind("KIND:DRAM,RATIO:1;KIND:KMEM_DAX,RATIO:4;POLICY:DYNAMIC_THRESHOLD", "INIT_VAL:64");
  REQUIRE(only_start);
  CHECK(only_start->rules[0].where.thresholds[0].min == 33);
  CHECK(only_start->rules[0].where.thresholds[0].max == 96);
  bad("KIND:DRAM,RATIO:1;KIND:KMEM_DAX,RATIO:1;POLICY:DYNAMIC_THRESHOLD", "INIT_VAL:64;INIT_VAL:64",
      "more thresholds than tiers");
  // Three tiers, two thresholds: each configuration goes to its own threshold, in order.
  auto three = from_memkind(
      "KIND:DRAM,RATIO:1;KIND:KMEM_DAX,RATIO:2;KIND:FS_DAX,PATH:/mnt/p,RATIO:4;"
      "POLICY:DYNAMIC_THRESHOLD",
      " INIT_VAL:64 ; INIT_VAL:4096,MIN_VAL:1024,MAX_VAL:8192;");
  REQUIRE(three);
  REQUIRE(three->rules[0].where.thresholds.size() == 2);
  CHECK(three->rules[0].where.thresholds[0].start == 64);
  CHECK(three->rules[0].where.thresholds[1].start == 4096);
  CHECK(three->rules[0].where.thresholds[1].min == 1024);
  CHECK(three->rules[0].where.thresholds[1].max == 8192);
  bad("KIND:DRAM,RATIO:1;;KIND:KMEM_DAX,RATIO:1;POLICY:STATIC_RATIO", "", "two ';' in a row");
}

TEST_CASE("autohbw's AUTO_HBW_SIZE and AUTO_HBW_MEM_TYPE", "[policy][compat]") {
  auto p = from_autohbw("4K");
  REQUIRE(p);
  CHECK(p->rules[0].min_size == 4097);  // "larger than x"
  CHECK(p->rules[0].max_size == UINT64_MAX);
  CHECK(p->rules[0].where.kind == route_kind::chain);  // HBW_PREFERRED: falls back
  auto range = from_autohbw("1M:5M", "MEMKIND_HBW");
  REQUIRE(range);
  CHECK(range->rules[0].min_size == (1u << 20) + 1);
  CHECK(range->rules[0].max_size == (5u << 20) - 1);  // "smaller than y"
  CHECK(range->rules[0].where.kind == route_kind::bind);
  CHECK(from_autohbw("1M", "MEMKIND_HBW_INTERLEAVE")->rules[0].where.kind == route_kind::interleave);
  CHECK(from_autohbw("1M", "MEMKIND_HBW_HUGETLB")->notes.size() == 1);
  CHECK_FALSE(from_autohbw("1X"));
  CHECK_FALSE(from_autohbw("5M:1M"));
  CHECK(from_autohbw("1M", "MEMKIND_GBTLB").error().message.find("not one hetmem maps") != std::string::npos);
}

TEST_CASE("where the policy comes from: precedence, ignored sources, strict", "[policy]") {
  environment env;
  CHECK(load(env)->source.empty());  // nothing set: the default
  env.autohbw_size = "1M";
  CHECK(load(env)->source == "AUTO_HBW_SIZE");
  env.memkind_tiers = "KIND:DRAM,RATIO:1;POLICY:STATIC_RATIO";
  auto m = load(env);
  REQUIRE(m);
  CHECK(m->source == "MEMKIND_MEM_TIERS");
  CHECK(m->p.notes.at(0) == "AUTO_HBW_SIZE ignored: MEMKIND_MEM_TIERS takes precedence");
  test::temp_tree dir;
  dir.file("hetmem.conf", "# tiers for this job\nsize>=1M -> hbm>ddr\nddr\n");
  env.config = dir.root() + "/hetmem.conf";
  auto c = load(env);
  REQUIRE(c);
  CHECK(c->source == "HETMEM_CONFIG (" + *env.config + ")");
  CHECK(c->p.rules.at(0).origin == *env.config + ":2");
  env.policy = "bind ddr";
  auto h = load(env);
  REQUIRE(h);
  CHECK(h->source == "HETMEM_POLICY");
  CHECK(h->p.notes.at(0) == "HETMEM_CONFIG, MEMKIND_MEM_TIERS, AUTO_HBW_SIZE ignored: HETMEM_POLICY takes precedence");
  CHECK_FALSE(h->p.strict);
  env.strict = "1";
  CHECK(load(env)->p.strict);
  CHECK(strict_requested(env));
  env.strict.reset();
  env.policy = "strict; hmb";  // strict even when the rest does not parse
  CHECK_FALSE(load(env));
  CHECK(strict_requested(env));
  env.policy.reset();
  env.config = dir.root() + "/missing.conf";
  auto missing = load(env);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message.find("cannot read " + *env.config) != std::string::npos);
}

TEST_CASE("resolution on VM topologies: the default, chains, weights, watermarks, errors", "[policy][fixture]") {
  auto t = vm_tree("ddr-hbm-slow");  // node 0 DDR with CPUs, 1 HBM, 2 CXL-like slow memory
  if (!t) SKIP("tests/trees not unpacked (run through ctest)");

  auto d = default_plan(*t);
  REQUIRE(d);
  const std::string de = explain(*d);
  INFO(de);
  // Local DDR first, then the slow tier, then anywhere; HBM only when asked for.
  REQUIRE(d->rules.size() == 1);
  REQUIRE(d->rules[0].where.tiers.size() == 3);
  CHECK(d->tiers[d->rules[0].where.tiers[0]].where.where.nodes.to_string() == "0");
  CHECK(d->tiers[d->rules[0].where.tiers[0]].fill_limit_percent == 90);
  CHECK(d->tiers[d->rules[0].where.tiers[1]].where.where.nodes.to_string() == "2");
  CHECK(d->tiers[d->rules[0].where.tiers[2]].where.where.mode == policy_mode::default_policy);
  CHECK(d->tiers[d->rules[0].where.tiers[2]].fill_limit_percent == 100);
  CHECK(de.find("HBM") == std::string::npos);

  auto c = resolved("size>=1M -> hbm>ddr; watermark hbm=80%", *t);
  REQUIRE(c.rules.size() == 2);  // the rule, then the default for every other size
  CHECK(c.rules[1].origin == "default");
  const auto &hbm = c.tiers[c.rules[0].where.tiers[0]];
  CHECK(hbm.where.where.nodes.to_string() == "1");
  CHECK(hbm.where.where.mode == policy_mode::preferred);  // a chain gives the kernel a say
  CHECK(hbm.fill_limit_percent == 80);
  CHECK(hbm.why == "watermark 80% for hbm (HETMEM_POLICY)");
  CHECK(c.tiers[c.rules[0].where.tiers[1]].fill_limit_percent == 100);  // the chain's last

  auto w = resolved("weighted ddr,hbm", *t);  // HMAT: 100 GB/s and 400 GB/s
  const auto &wt = w.tiers[w.rules[0].where.tiers[0]].where;
  CHECK(wt.where.mode == policy_mode::weighted_interleave);
  CHECK(wt.where.weights == std::vector<std::uint8_t>{1, 4});
  CHECK(explain(w).find("weights 1:4 from HMAT read bandwidth") != std::string::npos);

  auto b = resolved("bind hbm", *t);
  CHECK(b.tiers[b.rules[0].where.tiers[0]].where.where.mode == policy_mode::bind);

  // A chain runs on the tiers that exist; bind does not.
  auto skip = resolved("pmem>ddr", *t);
  CHECK(explain(skip).find("chain tiers skipped: 'pmem': no PMEM memory") != std::string::npos);
  auto p = parse("bind pmem");
  REQUIRE(p);
  auto e = resolve({*p, "HETMEM_POLICY"}, *t);
  REQUIRE_FALSE(e);
  CHECK(e.error().message ==
        "HETMEM_POLICY: bind pmem: 'pmem': no PMEM memory this process may use on this machine (nodes 0=DDR, "
        "1=HBM, 2=CXL)");
  auto r = parse("rank 7");
  REQUIRE(r);
  CHECK(resolve({*r, "HETMEM_POLICY"}, *t).error().message.find("no tier of the chain exists here") !=
        std::string::npos);
}

TEST_CASE("resolution: two sockets, each thread's own DDR first, HBM per socket", "[policy][fixture]") {
  auto t = vm_tree("two-socket-hbm");
  if (!t) SKIP("tests/trees not unpacked (run through ctest)");
  auto d = default_plan(*t);
  REQUIRE(d);
  const auto &local = d->tiers[d->rules[0].where.tiers[0]].where;
  CHECK(local.where.nodes.to_string() == "0-1");
  // Several nodes: per-node shards, each preferring its node (preferred-many where the kernel
  // has it, else bound per node).
  CHECK((local.where.mode == policy_mode::preferred_many || local.where.mode == policy_mode::bind));
  auto h = resolved("fastest", *t);  // rank 0 of each initiator: its HBM here (HMAT: 4x the bandwidth)
  CHECK(h.tiers[h.rules[0].where.tiers[0]].where.where.nodes.to_string() == "2-3");
  auto hbm = resolved("hbm", *t);
  CHECK(hbm.tiers[hbm.rules[0].where.tiers[0]].where.where.nodes.to_string() == "2-3");
}

TEST_CASE("one memory node: the default is the kernel's own placement", "[policy]") {
  test::temp_tree tree;
  tree.file("sys/devices/system/node/possible", "0\n")
      .file("sys/devices/system/node/online", "0\n")
      .file("sys/devices/system/node/has_memory", "0\n")
      .file("sys/devices/system/node/has_cpu", "0\n")
      .file("sys/devices/system/node/node0/cpulist", "0-3\n")
      .file("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 8388608 kB\nNode 0 MemFree: 4194304 kB\n")
      .file("sys/devices/system/node/node0/distance", "10\n");
  load_options lo;
  lo.root = tree.root();
  lo.overrides = "";
  auto t = load_topology(lo);
  REQUIRE(t);
  auto d = default_plan(*t);
  REQUIRE(d);
  REQUIRE(d->tiers.size() == 1);
  CHECK(d->tiers[0].where.where.mode == policy_mode::default_policy);
  CHECK(d->tiers[0].fill_limit_percent == 100);
}

// The runtime on this machine: two distinct tier arenas on node 0 stand for two tiers (the
// kernel's side of the split is proven in the VM, by numa_maps).
namespace {
detail::policy_runtime *runtime_here(std::string_view text) {
  auto t = load_topology();
  REQUIRE(t);
  auto rt = detail::policy_runtime::create(resolved(text, *t));
  REQUIRE(rt);
  return *rt;
}
void free_all(detail::policy_runtime *rt, const std::vector<void *> &blocks) {
  for (void *q : blocks) {
    rt->note_free(q);
    detail::tier_arena::deallocate(q);
  }
}
}  // namespace

TEST_CASE("runtime: a ratio rule splits live bytes within 1%", "[policy][runtime]") {
  detail::policy_runtime *rt = runtime_here("ratio node 0:1, local:3");
  REQUIRE(rt->counting());
  std::map<unsigned, std::uint64_t> bytes;
  std::vector<void *> blocks;
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> size(1, 256u << 10);
  std::uint64_t total = 0;
  while (total < (256u << 20)) {
    const std::size_t n = size(rng);
    void *q = rt->allocate(n, 0, nullptr);
    REQUIRE(q != nullptr);
    blocks.push_back(q);
    bytes[detail::tier_arena::id_of(q)] += detail::tier_arena::usable_size(q);
    total += detail::tier_arena::usable_size(q);
  }
  REQUIRE(bytes.size() == 2);
  const double first = static_cast<double>(bytes.begin()->second) / static_cast<double>(total);
  INFO("first tier share " << first);
  CHECK(std::abs(first - 0.25) < 0.01);
  rt->publish_thread_counts();
  free_all(rt, blocks);
  rt->publish_thread_counts();
  for (auto [id, b] : bytes) CHECK(rt->live_bytes(id) == 0);
}

TEST_CASE("runtime: a threshold rule moves its threshold to hold the shares", "[policy][runtime]") {
  detail::policy_runtime *rt = runtime_here("threshold node 0:1, local:1 start 64 min 16 max 8K");
  std::map<unsigned, std::uint64_t> bytes;
  std::vector<void *> blocks;
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::size_t> size(16, 4096);
  for (int i = 0; i < 200000; ++i) {
    void *q = rt->allocate(size(rng), 0, nullptr);
    REQUIRE(q != nullptr);
    blocks.push_back(q);
  }
  // The second half, after the threshold settled, splits about evenly.
  for (std::size_t i = blocks.size() / 2; i < blocks.size(); ++i)
    bytes[detail::tier_arena::id_of(blocks[i])] += detail::tier_arena::usable_size(blocks[i]);
  REQUIRE(bytes.size() == 2);
  const double a = static_cast<double>(bytes.begin()->second), b = static_cast<double>(bytes.rbegin()->second);
  INFO("split " << a << " / " << b);
  CHECK(std::abs(a / (a + b) - 0.5) < 0.1);
  free_all(rt, blocks);
}

TEST_CASE("runtime: with callsite, one call site's allocations stay on one tier", "[policy][runtime]") {
  detail::policy_runtime *rt = runtime_here("ratio node 0:1, local:1; callsite");
  std::map<const void *, std::map<unsigned, int>> per_site;
  std::vector<void *> blocks;
  static const char sites[8] = {};
  for (int i = 0; i < 4000; ++i) {
    const void *site = &sites[i % 8];
    void *q = rt->allocate(4096, 0, site);
    REQUIRE(q != nullptr);
    blocks.push_back(q);
    ++per_site[site][detail::tier_arena::id_of(q)];
  }
  std::map<unsigned, int> sites_per_tier;
  for (auto &[site, tiers] : per_site) {
    CHECK(tiers.size() == 1);
    ++sites_per_tier[tiers.begin()->first];
  }
  CHECK(sites_per_tier.size() == 2);  // the sites themselves are spread by the ratio
  free_all(rt, blocks);
}
