// The DAMON hotness source: one kdamond per managed process through DAMON's sysfs interface.
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "hetmem/placement.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/tiering.hpp"
#include "source.hpp"
#include "text.hpp"

namespace hetmem::tiering_detail {
namespace {

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

}  // namespace

result<std::unique_ptr<source>> open_damon_source(const std::string &admin, const std::string &modules, bool takeover,
                                                  std::string &note) {
  auto s = damon_source::open(admin, modules, takeover, note);
  if (!s) return s.error();
  return std::unique_ptr<source>(std::move(*s));
}

}  // namespace hetmem::tiering_detail
