// Automatic tiering (hetmem/tiering.hpp): the planner on its own, the settings string, the
// kernel's tiering state read from a made-up root, and the soft-dirty source observing this
// process for real. Promotion and demotion between real nodes are proven in the VM
// (tests/vm/tiering-guest.sh, the GUPS runs).
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "hetmem/detail/site_registry.hpp"
#include "hetmem/tiering.hpp"

using namespace hetmem;
using Catch::Matchers::ContainsSubstring;
using detail::chunk_view;
using detail::plan_interval;
using detail::plan_limits;

namespace {

// ThreadSanitizer writes its shadow memory on every access the program makes, reads included:
// to a page-table source those pages are written as often as the program's own.
#if defined(__SANITIZE_THREAD__)
constexpr bool under_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool under_tsan = true;
#else
constexpr bool under_tsan = false;
#endif
#else
constexpr bool under_tsan = false;
#endif

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

// A chunk-aligned region of `bytes`, every byte 1, and threads that keep touching one byte per
// page of parts of it until stop() (or destruction, also when a test SKIPs). A writer writes
// whole passes only, each with its own value, so when it stops its pages all hold the last one.
// The write-protect source on this process, node 0 over node 1, sampled quickly: a 50 ms window
// in 200 ms intervals, each observation taken as it is (no smoothing).
tiering_options write_protect_options() {
  tiering_options o;
  o.fast = node_tier(0);
  o.slow = node_tier(1);
  o.source = hotness_source::write_protect;
  o.soft_dirty_window_seconds = 0.05;
  o.interval_seconds = 0.2;
  o.smoothing = 1.0;
  // These tests are about what the source sees: no limit on what it may cost the program (the
  // limit has a test of its own).
  o.write_protect_max_overhead = 0;
  return o;
}

class busy_region {
 public:
  explicit busy_region(std::size_t bytes) : bytes_(bytes) {
    map_ = ::mmap(nullptr, bytes + chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(map_ != MAP_FAILED);
    base = reinterpret_cast<char *>((reinterpret_cast<std::uintptr_t>(map_) + chunk - 1) & ~(chunk - 1));
    std::memset(base, 1, bytes);
  }
  ~busy_region() {
    stop();
    ::munmap(map_, bytes_ + chunk);
  }
  busy_region(const busy_region &) = delete;
  busy_region &operator=(const busy_region &) = delete;

  void write(std::size_t from, std::size_t to) {
    threads_.emplace_back([this, from, to] {
      for (unsigned v = 0; !done_.load(std::memory_order_relaxed); ++v) {  // values 2-251: never the initial 1
        for (std::size_t i = from; i < to; i += 4096) base[i] = static_cast<char>(2 + v % 250);
        passes_.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  // Whole passes the writers have made so far (all writers together).
  [[nodiscard]] std::uint64_t passes() const { return passes_.load(std::memory_order_relaxed); }
  void read(std::size_t from, std::size_t to) {
    threads_.emplace_back([this, from, to] {
      unsigned local = 0;
      while (!done_.load(std::memory_order_relaxed))
        for (std::size_t i = from; i < to; i += 4096) local += static_cast<unsigned char>(base[i]);
      sink_ = local;
    });
  }
  void stop() {
    done_ = true;
    for (auto &t : threads_) t.join();
    threads_.clear();
  }
  [[nodiscard]] std::uintptr_t address() const { return reinterpret_cast<std::uintptr_t>(base); }
  [[nodiscard]] std::size_t bytes() const { return bytes_; }

  char *base = nullptr;

 private:
  std::size_t bytes_;
  void *map_ = nullptr;
  std::atomic<bool> done_{false};
  std::atomic<std::uint64_t> passes_{0};
  std::atomic<unsigned> sink_{0};
  std::vector<std::thread> threads_;
};

// Steps `e` until `seen()` holds, at most `max_steps` times; whether it held. On a loaded
// machine a writer may not run during a whole write window: what a test waits for is what the
// engine can observe (the writers' passes, the pages it saw), never a number of intervals.
template <typename Pred>
bool step_until(tiering_engine &e, Pred seen, int max_steps = 40) {
  for (int i = 0; i < max_steps; ++i) {
    if (!e.step()) return false;
    if (seen()) return true;
  }
  return false;
}

// write_protect_options() watching only `region` (none of the test's own stack and heap).
tiering_options watching_only(const busy_region &region) {
  tiering_options o = write_protect_options();
  o.write_protect_within = {{region.address(), region.address() + region.bytes()}};
  return o;
}

// watching_only(region) with the allocator's knowledge from `sites`, heat smoothed as by
// default (a window the writer was not scheduled in, on a loaded machine, does not make its
// block cold at once).
tiering_options watching_with_sites(const busy_region &region, detail::site_registry *sites) {
  tiering_options o = watching_only(region);
  o.sites = sites;
  o.smoothing = 0.5;
  return o;
}

// A directory standing for `/` (proc and sys files written by the test), removed at the end.
class made_up_root {
 public:
  explicit made_up_root(const std::string &name)
      : path(std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
  }
  ~made_up_root() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  made_up_root(const made_up_root &) = delete;
  made_up_root &operator=(const made_up_root &) = delete;
  // Writes `text` (with a newline, as the kernel's files end) to `rel` below the root.
  void put(const std::string &rel, const std::string &text) const {
    std::filesystem::create_directories((path / rel).parent_path());
    std::ofstream(path / rel) << text << (text.empty() || text.back() != '\n' ? "\n" : "");
  }
  std::filesystem::path path;
};

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
  CHECK_THAT(parse_tiering_options("source=pebs").error().message,
             ContainsSubstring("auto, damon, soft-dirty, write-protect or perf"));
  auto pf = parse_tiering_options("source=perf,perf-event=ibs-op,perf-period=4096");
  REQUIRE(pf);
  CHECK(pf->source == hotness_source::perf);
  CHECK(pf->perf_event == "ibs-op");
  CHECK(pf->perf_period == 4096);
  CHECK(d->perf_event == "auto");
  CHECK_THAT(parse_tiering_options("perf-event=cycles").error().message,
             ContainsSubstring("auto, mem-loads, ibs-op or page-faults"));
  CHECK_THAT(parse_tiering_options("perf-period=1.5").error().message, ContainsSubstring("whole number"));
  CHECK_THAT(parse_tiering_options("perf-period=0").error().message, ContainsSubstring("perf-period=0"));
  CHECK_THAT(parse_tiering_options("interval=0.1,window=0.2").error().message, ContainsSubstring("window"));
  CHECK_THAT(parse_tiering_options("on,").error().message, ContainsSubstring("expected key=value"));
  CHECK(d->site_min_bytes == 1 * MiB);
  CHECK(parse_tiering_options("sites=off")->site_min_bytes == 0);
  CHECK(parse_tiering_options("sites=on")->site_min_bytes == 1 * MiB);
  CHECK(parse_tiering_options("sites=4M")->site_min_bytes == 4 * MiB);
  CHECK_THAT(parse_tiering_options("sites=many").error().message, ContainsSubstring("sites=off, on"));
  CHECK_THAT(parse_tiering_options("sites=1K").error().message, ContainsSubstring("under 4K"));
  CHECK(parse_tiering_options(std::string(1U << 20, 'x')).error().code == E2BIG);
}

TEST_CASE("the kernel's own tiering is read and explained, from a made-up root", "[tiering]") {
  const made_up_root made("hetmem-kt");
  const auto &root = made.path;
  auto put = [&](const std::string &rel, const std::string &text) { made.put(rel, text); };
  put("proc/sys/kernel/numa_balancing", "2");
  put("proc/sys/kernel/numa_balancing_promote_rate_limit_MBps", "65536");
  put("sys/kernel/debug/sched/numa_balancing/hot_threshold_ms", "1000");
  put("sys/devices/system/node/online", "0");
  put("sys/devices/system/node/node0/cpulist", "0");
  put("sys/devices/system/node/node0/reclaim", "");
  put("sys/kernel/mm/numa/demotion_enabled", "true");
  put("sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds", "1");
  put("sys/kernel/mm/damon/admin/kdamonds/0/state", "on");
  put("sys/kernel/mm/damon/admin/kdamonds/0/contexts/nr_contexts", "1");
  put("sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/operations", "paddr");
  put("sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/nr_schemes", "2");
  put("sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/0/action", "pageout");
  // The setup of damo's mem_tier script (6.16): promote to node 0 while it is under 99.7% used.
  const std::string hot = "sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/1/";
  put(hot + "action", "migrate_hot");
  put(hot + "target_nid", "0");
  put(hot + "quotas/goals/nr_goals", "1");
  put(hot + "quotas/goals/0/target_metric", "node_mem_used_bp");
  put(hot + "quotas/goals/0/target_value", "9970");
  put(hot + "quotas/goals/0/current_value", "9512");
  put(hot + "quotas/goals/0/nid", "0");
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
  CHECK_THAT(all, ContainsSubstring("within 1000 ms of a hint fault"));
  CHECK(s.hot_threshold_ms == 1000);
  CHECK(s.node_reclaim);
  CHECK_THAT(all, ContainsSubstring("per-node proactive reclaim is offered"));
  CHECK_THAT(all, ContainsSubstring("kdamond 0 (running): paddr pageout"));
  REQUIRE(s.damon_schemes.size() == 2);
  CHECK(s.damon_schemes[1] ==
        "kdamond 0 (running): paddr migrate_hot to node 0; goal node_mem_used_bp of node 0 9970 (now 9512)");
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
  if (!fallback) {  // neither soft-dirty nor write-protect bits: the error gives every reason
    CHECK(fallback.error().code == ENOTSUP);
    CHECK_THAT(fallback.error().message, ContainsSubstring("CONFIG_MEM_SOFT_DIRTY"));
    CHECK_THAT(fallback.error().message, ContainsSubstring("write-protect bits"));
    CHECK_THAT(fallback.error().message, ContainsSubstring("not DAMON: DAMON is in use"));
    return;
  }
  // Soft-dirty bits next, else write-protect bits (kernels without soft-dirty, this host's 6.18).
  const auto st = (*fallback)->statistics();
  std::string why;
  for (const auto &n : st.kernel_notes) why += n + "\n";
  CHECK_THAT(why, ContainsSubstring("not DAMON: DAMON is in use"));
  if (st.source.find("soft-dirty") == std::string::npos) {
    CHECK_THAT(st.source, ContainsSubstring("userfaultfd write-protect bits"));
    CHECK_THAT(why, ContainsSubstring("hotness: not soft-dirty bits: this kernel does not keep them"));
  }
}

TEST_CASE("DAMON held by DAMON_STAT: said, taken over only when told, and started again after", "[tiering]") {
  // Debian's 7.x kernels start DAMON_STAT at boot; while it runs the kernel starts no kdamond
  // set up through sysfs (writing 'on' fails with EBUSY). A made-up root stands for that kernel.
  const made_up_root made("hetmem-damon-stat");
  made.put("sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds", "0");
  made.put("sys/module/damon_stat/parameters/enabled", "Y");
  const auto enabled = made.path / "sys/module/damon_stat/parameters/enabled";
  auto module_state = [&] {
    std::ifstream f(enabled);
    std::string v;
    f >> v;
    return v;
  };
  const auto k = detect_kernel_tiering(made.path.string());
  CHECK(k.damon_stat);
  std::string said;
  for (const auto &n : k.notes()) said += n + "\n";
  CHECK_THAT(said, ContainsSubstring("DAMON_STAT is running"));
  CHECK_THAT(said, ContainsSubstring("damon-takeover=on"));

  tiering_options o;
  o.fast = node_tier(0);
  o.slow = node_tier(1);
  o.source = hotness_source::damon;
  o.damon_admin = (made.path / "sys/kernel/mm/damon/admin").string();
  o.damon_modules = (made.path / "sys/module").string();
  auto refused = tiering_engine::create(o);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == EBUSY);
  CHECK_THAT(refused.error().message, ContainsSubstring("DAMON_STAT is running"));
  CHECK_THAT(refused.error().message, ContainsSubstring("damon-takeover=on"));
  CHECK(module_state() == "Y");  // not told to: left running

  REQUIRE(parse_tiering_options("damon-takeover=on")->damon_takeover);
  CHECK(parse_tiering_options("damon-takeover=maybe").error().code == EINVAL);
  o.damon_takeover = true;
  {
    auto e = tiering_engine::create(o);
    REQUIRE(e);
    CHECK(module_state() == "N");  // stopped while hetmem's DAMON source runs
    std::string notes;
    for (const auto &n : (*e)->statistics().kernel_notes) notes += n + "\n";
    CHECK_THAT(notes, ContainsSubstring("stopped DAMON_STAT"));
  }
  CHECK(module_state() == "Y");  // started again at the engine's end

  // The modules that do work for the whole system are never stopped, told or not.
  made.put("sys/module/damon_reclaim/parameters/enabled", "Y");
  auto reclaim = tiering_engine::create(o);
  REQUIRE_FALSE(reclaim);
  CHECK_THAT(reclaim.error().message, ContainsSubstring("DAMON_RECLAIM is running"));
  CHECK(module_state() == "Y");
}

TEST_CASE("tiering engine: soft-dirty bits find the chunks this process writes", "[tiering]") {
  // 64 MiB present, 8 MiB of it rewritten all the time by a thread: after two intervals the
  // engine's hot bytes cover the 8 MiB and not the rest. Everything is on node 0 already (the
  // fast tier here), so nothing moves.
  // Under TSan its shadow of the written pages is written as often, and soft-dirty bits cannot
  // be limited to a range as write-protect bits can: every hot-byte bound would be off.
  if (under_tsan) SKIP("SKIPPED: ThreadSanitizer writes its shadow of every page the test writes");
  const std::size_t bytes = 64 * MiB, hot = 8 * MiB;
  busy_region region(bytes);
  region.write(0, hot);
  tiering_options o;
  o.fast = node_tier(0);
  o.slow = node_tier(1);
  o.source = hotness_source::soft_dirty;
  o.soft_dirty_window_seconds = 0.05;
  o.interval_seconds = 0.2;
  o.smoothing = 1.0;
  o.write_protect_max_overhead = 0;  // a clear every interval, whatever it costs (the next test holds it to a share)
  auto e = tiering_engine::create(o);
  if (!e && e.error().code == ENOTSUP) SKIP("SKIPPED: " << e.error().message);
  REQUIRE(e);
  for (int i = 0; i < 3; ++i) REQUIRE((*e)->step());
  region.stop();
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
  // Its parts: the source's scans took some of it; nothing moved, so no time moving pages.
  CHECK(s.observe_cpu_seconds > 0);
  CHECK(s.observe_cpu_seconds <= s.engine_cpu_seconds);
  CHECK(s.migrate_cpu_seconds == 0);
  CHECK(s.summary().find("(observing ") != std::string::npos);
}

// The soft-dirty bit of this process's page at `p`, as the kernel reports it (pagemap bit 55).
bool soft_dirty_bit(const volatile char *p) {
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::uint64_t entry = 0;
  const auto at = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(p) / 4096 * sizeof entry);
  const bool got = ::pread(fd, &entry, sizeof entry, at) == static_cast<ssize_t>(sizeof entry);
  ::close(fd);
  REQUIRE(got);
  return (entry >> 55) & 1U;
}

TEST_CASE("tiering engine: the soft-dirty source clears less often while its faults cost more than its share",
          "[tiering]") {
  // Clearing the bits write-protects the whole process: every page written next is a fault.
  // With a share far below what 32 MiB rewritten costs, the clear after the first is put off;
  // with no limit, every interval clears. Told by the kernel: a page written before a step keeps
  // its soft-dirty bit when no clear came, and loses it when one did.
  if (under_tsan) SKIP("SKIPPED: ThreadSanitizer writes its shadow of every page the test writes");
  busy_region region(32 * MiB);
  region.write(0, 32 * MiB);
  void *page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(page != MAP_FAILED);
  auto *mark = static_cast<volatile char *>(page);
  auto run = [&](double share) {
    tiering_options o;
    o.fast = node_tier(0);
    o.slow = node_tier(1);
    o.source = hotness_source::soft_dirty;
    o.soft_dirty_window_seconds = 0.02;
    o.interval_seconds = 0.1;
    o.write_protect_max_overhead = share;
    auto e = tiering_engine::create(o);
    if (!e && e.error().code == ENOTSUP) SKIP("SKIPPED: " << e.error().message);
    REQUIRE(e);
    REQUIRE((*e)->step());  // the first clear, and its cost measured
    const auto first = (*e)->statistics();
    INFO(first.summary());
    CHECK(first.write_fault_seconds > 0);
    CHECK(first.source_overhead > 0);
    *mark = 1;
    REQUIRE(soft_dirty_bit(mark));
    REQUIRE((*e)->step());
    return soft_dirty_bit(mark);  // still set: no clear this step
  };
  const bool kept_without_limit = run(0);  // statements, not CHECKs: a SKIP inside must stay a skip
  const bool kept_when_held = run(1e-6);
  CHECK_FALSE(kept_without_limit);  // no limit: the second step cleared it
  CHECK(kept_when_held);            // held to a millionth: the second clear waits
  region.stop();
  ::munmap(page, 4096);
}

TEST_CASE("tiering engine: userfaultfd write-protect bits find the chunks this process writes", "[tiering]") {
  // As the soft-dirty test, through the write-protect source (Linux 6.7; it runs on kernels
  // without soft-dirty bits). A third region is only read: writes only are seen, so it is cold.
  const std::size_t bytes = 64 * MiB, hot = 8 * MiB;
  busy_region region(bytes);
  region.write(0, hot);
  region.read(32 * MiB, 40 * MiB);
  tiering_options o = write_protect_options();
  const auto b = region.address();
  if (under_tsan) o.write_protect_within = {{b, b + bytes}};  // its shadow of the 16 MiB is hot too
  auto e = tiering_engine::create(o);
  if (!e && e.error().code == ENOTSUP) SKIP("SKIPPED: " << e.error().message);
  REQUIRE(e);
  CHECK_THAT((*e)->statistics().source, ContainsSubstring("userfaultfd write-protect bits"));
  for (int i = 0; i < 3; ++i) REQUIRE((*e)->step());
  const auto s = (*e)->statistics();
  region.stop();
  INFO(s.summary());
  CHECK(s.intervals == 3);
  CHECK(s.hot_bytes >= hot);
  CHECK(s.hot_bytes < hot + 16 * MiB);  // the read-only 8 MiB is not in it; the test's own stack and heap may be
  CHECK(s.managed_bytes >= bytes);
  CHECK(s.pages_promoted == 0);
  CHECK(s.last_error.empty());
  // The engine's CPU and its parts: the scans took some of it; nothing moved, so none went to
  // moving pages.
  CHECK(s.observe_cpu_seconds > 0);
  CHECK(s.observe_cpu_seconds <= s.engine_cpu_seconds);
  CHECK(s.migrate_cpu_seconds == 0);
  CHECK_THAT(s.summary(), ContainsSubstring("(observing "));
  // Most chunks are not written: the window stays as configured.
  CHECK(s.window_seconds == o.soft_dirty_window_seconds);
  // Every byte is what was written: the protection changes nothing the program sees. The
  // writer's pages all hold its last pass (no write to a protected page was lost), the rest 1.
  const char last = region.base[0];
  CHECK(last != 1);
  for (std::size_t i = 0; i < hot; i += 4096) REQUIRE(region.base[i] == last);
  for (std::size_t i = hot; i < bytes; i += 4096) REQUIRE(region.base[i] == 1);
  e->reset();  // closing the userfaultfd unprotects everything: writes go on without faults
  std::memset(region.base, 2, bytes);
}

TEST_CASE("tiering engine: the write window shortens while nearly every watched page is written in it", "[tiering]") {
  // A thread rewrites every page of its 16 MiB continuously: in a 50 ms window every slice is
  // written whole, which tells hot from cold no longer. The window halves each interval while
  // the median slice is written half or more, down to 1 ms at the least.
  const std::size_t bytes = 16 * MiB;
  busy_region region(bytes);
  region.write(0, bytes);
  tiering_options o = watching_only(region);
  // Heat smoothed as by default: a window shortened below one of the writer's passes (each
  // first write after a scan is a fault, slow on a loaded machine) sees part of the region, the
  // next window the part after it; a chunk keeps its heat between the windows that see it.
  o.smoothing = 0.5;
  auto e = tiering_engine::create(o);
  if (!e && e.error().code == ENOTSUP) SKIP("SKIPPED: " << e.error().message);
  REQUIRE(e);
  CHECK((*e)->statistics().window_seconds == o.soft_dirty_window_seconds);
  CHECK_THAT((*e)->statistics().source, ContainsSubstring("window up to 50 ms, shorter while"));
  // The first halving is certain (a 50 ms window sees every page written); later ones depend on
  // how fast this machine's thread rewrites 4096 pages, each first write after a scan taking
  // a fault in the kernel.
  REQUIRE((*e)->step());
  double previous = (*e)->statistics().window_seconds;
  CHECK(previous == o.soft_dirty_window_seconds / 2);
  for (int i = 0; i < 2; ++i) {
    REQUIRE((*e)->step());
    const double w = (*e)->statistics().window_seconds;
    INFO("interval " << i + 1 << ": window " << w * 1000 << " ms, " << (*e)->statistics().summary());
    CHECK(w >= 0.001);  // halved again, or kept (or doubled when the writer was not scheduled)
    CHECK(w <= o.soft_dirty_window_seconds);
  }
  // Still every chunk of it, in a window the writer ran in (a loaded machine may leave it out of
  // some).
  CHECK(step_until(**e, [&] { return (*e)->statistics().hot_bytes >= bytes; }));
  previous = (*e)->statistics().window_seconds;
  region.stop();
  const auto s = (*e)->statistics();
  INFO(s.summary());
  CHECK(s.window_seconds >= 0.001);
  CHECK(s.hot_bytes >= bytes);
  CHECK(s.last_error.empty());
  // Nothing is written any more: the window grows back towards its configured length.
  REQUIRE((*e)->step());
  CHECK((*e)->statistics().window_seconds == std::min(previous * 2, o.soft_dirty_window_seconds));
}

TEST_CASE("tiering engine: the write-protect source holds what its faults cost the program to its share", "[tiering]") {
  // What one fault costs here decides the share: a limit set to afford about two slices of 64
  // written pages per interval must bring the scan down to about two chunks; once nothing is
  // written, the scan grows back. The checks are the source's control law, by its own measure
  // of a fault (taken when it starts, and not the same twice on a loaded machine: 30 us against
  // 12.7 us seen under TSan beside a build), not wall-clock outcomes:
  //  - the first interval's scan, written whole, costs at most the share;
  //  - an interval over the share is followed by a smaller scan (until one chunk);
  //  - over the run the share is held on average (one interval may pass it when the writer,
  //    starved of CPU while the scan grew, gets its CPU back).
  const std::size_t bytes = 32 * MiB;  // 16 chunks
  busy_region region(bytes);
  region.write(0, bytes);
  tiering_options o = watching_only(region);
  o.write_protect_max_overhead = 0.05;
  auto probe = tiering_engine::create(o);
  if (!probe && probe.error().code == ENOTSUP) SKIP("SKIPPED: " << probe.error().message);
  REQUIRE(probe);
  const double probe_fault = (*probe)->statistics().write_fault_seconds;
  probe->reset();
  INFO("a write fault costs " << probe_fault * 1e6 << " us here, by a first measure");
  REQUIRE(probe_fault > 0);
  REQUIRE(probe_fault < 0.01);
  const double limit = std::min(1.0, 2.0 * 2 * 64 * probe_fault / o.interval_seconds);
  o.write_protect_max_overhead = limit;
  auto e = tiering_engine::create(o);
  REQUIRE(e);
  const double fault = (*e)->statistics().write_fault_seconds;
  INFO("... and " << fault * 1e6 << " us by the source's own");
  REQUIRE(fault > 0);
  const auto whole_cost = [&](std::size_t chunks) {  // every page of `chunks` slices written, two faults each
    return 2.0 * 64 * static_cast<double>(chunks) * fault / o.interval_seconds;
  };
  std::size_t chunks = (*e)->statistics().scan_chunks;
  CHECK(chunks >= 1);
  CHECK((chunks == 1 || whole_cost(chunks) <= limit * 1.0001));  // from the first interval on
  double sum = 0;
  int intervals = 0;
  auto note = [&] {
    const auto st = (*e)->statistics();
    INFO(st.summary());
    if (st.source_overhead > limit && chunks > 1) CHECK(st.scan_chunks < chunks);  // backs off at once
    sum += st.source_overhead;
    ++intervals;
    chunks = st.scan_chunks;
    return st.scan_chunks <= 3;
  };
  for (int i = 0; i < 6; ++i) {
    REQUIRE((*e)->step());
    (void)note();
  }
  const bool down = chunks <= 3 || step_until(**e, note);
  auto s = (*e)->statistics();
  INFO(s.summary());
  CHECK(down);
  CHECK(sum / intervals <= limit * 1.5);
  CHECK_THAT(s.summary(), ContainsSubstring("of the program's time"));
  region.stop();
  for (int i = 0; i < 8; ++i) REQUIRE((*e)->step());
  CHECK((*e)->statistics().source_overhead == 0);
  CHECK((*e)->statistics().scan_chunks > s.scan_chunks);  // grows back while nothing is written
}

TEST_CASE("tiering engine: auto passes the write-protect source over where a write fault is costly", "[tiering]") {
  // Every fault "costly" (a limit of 0 s): auto tries every other source first and says why;
  // with none of them here, the write-protect source runs all the same, held to its share.
  tiering_options o = write_protect_options();
  o.source = hotness_source::automatic;
  o.write_protect_auto_max_fault_seconds = 0;
  o.write_protect_max_overhead = 0.05;
  o.write_protect_within = {{0, 1}};
  auto e = tiering_engine::create(o);
  if (!e) SKIP("SKIPPED: no source of hotness here: " << e.error().message);
  const auto s = (*e)->statistics();
  bool noted = false;
  for (const auto &n : s.kernel_notes) noted = noted || n.find("a write fault costs") != std::string::npos;
  if (s.source.find("write-protect") == std::string::npos && !noted)
    SKIP("SKIPPED: auto chose " << s.source << " before trying write-protect bits");
  CHECK(noted);
  if (s.source.find("write-protect") != std::string::npos) CHECK(s.write_fault_seconds > 0);
}

TEST_CASE("tiering engine: past its scan budget the write-protect source lets chunks take turns", "[tiering]") {
  // Eight chunks, two scanned per interval. In the first interval a thread writes all of them:
  // the two scanned are found hot. Then nothing is written: each interval two others are
  // scanned and found cold, while the first two keep their heat until their turn comes again.
  const std::size_t bytes = 16 * MiB;
  busy_region region(bytes);
  region.write(0, bytes);
  tiering_options o = watching_only(region);
  o.write_protect_chunks_per_interval = 2;
  auto e = tiering_engine::create(o);
  if (!e && e.error().code == ENOTSUP) SKIP("SKIPPED: " << e.error().message);
  REQUIRE(e);
  REQUIRE((*e)->step());
  INFO("interval 1: " << (*e)->statistics().summary());
  CHECK((*e)->statistics().hot_bytes == 2 * chunk);  // not all eight: the budget holds
  region.stop();
  for (int round = 2; round <= 5; ++round) {
    REQUIRE((*e)->step());
    const auto s = (*e)->statistics();
    INFO("interval " << round << ": " << s.summary());
    // Rounds 2-4 scan the other six: the first two keep their heat. Round 5 scans those again.
    CHECK(s.hot_bytes == (round <= 4 ? 2 * chunk : 0));
    CHECK(s.last_error.empty());
  }
}

namespace {
// Descriptors of this process that are userfaultfds (readlink of /proc/self/fd/N), counted
// without allocating: also called in a child of fork().
int userfaultfds_open() noexcept {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    char path[32] = "/proc/self/fd/";
    char digits[12];
    int len = 0;
    for (int v = fd; len == 0 || v > 0; v /= 10) digits[len++] = static_cast<char>('0' + v % 10);
    std::size_t at = std::strlen(path);
    while (len > 0) path[at++] = digits[--len];
    path[at] = '\0';
    char target[64];
    const ssize_t got = ::readlink(path, target, sizeof target - 1);
    if (got <= 0) continue;
    target[got] = '\0';
    if (std::strstr(target, "userfaultfd")) ++n;
  }
  return n;
}
}  // namespace

TEST_CASE("tiering engine: a forked child closes the engine's userfaultfd, and the parent's keeps working",
          "[tiering]") {
  // The preload's pthread_atfork child handler calls close_after_fork(): the child must not keep
  // a descriptor on the parent's memory, and closing its copy must not unprotect the parent.
  const std::size_t bytes = 8 * MiB;
  busy_region region(bytes);
  region.write(0, 4 * MiB);
  tiering_options o = watching_only(region);
  const int before = userfaultfds_open();
  auto e = tiering_engine::create(o);
  if (!e && e.error().code == ENOTSUP) SKIP("SKIPPED: " << e.error().message);
  REQUIRE(e);
  REQUIRE((*e)->step());
  CHECK(userfaultfds_open() == before + 1);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const int inherited = userfaultfds_open();
    (*e)->close_after_fork();
    const int left = userfaultfds_open();
    std::memset(region.base, 3, bytes);  // the child's own pages: written without a fault
    ::_exit(inherited == before + 1 && left == before ? 0 : 10 + left);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The parent's engine still sees what its process writes (once the writer runs during a window).
  const std::uint64_t passes_before = region.passes();
  CHECK(step_until(**e, [&] { return (*e)->statistics().hot_bytes >= 4 * MiB; }));
  const auto s = (*e)->statistics();
  INFO(s.summary() << "; writer passes meanwhile: " << region.passes() - passes_before);
  region.stop();
  CHECK(s.hot_bytes >= 4 * MiB);
  CHECK(s.last_error.empty());
  CHECK(userfaultfds_open() == before + 1);
  e->reset();
  CHECK(userfaultfds_open() == before);
}

TEST_CASE("tiering engine: the write-protect source watches only its own process, within its ranges", "[tiering]") {
  tiering_options o;
  o.fast = node_tier(0);
  o.slow = node_tier(1);
  o.source = hotness_source::write_protect;
  o.pids = {1};
  auto e = tiering_engine::create(o);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == EINVAL);
  CHECK_THAT(e.error().message, ContainsSubstring("only the process that runs the engine"));

  // Limited to a range: chunks written outside it are not seen (not registered, never protected).
  const std::size_t bytes = 16 * MiB;
  busy_region region(bytes);
  region.write(0, bytes);
  o.pids = {};
  o.soft_dirty_window_seconds = 0.05;
  o.interval_seconds = 0.2;
  o.smoothing = 1.0;
  const auto b = region.address();
  o.write_protect_within = {{b, b + 4 * MiB}};
  e = tiering_engine::create(o);
  if (!e && e.error().code == ENOTSUP) SKIP("SKIPPED: " << e.error().message);
  REQUIRE(e);
  for (int i = 0; i < 2; ++i) REQUIRE((*e)->step());
  const auto s = (*e)->statistics();
  region.stop();
  INFO(s.summary());
  CHECK(s.hot_bytes == 4 * MiB);  // two chunks of 2 MiB: the rest of the 16 MiB, and all else, unwatched
}

TEST_CASE("tiering engine: a sparse mapping costs chunks for its populated parts only", "[tiering]") {
  // 4 TiB of address space (NORESERVE, as a sanitizer's shadow or a runtime's reserved heap)
  // with three 2 MiB pieces written: 2 million chunks if judged whole.
  if (under_tsan) SKIP("SKIPPED: ThreadSanitizer keeps shadow for all 4 TiB of a mapping");
  const std::size_t span = std::size_t{4} << 40;
  void *m = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) SKIP("SKIPPED: no room for 4 TiB of address space: " << std::strerror(errno));
  auto *base = reinterpret_cast<char *>((reinterpret_cast<std::uintptr_t>(m) + chunk - 1) & ~(chunk - 1));
  for (std::size_t at : {std::size_t{0}, std::size_t{1} << 40, std::size_t{3} << 40}) std::memset(base + at, 1, chunk);
  // How many mappings /proc/self/maps shows over [lo, hi) (the kernel may merge it with a neighbour).
  const auto mappings_in = [](std::uintptr_t lo, std::uintptr_t hi) {
    std::ifstream maps("/proc/self/maps");
    std::size_t n = 0;
    for (std::string line; std::getline(maps, line);) {
      unsigned long long a = 0, b = 0;
      if (std::sscanf(line.c_str(), "%llx-%llx", &a, &b) == 2 && a < hi && b > lo) ++n;
    }
    return n;
  };
  const auto lo = reinterpret_cast<std::uintptr_t>(m), hi = lo + span;
  const std::size_t before = mappings_in(lo, hi);
  REQUIRE(before >= 1);
  tiering_options o;
  o.fast = node_tier(0);
  o.slow = node_tier(1);
  o.source = hotness_source::write_protect;
  o.soft_dirty_window_seconds = 0.01;
  o.interval_seconds = 0.1;
  auto e = tiering_engine::create(o);
  if (!e && e.error().code == ENOTSUP) {
    ::munmap(m, span);
    SKIP("SKIPPED: " << e.error().message);  // before Linux 6.7 the whole mapping is judged
  }
  REQUIRE(e);
  REQUIRE((*e)->step());
  const auto s = (*e)->statistics();
  INFO(s.summary() << "; chunks " << s.chunks);
  CHECK(s.chunks < 20000);  // the test's own memory, and these three
  CHECK(s.managed_bytes >= 3 * chunk);
  CHECK(s.managed_bytes < (std::uint64_t{1} << 35));
  // The write-protect source registers whole mappings: the 4 TiB one is not cut into pieces
  // around the populated parts (a process may hold only vm.max_map_count mappings).
  CHECK(mappings_in(lo, hi) == before);
  ::munmap(m, span);
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

// ---- The allocator's knowledge: the site registry and what the engine learns from it ---------

namespace {
using site_verdict = detail::site_registry::verdict;

std::vector<std::pair<std::uintptr_t, unsigned>> recorded(const detail::site_registry &r) {
  std::vector<std::pair<std::uintptr_t, unsigned>> out;
  r.for_each_block(
      [&](std::uintptr_t start, std::size_t, unsigned site, std::uint32_t) { out.emplace_back(start, site); });
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

TEST_CASE("site registry: blocks are recorded under their site and forgotten when freed", "[tiering][sites]") {
  auto r = detail::site_registry::create();
  REQUIRE(r);
  detail::site_registry &reg = **r;
  static const char code[4] = {};
  const unsigned a = reg.site_of(&code[0]), b = reg.site_of(&code[1]);
  CHECK(a != 0);
  CHECK(b != 0);
  CHECK(a != b);
  CHECK(reg.site_of(&code[0]) == a);  // the same return address is the same site
  CHECK(reg.site_address(a) == &code[0]);
  CHECK(reg.site_of(nullptr) == 0);
  CHECK(reg.verdict_of(a) == site_verdict::unknown);
  reg.set_verdict(a, site_verdict::cold);
  CHECK(reg.verdict_of(a) == site_verdict::cold);
  CHECK(reg.verdict_of(b) == site_verdict::unknown);
  CHECK(reg.verdict_of(0) == site_verdict::unknown);

  CHECK(reg.record(reinterpret_cast<void *>(0x100000), 1 * MiB, a));
  CHECK(reg.record(reinterpret_cast<void *>(0x300000), 2 * MiB, b));
  CHECK_FALSE(reg.record(reinterpret_cast<void *>(0x500000), 1 * MiB, 0));  // no site: nothing
  CHECK(recorded(reg) == std::vector<std::pair<std::uintptr_t, unsigned>>{{0x100000, a}, {0x300000, b}});
  CHECK(reg.forget(reinterpret_cast<void *>(0x100000)) == a);
  CHECK(reg.forget(reinterpret_cast<void *>(0x100000)) == 0);  // twice: not there any more
  CHECK(reg.forget(reinterpret_cast<void *>(0x700000)) == 0);  // never recorded
  CHECK(recorded(reg) == std::vector<std::pair<std::uintptr_t, unsigned>>{{0x300000, b}});
  // A freed entry is reused: many blocks come and go without filling the table.
  for (std::uintptr_t round = 0; round < 4; ++round) {
    for (std::uintptr_t i = 0; i < 50000; ++i) REQUIRE(reg.record(reinterpret_cast<void *>((i + 16) << 21), MiB, a));
    for (std::uintptr_t i = 0; i < 50000; ++i) REQUIRE(reg.forget(reinterpret_cast<void *>((i + 16) << 21)) == a);
  }
  CHECK(reg.untracked() == 0);
  CHECK(recorded(reg).size() == 1);
  // Past its size the table says so and keeps what it has.
  std::size_t kept = 0;
  for (std::uintptr_t i = 0; i < detail::site_registry::block_slots + 1000; ++i)
    kept += reg.record(reinterpret_cast<void *>((i + 16) << 21), MiB, b) ? 1U : 0U;
  CHECK(reg.untracked() > 0);
  CHECK(kept + reg.untracked() == detail::site_registry::block_slots + 1000);
  CHECK(recorded(reg).size() == kept + 1);
}

TEST_CASE("site registry: threads record and forget while the engine reads", "[tiering][sites]") {
  auto r = detail::site_registry::create();
  REQUIRE(r);
  detail::site_registry &reg = **r;
  static const char code[8] = {};
  std::atomic<bool> done{false}, reading{false};
  std::atomic<unsigned> failures{0};  // (Catch2's assertions are for the test's own thread)
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      while (!reading.load()) std::this_thread::yield();  // only once the reader runs
      const unsigned site = reg.site_of(&code[t]);
      for (unsigned round = 0; round < 200; ++round) {
        for (std::uintptr_t i = 0; i < 256; ++i)
          if (!reg.record(reinterpret_cast<void *>(((t << 16) + i + 1) << 20), (i + 1) << 12, site)) ++failures;
        for (std::uintptr_t i = 0; i < 256; ++i)
          if (reg.forget(reinterpret_cast<void *>(((t << 16) + i + 1) << 20)) != site) ++failures;
      }
    });
  std::size_t passes = 0, inconsistent = 0, freed_seen = 0;
  std::uint64_t freed_cursor = 0;
  std::thread reader([&] {
    reading = true;
    do {  // at least one pass, however the threads are scheduled
      reg.for_each_block([&](std::uintptr_t start, std::size_t bytes, unsigned site, std::uint32_t) {
        // Every entry read is one that was written whole: its size and site match its start.
        const std::uintptr_t t = (start >> 20) >> 16, i = ((start >> 20) & 0xffff) - 1;
        if (bytes != ((i + 1) << 12) || site != reg.site_of(&code[t])) ++inconsistent;
      });
      (void)reg.for_each_freed(freed_cursor, [&](std::uintptr_t start, std::size_t bytes) {
        const std::uintptr_t i = ((start >> 20) & 0xffff) - 1;
        ++freed_seen;
        if (bytes != ((i + 1) << 12)) ++inconsistent;  // a freed range is read whole too
      });
      ++passes;
    } while (!done.load());
  });
  for (auto &t : threads) t.join();
  done = true;
  reader.join();
  std::uint64_t lost = reg.for_each_freed(freed_cursor, [&](std::uintptr_t, std::size_t) { ++freed_seen; });
  CHECK(lost <= 4 * 200 * 256);
  CHECK(freed_seen > 0);
  CHECK(freed_cursor == 4 * 200 * 256);  // every free of the threads was counted
  CHECK(failures == 0);
  CHECK(passes > 0);
  CHECK(inconsistent == 0);
  CHECK(recorded(reg).empty());
  CHECK(reg.untracked() == 0);
}

TEST_CASE("tiering engine: the allocator's knowledge learns hot and cold sites and gives new blocks their heat",
          "[tiering][sites]") {
  // Four 16 MiB blocks of one region, from two call sites: site A's first block is written all
  // the time, site B's only when the region was filled. Once their blocks are mature (3
  // intervals) and seen twice, A is hot and B cold. Then a new block from each site: B's is
  // written all the time but takes B's (cold) heat while young, A's is not written but takes
  // A's (hot) heat.
  // Two more blocks of the region are never written: the written ones stay a minority, so the
  // write window keeps its length (it would shorten below what a writer's pass takes).
  const std::size_t block = 16 * MiB;
  busy_region region(6 * block);
  region.write(0, block);
  auto reg = detail::site_registry::create();
  REQUIRE(reg);
  static const char code[2] = {};
  const unsigned a = (*reg)->site_of(&code[0]), b = (*reg)->site_of(&code[1]);
  const auto at = [&](std::size_t k) { return reinterpret_cast<void *>(region.address() + k * block); };
  REQUIRE((*reg)->record(at(0), block, a));
  REQUIRE((*reg)->record(at(2), block, b));
  auto e = tiering_engine::create(watching_with_sites(region, *reg));
  if (!e && e.error().code == ENOTSUP) SKIP("SKIPPED: " << e.error().message);
  REQUIRE(e);
  CHECK_THAT((*e)->statistics().source, ContainsSubstring("allocator's knowledge"));
  // Until A is found hot and B cold: at least 5 intervals (maturity, then two verdicts), more
  // when the writer was not scheduled during a window.
  for (int i = 0; i < 4; ++i) REQUIRE((*e)->step());
  const auto site_heat = [&](const char *where) {
    for (const auto &r : (*e)->statistics().site_reports)
      if (r.address == where) return r.heat;
    return -1.0;
  };
  CHECK(step_until(**e, [&] {
    return (*reg)->verdict_of(a) == site_verdict::hot && (*reg)->verdict_of(b) == site_verdict::cold &&
           (*e)->statistics().hot_bytes >= block && site_heat(&code[0]) > 0.7;
  }));
  auto s = (*e)->statistics();
  INFO(s.summary());
  CHECK((*reg)->verdict_of(a) == site_verdict::hot);
  CHECK((*reg)->verdict_of(b) == site_verdict::cold);
  CHECK(s.site_knowledge);
  CHECK(s.sites == 2);
  CHECK(s.sites_hot == 1);
  CHECK(s.sites_cold == 1);
  CHECK(s.site_blocks == 2);
  REQUIRE(s.site_reports.size() == 2);
  for (const auto &r : s.site_reports) {
    CHECK(r.bytes == block);
    CHECK(r.blocks == 1);
    CHECK(r.verdict == (r.address == &code[0] ? "hot" : "cold"));
    CHECK(r.heat == Catch::Approx(r.address == &code[0] ? 1.0 : 0.0).margin(0.3));
  }
  CHECK_THAT(s.summary(), ContainsSubstring("sites 2 (1 hot, 1 cold)"));
  CHECK(s.hot_bytes >= block);
  CHECK(s.hot_bytes < 2 * block);
  CHECK(s.site_prior_chunks == 0);

  // The new blocks.
  region.write(3 * block, 4 * block);
  REQUIRE((*reg)->record(at(1), block, a));
  REQUIRE((*reg)->record(at(3), block, b));
  // Hot now: block 0 (written), block 1 (site A's heat); not block 3, written but young and B's.
  // Two tries while the new blocks are young (block 0 is hot only in a window its writer ran in).
  CHECK(step_until(
      **e,
      [&] {
        const auto now = (*e)->statistics();
        return now.site_prior_chunks >= 2 * block / chunk && now.hot_bytes >= 2 * block;
      },
      2));
  s = (*e)->statistics();
  INFO(s.summary());
  CHECK(s.site_blocks == 4);
  CHECK(s.site_prior_chunks >= 2 * block / chunk);  // both new blocks took their site's heat
  CHECK(s.hot_bytes >= 2 * block);
  CHECK(s.hot_bytes < 3 * block);
  // Once mature, block 3 counts for itself: written all the time, it is hot, and B's heat rises
  // (blocks 0 and 3 hot; block 1, never written, cools once mature).
  for (int i = 0; i < 3; ++i) REQUIRE((*e)->step());
  const auto b_heat = [&] { return site_heat(&code[1]); };
  CHECK(step_until(**e, [&] { return (*e)->statistics().hot_bytes >= 2 * block && b_heat() > 0.2; }));
  s = (*e)->statistics();
  INFO(s.summary());
  CHECK(s.hot_bytes >= 2 * block);
  CHECK(b_heat() > 0.2);
  // Forgotten blocks leave their site.
  CHECK((*reg)->forget(at(1)) == a);
  REQUIRE((*e)->step());
  CHECK((*e)->statistics().site_blocks == 3);
  // A new block recorded at a freed one's start, from the same site, between two intervals is
  // young, not the old one: block 2 (never written) again, now that B is hot, takes B's heat.
  CHECK(step_until(**e, [&] { return (*reg)->verdict_of(b) == site_verdict::hot; }));
  const auto prior_before = (*e)->statistics().site_prior_chunks;
  CHECK((*reg)->forget(at(2)) == b);
  REQUIRE((*reg)->record(at(2), block, b));
  REQUIRE((*e)->step());
  CHECK((*e)->statistics().site_prior_chunks >= prior_before + block / chunk);
  region.stop();
}

TEST_CASE("tiering engine: a freed block's chunks turn cold at once, unless a live block took them",
          "[tiering][sites]") {
  // Blocks 0 and 2 of six are written all the time (the rest never: the written ones stay a
  // minority, so the window keeps its length). Once both are hot, block 0 is freed and block 2
  // freed and allocated again at the same start, between two intervals: after one interval
  // block 0's chunks are cold (not half as hot, as smoothing alone gives), block 2's still hot.
  // Block 0 is written on (freed memory is not, in a program): that makes "cold" the cooling's
  // doing, not the window's.
  const std::size_t block = 8 * MiB;
  busy_region region(6 * block);
  region.write(0, block);
  region.write(2 * block, 3 * block);
  auto reg = detail::site_registry::create();
  REQUIRE(reg);
  static const char code[1] = {};
  const unsigned a = (*reg)->site_of(&code[0]);
  const auto at = [&](std::size_t k) { return reinterpret_cast<void *>(region.address() + k * block); };
  REQUIRE((*reg)->record(at(0), block, a));
  REQUIRE((*reg)->record(at(2), block, a));
  auto e = tiering_engine::create(watching_with_sites(region, *reg));
  if (!e && e.error().code == ENOTSUP) SKIP("SKIPPED: " << e.error().message);
  REQUIRE(e);
  // Hot enough that one interval's halving would leave them hot (heat 0.8 and up each).
  CHECK(step_until(**e, [&] { return (*e)->statistics().hot_bytes >= 2 * block; }));
  for (int i = 0; i < 3; ++i) REQUIRE((*e)->step());
  auto s = (*e)->statistics();
  INFO(s.summary());
  REQUIRE(s.hot_bytes >= 2 * block);
  CHECK(s.site_freed_chunks == 0);
  CHECK((*reg)->forget(at(0)) == a);
  CHECK((*reg)->forget(at(2)) == a);
  REQUIRE((*reg)->record(at(2), block, a));
  REQUIRE((*e)->step());
  s = (*e)->statistics();
  INFO(s.summary());
  CHECK(s.site_freed_chunks == block / chunk);  // block 0's, not block 2's
  CHECK(s.hot_bytes >= block);
  CHECK(s.hot_bytes < 2 * block);
  CHECK(s.site_blocks == 1);
  region.stop();
}

TEST_CASE("site registry: freed blocks are listed once, the oldest lost past the ring", "[tiering][sites]") {
  auto r = detail::site_registry::create();
  REQUIRE(r);
  detail::site_registry &reg = **r;
  static const char code[1] = {};
  const unsigned a = reg.site_of(&code[0]);
  std::uint64_t cursor = 0;
  std::vector<std::pair<std::uintptr_t, std::size_t>> seen;
  const auto read = [&] {
    seen.clear();
    return reg.for_each_freed(cursor,
                              [&](std::uintptr_t start, std::size_t bytes) { seen.emplace_back(start, bytes); });
  };
  CHECK(read() == 0);
  CHECK(seen.empty());
  REQUIRE(reg.record(reinterpret_cast<void *>(0x100000), 3 * MiB, a));
  REQUIRE(reg.record(reinterpret_cast<void *>(0x800000), MiB, a));
  CHECK(reg.forget(reinterpret_cast<void *>(0x800000)) == a);
  CHECK(reg.forget(reinterpret_cast<void *>(0x900000)) == 0);  // never recorded: not a freed block
  CHECK(read() == 0);
  CHECK(seen == std::vector<std::pair<std::uintptr_t, std::size_t>>{{0x800000, MiB}});
  CHECK(read() == 0);
  CHECK(seen.empty());  // each once
  const std::size_t n = detail::site_registry::freed_slots + 10;
  for (std::uintptr_t i = 0; i < n; ++i) {
    REQUIRE(reg.record(reinterpret_cast<void *>((i + 16) << 21), MiB + i, a));
    REQUIRE(reg.forget(reinterpret_cast<void *>((i + 16) << 21)) == a);
  }
  CHECK(read() == 10);  // the ten oldest were overwritten
  REQUIRE(seen.size() == detail::site_registry::freed_slots);
  CHECK(seen.front() == std::pair<std::uintptr_t, std::size_t>{std::uintptr_t{10 + 16} << 21, MiB + 10});
  CHECK(seen.back() == std::pair<std::uintptr_t, std::size_t>{std::uintptr_t{n - 1 + 16} << 21, MiB + n - 1});
}

TEST_CASE("tiering engine: allocation sites only for the engine's own process", "[tiering][sites]") {
  auto reg = detail::site_registry::create();
  REQUIRE(reg);
  tiering_options o = write_protect_options();
  o.source = hotness_source::automatic;
  o.sites = *reg;
  o.pids = {1};
  auto e = tiering_engine::create(o);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == EINVAL);
  CHECK_THAT(e.error().message, ContainsSubstring("allocation sites"));
}

// ---- Hardware sampling -----------------------------------------------------------------------

TEST_CASE("perf events are read from the PMUs' sysfs descriptions, from a made-up root", "[tiering][perf]") {
  const made_up_root made("hetmem-pmu");
  const auto &root = made.path;
  auto put = [&](const std::string &rel, const std::string &text) { made.put(rel, text); };
  const std::string cpu = "sys/bus/event_source/devices/cpu/";
  put(cpu + "type", "4\n");
  put(cpu + "events/mem-loads", "event=0xcd,umask=0x1,ldlat=3\n");  // as Intel's core PMU has them
  put(cpu + "events/mem-loads-aux", "event=0x03,umask=0x82\n");
  put(cpu + "events/bad", "event=0xzz\n");
  put(cpu + "events/wide", "event=0x1ff\n");
  put(cpu + "events/split", "event=0xabc\n");
  put(cpu + "format/event", "config:0-7\n");
  put(cpu + "format/umask", "config:8-15\n");
  put(cpu + "format/ldlat", "config1:0-15\n");
  const std::string ibs = "sys/bus/event_source/devices/ibs_op/";
  put(ibs + "type", "11\n");
  put(ibs + "format/cnt_ctl", "config:19\n");
  const std::string odd = "sys/bus/event_source/devices/odd/";
  put(odd + "type", "12\n");
  put(odd + "events/split", "event=0xabc\n");
  put(odd + "format/event", "config:0-7,32-35\n");

  auto loads = detail::resolve_perf_event(root.string(), "cpu", "mem-loads", {{"ldlat", 64}});
  REQUIRE(loads);
  CHECK(loads->name == "cpu/mem-loads");
  CHECK(loads->type == 4);
  CHECK(loads->config == 0x1cd);
  CHECK(loads->config1 == 64);  // the override replaced ldlat=3
  auto aux = detail::resolve_perf_event(root.string(), "cpu", "mem-loads-aux");
  REQUIRE(aux);
  CHECK(aux->config == 0x8203);
  auto op = detail::resolve_perf_event(root.string(), "ibs_op", "", {{"cnt_ctl", 1}});
  REQUIRE(op);
  CHECK(op->type == 11);
  CHECK(op->config == (1ULL << 19));
  auto split = detail::resolve_perf_event(root.string(), "odd", "split");  // 0xabc: 0xbc low, 0xa at bit 32
  REQUIRE(split);
  CHECK(split->config == (0xbcULL | (0xaULL << 32)));

  auto missing = detail::resolve_perf_event(root.string(), "arm_spe_0", "");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == ENOENT);
  CHECK_THAT(missing.error().message, ContainsSubstring("no arm_spe_0 PMU"));
  auto no_event = detail::resolve_perf_event(root.string(), "cpu", "mem-stores");
  REQUIRE_FALSE(no_event);
  CHECK_THAT(no_event.error().message, ContainsSubstring("no event mem-stores"));
  auto bad = detail::resolve_perf_event(root.string(), "cpu", "bad");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == EINVAL);
  CHECK_THAT(bad.error().message, ContainsSubstring("0xzz"));
  auto wide = detail::resolve_perf_event(root.string(), "cpu", "wide");  // 9 bits into 8
  REQUIRE_FALSE(wide);
  CHECK(wide.error().code == ERANGE);
  auto no_format = detail::resolve_perf_event(root.string(), "cpu", "mem-loads", {{"frontend", 1}});
  REQUIRE_FALSE(no_format);
  CHECK_THAT(no_format.error().message, ContainsSubstring("no format for 'frontend'"));
  // The engine's perf source names what it looked for when no PMU offers data addresses.
  tiering_options o = write_protect_options();
  o.source = hotness_source::perf;
  o.perf_root = (root / "none").string();
  auto e = tiering_engine::create(o);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == ENOTSUP);
  CHECK_THAT(e.error().message, ContainsSubstring("no PMU event with data addresses"));
  CHECK_THAT(e.error().message, ContainsSubstring("no cpu PMU"));
  CHECK_THAT(e.error().message, ContainsSubstring("no ibs_op PMU"));
}

TEST_CASE("tiering engine: the perf source finds the chunks a thread faults in, by sampled addresses",
          "[tiering][perf]") {
  // The PMU events cannot be had on these machines; the kernel's page-fault event carries data
  // addresses too and goes through the same path (events per thread, inherited by new
  // threads, rings drained each interval). A thread started after the engine (so covered by
  // inheritance) faults 8 MiB of a 64 MiB region in again and again (MADV_DONTNEED, then a write
  // per page); the other 56 MiB are touched once before.
  const std::size_t bytes = 64 * MiB, hot = 8 * MiB;
  busy_region region(bytes);
  tiering_options o = write_protect_options();
  o.source = hotness_source::perf;
  o.perf_event = "page-faults";
  o.perf_period = 997;  // a prime: samples spread over the pages of every pass
  auto e = tiering_engine::create(o);
  if (!e &&
      (e.error().code == EACCES || e.error().code == EPERM || e.error().code == ENOENT || e.error().code == ENOSYS))
    SKIP("SKIPPED: " << e.error().message);
  INFO((e ? std::string() : e.error().message));
  REQUIRE(e);
  CHECK_THAT((*e)->statistics().source,
             ContainsSubstring("hardware sampling (perf_event_open, one event per thread: the kernel's page-fault"));
  std::atomic<bool> done{false};
  std::atomic<unsigned> passes{0};
  std::thread faulter([&] {
    while (!done.load(std::memory_order_relaxed)) {
      ::madvise(region.base, hot, MADV_DONTNEED);
      for (std::size_t i = 0; i < hot; i += 4096) region.base[i] = 3;
      ++passes;
    }
  });
  // Counted in passes, not time (a loaded machine gives the faulter less of it): 20 passes are
  // about 40 samples, some in each of the 4 chunks, far fewer than a ring holds.
  const auto wait_passes = [&](unsigned n) {
    const unsigned from = passes.load();
    while (passes.load() - from < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  wait_passes(1);
  REQUIRE((*e)->step());  // gives the faulter its event
  wait_passes(20);
  REQUIRE((*e)->step());
  wait_passes(20);
  done = true;  // the last interval reads the samples of a faulter now stopped, its pages all present
  faulter.join();
  REQUIRE((*e)->step());
  const auto s = (*e)->statistics();
  INFO(s.summary());
  CHECK(s.last_error.empty());
  CHECK(s.hot_bytes >= hot);
  CHECK(s.hot_bytes < hot + 16 * MiB);  // the rest of the region is not in it (the test's own heap may be)
  CHECK(s.sample_period == 997);        // no ring overflowed at this period
}

TEST_CASE("tiering engine: the perf source samples less often while its rings overflow", "[tiering][perf]") {
  busy_region region(16 * MiB);
  tiering_options o = write_protect_options();
  o.source = hotness_source::perf;
  o.perf_event = "page-faults";  // every fault: about 4000 a pass over 16 MiB, far more than a ring holds
  auto e = tiering_engine::create(o);
  if (!e &&
      (e.error().code == EACCES || e.error().code == EPERM || e.error().code == ENOENT || e.error().code == ENOSYS))
    SKIP("SKIPPED: " << e.error().message);
  REQUIRE(e);
  CHECK((*e)->statistics().sample_period == 0);  // no interval yet
  std::atomic<bool> done{false};
  std::atomic<unsigned> passes{0};
  std::thread faulter([&] {
    while (!done.load(std::memory_order_relaxed)) {
      ::madvise(region.base, region.bytes(), MADV_DONTNEED);
      for (std::size_t i = 0; i < region.bytes(); i += 4096) region.base[i] = 3;
      ++passes;
    }
  });
  const auto wait_passes = [&](unsigned n) {
    const unsigned from = passes.load();
    while (passes.load() - from < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  // The faulter started after create(): the first interval gives it its event; before each of
  // the next two it faults 3 passes (12288 faults, 6144 samples even at period 2: more than the
  // ring's 5000 or so).
  std::vector<std::uint64_t> periods;
  for (int i = 0; i < 3; ++i) {
    wait_passes(i == 0 ? 1 : 3);
    REQUIRE((*e)->step());
    periods.push_back((*e)->statistics().sample_period);
  }
  done = true;
  faulter.join();
  INFO((*e)->statistics().summary());
  CHECK(periods == std::vector<std::uint64_t>{1, 2, 4});
  // Quiet again: the rings stay nearly empty and the period comes back, halving each interval
  // (after at most one more doubling, for the samples lost before the faulter stopped).
  for (int i = 0; i < 6; ++i) REQUIRE((*e)->step());
  CHECK((*e)->statistics().sample_period == 1);
}
