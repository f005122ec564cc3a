// The tiering engine: observe (DAMON, soft-dirty or userfaultfd write-protect bits), ask the kernel where pages are,
// plan (plan.cpp), migrate (migrate.hpp). See the contract in tiering.hpp.
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "hetmem/detail/node_memory.hpp"
#include "hetmem/detail/os.hpp"
#include "hetmem/detail/site_registry.hpp"
#include "hetmem/format.hpp"
#include "hetmem/placement.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/tiering.hpp"
#include "hetmem/topology.hpp"
#include "text.hpp"

namespace hetmem {
namespace {

using tiering_detail::read_text;
using tiering_detail::read_u64;
using tiering_detail::write_file;

double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double thread_cpu_seconds() {
  timespec ts{};
  (void)::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU seconds a process or thread has used (utime + stime of /proc/PID/stat).
double process_cpu_seconds(pid_t pid) {
  const auto text = sysfs::read_text_file("/proc/" + std::to_string(pid) + "/stat", std::size_t{64} << 10);
  if (!text) return 0;
  const auto ticks = [&](unsigned n) -> std::uint64_t {
    const auto field = sysfs::find_stat_field(*text, n);
    if (!field) return 0;
    const auto v = sysfs::parse_uint64(*field);
    return v ? *v : 0;
  };
  const std::uint64_t utime = ticks(14), stime = ticks(15);
  const long hz = ::sysconf(_SC_CLK_TCK);
  return static_cast<double>(utime + stime) / static_cast<double>(hz > 0 ? hz : 100);
}

bool process_exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// A chunk of a managed process: [start, end) within one mapping.
struct chunk_range {
  std::uintptr_t start = 0, end = 0;
};

struct target_view {
  pid_t pid = 0;
  const std::vector<chunk_range> *chunks = nullptr;
  // Observation per chunk, [0, 1]; NaN: not observed this interval (the engine keeps its heat).
  std::vector<double> heat;
  const std::vector<std::pair<std::uintptr_t, std::uintptr_t>> *mappings = nullptr;  // whole, as in maps
};

// A hotness source: fills target_view::heat for every chunk.
class source {
 public:
  virtual ~source() = default;
  source() = default;
  source(const source &) = delete;
  source &operator=(const source &) = delete;
  [[nodiscard]] virtual std::string describe() const = 0;
  virtual result<void> observe(std::vector<target_view> &targets) = 0;
  [[nodiscard]] virtual double cpu_seconds() const { return 0; }
  // The write window in use (the write-bit sources), 0 for the others.
  [[nodiscard]] virtual double window_seconds() const { return 0; }
  // Events per sample now (the perf source), 0 for the others.
  [[nodiscard]] virtual std::uint64_t sample_period() const { return 0; }
  // The cost it imposes on the program (the write-protect source; 0 for the others): one write
  // fault in seconds, the share of the program's time last interval, chunks scanned now.
  [[nodiscard]] virtual double write_fault_seconds() const { return 0; }
  [[nodiscard]] virtual double program_overhead() const { return 0; }
  [[nodiscard]] virtual std::size_t scan_chunks() const { return 0; }
  // In a child of fork(): closes the descriptors the source keeps open (they refer to the
  // parent's memory), without touching what they set up in the parent. Async-signal-safe.
  virtual void close_after_fork() noexcept {}
};

// ---- DAMON through sysfs ---------------------------------------------------------------------
// One kdamond per process (DAMON's sysfs allows one context per kdamond, and tried regions do
// not say which target they belong to), a `stat` scheme that records the regions with at least
// one access, read back with update_schemes_tried_regions.
class damon_source final : public source {
 public:
  // update_us: DAMON's own refresh of a vaddr target's regions (its "three regions" guess,
  // which swallows hetmem's reserved address window whole) is kept out of the way; hetmem sets
  // the regions itself, the process's populated mappings, and commits them when they change.
  static constexpr unsigned sample_us = 10000, aggr_us = 200000;
  static constexpr unsigned long update_us = 3600UL * 1000000UL;
  static constexpr std::size_t max_target_regions = 64;
  static constexpr double max_accesses = static_cast<double>(aggr_us) / sample_us;

  // The kernel's DAMON modules that run their kdamond exclusively (see damon_takeover);
  // DAMON_STAT, the one that may be stopped, last: the others refuse before it is touched.
  struct exclusive_module {
    const char *name, *title;
  };
  static constexpr exclusive_module exclusive_modules[] = {
      {"damon_reclaim", "DAMON_RECLAIM"}, {"damon_lru_sort", "DAMON_LRU_SORT"}, {"damon_stat", "DAMON_STAT"}};

  static result<std::unique_ptr<damon_source>> open(const std::string &admin, const std::string &modules, bool takeover,
                                                    std::string &note) {
    std::uint64_t n = 0;
    const std::string nr = admin + "/kdamonds/nr_kdamonds";
    if (::access(nr.c_str(), F_OK) != 0)
      return error{ENOTSUP, "DAMON's sysfs interface is absent (" + nr + "; needs CONFIG_DAMON_SYSFS)"};
    if (!read_u64(nr, n)) return error{EACCES, "cannot read " + nr + " (DAMON needs root)"};
    // A module of the kernel's own holding DAMON: stopped only when told to, and only DAMON_STAT.
    std::string stopped;  // the parameter file of the module stopped here, to start it again
    for (const auto &m : exclusive_modules) {
      const std::string enabled = modules + "/" + m.name + "/parameters/enabled";
      std::string v;
      if (!read_text(enabled, v) || v != "Y") continue;
      const std::string held = std::string(m.title) + " is running (" + enabled +
                               " = Y), and the kernel starts no other kdamond while it does";
      if (std::string_view(m.name) != "damon_stat")
        return error{EBUSY, held + "; it reclaims or sorts memory for the whole system, so hetmem leaves it running"};
      if (!takeover)
        return error{EBUSY, held +
                                "; damon-takeover=on (tierd --damon-takeover) stops it while hetmem uses DAMON "
                                "and starts it again after"};
      if (auto w = write_file(enabled, "N"); !w)
        return error{w.error().code, "DAMON: cannot stop " + std::string(m.title) + ": " + w.error().message};
      stopped = enabled;
      note = "stopped " + std::string(m.title) + " (damon-takeover=on); started again when hetmem stops using DAMON";
    }
    auto give_back = [&] {
      if (!stopped.empty()) (void)write_file(stopped, "Y");
    };
    if (n > 0) {
      // Reuse only what is plainly abandoned: every kdamond off and every target process gone.
      for (std::uint64_t k = 0; k < n; ++k) {
        const std::string kd = admin + "/kdamonds/" + std::to_string(k);
        std::string state;
        (void)read_text(kd + "/state", state);
        std::uint64_t target = 0;
        const bool dead_target = read_u64(kd + "/contexts/0/targets/0/pid_target", target) && target > 0 &&
                                 !process_exists(static_cast<pid_t>(target));
        if (state != "off" || !dead_target) {
          give_back();
          return error{EBUSY, "DAMON is in use: " + std::to_string(n) + " kdamond(s) configured in " + admin +
                                  " by someone else (kdamond " + std::to_string(k) + " is " + state +
                                  "); hetmem does not rebuild them"};
        }
      }
      note += std::string(note.empty() ? "" : "; ") + "reused " + std::to_string(n) +
              " abandoned kdamond(s) (off, targets gone)";
    }
    if (auto w = write_file(nr, "0"); !w) {
      give_back();
      return error{w.error().code, "DAMON: " + w.error().message + " (configuring DAMON needs root)"};
    }
    return std::unique_ptr<damon_source>(new damon_source(admin, stopped));
  }

  ~damon_source() override {
    shut_down();
    // The module stopped by open(), started again once this source's kdamonds are gone.
    if (!restart_.empty()) (void)write_file(restart_, "Y");
  }

  [[nodiscard]] std::string describe() const override {
    std::string s = "DAMON (sysfs, vaddr; sampling every " + std::to_string(sample_us / 1000) + " ms";
    if (!kdamond_pids_.empty()) {
      s += "; kdamond pid";
      for (auto p : kdamond_pids_) s += " " + std::to_string(p);
    }
    return s + ")";
  }

  [[nodiscard]] double cpu_seconds() const override {
    double s = cpu_before_;
    for (auto p : kdamond_pids_) s += process_cpu_seconds(p);
    return s;
  }

  result<void> observe(std::vector<target_view> &targets) override {
    std::vector<pid_t> pids;
    pids.reserve(targets.size());
    for (const auto &t : targets) pids.push_back(t.pid);
    std::vector<std::vector<std::pair<std::uintptr_t, std::uintptr_t>>> spans_of;
    spans_of.reserve(targets.size());
    for (const auto &t : targets) spans_of.push_back(target_regions(*t.chunks));
    if (pids != pids_ || !all_running()) {
      regions_ = spans_of;
      if (auto ok = configure(pids); !ok) return ok;
    } else if (spans_of != regions_) {
      regions_ = spans_of;
      for (std::size_t k = 0; k < pids_.size(); ++k)
        if (auto ok = write_regions(k); !ok) return ok;
      for (std::size_t k = 0; k < pids_.size(); ++k) (void)write_file(kdamond(k) + "/state", "commit");
    }
    for (std::size_t k = 0; k < targets.size(); ++k) {
      auto &t = targets[k];
      t.heat.assign(t.chunks->size(), 0.0);
      const std::string kd = kdamond(k);
      if (auto ok = write_file(kd + "/state", "update_schemes_tried_regions"); !ok) continue;  // target gone
      const std::string tried = kd + "/contexts/0/schemes/0/tried_regions";
      std::vector<std::pair<std::uintptr_t, std::uintptr_t>> spans;
      std::vector<double> heats;
      DIR *d = ::opendir(tried.c_str());
      if (!d) continue;
      while (const dirent *e = ::readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        const std::string r = tried + "/" + e->d_name;
        std::uint64_t lo = 0, hi = 0, acc = 0;
        if (read_u64(r + "/start", lo) && read_u64(r + "/end", hi) && read_u64(r + "/nr_accesses", acc) && hi > lo) {
          spans.emplace_back(lo, hi);
          heats.push_back(std::min(1.0, static_cast<double>(acc) / max_accesses));
        }
      }
      ::closedir(d);
      // Each chunk: the overlap-weighted heat of the regions over it (unreported: cold).
      const auto &chunks = *t.chunks;
      for (std::size_t r = 0; r < spans.size(); ++r) {
        auto it = std::lower_bound(chunks.begin(), chunks.end(), spans[r].first,
                                   [](const chunk_range &c, std::uintptr_t a) { return c.end <= a; });
        for (; it != chunks.end() && it->start < spans[r].second; ++it) {
          const std::uintptr_t lo = std::max(it->start, spans[r].first), hi = std::min(it->end, spans[r].second);
          if (hi <= lo) continue;
          t.heat[static_cast<std::size_t>(it - chunks.begin())] +=
              heats[r] * static_cast<double>(hi - lo) / static_cast<double>(it->end - it->start);
        }
      }
    }
    return {};
  }

 private:
  damon_source(std::string admin, std::string restart) : admin_(std::move(admin)), restart_(std::move(restart)) {}

  [[nodiscard]] std::string kdamond(std::size_t k) const { return admin_ + "/kdamonds/" + std::to_string(k); }

  // The populated ranges of a process as DAMON regions: its chunks merged, the smallest gaps
  // closed until at most max_target_regions remain.
  static std::vector<std::pair<std::uintptr_t, std::uintptr_t>> target_regions(const std::vector<chunk_range> &chunks) {
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> r;
    for (const auto &c : chunks) {
      if (!r.empty() && r.back().second == c.start)
        r.back().second = c.end;
      else
        r.emplace_back(c.start, c.end);
    }
    while (r.size() > max_target_regions) {
      std::size_t best = 0;
      for (std::size_t i = 1; i + 1 < r.size(); ++i)
        if (r[i + 1].first - r[i].second < r[best + 1].first - r[best].second) best = i;
      r[best].second = r[best + 1].second;
      r.erase(r.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    }
    return r;
  }

  result<void> write_regions(std::size_t k) {
    const std::string t = kdamond(k) + "/contexts/0/targets/0/regions";
    const auto &r = regions_[k];
    if (auto ok = write_file(t + "/nr_regions", std::to_string(r.size())); !ok)
      return error{ok.error().code, "DAMON: " + ok.error().message};
    for (std::size_t i = 0; i < r.size(); ++i) {
      const std::string d = t + "/" + std::to_string(i);
      // end first: a start above the old end is refused
      if (auto ok = write_file(d + "/end", std::to_string(r[i].second)); !ok)
        return error{ok.error().code, "DAMON: " + ok.error().message};
      if (auto ok = write_file(d + "/start", std::to_string(r[i].first)); !ok)
        return error{ok.error().code, "DAMON: " + ok.error().message};
    }
    return {};
  }

  [[nodiscard]] bool all_running() const {
    for (std::size_t k = 0; k < pids_.size(); ++k) {
      std::string state;
      if (!read_text(kdamond(k) + "/state", state) || state != "on") return false;
    }
    return true;
  }

  void shut_down() noexcept {
    try {
      for (auto p : kdamond_pids_) cpu_before_ += process_cpu_seconds(p);
      kdamond_pids_.clear();
      for (std::size_t k = 0; k < pids_.size(); ++k) {
        std::string state;
        if (read_text(kdamond(k) + "/state", state) && state == "on") (void)write_file(kdamond(k) + "/state", "off");
      }
      (void)write_file(admin_ + "/kdamonds/nr_kdamonds", "0");
      pids_.clear();
    } catch (...) {
    }
  }

  result<void> configure(const std::vector<pid_t> &pids) {
    shut_down();
    if (pids.empty()) return {};
    auto w = [](const std::string &path, const std::string &v) { return write_file(path, v); };
    if (auto ok = w(admin_ + "/kdamonds/nr_kdamonds", std::to_string(pids.size())); !ok) return ok;
    for (std::size_t k = 0; k < pids.size(); ++k) {
      const std::string kd = kdamond(k), c = kd + "/contexts/0", s = c + "/schemes/0";
      const std::pair<std::string, std::string> steps[] = {
          {kd + "/contexts/nr_contexts", "1"},
          {c + "/operations", "vaddr"},
          {c + "/monitoring_attrs/intervals/sample_us", std::to_string(sample_us)},
          {c + "/monitoring_attrs/intervals/aggr_us", std::to_string(aggr_us)},
          {c + "/monitoring_attrs/intervals/update_us", std::to_string(update_us)},
          {c + "/monitoring_attrs/nr_regions/max", "400"},
          {c + "/monitoring_attrs/nr_regions/min", "10"},
          {c + "/targets/nr_targets", "1"},
          {c + "/targets/0/pid_target", std::to_string(pids[k])},
          {c + "/schemes/nr_schemes", "1"},
          {s + "/action", "stat"},
          // Every range defaults to [0, 0], which matches nothing: open sz and age, and keep
          // the regions with at least one access.
          {s + "/access_pattern/sz/min", "0"},
          {s + "/access_pattern/sz/max", std::to_string(UINTPTR_MAX)},
          {s + "/access_pattern/nr_accesses/max", "4294967295"},
          {s + "/access_pattern/nr_accesses/min", "1"},
          {s + "/access_pattern/age/min", "0"},
          {s + "/access_pattern/age/max", "4294967295"},
      };
      for (const auto &[path, value] : steps)
        if (auto ok = w(path, value); !ok) return error{ok.error().code, "DAMON: " + ok.error().message};
      if (k < regions_.size())
        if (auto ok = write_regions(k); !ok) return ok;
    }
    pids_ = pids;
    for (std::size_t k = 0; k < pids.size(); ++k) {
      if (auto ok = w(kdamond(k) + "/state", "on"); !ok) {
        if (!process_exists(pids[k])) continue;  // it went away meanwhile
        return error{ok.error().code,
                     "DAMON: " + ok.error().message +
                         (ok.error().code == EBUSY ? " (a DAMON user the kernel runs exclusively holds it: DAMON_STAT, "
                                                     "DAMON_RECLAIM or DAMON_LRU_SORT started since, or another tool)"
                                                   : "")};
      }
      std::uint64_t kp = 0;
      if (read_u64(kdamond(k) + "/pid", kp) && kp > 0) kdamond_pids_.push_back(static_cast<pid_t>(kp));
    }
    return {};
  }

  std::string admin_;
  std::string restart_;  // a module's `enabled` parameter to set to Y at the end (damon_takeover)
  std::vector<pid_t> pids_;
  std::vector<pid_t> kdamond_pids_;
  std::vector<std::vector<std::pair<std::uintptr_t, std::uintptr_t>>> regions_;
  double cpu_before_ = 0;
};

// ---- soft-dirty bits -------------------------------------------------------------------------
// Whether this kernel keeps soft-dirty bits: a kernel without CONFIG_MEM_SOFT_DIRTY accepts
// clear_refs "4" and never sets bit 55, so ask by writing a page of our own.
result<void> soft_dirty_supported() {
  const auto ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void *m = ::mmap(nullptr, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return error{errno, "soft-dirty probe: mmap failed"};
  auto *page = static_cast<volatile char *>(m);
  page[0] = 1;
  result<void> out = write_file("/proc/self/clear_refs", "4");
  if (out) {
    page[0] = 2;
    std::uint64_t e = 0;
    const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    const bool read_ok =
        fd >= 0 && ::pread(fd, &e, sizeof e, static_cast<off_t>(reinterpret_cast<std::uintptr_t>(m) / ps * sizeof e)) ==
                       static_cast<ssize_t>(sizeof e);
    if (fd >= 0) ::close(fd);
    if (!read_ok)
      out = error{EACCES, "soft-dirty bits: cannot read /proc/self/pagemap"};
    else if (((e >> 55) & 1U) == 0)
      out = error{ENOTSUP, "soft-dirty bits: this kernel does not keep them (built without CONFIG_MEM_SOFT_DIRTY)"};
  }
  ::munmap(m, ps);
  return out;
}

// What one write fault a write-bit source causes costs here, in seconds: 256 pages of a scratch
// mapping written, `setup` once (with its address and length), then three times `protect` and
// every page written again, timed; the median per page. 0 when the mapping, `setup` or
// `protect` fails. The mapping is gone when it returns (a userfaultfd registration with it).
template <class Setup, class Protect>
double time_write_faults(Setup setup, Protect protect) {
  const auto ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  constexpr std::size_t pages = 256;
  void *m = ::mmap(nullptr, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 0;
  auto *p = static_cast<volatile char *>(m);
  for (std::size_t i = 0; i < pages; ++i) p[i * ps] = 1;
  const auto at = reinterpret_cast<std::uintptr_t>(m);
  std::array<double, 3> per_page{};
  bool ok = setup(at, pages * ps);
  for (auto &t : per_page) {
    if (!ok || !protect(at, pages * ps)) {
      ok = false;
      break;
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < pages; ++i) p[i * ps] = 2;
    t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / pages;
  }
  ::munmap(m, pages * ps);
  if (!ok) return 0;
  std::sort(per_page.begin(), per_page.end());
  return per_page[1];
}

// The window of the write-bit sources (soft-dirty, write-protect): the configured length at
// most. A page counts once however often it is written, so a window long enough for a program
// to write nearly every watched page of most chunks tells hot from cold no longer (GUPS on one
// thread, 40 M updates/s over 2 GiB, writes about half of the table's pages in 100 ms with the
// tenth of its updates that miss the hot set; over 128 MiB at 70 M/s, every page). So
// while the median watched slice is written half or more, the window halves (down to 1 ms), and
// while it is written less than an eighth, it doubles back towards the configured length.
class write_window {
 public:
  explicit write_window(double longest) : longest_(longest), now_(longest) {}
  [[nodiscard]] double seconds() const noexcept { return now_; }
  // heats: the share written of each watched slice with present pages, this window.
  void adapt(std::vector<double> &heats) noexcept {
    if (heats.empty()) return;
    auto mid = heats.begin() + static_cast<std::ptrdiff_t>(heats.size() / 2);
    std::nth_element(heats.begin(), mid, heats.end());
    const double shortest = std::min(0.001, longest_);
    if (*mid >= 0.5)
      now_ = std::max(now_ / 2, shortest);
    else if (*mid < 0.125)
      now_ = std::min(now_ * 2, longest_);
  }
  [[nodiscard]] std::string describe() const {
    return "window up to " + std::to_string(static_cast<int>(longest_ * 1000)) +
           " ms, shorter while most watched pages are written within it";
  }

 private:
  double longest_, now_;
};

// Clearing soft-dirty bits (clear_refs 4) write-protects every page of the process: the first
// write to each page after a clear is a fault, over the whole interval until the next clear, not
// only in the window. The source measures what one such fault costs when it opens, estimates each
// interval the faults it caused (the pages seen written in the watched slices, scaled to their
// chunks' present pages, twice: those written after the window fault too) and, while that costs
// the program more than its share (max-overhead), clears less often: the next clear waits until
// the last one's cost is within the share of the time between them. Chunks are not observed in
// the intervals between (their heat is kept, as the write-protect source's unscanned ones).
class soft_dirty_source final : public source {
 public:
  soft_dirty_source(double window, double interval_seconds, double max_overhead)
      : window_(window), interval_seconds_(interval_seconds), max_overhead_(max_overhead) {
    fault_seconds_ = calibrate_fault_cost();
  }
  [[nodiscard]] std::string describe() const override {
    return "soft-dirty bits (/proc/PID/clear_refs + pagemap; writes only, " + window_.describe() + ")";
  }
  [[nodiscard]] double window_seconds() const override { return window_.seconds(); }
  [[nodiscard]] double write_fault_seconds() const override { return fault_seconds_; }
  [[nodiscard]] double program_overhead() const override { return overhead_; }

  result<void> observe(std::vector<target_view> &targets) override {
    const double now = monotonic_seconds();
    if (now < next_clear_) {  // held to the share: nothing observed this interval
      for (auto &t : targets) t.heat.assign(t.chunks->size(), std::numeric_limits<double>::quiet_NaN());
      return {};
    }
    for (auto &t : targets) {
      if (auto ok = write_file("/proc/" + std::to_string(t.pid) + "/clear_refs", "4"); !ok && process_exists(t.pid))
        return ok;
    }
    const double since_last = last_clear_ > 0 ? now - last_clear_ : interval_seconds_;
    last_clear_ = now;
    std::this_thread::sleep_for(std::chrono::duration<double>(window_.seconds()));
    std::vector<double> seen;
    ++round_;
    const auto ps = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    std::vector<std::uint64_t> entries;
    double written_pages = 0;  // estimated, in the watched chunks
    for (auto &t : targets) {
      t.heat.assign(t.chunks->size(), 0.0);
      const std::string path = "/proc/" + std::to_string(t.pid) + "/pagemap";
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        const int err = errno;
        if (!process_exists(t.pid)) continue;  // it exited meanwhile: not an error (the next refresh drops it)
        return error{err, "cannot read " + path + ": " + detail::error_text(err)};
      }
      // A slice of up to 64 pages per chunk, at an offset that moves each interval: a sixteenth
      // of the page-table walk a whole 2 MiB chunk would cost, every page seen over 8 intervals.
      for (std::size_t i = 0; i < t.chunks->size(); ++i) {
        const auto &c = (*t.chunks)[i];
        const std::size_t pages = (c.end - c.start) / ps;
        const std::size_t n = std::min<std::size_t>(pages, slice_pages);
        const std::size_t first = pages > n ? (round_ * n) % (pages - n + 1) : 0;
        entries.resize(n);
        const ssize_t got = ::pread(fd, entries.data(), n * sizeof(std::uint64_t),
                                    static_cast<off_t>((c.start / ps + first) * sizeof(std::uint64_t)));
        if (got <= 0) continue;
        const std::size_t read = static_cast<std::size_t>(got) / sizeof(std::uint64_t);
        std::size_t present = 0, dirty = 0;
        for (std::size_t p = 0; p < read; ++p) {
          const std::uint64_t e = entries[p];
          if ((e >> 63) & 1U) {
            ++present;
            if ((e >> 55) & 1U) ++dirty;
          }
        }
        if (present > 0) {
          t.heat[i] = static_cast<double>(dirty) / static_cast<double>(present);
          seen.push_back(t.heat[i]);
          written_pages += static_cast<double>(dirty) / static_cast<double>(read) * static_cast<double>(pages);
        }
      }
      ::close(fd);
    }
    window_.adapt(seen);
    hold_to_share(written_pages, since_last);
    return {};
  }

 private:
  // The share of the program's time the last clear cost it, and when the next one may come.
  void hold_to_share(double written_pages, double since_last) {
    const double cost = 2.0 * written_pages * fault_seconds_;
    overhead_ = cost / std::max({interval_seconds_, since_last, window_.seconds()});
    next_clear_ = 0;
    if (max_overhead_ > 0 && cost > max_overhead_ * interval_seconds_) next_clear_ = last_clear_ + cost / max_overhead_;
  }

  // The cost of one soft-dirty fault: this process's bits cleared before each timed pass. (The
  // clear write-protects all of this process's memory once more: a fault on each page it
  // writes next, as each interval's clear of a watched process does.)
  static double calibrate_fault_cost() {
    return time_write_faults(
        [](std::uintptr_t, std::size_t) { return true; },
        [](std::uintptr_t, std::size_t) { return static_cast<bool>(write_file("/proc/self/clear_refs", "4")); });
  }

  static constexpr std::size_t slice_pages = 64;
  write_window window_;
  double interval_seconds_, max_overhead_;
  double fault_seconds_ = 0;
  double overhead_ = 0;    // the program's share, at the last clear
  double last_clear_ = 0;  // monotonic_seconds()
  double next_clear_ = 0;  // none before this (held to the share)
  std::size_t round_ = 0;
};

// ---- userfaultfd write-protect bits ----------------------------------------------------------
// Linux 6.7's replacement for soft-dirty bits, also where those do not exist (arm64, kernels built
// without CONFIG_MEM_SOFT_DIRTY): a userfaultfd with UFFD_FEATURE_WP_ASYNC, registered in
// write-protect mode over the watched memory, makes the kernel clear a page's protection on its
// own at the first write (no fault reaches us); PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reports the
// pages written since and protects them again, in one page-table walk. A userfaultfd serves the
// memory of the process that made it, so this source watches the calling process only.
// What Linux 6.7 added to <linux/userfaultfd.h> and <linux/fs.h> (Debian 12's headers are 6.1's):
// the asynchronous write-protect feature and PAGEMAP_SCAN. The rest comes from the system header.
namespace uffd_abi {
constexpr std::uint64_t feature_wp_async = 1U << 15;  // UFFD_FEATURE_WP_ASYNC
constexpr std::uint64_t page_is_written = 1U << 1, page_is_present = 1U << 3, page_is_swapped = 1U << 4;
constexpr std::uint64_t scan_wp_matching = 1U << 0, scan_check_wpasync = 1U << 1;
struct page_region {
  std::uint64_t start, end, categories;
};
struct pm_scan_arg {
  std::uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
constexpr unsigned long pagemap_scan = _IOWR('f', 16, pm_scan_arg);
}  // namespace uffd_abi

class write_protect_source final : public source {
 public:
  // Opens the userfaultfd and /proc/self/pagemap and proves the pair works on a page of our own;
  // errors name what is missing (ENOTSUP: a kernel before 6.7 or without userfaultfd).
  // Also measures what one write fault costs here (calibrate_fault_cost).
  static result<std::unique_ptr<write_protect_source>> open(
      double window, std::vector<std::pair<std::uintptr_t, std::uintptr_t>> within, std::size_t chunks_per_interval,
      double interval_seconds, double max_overhead) {
    auto s = std::unique_ptr<write_protect_source>(new write_protect_source(window, std::move(within)));
    s->configured_slices_ = s->max_slices_ = std::max<std::size_t>(chunks_per_interval, 1);
    s->interval_seconds_ = interval_seconds;
    s->max_overhead_ = max_overhead;
    // UFFD_USER_MODE_ONLY: no vm.unprivileged_userfaultfd needed (5.11).
    const long fd = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0) {
      const int err = errno;
      return error{err == ENOSYS ? ENOTSUP : err,
                   std::string("userfaultfd write-protect bits: userfaultfd() failed: ") + detail::error_text(err) +
                       (err == ENOSYS  ? " (a kernel without CONFIG_USERFAULTFD)"
                        : err == EPERM ? " (vm.unprivileged_userfaultfd=0 and a kernel before 5.11)"
                                       : "")};
    }
    s->uffd_ = static_cast<int>(fd);
    uffdio_api a{UFFD_API, uffd_abi::feature_wp_async, 0};
    if (::ioctl(s->uffd_, UFFDIO_API, &a) != 0) {
      const int err = errno;
      return error{err == EINVAL ? ENOTSUP : err,
                   "userfaultfd write-protect bits: the kernel does not offer asynchronous write protection "
                   "(UFFD_FEATURE_WP_ASYNC, Linux 6.7): " +
                       std::string(detail::error_text(err))};
    }
    s->pagemap_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (s->pagemap_ < 0) {
      const int err = errno;
      return error{err, std::string("userfaultfd write-protect bits: cannot open /proc/self/pagemap: ") +
                            detail::error_text(err)};
    }
    // The proof: a page registered, protected, written once, seen written once.
    const auto ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    void *m = ::mmap(nullptr, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return error{errno, "userfaultfd write-protect bits: mmap of a test page failed"};
    auto *page = static_cast<volatile char *>(m);
    page[0] = 1;
    const auto at = reinterpret_cast<std::uintptr_t>(m);
    std::size_t present = 0, written = 0;
    long got = -1;
    int err = 0;
    if (s->register_range(at, at + ps) != 0 || s->scan(at, at + ps, nullptr, 0) < 0) {
      err = errno;
    } else {
      page[0] = 2;
      got = s->count(at, at + ps, present, written);
      if (got < 0) err = errno;
    }
    ::munmap(m, ps);
    if (err != 0)
      return error{err == ENOTTY || err == EINVAL ? ENOTSUP : err,
                   std::string("userfaultfd write-protect bits: ") + detail::error_text(err) +
                       (err == ENOTTY || err == EINVAL ? " (PAGEMAP_SCAN needs Linux 6.7)" : "")};
    if (present != 1 || written != 1)
      return error{ENOTSUP, "userfaultfd write-protect bits: a written test page was not reported written"};
    s->fault_seconds_ = s->calibrate_fault_cost();
    // The first interval too stays within the share: as many slices as could be written whole
    // (two faults a page) for the allowed share of an interval; more once measured cheaper.
    if (s->fault_seconds_ > 0 && max_overhead > 0) {
      const double affordable =
          max_overhead * interval_seconds / (2.0 * static_cast<double>(slice_pages) * s->fault_seconds_);
      s->max_slices_ = std::clamp<std::size_t>(static_cast<std::size_t>(affordable), 1, s->configured_slices_);
    }
    return s;
  }

  [[nodiscard]] double write_fault_seconds() const override { return fault_seconds_; }
  [[nodiscard]] double program_overhead() const override { return overhead_; }
  [[nodiscard]] std::size_t scan_chunks() const override { return max_slices_; }

  void close_after_fork() noexcept override {
    // The child's copies only: the parent's userfaultfd stays registered, its pages protected
    // (the child's own pages lost their protection at fork: its mappings are not registered).
    if (uffd_ >= 0) ::close(uffd_);
    if (pagemap_ >= 0) ::close(pagemap_);
    uffd_ = pagemap_ = -1;
  }
  ~write_protect_source() override {
    if (uffd_ >= 0) ::close(uffd_);  // the kernel unprotects and unregisters everything
    if (pagemap_ >= 0) ::close(pagemap_);
  }
  write_protect_source(const write_protect_source &) = delete;
  write_protect_source &operator=(const write_protect_source &) = delete;

  [[nodiscard]] std::string describe() const override {
    return "userfaultfd write-protect bits (PAGEMAP_SCAN; this process only, writes only, " + window_.describe() +
           "; a watched huge page is mapped as base pages after its first write)";
  }
  [[nodiscard]] double window_seconds() const override { return window_.seconds(); }

  result<void> observe(std::vector<target_view> &targets) override {
    const auto ps = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    for (auto &t : targets) t.heat.assign(t.chunks->size(), 0.0);
    const pid_t self = ::getpid();
    // Register each whole mapping (again every interval: memory mapped anew over a watched range
    // is not registered). Whole, so that no mapping is split in two or three (a process has at
    // most vm.max_map_count of them). Another userfaultfd's memory (EBUSY) stays unwatched.
    std::vector<std::pair<std::size_t, std::size_t>> watchable, slices;  // (target, chunk)
    for (std::size_t k = 0; k < targets.size(); ++k) {
      auto &t = targets[k];
      if (t.pid != self || t.mappings == nullptr) continue;  // cannot happen: create() allows this process only
      const auto &chunks = *t.chunks;
      for (const auto &[start, end] : *t.mappings)
        for (const auto &[lo, hi] : clip(start, end)) (void)register_range(lo, hi);
      for (std::size_t i = 0; i < chunks.size(); ++i)
        if (const auto [lo, hi] = slice(chunks[i], ps); inside(lo, hi)) watchable.emplace_back(k, i);
    }
    // At most max_slices_ this round, the others' turn comes in the next ones: each slice costs
    // two page-table walks that protect what was written, with a TLB flush on every CPU the
    // program runs on.
    const std::size_t n = watchable.size(), take = std::min(n, max_slices_);
    const std::size_t first = n > take ? next_slice_ % n : 0;
    for (std::size_t j = take; j < n; ++j) {
      const auto [k, i] = watchable[(first + j) % n];
      targets[k].heat[i] = std::numeric_limits<double>::quiet_NaN();
    }
    next_slice_ = first + take;
    for (std::size_t j = 0; j < take; ++j) {
      const auto [k, i] = watchable[(first + j) % n];
      const auto [lo, hi] = slice((*targets[k].chunks)[i], ps);
      if (scan(lo, hi, nullptr, 0) < 0) continue;  // EPERM: not registered (another userfaultfd's)
      slices.emplace_back(k, i);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(window_.seconds()));
    std::vector<double> seen;
    seen.reserve(slices.size());
    std::size_t faults = 0;
    for (const auto &[k, i] : slices) {
      auto &t = targets[k];
      const auto [lo, hi] = slice((*t.chunks)[i], ps);
      std::size_t present = 0, written = 0;
      if (count(lo, hi, present, written) < 0 || present == 0) continue;
      t.heat[i] = static_cast<double>(written) / static_cast<double>(present);
      seen.push_back(t.heat[i]);
      faults += written;
    }
    window_.adapt(seen);
    hold_to_budget(faults);
    ++round_;
    return {};
  }

 private:
  write_protect_source(double window, std::vector<std::pair<std::uintptr_t, std::uintptr_t>> within)
      : window_(window), within_(std::move(within)) {}

  // What the program paid for this interval's watching, and the scan budget for the next. Each
  // page found written took one fault in the window; counting it protected it again, so a page
  // written on takes a second one before the next scan: twice the written pages, at the measured
  // cost each, over the interval. Past the allowed share the budget shrinks in proportion (with
  // a margin); well below it, it grows back by half, up to the configured number.
  void hold_to_budget(std::size_t written_pages) {
    const double interval = std::max(interval_seconds_, window_.seconds());
    overhead_ = 2.0 * static_cast<double>(written_pages) * fault_seconds_ / interval;
    if (max_overhead_ <= 0) return;  // no limit asked for
    if (overhead_ > max_overhead_ && max_slices_ > 1) {
      const double scale = max_overhead_ / overhead_ * 0.8;
      max_slices_ = std::max<std::size_t>(1, static_cast<std::size_t>(static_cast<double>(max_slices_) * scale));
    } else if (overhead_ < max_overhead_ / 3 && max_slices_ < configured_slices_) {
      max_slices_ = std::min(configured_slices_, max_slices_ + std::max<std::size_t>(1, max_slices_ / 2));
    }
  }

  // The cost of one write fault on a page this source protected: the scratch mapping registered,
  // protected again before each timed pass. Taken by the engine's thread, as a program's thread
  // takes it (the TLB flushes its protecting sends to the program's other CPUs are not in it).
  double calibrate_fault_cost() {
    return time_write_faults(
        [this](std::uintptr_t at, std::size_t len) { return register_range(at, at + len) == 0; },
        [this](std::uintptr_t at, std::size_t len) { return scan(at, at + len, nullptr, 0) >= 0; });
  }

  // Up to slice_pages pages of the chunk at an offset that moves each interval (as the
  // soft-dirty source): fewer pages protected means fewer write faults for the program.
  [[nodiscard]] std::pair<std::uintptr_t, std::uintptr_t> slice(const chunk_range &c, std::uintptr_t ps) const {
    const std::size_t pages = (c.end - c.start) / ps;
    const std::size_t n = std::min<std::size_t>(pages, slice_pages);
    const std::size_t first = pages > n ? (round_ * n) % (pages - n + 1) : 0;
    return {c.start + first * ps, c.start + (first + n) * ps};
  }

  // [lo, hi) cut to the `within` ranges (all of it when there are none).
  [[nodiscard]] std::vector<std::pair<std::uintptr_t, std::uintptr_t>> clip(std::uintptr_t lo,
                                                                            std::uintptr_t hi) const {
    if (within_.empty()) return {{lo, hi}};
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> out;
    for (const auto &[a, b] : within_)
      if (std::max(a, lo) < std::min(b, hi)) out.emplace_back(std::max(a, lo), std::min(b, hi));
    return out;
  }
  [[nodiscard]] bool inside(std::uintptr_t lo, std::uintptr_t hi) const {
    if (within_.empty()) return true;
    return std::any_of(within_.begin(), within_.end(), [&](const auto &w) { return w.first <= lo && hi <= w.second; });
  }

  int register_range(std::uintptr_t lo, std::uintptr_t hi) const {
    uffdio_register r{{lo, hi - lo}, UFFDIO_REGISTER_MODE_WP, 0};
    return ::ioctl(uffd_, UFFDIO_REGISTER, &r);
  }

  // PAGEMAP_SCAN over [lo, hi) of registered memory, protecting every present page again.
  long scan(std::uintptr_t lo, std::uintptr_t hi, uffd_abi::page_region *vec, std::size_t vec_len) const {
    uffd_abi::pm_scan_arg a{};
    a.size = sizeof a;
    a.flags = uffd_abi::scan_wp_matching | uffd_abi::scan_check_wpasync;
    a.start = lo;
    a.end = hi;
    a.vec = reinterpret_cast<std::uintptr_t>(vec);
    a.vec_len = vec_len;
    a.category_anyof_mask = uffd_abi::page_is_present | uffd_abi::page_is_written;
    a.return_mask = uffd_abi::page_is_present | uffd_abi::page_is_written;
    return ::ioctl(pagemap_, uffd_abi::pagemap_scan, &a);
  }

  // Present and written pages in [lo, hi) (at most slice_pages pages: one region each at most).
  long count(std::uintptr_t lo, std::uintptr_t hi, std::size_t &present, std::size_t &written) const {
    std::array<uffd_abi::page_region, slice_pages> vec{};
    const long n = scan(lo, hi, vec.data(), vec.size());
    const auto ps = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    for (long r = 0; r < n; ++r) {
      const auto &g = vec[static_cast<std::size_t>(r)];
      const std::uint64_t pages = (g.end - g.start) / ps;
      if ((g.categories & uffd_abi::page_is_present) == 0) continue;  // swapped out: not seen
      present += pages;
      if (g.categories & uffd_abi::page_is_written) written += pages;
    }
    return n;
  }

  static constexpr std::size_t slice_pages = 64;
  // Slices scanned per interval (tiering_options::write_protect_chunks_per_interval; 512 by
  // default: about 2% of a core on the development VM's host for 2 GiB of GUPS, against 4.4%
  // when all 1024 were scanned each interval).
  std::size_t max_slices_ = 512;
  std::size_t configured_slices_ = 512;
  double interval_seconds_ = 1, max_overhead_ = 0.05;
  double fault_seconds_ = 0;  // calibrate_fault_cost()
  double overhead_ = 0;       // the program's share, last interval
  write_window window_;
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> within_;
  int uffd_ = -1, pagemap_ = -1;
  std::size_t round_ = 0;
  std::size_t next_slice_ = 0;  // where the next round's slices start among the watchable ones
};

// ---- hardware sampling (perf_event_open) ------------------------------------------------------
// One sampling event per thread of each managed process (cpu -1), each with a ring of its own:
// the kernel maps no ring of an inherited per-thread event, nor redirects output between the
// events of different threads. So each interval the threads are listed again: new ones get an
// event (a thread that starts and ends within one interval goes unseen), the rings of those
// gone are read a last time and closed. Samples carry the process and the data address.
class perf_source final : public source {
 public:
  static result<std::unique_ptr<perf_source>> open(const tiering_options &o, const std::vector<pid_t> &pids) {
    auto s = std::unique_ptr<perf_source>(new perf_source());
    std::vector<std::string> why;
    const bool any = o.perf_event == "auto";
    if (o.perf_event == "page-faults") {
      s->attr_.type = PERF_TYPE_SOFTWARE;
      s->attr_.config = PERF_COUNT_SW_PAGE_FAULTS;
      s->attr_.sample_period = o.perf_period ? o.perf_period : 1;
      s->base_period_ = s->attr_.sample_period;
      s->what_ = "the kernel's page-fault event: the address of every page fault (a weak signal, no PMU needed)";
    } else {
      bool found = false;
      if (any || o.perf_event == "mem-loads") {
        for (const char *pmu : {"cpu", "cpu_core"}) {
          auto e = detail::resolve_perf_event(o.perf_root, pmu, "mem-loads", {{"ldlat", 64}});
          if (!e) {
            why.push_back(e.error().message);
            continue;
          }
          if (auto aux = detail::resolve_perf_event(o.perf_root, pmu, "mem-loads-aux"); aux) s->leader_ = *aux;
          s->set_event(*e, o.perf_period ? o.perf_period : 1000, 2);
          s->what_ = std::string(pmu) + "/mem-loads: the data address of 1 in " +
                     std::to_string(s->attr_.sample_period) + " loads taking 64 cycles or more";
          found = true;
          break;
        }
      }
      if (!found && (any || o.perf_event == "ibs-op")) {
        if (auto e = detail::resolve_perf_event(o.perf_root, "ibs_op", ""); e) {
          s->set_event(*e, o.perf_period ? o.perf_period : 65536, 0);
          s->what_ = "AMD IBS op samples: the data address of the loads and stores among 1 in " +
                     std::to_string(s->attr_.sample_period) + " ops";
          found = true;
        } else {
          why.push_back(e.error().message);
        }
      }
      if (!found) {
        std::string text = "hardware sampling: no PMU event with data addresses";
        for (std::size_t i = 0; i < why.size(); ++i) text += (i == 0 ? ": " : "; ") + why[i];
        return error{ENOTSUP, text};
      }
    }
    // Proof on the first process: its events must open (permission, a PMU that refuses).
    for (pid_t pid : pids) {
      if (auto ok = s->attach(pid); !ok) return error{ok.error().code, "hardware sampling: " + ok.error().message};
      break;
    }
    return s;
  }

  ~perf_source() override {
    for (auto &r : rings_) r.close_all();
  }
  perf_source(const perf_source &) = delete;
  perf_source &operator=(const perf_source &) = delete;

  [[nodiscard]] std::string describe() const override {
    return "hardware sampling (perf_event_open, one event per thread: " + what_ +
           "; the period doubles while a thread's ring overflows)";
  }

  [[nodiscard]] std::uint64_t sample_period() const override { return attr_.sample_period; }

  void close_after_fork() noexcept override {
    for (auto &r : rings_) {
      if (r.fd >= 0) ::close(r.fd);
      if (r.leader >= 0) ::close(r.leader);
      r.fd = r.leader = -1;
    }
  }

  result<void> observe(std::vector<target_view> &targets) override {
    std::string failure;
    for (auto &t : targets) {
      t.heat.assign(t.chunks->size(), 0.0);
      if (auto ok = attach(t.pid); !ok) failure = ok.error().message;
    }
    // Drain every ring: samples per (process, address); then close those of threads gone.
    std::unordered_map<pid_t, std::vector<std::uint64_t>> addresses;
    for (auto &r : rings_) drain(r, addresses);
    for (auto &r : rings_) {
      const std::string task = "/proc/" + std::to_string(r.pid) + "/task/" + std::to_string(r.tid);
      if (::access(task.c_str(), F_OK) != 0) r.close_all();
    }
    rings_.erase(std::remove_if(rings_.begin(), rings_.end(), [](const ring &r) { return r.fd < 0; }), rings_.end());
    // Rings that overflowed lost the interval's later samples: sample half as often. Once the
    // fullest ring stays under an eighth, twice as often again, down to the configured period.
    std::uint64_t period = attr_.sample_period;
    if ((overflowed_ || lost_ > lost_seen_) && period < (std::uint64_t{1} << 40))
      period *= 2;
    else if (fullest_ < 0.125 && period / 2 >= base_period_)
      period /= 2;
    if (period != attr_.sample_period) {
      attr_.sample_period = period;
      for (auto &r : rings_) (void)::ioctl(r.fd, PERF_EVENT_IOC_PERIOD, &attr_.sample_period);
    }
    lost_seen_ = lost_;
    overflowed_ = false;
    fullest_ = 0;
    for (auto &t : targets) {
      const auto it = addresses.find(t.pid);
      if (it == addresses.end()) continue;
      const auto &chunks = *t.chunks;
      std::vector<std::uint32_t> count(chunks.size(), 0);
      for (const std::uint64_t a : it->second) {
        const auto c = std::upper_bound(chunks.begin(), chunks.end(), a,
                                        [](std::uint64_t x, const chunk_range &r) { return x < r.start; });
        if (c == chunks.begin()) continue;
        const auto &r = *(c - 1);
        if (a < r.end) ++count[static_cast<std::size_t>(c - 1 - chunks.begin())];
      }
      const std::uint32_t most = count.empty() ? 0 : *std::max_element(count.begin(), count.end());
      if (most == 0) continue;
      for (std::size_t i = 0; i < count.size(); ++i)
        t.heat[i] = static_cast<double>(count[i]) / static_cast<double>(most);
    }
    if (!failure.empty()) return error{EIO, "hardware sampling: " + failure};
    return {};
  }

 private:
  perf_source() = default;

  struct ring {
    pid_t pid = 0, tid = 0;
    int fd = -1, leader = -1;
    void *map = nullptr;
    std::size_t bytes = 0;
    void close_all() noexcept {
      if (map) ::munmap(map, bytes);
      if (fd >= 0) ::close(fd);
      if (leader >= 0) ::close(leader);
      map = nullptr;
      fd = leader = -1;
    }
  };

  void set_event(const detail::perf_event_spec &e, std::uint64_t period, unsigned precise) {
    base_period_ = period;
    attr_.type = e.type;
    attr_.config = e.config;
    attr_.config1 = e.config1;
    attr_.config2 = e.config2;
    attr_.sample_period = period;
    attr_.precise_ip = precise & 3U;
  }

  // Opens the event on every thread of `pid` it does not watch yet. An error only when the
  // process has no event at all (the first time: permission, a PMU that refuses).
  result<void> attach(pid_t pid) {
    const std::string dir = "/proc/" + std::to_string(pid) + "/task";
    DIR *d = ::opendir(dir.c_str());
    if (!d) return error{errno, "cannot list the threads of process " + std::to_string(pid)};
    std::vector<pid_t> tids;
    while (const dirent *e = ::readdir(d)) {
      const long t = std::strtol(e->d_name, nullptr, 10);
      if (t > 0) tids.push_back(static_cast<pid_t>(t));
    }
    ::closedir(d);
    const auto pages = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::size_t opened = 0, had = 0;
    int last_error = 0;
    for (pid_t tid : tids) {
      if (std::any_of(rings_.begin(), rings_.end(), [&](const ring &w) { return w.tid == tid && w.pid == pid; })) {
        ++had;
        continue;
      }
      std::string comm;
      if (read_text(dir + "/" + std::to_string(tid) + "/comm", comm) && comm.rfind("hetmem-tiering", 0) == 0)
        continue;  // an engine's own thread (this one, in the preload's process)
      ring r;
      r.pid = pid;
      r.tid = tid;
      if (leader_) {
        perf_event_attr l = attr_;
        l.type = leader_->type;
        l.config = leader_->config;
        l.config1 = leader_->config1;
        l.config2 = leader_->config2;
        l.sample_period = 0;
        l.sample_type = 0;
        l.precise_ip = 0;
        r.leader = open_event(l, tid, -1);
        if (r.leader < 0) {
          last_error = errno;
          continue;
        }
      }
      r.fd = open_event(attr_, tid, r.leader);
      if (r.fd < 0) {
        last_error = errno;
        r.close_all();
        continue;
      }
      r.bytes = (1 + ring_pages) * pages;
      r.map = ::mmap(nullptr, r.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
      if (r.map == MAP_FAILED) {
        last_error = errno;
        r.map = nullptr;
        r.close_all();
        continue;
      }
      rings_.push_back(r);
      ++opened;
    }
    if (opened == 0 && had == 0 && !tids.empty()) {
      const int err = last_error ? last_error : ESRCH;
      return error{err, "perf_event_open on process " + std::to_string(pid) + " failed: " + detail::error_text(err) +
                            (err == EACCES || err == EPERM
                                 ? " (kernel.perf_event_paranoid above 2, or another user's process: needs "
                                   "CAP_PERFMON)"
                             : err == ENOENT || err == EOPNOTSUPP ? " (the PMU does not offer this event here)"
                                                                  : "")};
    }
    return {};
  }

  int open_event(perf_event_attr a, pid_t tid, int group) {
    a.size = sizeof a;
    a.sample_type = a.sample_period ? (PERF_SAMPLE_TID | PERF_SAMPLE_ADDR) : 0;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    long fd = ::syscall(SYS_perf_event_open, &a, tid, -1, group, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0 && errno == EINVAL && a.exclude_kernel) {  // IBS before 6.2 takes no exclusion bits
      a.exclude_kernel = 0;
      a.exclude_hv = 0;
      fd = ::syscall(SYS_perf_event_open, &a, tid, -1, group, PERF_FLAG_FD_CLOEXEC);
    }
    return static_cast<int>(fd);
  }

  // Reads the samples the ring holds (records may wrap around its end) and gives the space back.
  void drain(ring &r, std::unordered_map<pid_t, std::vector<std::uint64_t>> &out) {
    if (!r.map) return;
    auto *meta = static_cast<perf_event_mmap_page *>(r.map);
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t size = r.bytes - page;
    const auto *data = static_cast<const unsigned char *>(r.map) + page;
    const std::uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
    std::uint64_t tail = meta->data_tail;
    // A ring (nearly) full has dropped samples; the kernel says how many only once it can
    // write again (PERF_RECORD_LOST, read in a later interval).
    if (head - tail + 256 > size) overflowed_ = true;
    fullest_ = std::max(fullest_, static_cast<double>(head - tail) / static_cast<double>(size));
    auto copy = [&](std::uint64_t at, void *to, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) static_cast<unsigned char *>(to)[i] = data[(at + i) % size];
    };
    while (tail + sizeof(perf_event_header) <= head) {
      perf_event_header h{};
      copy(tail, &h, sizeof h);
      if (h.size < sizeof h || tail + h.size > head) break;
      if (h.type == PERF_RECORD_SAMPLE && h.size >= sizeof h + 16) {
        std::uint32_t ids[2];
        std::uint64_t addr = 0;
        copy(tail + sizeof h, ids, sizeof ids);
        copy(tail + sizeof h + sizeof ids, &addr, sizeof addr);
        if (addr != 0) out[static_cast<pid_t>(ids[0])].push_back(addr);
      } else if (h.type == PERF_RECORD_LOST && h.size >= sizeof h + 16) {
        std::uint64_t lost[2];
        copy(tail + sizeof h, lost, sizeof lost);
        lost_ += lost[1];
      }
      tail += h.size;
    }
    __atomic_store_n(&meta->data_tail, tail, __ATOMIC_RELEASE);
  }

  static constexpr std::size_t ring_pages = 32;  // 128 KiB per thread: about 5000 samples an interval
  perf_event_attr attr_{};
  std::optional<detail::perf_event_spec> leader_;
  std::string what_;
  std::vector<ring> rings_;
  std::uint64_t lost_ = 0, lost_seen_ = 0;
  std::uint64_t base_period_ = 1;  // the configured (or default) period: the least it goes back to
  bool overflowed_ = false;
  double fullest_ = 0;  // the fullest ring's share in use at this interval's drain
};

// The populated parts of large mappings, so that a sparse reservation (a sanitizer's terabytes
// of shadow, a runtime's reserved heap) costs chunks for what is present only: PAGEMAP_SCAN
// (Linux 6.7; same permission as reading pagemap) lists the present and swapped pages, walking
// only the page tables that exist. Ranges under `small` bytes, and every range where the kernel
// cannot answer, are kept whole (the engine's chunks cover them as before).
std::vector<address_range> populated_parts(pid_t pid, std::vector<address_range> ranges, std::uintptr_t chunk) {
  constexpr std::uintptr_t small = std::uintptr_t{1} << 30;
  if (std::none_of(ranges.begin(), ranges.end(), [](const address_range &r) { return r.end - r.start > small; }))
    return ranges;
  const std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ranges;
  std::vector<address_range> out;
  std::vector<uffd_abi::page_region> vec(4096);
  for (auto &r : ranges) {
    if (r.end - r.start <= small) {
      out.push_back(std::move(r));
      continue;
    }
    std::vector<address_range> parts;
    bool answered = true;
    for (std::uintptr_t at = r.start; at < r.end;) {
      uffd_abi::pm_scan_arg a{};
      a.size = sizeof a;
      a.start = at;
      a.end = r.end;
      a.vec = reinterpret_cast<std::uintptr_t>(vec.data());
      a.vec_len = vec.size();
      a.category_anyof_mask = uffd_abi::page_is_present | uffd_abi::page_is_swapped;
      a.return_mask = uffd_abi::page_is_present | uffd_abi::page_is_swapped;
      const long n = ::ioctl(fd, uffd_abi::pagemap_scan, &a);
      if (n < 0) {
        answered = false;
        break;
      }
      for (long i = 0; i < n; ++i) {
        const auto &g = vec[static_cast<std::size_t>(i)];
        const std::uintptr_t lo = std::max<std::uintptr_t>(r.start, g.start / chunk * chunk);
        const std::uintptr_t hi = std::min<std::uintptr_t>(r.end, (g.end + chunk - 1) / chunk * chunk);
        if (!parts.empty() && parts.back().end >= lo)
          parts.back().end = std::max(parts.back().end, hi);
        else
          parts.push_back({lo, hi, r.what});
      }
      if (a.walk_end <= at || a.walk_end >= r.end) break;  // the whole range was walked
      at = static_cast<std::uintptr_t>(a.walk_end);
    }
    if (answered)
      out.insert(out.end(), std::make_move_iterator(parts.begin()), std::make_move_iterator(parts.end()));
    else
      out.push_back(std::move(r));
  }
  ::close(fd);
  return out;
}

struct chunk_state {
  double heat = 0;
  double last_move = -1e18;
  int last_direction = 0;
};

struct process_state {
  pid_t pid = 0;
  std::vector<chunk_range> chunks;
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> mappings;  // as /proc/PID/maps has them
  std::unordered_map<std::uintptr_t, chunk_state> state;            // by chunk start
  std::vector<std::uint64_t> present_bytes;
  std::vector<double> fast_share;
};

double psi_some_avg10(const std::string &path) {
  const auto text = sysfs::read_text_file(path, std::size_t{64} << 10);
  if (!text) return 0;
  for (const std::string_view line : sysfs::split_lines(*text)) {
    double v = 0;
    if (std::sscanf(std::string(line).c_str(), "some avg10=%lf", &v) == 1) return v;
  }
  return 0;
}

}  // namespace

std::string tiering_statistics::summary() const {
  char cpu[64];
  std::snprintf(cpu, sizeof cpu, "%.2f s", engine_cpu_seconds + source_cpu_seconds);
  std::string s = "interval " + std::to_string(intervals) + ": fast " + format_bytes(fast_bytes) + ", slow " +
                  format_bytes(slow_bytes) + ", hot " + format_bytes(hot_bytes) + "; promoted " +
                  std::to_string(pages_promoted) + ", demoted " + std::to_string(pages_demoted) + " pages";
  if (promote_failed + demote_failed > 0) s += " (" + std::to_string(promote_failed + demote_failed) + " refused)";
  s += "; cpu " + std::string(cpu);
  if (engine_cpu_seconds > 0) {
    char parts[128];
    if (source_cpu_seconds > 0)
      std::snprintf(parts, sizeof parts, " (observing %.2f s, moving pages %.2f s, kdamond %.2f s)",
                    observe_cpu_seconds, migrate_cpu_seconds, source_cpu_seconds);
    else
      std::snprintf(parts, sizeof parts, " (observing %.2f s, moving pages %.2f s)", observe_cpu_seconds,
                    migrate_cpu_seconds);
    s += parts;
  }
  if (write_fault_seconds > 0) {
    char cost[160];
    std::snprintf(cost, sizeof cost, "; write faults %.1f us each, about %.1f%% of the program's time",
                  write_fault_seconds * 1e6, source_overhead * 100);
    s += cost;
    if (scan_chunks > 0) s += ", " + std::to_string(scan_chunks) + " chunks scanned";
  }
  if (site_knowledge) {
    s += "; sites " + std::to_string(sites) + " (" + std::to_string(sites_hot) + " hot, " + std::to_string(sites_cold) +
         " cold), " + std::to_string(cold_placed_blocks) + " blocks placed on the slow tier by site (" +
         format_bytes(cold_placed_bytes) + ")";
  }
  if (!last_error.empty()) s += "; last error: " + last_error;
  return s;
}

namespace {

// "gups_touch+0x1a (/usr/bin/gups)", "/usr/bin/gups+0x1a2b", or the bare address.
std::string describe_code_address(const void *address) {
  char buf[64];
  Dl_info info{};
  if (::dladdr(address, &info) != 0 && info.dli_fname) {
    const auto at = reinterpret_cast<std::uintptr_t>(address);
    if (info.dli_sname && info.dli_saddr) {
      std::snprintf(buf, sizeof buf, "+0x%" PRIxPTR, at - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
      return std::string(info.dli_sname) + buf + " (" + info.dli_fname + ")";
    }
    std::snprintf(buf, sizeof buf, "+0x%" PRIxPTR, at - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
    return std::string(info.dli_fname) + buf;
  }
  std::snprintf(buf, sizeof buf, "%p", address);
  return buf;
}

}  // namespace

struct tiering_engine::impl {
  tiering_options options;
  tier fast, slow;
  std::unique_ptr<source> hotness;
  std::vector<process_state> processes;
  double started = monotonic_seconds();
  double last_step = 0;
  double budget = 0;  // bytes of migration allowed now (accumulates at max_bytes_per_second)
  std::size_t page_size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

  mutable std::mutex lock;  // guards stats
  tiering_statistics stats;

  // The allocator's knowledge (options.sites). Engine thread only.
  struct block_age {
    unsigned site = 0;
    std::uint32_t serial = 0;  // the registry's: a new block at a freed one's start differs
    std::uint64_t first_step = 0;
  };
  struct site_state {
    double heat = std::numeric_limits<double>::quiet_NaN();  // smoothed over intervals
    unsigned observations = 0;
    std::uint64_t bytes = 0;
    std::size_t blocks = 0;
  };
  std::unordered_map<std::uintptr_t, block_age> block_seen;  // live blocks by start
  std::unordered_map<unsigned, site_state> site_states;
  std::uint64_t steps = 0;
  std::uint64_t prior_chunks = 0;
  std::uint64_t freed_cursor = 0;  // the registry's ring of freed blocks, read up to here
  std::uint64_t freed_chunks = 0;  // chunks of freed blocks cooled (in all)

  std::thread worker;
  std::mutex wake_lock;
  std::condition_variable wake;
  bool stopping = false;

  [[nodiscard]] std::vector<pid_t> wanted_pids() const {
    std::vector<pid_t> pids = options.pids;
    if (!options.cgroup.empty()) {
      if (const auto text = sysfs::read_text_file(options.cgroup + "/cgroup.procs", std::size_t{64} << 20))
        for (const std::string_view line : sysfs::split_lines(*text)) {
          const long p = std::strtol(std::string(line).c_str(), nullptr, 10);
          if (p > 0) pids.push_back(static_cast<pid_t>(p));
        }
    }
    if (pids.empty() && options.cgroup.empty()) pids.push_back(::getpid());
    std::sort(pids.begin(), pids.end());
    pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
    return pids;
  }

  // The chunks of each managed process now; processes that are gone are dropped.
  result<void> refresh_processes() {
    const auto pids = wanted_pids();
    std::vector<process_state> next;
    for (pid_t pid : pids) {
      auto ranges = process_ranges(pid, false);
      if (!ranges) {
        if (ranges.error().code == ESRCH) continue;
        return ranges.error();
      }
      std::vector<std::pair<std::uintptr_t, std::uintptr_t>> mappings;
      mappings.reserve(ranges->size());
      for (const auto &r : *ranges) mappings.emplace_back(r.start, r.end);
      *ranges = populated_parts(pid, std::move(*ranges), options.chunk_bytes);
      process_state ps;
      ps.pid = pid;
      ps.mappings = std::move(mappings);
      for (auto &old : processes)
        if (old.pid == pid) ps.state = std::move(old.state);
      const std::uintptr_t cb = options.chunk_bytes;
      for (const auto &r : *ranges) {
        for (std::uintptr_t a = r.start; a < r.end;) {
          const std::uintptr_t boundary = (a / cb + 1) * cb;
          const std::uintptr_t e = std::min(boundary, r.end);
          ps.chunks.push_back({a, e});
          a = e;
        }
      }
      next.push_back(std::move(ps));
    }
    processes = std::move(next);
    if (processes.empty())
      return error{ESRCH,
                   options.cgroup.empty() ? "no managed process is left" : "cgroup " + options.cgroup + " is empty"};
    return {};
  }

  // Where the pages of each chunk are: move_pages status for up to 4 pages per chunk (8192 in all).
  void sample_placement() {
    std::size_t total_chunks = 0;
    for (const auto &p : processes) total_chunks += p.chunks.size();
    const std::size_t per_chunk = std::clamp<std::size_t>(total_chunks ? 8192 / total_chunks : 4, 1, 4);
    std::vector<void *> pages;
    std::vector<int> status;
    for (auto &p : processes) {
      pages.clear();
      for (const auto &c : p.chunks) {
        const std::size_t n = (c.end - c.start) / page_size;
        const std::size_t k = std::min(per_chunk, std::max<std::size_t>(n, 1));
        for (std::size_t i = 0; i < k; ++i)
          pages.push_back(reinterpret_cast<void *>(c.start + ((i * n) / k) * page_size));
      }
      status.assign(pages.size(), -ENOENT);
      for (std::size_t at = 0; at < pages.size(); at += 4096) {
        const std::size_t n = std::min<std::size_t>(4096, pages.size() - at);
        if (detail::os().move_pages(p.pid, n, pages.data() + at, nullptr, status.data() + at, 0) != 0)
          std::fill(status.begin() + static_cast<std::ptrdiff_t>(at),
                    status.begin() + static_cast<std::ptrdiff_t>(at + n), -ENOENT);
      }
      p.present_bytes.assign(p.chunks.size(), 0);
      p.fast_share.assign(p.chunks.size(), 0);
      std::size_t at = 0;
      for (std::size_t i = 0; i < p.chunks.size(); ++i) {
        const auto &c = p.chunks[i];
        const std::size_t n = (c.end - c.start) / page_size;
        const std::size_t k = std::min(per_chunk, std::max<std::size_t>(n, 1));
        std::size_t present = 0, on_fast = 0;
        for (std::size_t j = 0; j < k; ++j, ++at) {
          const int st = status[at];
          if (st < 0) continue;
          ++present;
          if (fast.where.nodes.contains(static_cast<std::uint32_t>(st))) ++on_fast;
        }
        p.present_bytes[i] = (c.end - c.start) * present / k;
        p.fast_share[i] = present ? static_cast<double>(on_fast) / static_cast<double>(present) : 0.0;
      }
    }
  }

  // The allocator's knowledge (contract, 4): attributes the smoothed heat of each live large
  // block's chunks to its site once the block is mature, sets each site's verdict in the
  // registry, and gives the chunks of younger blocks their site's heat.
  void learn_sites() {
    detail::site_registry &reg = *options.sites;
    process_state *self = nullptr;
    for (auto &p : processes)
      if (p.pid == ::getpid()) self = &p;
    struct block {
      std::uintptr_t start;
      std::size_t bytes;
      unsigned site;
      std::uint32_t serial;
    };
    std::vector<block> blocks;
    reg.for_each_block([&](std::uintptr_t start, std::size_t bytes, unsigned site, std::uint32_t serial) {
      blocks.push_back({start, bytes, site, serial});
    });
    struct tally {
      double sum = 0, weight = 0;
      std::uint64_t bytes = 0;
      std::size_t blocks = 0;
    };
    std::unordered_map<unsigned, tally> per_site;
    std::unordered_map<std::uintptr_t, block_age> seen;
    seen.reserve(blocks.size());
    for (const auto &b : blocks) {
      const auto it = block_seen.find(b.start);
      const block_age age = it != block_seen.end() && it->second.site == b.site && it->second.serial == b.serial
                                ? it->second
                                : block_age{b.site, b.serial, steps};
      seen.emplace(b.start, age);
      tally &t = per_site[b.site];
      t.bytes += b.bytes;
      ++t.blocks;
      if (!self) continue;
      const bool mature = steps - age.first_step >= options.site_maturity_intervals;
      const auto known = site_states.find(b.site);
      const auto verdict = reg.verdict_of(b.site);
      const bool prior = !mature && verdict != detail::site_registry::verdict::unknown && known != site_states.end() &&
                         !std::isnan(known->second.heat);
      const std::uintptr_t end = b.start + b.bytes;
      auto c = std::lower_bound(self->chunks.begin(), self->chunks.end(), b.start,
                                [](const chunk_range &r, std::uintptr_t a) { return r.end <= a; });
      for (; c != self->chunks.end() && c->start < end; ++c) {
        const auto st = self->state.find(c->start);
        if (st == self->state.end()) continue;
        const std::uintptr_t lo = std::max(c->start, b.start), hi = std::min(c->end, end);
        const auto overlap = static_cast<double>(hi - lo);
        if (mature) {
          t.sum += st->second.heat * overlap;
          t.weight += overlap;
        } else if (prior && 2 * (hi - lo) >= c->end - c->start) {  // the chunk is mostly this block
          const double h = known->second.heat;
          double &heat = st->second.heat;
          if (verdict == detail::site_registry::verdict::hot ? heat < h : heat > h) {
            heat = h;
            ++prior_chunks;
          }
        }
      }
    }
    block_seen = std::move(seen);
    if (self) cool_freed(reg, blocks, *self);
    for (auto &[site, s] : site_states) s.bytes = 0, s.blocks = 0;
    for (const auto &[site, t] : per_site) {
      site_state &s = site_states[site];
      s.bytes = t.bytes;
      s.blocks = t.blocks;
      if (t.weight <= 0) continue;
      const double h = t.sum / t.weight;
      s.heat = s.observations == 0 ? h : 0.5 * h + 0.5 * s.heat;
      ++s.observations;
      if (s.observations < 2) continue;
      if (s.heat >= options.promote_threshold)
        reg.set_verdict(site, detail::site_registry::verdict::hot);
      else if (s.heat < options.promote_threshold / 2)
        reg.set_verdict(site, detail::site_registry::verdict::cold);
    }
  }

  // Memory of a block freed since the last interval is free, whatever was written to it while
  // the block lived: jemalloc keeps it resident (and hands it out again as it is, on the node
  // it is on), so promoting it for those writes would put the next block there on the fast
  // tier. Each chunk mostly inside a freed block and overlapping no live one is cold now.
  template <class Block>
  void cool_freed(const detail::site_registry &reg, std::vector<Block> &live, process_state &self) {
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> freed;
    (void)reg.for_each_freed(
        freed_cursor, [&](std::uintptr_t start, std::size_t bytes) { freed.emplace_back(start, start + bytes); });
    if (freed.empty()) return;
    std::sort(live.begin(), live.end(), [](const Block &a, const Block &b) { return a.start < b.start; });
    const auto overlaps_live = [&](std::uintptr_t lo, std::uintptr_t hi) {
      // The last live block starting before hi (live blocks never overlap each other).
      auto it =
          std::lower_bound(live.begin(), live.end(), hi, [](const Block &b, std::uintptr_t a) { return b.start < a; });
      return it != live.begin() && std::prev(it)->start + std::prev(it)->bytes > lo;
    };
    for (const auto &[start, end] : freed) {
      auto c = std::lower_bound(self.chunks.begin(), self.chunks.end(), start,
                                [](const chunk_range &r, std::uintptr_t a) { return r.end <= a; });
      for (; c != self.chunks.end() && c->start < end; ++c) {
        const std::uintptr_t lo = std::max(c->start, start), hi = std::min(c->end, end);
        if (2 * (hi - lo) < c->end - c->start || overlaps_live(c->start, c->end)) continue;
        const auto st = self.state.find(c->start);
        if (st == self.state.end() || st->second.heat == 0) continue;
        st->second.heat = 0;
        ++freed_chunks;
      }
    }
  }

  // The site part of the statistics (under `lock`).
  void site_statistics(tiering_statistics &st) const {
    const detail::site_registry &reg = *options.sites;
    st.site_knowledge = true;
    st.sites = st.sites_hot = st.sites_cold = st.site_blocks = 0;
    std::vector<std::pair<unsigned, const site_state *>> order;
    for (const auto &[site, s] : site_states) {
      const auto v = reg.verdict_of(site);
      if (s.blocks == 0 && v == detail::site_registry::verdict::unknown) continue;
      ++st.sites;
      st.sites_hot += v == detail::site_registry::verdict::hot ? 1 : 0;
      st.sites_cold += v == detail::site_registry::verdict::cold ? 1 : 0;
      st.site_blocks += s.blocks;
      order.emplace_back(site, &s);
    }
    std::sort(order.begin(), order.end(), [](const auto &a, const auto &b) {
      return a.second->bytes != b.second->bytes ? a.second->bytes > b.second->bytes : a.first < b.first;
    });
    if (order.size() > 8) order.resize(8);
    st.site_reports.clear();
    for (const auto &[site, s] : order) {
      tiering_statistics::site_report r;
      r.address = reg.site_address(site);
      r.where = describe_code_address(r.address);
      r.heat = s->heat;
      r.bytes = s->bytes;
      r.blocks = s->blocks;
      const auto v = reg.verdict_of(site);
      r.verdict = v == detail::site_registry::verdict::hot    ? "hot"
                  : v == detail::site_registry::verdict::cold ? "cold"
                                                              : "learning";
      st.site_reports.push_back(std::move(r));
    }
    st.site_prior_chunks = prior_chunks;
    st.site_freed_chunks = freed_chunks;
    st.cold_placed_blocks = reg.cold_placed_blocks();
    st.cold_placed_bytes = reg.cold_placed_bytes();
  }

  result<void> step() {
    const double cpu0 = thread_cpu_seconds();
    const double now = monotonic_seconds() - started;
    try {
      if (auto ok = refresh_processes(); !ok) return ok;
      std::vector<target_view> views;
      views.reserve(processes.size());
      for (auto &p : processes) views.push_back({p.pid, &p.chunks, {}, &p.mappings});
      std::string source_error;
      const double observe0 = thread_cpu_seconds();
      if (auto ok = hotness->observe(views); !ok) source_error = ok.error().message;
      const double observe_cpu = thread_cpu_seconds() - observe0;
      // Smooth each chunk's heat.
      const double a = std::clamp(options.smoothing, 0.01, 1.0);
      for (std::size_t k = 0; k < processes.size(); ++k) {
        auto &p = processes[k];
        std::unordered_map<std::uintptr_t, chunk_state> kept;
        kept.reserve(p.chunks.size());
        for (std::size_t i = 0; i < p.chunks.size(); ++i) {
          const double obs = views[k].heat.size() == p.chunks.size() ? views[k].heat[i] : 0.0;
          const bool observed = !std::isnan(obs);  // else the source took other chunks this interval
          auto it = p.state.find(p.chunks[i].start);
          chunk_state s = it == p.state.end() ? chunk_state{observed ? obs : 0.0, -1e18, 0} : it->second;
          if (it != p.state.end() && observed) s.heat = a * obs + (1 - a) * s.heat;
          if (s.heat < 1e-3) s.heat = 0;
          kept.emplace(p.chunks[i].start, s);
        }
        p.state = std::move(kept);
      }
      if (options.sites) learn_sites();
      ++steps;
      sample_placement();

      // How much the fast tier may take.
      std::vector<detail::chunk_view> views_all;
      std::vector<std::pair<std::size_t, std::size_t>> where;  // (process, chunk)
      std::uint64_t managed = 0, managed_fast = 0;
      for (std::size_t k = 0; k < processes.size(); ++k) {
        const auto &p = processes[k];
        for (std::size_t i = 0; i < p.chunks.size(); ++i) {
          const auto &s = p.state.at(p.chunks[i].start);
          views_all.push_back({s.heat, p.present_bytes[i], p.fast_share[i], s.last_move, s.last_direction});
          where.emplace_back(k, i);
          managed += p.present_bytes[i];
          managed_fast += static_cast<std::uint64_t>(static_cast<double>(p.present_bytes[i]) * p.fast_share[i]);
        }
      }
      const double psi = psi_some_avg10(options.cgroup.empty() ? std::string("/proc/pressure/memory")
                                                               : options.cgroup + "/memory.pressure");
      const double reserve_share = options.fast_reserve_fraction * (psi > options.psi_threshold ? 2.0 : 1.0);
      std::int64_t free_room = 0;
      std::uint64_t reserve_bytes = 0;
      char root[256];
      detail::copy_sysfs_root(root, sizeof root);
      for (auto n : fast.where.nodes.to_vector()) {
        detail::node_memory m;
        if (!detail::read_node_memory(root, n, &m)) continue;
        const auto reserve = static_cast<std::uint64_t>(static_cast<double>(m.total) * reserve_share);
        reserve_bytes += reserve;
        free_room += static_cast<std::int64_t>(m.free) - static_cast<std::int64_t>(reserve);
      }
      std::int64_t room = free_room;
      if (options.fast_limit_bytes > 0)
        room = std::min(room,
                        static_cast<std::int64_t>(options.fast_limit_bytes) - static_cast<std::int64_t>(managed_fast));

      // Migration budget: accumulates at the rate, carries over at most two intervals' worth.
      const double dt = last_step > 0 ? now - last_step : options.interval_seconds;
      last_step = now;
      const double rate = options.max_bytes_per_second > 0 ? static_cast<double>(options.max_bytes_per_second) : 1e18;
      const double cap = std::max(rate * options.interval_seconds * 2, 2.0 * static_cast<double>(options.chunk_bytes));
      budget = std::min(budget + rate * dt, cap);

      detail::plan_limits limits;
      limits.room_bytes = room;
      limits.budget_bytes = static_cast<std::uint64_t>(std::min(budget, 1e18));
      limits.promote = stats_promoting();
      limits.now = now;
      limits.promote_threshold = options.promote_threshold;
      limits.hysteresis = options.hysteresis;
      limits.cooldown = options.cooldown_seconds;
      const auto plan = detail::plan_interval(views_all, limits);

      // Carry it out: demotions first (they make the room), one migrate call per process and direction.
      std::uint64_t promoted = 0, demoted = 0, promote_failed = 0, demote_failed = 0;
      double migrate_cpu = 0;
      std::string error_text = source_error;
      auto run = [&](const std::vector<std::size_t> &list, bool up) {
        std::map<std::size_t, std::vector<address_range>> per_process;
        for (std::size_t idx : list) {
          const auto [k, i] = where[idx];
          auto &ranges = per_process[k];
          const auto &c = processes[k].chunks[i];
          if (!ranges.empty() && ranges.back().end == c.start)
            ranges.back().end = c.end;
          else
            ranges.push_back({c.start, c.end, {}});
          auto &s = processes[k].state[c.start];
          s.last_move = now;
          s.last_direction = up ? 1 : -1;
        }
        for (auto &[k, ranges] : per_process) {
          migration_options mo;
          mo.pid = processes[k].pid;
          if (!up) mo.only_from = fast.where.nodes;
          const double migrate0 = thread_cpu_seconds();
          auto r = migrate(ranges, up ? fast : slow, mo);
          migrate_cpu += thread_cpu_seconds() - migrate0;
          if (!r) {
            error_text = r.error().message;
            continue;
          }
          (up ? promoted : demoted) += r->moved;
          (up ? promote_failed : demote_failed) += r->failed();
          budget -= static_cast<double>(r->moved * r->page_size);
        }
      };
      run(plan.demote, false);
      run(plan.promote, true);
      budget = std::max(budget, 0.0);

      const double cpu = thread_cpu_seconds() - cpu0;
      std::lock_guard<std::mutex> g(lock);
      stats.intervals++;
      stats.pages_promoted += promoted;
      stats.pages_demoted += demoted;
      stats.promote_failed += promote_failed;
      stats.demote_failed += demote_failed;
      // After the moves: the sampled state plus what moved.
      const std::uint64_t moved_up = promoted * page_size, moved_down = demoted * page_size;
      stats.fast_bytes = managed_fast + moved_up > moved_down ? managed_fast + moved_up - moved_down : 0;
      stats.managed_bytes = managed;
      stats.slow_bytes = managed > stats.fast_bytes ? managed - stats.fast_bytes : 0;
      stats.hot_bytes = plan.hot_bytes;
      stats.processes = processes.size();
      stats.chunks = 0;
      for (const auto &pr : processes) stats.chunks += pr.chunks.size();
      stats.psi_some_avg10 = psi;
      stats.fast_reserve_bytes = reserve_bytes;
      stats.engine_cpu_seconds += cpu;
      stats.observe_cpu_seconds += observe_cpu;
      stats.migrate_cpu_seconds += migrate_cpu;
      stats.source_cpu_seconds = hotness->cpu_seconds();
      stats.window_seconds = hotness->window_seconds();
      stats.sample_period = hotness->sample_period();
      stats.write_fault_seconds = hotness->write_fault_seconds();
      stats.source_overhead = hotness->program_overhead();
      stats.scan_chunks = hotness->scan_chunks();
      stats.elapsed_seconds = monotonic_seconds() - started;
      if (!error_text.empty()) stats.last_error = error_text;
      if (options.sites) site_statistics(stats);
    } catch (const std::bad_alloc &) {
      return error{ENOMEM, "tiering: out of memory"};
    }
    if (options.on_interval) options.on_interval(statistics());
    return {};
  }

  bool stats_promoting() {
    std::lock_guard<std::mutex> g(lock);
    return stats.promoting;
  }

  [[nodiscard]] tiering_statistics statistics() const {
    std::lock_guard<std::mutex> g(lock);
    return stats;
  }

  void loop() {
    (void)pthread_setname_np(pthread_self(), "hetmem-tiering");
    for (;;) {
      const auto t0 = std::chrono::steady_clock::now();
      {
        std::lock_guard<std::mutex> g(wake_lock);
        if (stopping) return;
      }
      auto r = step();
      if (!r) {
        std::lock_guard<std::mutex> g(lock);
        stats.last_error = r.error().message;
        if (r.error().code == ESRCH) return;  // nothing left to manage
      }
      std::unique_lock<std::mutex> g(wake_lock);
      wake.wait_until(g,
                      t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(options.interval_seconds)),
                      [this] { return stopping; });
      if (stopping) return;
    }
  }
};

result<std::unique_ptr<tiering_engine>> tiering_engine::create(tiering_options options) {
  try {
    if (options.interval_seconds <= 0 || options.interval_seconds > 3600)
      return error{EINVAL, "tiering: the interval must be between 0 and 3600 s"};
    if (options.chunk_bytes < static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) ||
        (options.chunk_bytes & (options.chunk_bytes - 1)) != 0)
      return error{EINVAL, "tiering: the chunk size must be a power of two of at least one page"};
    if (options.fast_reserve_fraction < 0 || options.fast_reserve_fraction >= 1)
      return error{EINVAL, "tiering: the fast tier's reserve must be a share in [0, 1)"};
    const bool only_self =
        options.cgroup.empty() && (options.pids.empty() || (options.pids.size() == 1 && options.pids[0] == ::getpid()));
    const std::string wp_self_only =
        "userfaultfd write-protect bits watch only the process that runs the engine (the preload's, or the API's "
        "with no pids), not other processes";
    if (options.source == hotness_source::write_protect && !only_self) return error{EINVAL, "tiering: " + wp_self_only};
    if (options.sites && !only_self)
      return error{EINVAL,
                   "tiering: allocation sites are the allocator's knowledge of this process: only with no other "
                   "process managed"};
    auto p = std::make_unique<impl>();
    if (!options.fast || !options.slow) {
      auto topo = load_topology();
      if (!topo) return error{topo.error().code, "tiering: cannot read the memory topology: " + topo.error().message};
      if (!options.fast) {
        auto f = tier_by_rank(*topo, 0);
        if (!f) return error{f.error().code, "tiering: no fast tier: " + f.error().message};
        options.fast = *f;
      }
      if (!options.slow) {
        if (options.fast->next.empty())
          return error{ENODEV, "tiering: this machine has one memory tier for these CPUs (" + options.fast->name +
                                   "): nothing to demote to"};
        options.slow = options.fast->next.front();
      }
    }
    if (options.fast->file || options.slow->file)
      return error{EINVAL, "tiering: file-backed tiers hold no NUMA pages to migrate"};
    if (options.fast->where.nodes.empty() || options.slow->where.nodes.empty())
      return error{EINVAL, "tiering: a tier without nodes"};
    if (options.fast->where.nodes.intersects(options.slow->where.nodes))
      return error{EINVAL, "tiering: the fast tier (" + options.fast->name + ") and the slow tier (" +
                               options.slow->name + ") share nodes"};
    p->fast = *options.fast;
    p->slow = *options.slow;
    p->options = options;
    if (auto ok = p->refresh_processes(); !ok) return ok.error();

    const auto kernel = detect_kernel_tiering();
    p->stats.kernel_notes = kernel.notes();
    if (kernel.kernel_promotes()) {
      switch (options.coexist) {
        case kernel_coexistence::yield:
          return error{EBUSY, "tiering: the kernel's NUMA balancing is in tiering mode (kernel.numa_balancing=" +
                                  std::to_string(kernel.numa_balancing) + ") and coexist=yield: hetmem stands aside"};
        case kernel_coexistence::coexist:
          p->stats.promoting = false;
          p->stats.kernel_notes.emplace_back(
              "hetmem demotes only: the kernel promotes (coexist=force makes hetmem promote too)");
          break;
        case kernel_coexistence::force:
          p->stats.kernel_notes.emplace_back("hetmem promotes as well as the kernel (coexist=force)");
          break;
      }
    }
    // Best first: DAMON, soft-dirty bits, userfaultfd write-protect bits (this process only),
    // hardware sampling.
    std::vector<std::string> tried;              // why the better ones were not used
    std::unique_ptr<source> slow_write_protect;  // opened, but its faults are costly here: the last resort
    if (options.source == hotness_source::automatic || options.source == hotness_source::damon) {
      std::string note;
      auto d = damon_source::open(options.damon_admin, options.damon_modules, options.damon_takeover, note);
      if (d) {
        p->hotness = std::move(*d);
        if (note.rfind("stopped DAMON_STAT", 0) == 0)  // the kernel's state read before: no longer so
          std::erase_if(p->stats.kernel_notes,
                        [](const std::string &n) { return n.rfind("DAMON_STAT is running", 0) == 0; });
        if (!note.empty()) p->stats.kernel_notes.push_back("DAMON: " + note);
      } else if (options.source == hotness_source::damon) {
        return d.error();
      } else {
        p->stats.kernel_notes.push_back("hotness: not DAMON: " + d.error().message);
        tried.push_back("not DAMON: " + d.error().message);
      }
    }
    if (!p->hotness && options.source != hotness_source::damon) {
      if (options.soft_dirty_window_seconds <= 0 || options.soft_dirty_window_seconds >= options.interval_seconds)
        return error{EINVAL, "tiering: the sampling window must be shorter than the interval"};
    }
    if (!p->hotness && (options.source == hotness_source::automatic || options.source == hotness_source::soft_dirty)) {
      if (auto ok = soft_dirty_supported(); ok) {
        p->hotness = std::make_unique<soft_dirty_source>(options.soft_dirty_window_seconds, options.interval_seconds,
                                                         options.write_protect_max_overhead);
      } else if (options.source == hotness_source::soft_dirty) {
        return error{ok.error().code, "tiering: " + ok.error().message};
      } else {
        if (only_self) p->stats.kernel_notes.push_back("hotness: not " + ok.error().message);
        tried.push_back(ok.error().message);
      }
    }
    if (!p->hotness &&
        (options.source == hotness_source::automatic || options.source == hotness_source::write_protect)) {
      if (!only_self) {
        tried.push_back(wp_self_only);
      } else if (auto w = write_protect_source::open(options.soft_dirty_window_seconds, options.write_protect_within,
                                                     options.write_protect_chunks_per_interval,
                                                     options.interval_seconds, options.write_protect_max_overhead);
                 w) {
        // Chosen automatically only where a write fault is cheap: elsewhere (a paravirtualized
        // guest, say) the next source goes first, and this one stays the last resort.
        const double fault = (*w)->write_fault_seconds();
        if (options.source == hotness_source::automatic && fault > options.write_protect_auto_max_fault_seconds) {
          char why[200];
          std::snprintf(why, sizeof why,
                        "userfaultfd write-protect bits: a write fault costs %.1f µs here (over %.1f µs): tried "
                        "after the other sources",
                        fault * 1e6, options.write_protect_auto_max_fault_seconds * 1e6);
          tried.push_back(why);
          p->stats.kernel_notes.push_back(std::string("hotness: ") + why);
          slow_write_protect = std::move(*w);
        } else {
          p->hotness = std::move(*w);
        }
      } else if (options.source == hotness_source::write_protect) {
        return error{w.error().code, "tiering: " + w.error().message};
      } else {
        tried.push_back(w.error().message);
      }
    }
    if (!p->hotness && (options.source == hotness_source::automatic || options.source == hotness_source::perf)) {
      if (auto h = perf_source::open(options, p->wanted_pids()); h) {
        p->hotness = std::move(*h);
      } else if (options.source == hotness_source::perf) {
        return error{h.error().code, "tiering: " + h.error().message};
      } else {
        tried.push_back(h.error().message);
      }
    }
    if (!p->hotness && slow_write_protect) p->hotness = std::move(slow_write_protect);  // held to its share
    if (!p->hotness) {
      std::string why = "tiering: no source of hotness on this machine";
      for (std::size_t i = 0; i < tried.size(); ++i) why += (i == 0 ? ": " : "; ") + tried[i];
      return error{ENOTSUP, why};
    }
    p->stats.source = p->hotness->describe();
    if (options.sites) {
      p->stats.site_knowledge = true;
      p->stats.source += ", with the allocator's knowledge of its large blocks' call sites";
    }
    p->stats.window_seconds = p->hotness->window_seconds();
    p->stats.write_fault_seconds = p->hotness->write_fault_seconds();
    p->stats.scan_chunks = p->hotness->scan_chunks();
    return std::unique_ptr<tiering_engine>(new tiering_engine(std::move(p)));
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "tiering: out of memory"};
  }
}

tiering_engine::tiering_engine(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

tiering_engine::~tiering_engine() { stop(); }

result<void> tiering_engine::step() { return impl_->step(); }

result<void> tiering_engine::start() {
  if (impl_->worker.joinable()) return error{EALREADY, "tiering: the engine is running already"};
  try {
    impl_->stopping = false;
    impl_->worker = std::thread([p = impl_.get()] { p->loop(); });
  } catch (const std::system_error &e) {
    return error{e.code().value(), std::string("tiering: cannot start the engine's thread: ") + e.what()};
  }
  return {};
}

void tiering_engine::stop() noexcept {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> g(impl_->wake_lock);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

tiering_statistics tiering_engine::statistics() const { return impl_->statistics(); }

const tier &tiering_engine::fast_tier() const noexcept { return impl_->fast; }
const tier &tiering_engine::slow_tier() const noexcept { return impl_->slow; }

void tiering_engine::close_after_fork() noexcept {
  if (impl_ && impl_->hotness) impl_->hotness->close_after_fork();
}

}  // namespace hetmem
