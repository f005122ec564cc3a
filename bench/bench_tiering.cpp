// hetmem_bench_tiering — what automatic tiering costs on this machine's own CPU, per hotness
// source, side by side in one run: the engine's CPU (reading the source, its bookkeeping, and the
// kdamond working for it) as a share of one core, and how much slower the program runs beside it
// (soft-dirty and write-protect bits make the first write to a watched page fault).
//
// The program is GUPS on one thread: a table of base pages (--size) whose hot set (--hot) gets
// --hot-share of the updates. Each mode runs it for --seconds: first with no engine, then with
// the engine (hetmem::tiering_engine on its own thread, --interval) using each source the
// machine offers (DAMON as root, soft-dirty bits, userfaultfd write-protect bits); a source the
// machine lacks is named with the reason and skipped. Modes are interleaved over --reps rounds
// and medians reported.
//
// The engine's tiers are the machine's fastest and the next one. On a machine with one memory
// tier (a development VM), the slow tier is a node that does not exist: the engine observes,
// judges and plans as it would, and nothing moves, because every page is already on the fast
// tier. What moving pages costs (the kernel copying them) needs two nodes: tests/vm/tiering-
// guest.sh reports it from the engine's own account (observing / moving pages / the rest).
//
// It also checks that each source found the hot set: with the threshold at 0.9 (a chunk is hot
// when nearly every page it watched was written, or DAMON saw it accessed in nearly every
// sample), the engine's hot bytes must cover the hot set and not much more. At a native update
// rate a 100 ms write window sees most pages of the table written; the write-bit sources
// shorten their window until it tells hot from cold again (the "window" column: where it
// ended), which takes a few intervals, hence runs of several.
//
//   hetmem_bench_tiering [--size 2G] [--hot 256M] [--hot-share 0.9] [--seconds 8] [--interval 1]
//                        [--window S] [--reps 3] [--quick] [--json FILE]
// --window: the write-bit sources' longest window (default: the engine's, 100 ms at a 1 s interval).
// --json FILE also writes the medians as JSON (schema hetmem.bench.tiering/1), which the docs'
// table is made from (scripts/bench-table.py).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "hetmem/policy.hpp"
#include "hetmem/tiering.hpp"
#include "hetmem/topology.hpp"

namespace {

[[noreturn]] void bad_setting(const std::string &what) {
  std::fprintf(stderr, "hetmem_bench_tiering: %s\n", what.c_str());
  std::exit(2);
}

// "2G", "256M": the policy language's sizes; the error names the option and the token.
std::uint64_t size_arg(const std::string &option, const char *text) {
  auto v = hetmem::policy::parse_size(text);
  if (!v) bad_setting(option + ": " + v.error().message);
  return *v;
}

// A plain number, all of the text.
double number_arg(const std::string &option, const char *text) {
  char *end = nullptr;
  errno = 0;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !std::isfinite(v))
    bad_setting(option + ": '" + text + "' is not a number");
  return v;
}

struct settings {
  std::uint64_t size = 2ULL << 30, hot = 256ULL << 20;
  double hot_share = 0.9, seconds = 8, interval = 1, window = 0;
  int reps = 3;
};

// The table and the updater: one thread of random read-modify-writes, the hot set getting
// hot_share of them.
class gups {
 public:
  explicit gups(const settings &s) : s_(s) {
    void *m = ::mmap(nullptr, s.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      std::perror("hetmem_bench_tiering: mmap of the table");
      std::exit(1);
    }
    (void)::madvise(m, s.size, MADV_NOHUGEPAGE);  // base pages, as tests/vm/tiering-guest.sh
    table_ = static_cast<std::uint64_t *>(m);
    words_ = s.size / sizeof(std::uint64_t);
    for (std::size_t i = 0; i < words_; ++i) table_[i] = i;
  }
  ~gups() { ::munmap(table_, s_.size); }
  gups(const gups &) = delete;
  gups &operator=(const gups &) = delete;

  [[nodiscard]] std::uintptr_t hot_begin() const { return reinterpret_cast<std::uintptr_t>(table_); }

  // Updates for `seconds`; returns updates per second.
  double run(double seconds) {
    std::atomic<bool> stop{false};
    std::uint64_t done = 0;
    const std::size_t hot_words = s_.hot / sizeof(std::uint64_t);
    const auto hot_limit = static_cast<std::uint64_t>(s_.hot_share * 1024);
    std::thread t([&] {
      std::uint64_t x = seed_ += 0x9e3779b97f4a7c15ULL, n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 4096; ++i) {
          x ^= x << 13;
          x ^= x >> 7;
          x ^= x << 17;
          const std::size_t at = (x & 1023) < hot_limit ? (x >> 10) % hot_words : (x >> 10) % words_;
          table_[at] ^= x;
        }
        n += 4096;
      }
      done = n;
    });
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop.store(true);
    t.join();
    return static_cast<double>(done) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

 private:
  const settings &s_;
  std::uint64_t *table_ = nullptr;
  std::size_t words_ = 0;
  std::uint64_t seed_ = 42;
};

struct mode {
  std::string name;
  std::optional<hetmem::hotness_source> source;  // none: no engine
  std::string unavailable;                       // why the machine cannot run it
};

struct sample {
  double updates_per_second = 0;
  double engine_cpu = 0, observe_cpu = 0, kdamond_cpu = 0, seconds = 0;
  std::uint64_t hot_bytes = 0, intervals = 0;
  double window = 0;
  std::string source;
  double fault_us = 0, overhead = 0;  // the write-protect source's own account of its cost
  std::size_t chunks = 0;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

hetmem::tier node_tier(std::uint32_t n, std::string name) {
  hetmem::tier t;
  t.name = std::move(name);
  t.where.mode = hetmem::policy_mode::bind;
  t.where.nodes = {n};
  return t;
}

}  // namespace

int main(int argc, char **argv) try {
  settings s;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "hetmem_bench_tiering: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--size")
      s.size = size_arg(a, value());
    else if (a == "--hot")
      s.hot = size_arg(a, value());
    else if (a == "--hot-share")
      s.hot_share = number_arg(a, value());
    else if (a == "--seconds")
      s.seconds = number_arg(a, value());
    else if (a == "--interval")
      s.interval = number_arg(a, value());
    else if (a == "--window")
      s.window = number_arg(a, value());
    else if (a == "--reps")
      s.reps = static_cast<int>(std::min(number_arg(a, value()), 1000.0));
    else if (a == "--json")
      json_path = value();
    else if (a == "--quick") {
      s.size = 128ULL << 20;
      s.hot = 16ULL << 20;
      s.seconds = 1.6;
      s.interval = 0.2;
      s.reps = 1;
    } else {
      std::fprintf(stderr,
                   "usage: hetmem_bench_tiering [--size 2G] [--hot 256M] [--hot-share 0.9] [--seconds 8] "
                   "[--interval 1] [--window S] [--reps 3] [--quick] [--json FILE]\n");
      return 2;
    }
  }
  if (s.size < (4ULL << 20)) bad_setting("--size: the table needs 4 MiB at least");
  if (s.hot < 4096 || s.hot > s.size) bad_setting("--hot: the hot set must be a page at least and fit in the table");
  if (s.hot_share < 0 || s.hot_share > 1) bad_setting("--hot-share: a share in [0, 1]");
  if (s.seconds <= 0) bad_setting("--seconds: must be positive");
  if (s.interval <= 0 || s.interval > s.seconds) bad_setting("--interval: must be positive and at most --seconds");
  if (s.window < 0 || s.window >= s.interval) bad_setting("--window: must be shorter than --interval");
  if (s.reps < 1) bad_setting("--reps: one at least");

  // The tiers: the fastest and the next, or (one tier) node 0 and a node that does not exist.
  hetmem::tier fast, slow;
  std::string tiers_note;
  auto topo = hetmem::load_topology();
  std::optional<hetmem::tier> f;
  if (topo)
    if (auto r = hetmem::tier_by_rank(*topo, 0)) f = *r;
  if (f && !f->next.empty()) {
    fast = *f;
    slow = f->next.front();
    tiers_note = "fast tier " + fast.name + ", slow tier " + slow.name;
  } else {
    fast = f ? *f : node_tier(0, "node 0");
    std::uint32_t missing = 1;
    for (auto n : fast.where.nodes.to_vector()) missing = std::max(missing, n + 1);
    slow = node_tier(missing, "node " + std::to_string(missing) + " (absent)");
    tiers_note = "one memory tier here: fast tier " + fast.name + ", slow tier " + slow.name +
                 "; every page is on the fast tier, so nothing moves";
  }

  gups g(s);
  std::vector<mode> modes = {{"none", std::nullopt, {}},
                             {"damon", hetmem::hotness_source::damon, {}},
                             {"soft-dirty", hetmem::hotness_source::soft_dirty, {}},
                             {"write-protect", hetmem::hotness_source::write_protect, {}}};
  const double window = s.window > 0 ? s.window : std::min(0.1, s.interval / 4);  // the engine's default at 1 s
  auto options_for = [&](hetmem::hotness_source src) {
    hetmem::tiering_options o;
    o.fast = fast;
    o.slow = slow;
    o.source = src;
    o.interval_seconds = s.interval;
    o.soft_dirty_window_seconds = window;
    o.promote_threshold = 0.9;
    return o;
  };
  // Which sources open here (each opened and closed once, before any timing).
  for (auto &m : modes) {
    if (!m.source) continue;
    auto e = hetmem::tiering_engine::create(options_for(*m.source));
    if (!e) m.unavailable = e.error().message;
  }

  std::printf(
      "hetmem_bench_tiering: GUPS on one thread, %.0f MiB table, %.0f MiB hot set with %.0f%% of the "
      "updates; engine interval %.2f s; %d interleaved round(s) of %.1f s per mode, medians\n",
      static_cast<double>(s.size) / (1 << 20), static_cast<double>(s.hot) / (1 << 20), s.hot_share * 100, s.interval,
      s.reps, s.seconds);
  std::printf("%s\n", tiers_note.c_str());
  std::printf("write window up to %.0f ms; hot: heat 0.9 or more\n", window * 1000);
  for (const auto &m : modes)
    if (!m.unavailable.empty()) std::printf("%-14s not here: %s\n", m.name.c_str(), m.unavailable.c_str());

  std::map<std::string, std::vector<sample>> runs;
  for (int r = 0; r < s.reps; ++r) {
    for (const auto &m : modes) {
      if (!m.unavailable.empty()) continue;
      sample x;
      if (!m.source) {
        x.updates_per_second = g.run(s.seconds);
      } else {
        auto e = hetmem::tiering_engine::create(options_for(*m.source));
        if (!e) {
          std::printf("%-14s failed to start: %s\n", m.name.c_str(), e.error().message.c_str());
          continue;
        }
        if (auto ok = (*e)->start(); !ok) {
          std::printf("%-14s failed to start: %s\n", m.name.c_str(), ok.error().message.c_str());
          continue;
        }
        x.updates_per_second = g.run(s.seconds);
        (*e)->stop();
        const auto st = (*e)->statistics();
        x.engine_cpu = st.engine_cpu_seconds;
        x.observe_cpu = st.observe_cpu_seconds;
        x.kdamond_cpu = st.source_cpu_seconds;
        x.seconds = st.elapsed_seconds;
        x.hot_bytes = st.hot_bytes;
        x.intervals = st.intervals;
        x.window = st.window_seconds;
        x.source = st.source;
        x.fault_us = st.write_fault_seconds * 1e6;
        x.overhead = st.source_overhead;
        x.chunks = st.scan_chunks;
        if (!st.last_error.empty()) std::printf("%-14s engine error: %s\n", m.name.c_str(), st.last_error.c_str());
      }
      runs[m.name].push_back(x);
    }
  }

  const double base = runs.count("none") ? median([&] {
    std::vector<double> v;
    for (const auto &x : runs["none"]) v.push_back(x.updates_per_second);
    return v;
  }())
                                         : 0;
  std::printf("\n%-14s %12s %9s %11s %11s %11s %11s %9s %10s\n", "mode", "updates/s", "vs none", "engine cpu",
              "observing", "kdamond", "the rest", "hot MiB", "window");
  std::string missed, found_wrong;
  nlohmann::json json_modes = nlohmann::json::array();
  for (const auto &m : modes) {
    if (!m.unavailable.empty()) json_modes.push_back({{"name", m.name}, {"unavailable", m.unavailable}});
    if (!m.unavailable.empty() || !runs.count(m.name)) continue;
    std::vector<double> ups, cpu, obs, kd, rest, hot, win;
    for (const auto &x : runs[m.name]) {
      ups.push_back(x.updates_per_second);
      const double secs = x.seconds > 0 ? x.seconds : s.seconds;
      cpu.push_back(100 * (x.engine_cpu + x.kdamond_cpu) / secs);
      obs.push_back(100 * x.observe_cpu / secs);
      kd.push_back(100 * x.kdamond_cpu / secs);
      rest.push_back(100 * (x.engine_cpu - x.observe_cpu) / secs);
      hot.push_back(static_cast<double>(x.hot_bytes) / (1 << 20));
      win.push_back(x.window * 1000);
    }
    const double u = median(ups);
    if (!m.source) {
      std::printf("%-14s %10.2f M %8.2fx %11s %11s %11s %11s %9s %10s\n", m.name.c_str(), u / 1e6, 1.0, "-", "-", "-",
                  "-", "-", "-");
      json_modes.push_back({{"name", m.name}, {"updates_per_second", u}, {"speed_vs_none", 1.0}});
      continue;
    }
    const auto &last = runs[m.name].back();
    json_modes.push_back({{"name", m.name},
                          {"source", last.source},
                          {"updates_per_second", u},
                          {"speed_vs_none", base > 0 ? u / base : 0.0},
                          {"engine_cpu_pct", median(cpu)},
                          {"observing_pct", median(obs)},
                          {"kdamond_pct", median(kd)},
                          {"rest_pct", median(rest)},
                          {"hot_mib", median(hot)},
                          {"window_ms", median(win)},
                          {"write_fault_us", last.fault_us},
                          {"own_overhead_estimate_pct", last.overhead * 100},
                          {"chunks_per_interval", last.chunks}});
    char window_text[32] = "-";
    if (median(win) > 0) std::snprintf(window_text, sizeof window_text, "%.1f ms", median(win));
    std::printf("%-14s %10.2f M %8.2fx %10.2f%% %10.2f%% %10.2f%% %10.2f%% %9.0f %10s\n", m.name.c_str(), u / 1e6,
                base > 0 ? u / base : 0, median(cpu), median(obs), median(kd), median(rest), median(hot), window_text);
    if (median(cpu) >= 5) missed += " " + m.name + " " + std::to_string(median(cpu)).substr(0, 4) + "%";
    const double hot_mib = static_cast<double>(s.hot) / (1 << 20);
    if (median(hot) < hot_mib || median(hot) > hot_mib * 1.25 + 16)
      found_wrong += " " + m.name + " (" + std::to_string(static_cast<long>(median(hot))) + " MiB)";
  }
  std::printf("(cpu as a share of one core over the run: the engine's thread, and the kdamond working for it)\n");
  // The write-bit sources' own account of what they cost the program, beside what it did cost.
  std::string slowed;
  for (const auto &m : modes) {
    if (!m.source || !m.unavailable.empty() || !runs.count(m.name)) continue;
    std::vector<double> ups;
    for (const auto &x : runs[m.name]) ups.push_back(x.updates_per_second);
    const double speed = base > 0 ? median(ups) / base : 0;
    if (speed < 0.9) slowed += " " + m.name + " " + std::to_string(speed).substr(0, 4) + "x";
    const auto &last = runs[m.name].back();
    if (last.fault_us > 0)
      std::printf(
          "%-14s a write fault costs %.1f us here; its own estimate of the program's share at the end: %.1f%%, "
          "%zu chunks scanned per interval\n",
          m.name.c_str(), last.fault_us, last.overhead * 100, last.chunks);
  }
  std::printf("target: the program at 0.9x its speed or more beside every source: %s\n",
              slowed.empty() ? "met" : ("NOT met:" + slowed).c_str());
  std::printf("target: engine under 5%% of one core (observing and judging; moving pages is not measured here): %s\n",
              missed.empty() ? "met by every source" : ("not by" + missed).c_str());
  std::printf("hot set found: %s\n",
              found_wrong.empty() ? "by every source" : ("not by" + found_wrong + ", see the table").c_str());
  if (!json_path.empty()) {
    const nlohmann::json out = {
        {"schema", "hetmem.bench.tiering/1"},
        {"table_mib", static_cast<double>(s.size) / (1 << 20)},
        {"hot_mib", static_cast<double>(s.hot) / (1 << 20)},
        {"hot_share", s.hot_share},
        {"seconds", s.seconds},
        {"interval", s.interval},
        {"window_ms", window * 1000},
        {"reps", s.reps},
        {"tiers", tiers_note},
        {"modes", json_modes},
        {"targets",
         {{"speed_0_9x", slowed.empty()}, {"cpu_under_5pct", missed.empty()}, {"hot_set_found", found_wrong.empty()}}}};
    std::FILE *out_file = std::fopen(json_path.c_str(), "w");
    if (!out_file || std::fputs((out.dump(2) + "\n").c_str(), out_file) < 0 || std::fclose(out_file) != 0) {
      std::fprintf(stderr, "hetmem_bench_tiering: cannot write %s\n", json_path.c_str());
      return 2;
    }
    std::printf("results written to %s\n", json_path.c_str());
  }
  return found_wrong.empty() ? 0 : 1;
} catch (const std::exception &e) {  // out of memory, or a JSON value the library refused
  std::fprintf(stderr, "hetmem_bench_tiering: %s\n", e.what());
  return 2;
}
