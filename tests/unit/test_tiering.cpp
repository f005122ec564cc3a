// Automatic tiering (hetmem/tiering.hpp): the planner on its own, the settings string, the
// kernel's tiering state read from a made-up root, and the soft-dirty source observing this
// process for real. Promotion and demotion between real nodes are proven in the VM
// (tests/vm/tiering-guest.sh, the GUPS runs).
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "hetmem/tiering.hpp"

using namespace hetmem;
using Catch::Matchers::ContainsSubstring;
using detail::chunk_view;
using detail::plan_interval;
using detail::plan_limits;

namespace {

constexpr std::uint64_t MiB = 1ULL << 20;
constexpr std::uint64_t chunk = 2 * MiB;

chunk_view view(double heat, double fast_share, double last_move = -1e18, int dir = 0) {
  return chunk_view{heat, chunk, fast_share, last_move, dir};
}

plan_limits limits(std::int64_t room, std::uint64_t budget = 1ULL << 40) {
  plan_limits l;
  l.room_bytes = room;
  l.budget_bytes = budget;
  l.now = 100;
  return l;
}

bool has(const std::vector<std::size_t> &v, std::size_t i) { return std::find(v.begin(), v.end(), i) != v.end(); }

tier node_tier(std::uint32_t n) {
  tier t;
  t.name = "node " + std::to_string(n);
  t.kind = memory_kind::ddr;
  t.where.mode = policy_mode::bind;
  t.where.nodes = {n};
  return t;
}

}  // namespace

TEST_CASE("tiering plan: the hottest chunks that fit go up, hottest first; cold ones stay", "[tiering]") {
  // 0: cold slow, 1: hot slow, 2: hotter slow, 3: warm below threshold, 4: already fast and hot
  std::vector<chunk_view> c{view(0, 0), view(0.5, 0), view(0.9, 0), view(0.01, 0), view(0.7, 1)};
  auto p = plan_interval(c, limits(static_cast<std::int64_t>(4 * chunk)));
  REQUIRE(p.promote == std::vector<std::size_t>{2, 1});
  CHECK(p.demote.empty());
  CHECK(p.promote_bytes == 2 * chunk);
  CHECK(p.hot_bytes == 3 * chunk);

  // Room for one: only the hottest.
  p = plan_interval(c, limits(static_cast<std::int64_t>(chunk)));
  CHECK(p.promote == std::vector<std::size_t>{2});
}

TEST_CASE("tiering plan: room is made by demoting clearly colder chunks, coldest first", "[tiering]") {
  // Fast tier full (room 0): 0 and 1 cold on fast, 2 warm-ish on fast, 3 and 4 hot on slow.
  std::vector<chunk_view> c{view(0.02, 1), view(0, 1), view(0.30, 1), view(0.8, 0), view(0.6, 0)};
  auto p = plan_interval(c, limits(0));
  CHECK(p.demote == std::vector<std::size_t>{1, 0});
  CHECK(p.promote == std::vector<std::size_t>{3, 4});
  CHECK_FALSE(has(p.demote, 2));  // hot enough to stay (it is admitted: capacity is 3 chunks)
}

TEST_CASE("tiering plan: hysteresis keeps a chunk just colder than the set where it is", "[tiering]") {
  // Capacity 1 chunk, held by chunk 0 (heat 0.50); chunk 1 (0.52) is barely hotter.
  std::vector<chunk_view> c{view(0.50, 1), view(0.52, 0)};
  auto p = plan_interval(c, limits(0));
  CHECK(p.promote.empty());
  CHECK(p.demote.empty());
  // Clearly hotter: the swap happens.
  c[1].heat = 0.9;
  c[0].heat = 0.2;
  p = plan_interval(c, limits(0));
  CHECK(p.demote == std::vector<std::size_t>{0});
  CHECK(p.promote == std::vector<std::size_t>{1});
}

TEST_CASE("tiering plan: over the limit, chunks leave coldest first even when warm", "[tiering]") {
  std::vector<chunk_view> c{view(0.4, 1), view(0.9, 1), view(0.2, 1)};
  auto p = plan_interval(c, limits(-static_cast<std::int64_t>(chunk)));
  // Capacity is 2 chunks: the two hottest stay, chunk 2 leaves.
  CHECK(p.demote == std::vector<std::size_t>{2});
  CHECK(p.promote.empty());
  // One byte more over: chunk 0 (0.4) must go too, though it is hot.
  p = plan_interval(c, limits(-static_cast<std::int64_t>(chunk) - 1));
  CHECK(p.demote == std::vector<std::size_t>{2, 0});
}

TEST_CASE("tiering plan: a chunk moved one way does not come back within the cooldown", "[tiering]") {
  plan_limits l = limits(0);
  l.cooldown = 10;
  // Chunk 0 demoted 5 s ago and hot again: not promoted yet; chunk 1 promoted 5 s ago and cold: stays.
  std::vector<chunk_view> c{view(0.9, 0, 95, -1), view(0, 1, 95, +1)};
  auto p = plan_interval(c, l);
  CHECK(p.promote.empty());
  CHECK(p.demote.empty());
  l.now = 106;
  p = plan_interval(c, l);
  CHECK(p.demote == std::vector<std::size_t>{1});
  CHECK(p.promote == std::vector<std::size_t>{0});
}

TEST_CASE("tiering plan: the migration budget bounds each interval, demotions first", "[tiering]") {
  std::vector<chunk_view> c{view(0, 1), view(0, 1), view(0.9, 0), view(0.8, 0)};
  auto p = plan_interval(c, limits(0, 3 * chunk));
  // One swap (2 chunks of budget) fits; the second would need 2 more and only 1 is left, so
  // chunk 1 is not demoted for nothing.
  CHECK(p.demote == std::vector<std::size_t>{0});
  CHECK(p.promote == std::vector<std::size_t>{2});
  CHECK(p.demote_bytes + p.promote_bytes == 2 * chunk);
  p = plan_interval(c, limits(0, chunk - 1));
  CHECK(p.demote.empty());
  CHECK(p.promote.empty());
}

TEST_CASE("tiering plan: when the kernel promotes, hetmem only gives back", "[tiering]") {
  plan_limits l = limits(-static_cast<std::int64_t>(chunk));
  l.promote = false;
  std::vector<chunk_view> c{view(0, 1), view(0.9, 0)};
  auto p = plan_interval(c, l);
  CHECK(p.demote == std::vector<std::size_t>{0});
  CHECK(p.promote.empty());
}

TEST_CASE("tiering settings string: defaults, every key, errors that name the key", "[tiering]") {
  auto d = parse_tiering_options("1");
  REQUIRE(d);
  CHECK(d->fast_limit_bytes == 0);
  CHECK(d->source == hotness_source::automatic);
  auto o = parse_tiering_options(
      "fast-limit=512M, rate=128M/s,interval=0.5,threshold=0.1,hysteresis=0.02,cooldown=3,reserve=10%,chunk=4M,"
      "window=0.05,source=soft-dirty,coexist=force");
  REQUIRE(o);
  CHECK(o->fast_limit_bytes == 512 * MiB);
  CHECK(o->max_bytes_per_second == 128 * MiB);
  CHECK(o->interval_seconds == 0.5);
  CHECK(o->promote_threshold == 0.1);
  CHECK(o->cooldown_seconds == 3);
  CHECK(o->fast_reserve_fraction == 0.1);
  CHECK(o->chunk_bytes == 4 * MiB);
  CHECK(o->source == hotness_source::soft_dirty);
  CHECK(o->coexist == kernel_coexistence::force);
  CHECK_THAT(parse_tiering_options("fast-limt=1G").error().message, ContainsSubstring("unknown key 'fast-limt'"));
  CHECK_THAT(parse_tiering_options("rate=fast").error().message, ContainsSubstring("rate=fast"));
  CHECK_THAT(parse_tiering_options("interval=0").error().message, ContainsSubstring("interval=0"));
  CHECK_THAT(parse_tiering_options("chunk=3000").error().message, ContainsSubstring("power of two"));
  CHECK_THAT(parse_tiering_options("source=perf").error().message, ContainsSubstring("auto, damon or soft-dirty"));
  CHECK_THAT(parse_tiering_options("interval=0.1,window=0.2").error().message, ContainsSubstring("window"));
  CHECK_THAT(parse_tiering_options("on,").error().message, ContainsSubstring("expected key=value"));
  CHECK(parse_tiering_options(std::string(1U << 20, 'x')).error().code == E2BIG);
}

TEST_CASE("the kernel's own tiering is read and explained, from a made-up root", "[tiering]") {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("hetmem-kt-" + std::to_string(::getpid()));
  fs::remove_all(root);
  auto put = [&](const std::string &rel, const std::string &text) {
    fs::create_directories((root / rel).parent_path());
    std::ofstream(root / rel) << text << "\n";
  };
  put("proc/sys/kernel/numa_balancing", "2");
  put("proc/sys/kernel/numa_balancing_promote_rate_limit_MBps", "65536");
  put("sys/kernel/mm/numa/demotion_enabled", "true");
  put("sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds", "1");
  put("sys/kernel/mm/damon/admin/kdamonds/0/state", "on");
  put("sys/kernel/mm/damon/admin/kdamonds/0/contexts/nr_contexts", "1");
  put("sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/operations", "paddr");
  put("sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/nr_schemes", "1");
  put("sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/0/action", "pageout");
  put("proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0");
  const auto s = detect_kernel_tiering(root.string());
  CHECK(s.numa_balancing == 2);
  CHECK(s.kernel_promotes());
  CHECK_FALSE(s.balancing_pulls_back());
  CHECK(s.demotion_enabled == 1);
  CHECK(s.damon_kdamonds == 1);
  CHECK(s.damon_running == 1);
  CHECK(s.psi);
  std::string all;
  for (const auto &n : s.notes()) all += n + "\n";
  CHECK_THAT(all, ContainsSubstring("tiering mode"));
  CHECK_THAT(all, ContainsSubstring("65536 MB/s"));
  CHECK_THAT(all, ContainsSubstring("kdamond 0 (running): paddr pageout"));
  CHECK_THAT(all, ContainsSubstring("demotes earlier"));

  put("proc/sys/kernel/numa_balancing", "1");
  const auto normal = detect_kernel_tiering(root.string());
  CHECK(normal.balancing_pulls_back());
  std::string n1;
  for (const auto &n : normal.notes()) n1 += n;
  CHECK_THAT(n1, ContainsSubstring("undoes demotion"));

  // DAMON configured by someone else: hetmem refuses to rebuild it (source=damon) or falls back.
  tiering_options o;
  o.fast = node_tier(0);
  o.slow = node_tier(1);
  o.source = hotness_source::damon;
  o.damon_admin = (root / "sys/kernel/mm/damon/admin").string();
  auto e = tiering_engine::create(o);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == EBUSY);
  CHECK_THAT(e.error().message, ContainsSubstring("DAMON is in use"));
  o.source = hotness_source::automatic;
  auto fallback = tiering_engine::create(o);
  if (!fallback) {  // no soft-dirty bits either: the error gives both reasons
    CHECK(fallback.error().code == ENOTSUP);
    CHECK_THAT(fallback.error().message, ContainsSubstring("CONFIG_MEM_SOFT_DIRTY"));
    CHECK_THAT(fallback.error().message, ContainsSubstring("not DAMON: DAMON is in use"));
    fs::remove_all(root);
    return;
  }
  const auto st = (*fallback)->statistics();
  CHECK_THAT(st.source, ContainsSubstring("soft-dirty"));
  std::string why;
  for (const auto &n : st.kernel_notes) why += n + "\n";
  CHECK_THAT(why, ContainsSubstring("not DAMON: DAMON is in use"));
  fs::remove_all(root);
}

TEST_CASE("tiering engine: soft-dirty bits find the chunks this process writes", "[tiering]") {
  // 64 MiB present, 8 MiB of it rewritten all the time by a thread: after two intervals the
  // engine's hot bytes cover the 8 MiB and not the rest. Everything is on node 0 already (the
  // fast tier here), so nothing moves.
  const std::size_t bytes = 64 * MiB, hot = 8 * MiB;
  void *m = ::mmap(nullptr, bytes + chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(m != MAP_FAILED);
  auto *base = reinterpret_cast<char *>((reinterpret_cast<std::uintptr_t>(m) + chunk - 1) & ~(chunk - 1));
  std::memset(base, 1, bytes);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (unsigned v = 0; !done.load(std::memory_order_relaxed); ++v)
      for (std::size_t i = 0; i < hot; i += 4096) base[i] = static_cast<char>(v);
  });
  tiering_options o;
  o.fast = node_tier(0);
  o.slow = node_tier(1);
  o.source = hotness_source::soft_dirty;
  o.soft_dirty_window_seconds = 0.05;
  o.interval_seconds = 0.2;
  o.smoothing = 1.0;
  auto e = tiering_engine::create(o);
  if (!e && e.error().code == ENOTSUP) {
    done = true;
    writer.join();
    ::munmap(m, bytes + chunk);
    SKIP("SKIPPED: " << e.error().message);
  }
  REQUIRE(e);
  for (int i = 0; i < 3; ++i) REQUIRE((*e)->step());
  done = true;
  writer.join();
  const auto s = (*e)->statistics();
  INFO(s.summary());
  CHECK(s.intervals == 3);
  CHECK(s.processes == 1);
  CHECK(s.hot_bytes >= hot);
  CHECK(s.hot_bytes < hot + 16 * MiB);  // the test's own stack and heap may be written too
  CHECK(s.managed_bytes >= bytes);
  CHECK(s.fast_bytes >= bytes);  // one node: all of it is on the fast tier
  CHECK(s.pages_promoted == 0);
  CHECK(s.pages_demoted == 0);
  CHECK(s.engine_cpu_seconds > 0);
  ::munmap(m, bytes + chunk);
}

TEST_CASE("tiering engine: bad settings and processes are refused with the cause", "[tiering]") {
  tiering_options o;
  o.fast = node_tier(0);
  o.slow = node_tier(0);
  CHECK_THAT(tiering_engine::create(o).error().message, ContainsSubstring("share nodes"));
  o.slow = node_tier(1);
  o.source = hotness_source::soft_dirty;
  o.pids = {999999999};
  auto e = tiering_engine::create(o);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == ESRCH);
  o.pids = {};
  o.chunk_bytes = 3 * MiB;
  CHECK_THAT(tiering_engine::create(o).error().message, ContainsSubstring("power of two"));
}
