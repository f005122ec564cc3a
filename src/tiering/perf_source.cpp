// The hardware-sampling hotness source (perf_event_open): the sampling events resolved from the
// PMUs' sysfs descriptions (detail::resolve_perf_event, tiering.hpp: every read relative to a
// root, so a captured or made-up tree answers as the machine would), and the source that samples
// the managed processes' threads with them.
#include <dirent.h>
#include <fcntl.h>
#include <linux/perf_event.h>
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
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hetmem/placement.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/tiering.hpp"
#include "source.hpp"
#include "text.hpp"

namespace hetmem::detail {
namespace {

constexpr std::string_view pmu_dir = "/sys/bus/event_source/devices/";

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}

result<std::string> read_small(const std::string &path) {
  auto t = sysfs::read_text_file(path, 4096);
  if (!t) return error{t.error().code, path + ": " + t.error().message};
  return trimmed(std::move(*t));
}

result<std::uint64_t> parse_number(std::string_view text, const std::string &what) {
  if (text.empty()) return error{EINVAL, what + ": an empty value"};
  std::uint64_t v = 0;
  const bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  for (std::size_t i = hex ? 2 : 0; i < text.size(); ++i) {
    const char c = text[i];
    unsigned d = 0;
    if (c >= '0' && c <= '9')
      d = static_cast<unsigned>(c - '0');
    else if (hex && c >= 'a' && c <= 'f')
      d = static_cast<unsigned>(c - 'a' + 10);
    else if (hex && c >= 'A' && c <= 'F')
      d = static_cast<unsigned>(c - 'A' + 10);
    else
      return error{EINVAL, what + ": '" + std::string(text) + "' is not a number"};
    const unsigned base = hex ? 16 : 10;
    if (v > (UINT64_MAX - d) / base) return error{ERANGE, what + ": '" + std::string(text) + "' is too large"};
    v = v * base + d;
  }
  return v;
}

// Puts `value` into the bits a format file describes ("config:0-7", "config1:0-15",
// "config:0-7,32-35", "config:19"), low bits first.
result<void> place_term(perf_event_spec &spec, const std::string &format, std::uint64_t value,
                        const std::string &what) {
  const auto colon = format.find(':');
  if (colon == std::string::npos) return error{EINVAL, what + ": format '" + format + "' has no ':'"};
  const std::string field = format.substr(0, colon);
  std::uint64_t *target = field == "config"    ? &spec.config
                          : field == "config1" ? &spec.config1
                          : field == "config2" ? &spec.config2
                                               : nullptr;
  if (!target) return error{EINVAL, what + ": format field '" + field + "' is not config, config1 or config2"};
  std::string_view ranges(format);
  ranges.remove_prefix(colon + 1);
  std::uint64_t left = value;
  unsigned placed = 0;
  while (!ranges.empty()) {
    const auto comma = ranges.find(',');
    const std::string_view r = ranges.substr(0, comma);
    ranges = comma == std::string_view::npos ? std::string_view{} : ranges.substr(comma + 1);
    const auto dash = r.find('-');
    auto lo = parse_number(r.substr(0, dash), what + " (format)");
    auto hi = dash == std::string_view::npos ? lo : parse_number(r.substr(dash + 1), what + " (format)");
    if (!lo) return lo.error();
    if (!hi) return hi.error();
    if (*hi < *lo || *hi > 63) return error{EINVAL, what + ": format bits '" + std::string(r) + "' out of range"};
    for (std::uint64_t b = *lo; b <= *hi; ++b, ++placed) {
      if (left & 1U) *target |= std::uint64_t{1} << b;
      left >>= 1;
    }
  }
  if (left != 0) return error{ERANGE, what + ": the value does not fit in " + std::to_string(placed) + " bits"};
  return {};
}

}  // namespace

result<perf_event_spec> resolve_perf_event(const std::string &root, const std::string &pmu, const std::string &event,
                                           const std::vector<std::pair<std::string, std::uint64_t>> &overrides) {
  const std::string dir = root + std::string(pmu_dir) + pmu;
  perf_event_spec spec;
  spec.name = pmu + "/" + event;
  auto type = read_small(dir + "/type");
  if (!type) return error{ENOENT, "no " + pmu + " PMU (" + type.error().message + ")"};
  auto t = parse_number(*type, dir + "/type");
  if (!t) return t.error();
  if (*t > UINT32_MAX) return error{ERANGE, dir + "/type: " + *type + " is not a PMU type"};
  spec.type = static_cast<std::uint32_t>(*t);
  std::string terms;
  if (!event.empty()) {
    auto text = read_small(dir + "/events/" + event);
    if (!text) return error{ENOENT, "the " + pmu + " PMU has no event " + event + " (" + text.error().message + ")"};
    terms = *text;
  }
  // "event=0xcd,umask=0x1,ldlat=3": each term through its format file; the overrides replace
  // or add terms (ldlat=64).
  std::vector<std::pair<std::string, std::uint64_t>> values;
  std::string_view rest(terms);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view term = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    if (term.empty()) continue;
    const auto eq = term.find('=');
    const std::string key(term.substr(0, eq));
    std::uint64_t v = 1;  // a bare term is a flag
    if (eq != std::string_view::npos) {
      auto n = parse_number(term.substr(eq + 1), dir + "/events/" + event + " term " + key);
      if (!n) return n.error();
      v = *n;
    }
    values.emplace_back(key, v);
  }
  for (const auto &[k, v] : overrides) {
    bool replaced = false;
    for (auto &kv : values)
      if (kv.first == k) kv.second = v, replaced = true;
    if (!replaced) values.emplace_back(k, v);
  }
  for (const auto &[key, v] : values) {
    auto format = read_small(dir + "/format/" + key);
    if (!format)
      return error{ENOENT, "the " + pmu + " PMU has no format for '" + key + "' (" + format.error().message + ")"};
    if (auto ok = place_term(spec, *format, v, dir + "/format/" + key); !ok) return ok.error();
  }
  return spec;
}

}  // namespace hetmem::detail

namespace hetmem::tiering_detail {
namespace {

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

}  // namespace

result<std::unique_ptr<source>> open_perf_source(const tiering_options &o, const std::vector<pid_t> &pids) {
  auto s = perf_source::open(o, pids);
  if (!s) return s.error();
  return std::unique_ptr<source>(std::move(*s));
}

}  // namespace hetmem::tiering_detail
