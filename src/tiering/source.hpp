// source.hpp — what the tiering engine asks of a hotness source, and the sources it can open:
// DAMON (damon_source.cpp), soft-dirty bits (soft_dirty_source.cpp), userfaultfd write-protect
// bits (write_protect_source.cpp), hardware sampling (perf_source.cpp); and the populated parts
// of a process's mappings (populated.cpp). Private to src/tiering.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hetmem/migrate.hpp"
#include "hetmem/result.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/tiering.hpp"

namespace hetmem::tiering_detail {

inline double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double thread_cpu_seconds() {
  timespec ts{};
  (void)::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU seconds a process or thread has used (utime + stime of /proc/PID/stat).
inline double process_cpu_seconds(pid_t pid) {
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

inline bool process_exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

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

// DAMON through its sysfs interface under `admin` (one kdamond per process); `modules` holds the
// kernel's DAMON modules' parameters (DAMON_STAT stopped only with `takeover`). `note` says what
// was done to get DAMON (a module stopped, abandoned kdamonds reused).
result<std::unique_ptr<source>> open_damon_source(const std::string &admin, const std::string &modules, bool takeover,
                                                  std::string &note);

// Whether this kernel keeps soft-dirty bits (asked by writing a page of our own).
result<void> soft_dirty_supported();
// The soft-dirty source (soft_dirty_supported() first): writes seen within `window` seconds of
// each clear, clears held to `max_overhead` of the program's time.
std::unique_ptr<source> make_soft_dirty_source(double window, double interval_seconds, double max_overhead);

// The userfaultfd write-protect source over this process (Linux 6.7): errors name what is
// missing. `within`: the ranges to watch (empty: every mapping).
result<std::unique_ptr<source>> open_write_protect_source(double window,
                                                          std::vector<std::pair<std::uintptr_t, std::uintptr_t>> within,
                                                          std::size_t chunks_per_interval, double interval_seconds,
                                                          double max_overhead);

// Hardware sampling (perf_event_open) of the threads of `pids`.
result<std::unique_ptr<source>> open_perf_source(const tiering_options &o, const std::vector<pid_t> &pids);

// The populated parts of `ranges` of process `pid` (PAGEMAP_SCAN), widened to `chunk`
// boundaries; small ranges, and every range the kernel cannot answer for, kept whole.
std::vector<address_range> populated_parts(pid_t pid, std::vector<address_range> ranges, std::uintptr_t chunk);

}  // namespace hetmem::tiering_detail
