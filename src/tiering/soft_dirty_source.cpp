// The soft-dirty hotness source: /proc/PID/clear_refs and the pagemap's soft-dirty bit.
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
#include <thread>
#include <vector>

#include "hetmem/placement.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/tiering.hpp"
#include "source.hpp"
#include "text.hpp"
#include "write_bits.hpp"

namespace hetmem::tiering_detail {
namespace {

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

}  // namespace

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

std::unique_ptr<source> make_soft_dirty_source(double window, double interval_seconds, double max_overhead) {
  return std::make_unique<soft_dirty_source>(window, interval_seconds, max_overhead);
}

}  // namespace hetmem::tiering_detail
