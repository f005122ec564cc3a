// The userfaultfd write-protect hotness source (Linux 6.7: UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN).
#include <dirent.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
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

// Linux 6.7's replacement for soft-dirty bits, also where those do not exist (arm64, kernels built
// without CONFIG_MEM_SOFT_DIRTY): a userfaultfd with UFFD_FEATURE_WP_ASYNC, registered in
// write-protect mode over the watched memory, makes the kernel clear a page's protection on its
// own at the first write (no fault reaches us); PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reports the
// pages written since and protects them again, in one page-table walk. A userfaultfd serves the
// memory of the process that made it, so this source watches the calling process only.
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

}  // namespace

result<std::unique_ptr<source>> open_write_protect_source(double window,
                                                          std::vector<std::pair<std::uintptr_t, std::uintptr_t>> within,
                                                          std::size_t chunks_per_interval, double interval_seconds,
                                                          double max_overhead) {
  auto s = write_protect_source::open(window, std::move(within), chunks_per_interval, interval_seconds, max_overhead);
  if (!s) return s.error();
  return std::unique_ptr<source>(std::move(*s));
}

}  // namespace hetmem::tiering_detail
