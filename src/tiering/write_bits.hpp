// write_bits.hpp — what the two write-bit sources (soft-dirty, userfaultfd write-protect) share:
// the timing of one write fault, the adaptive write window, and the Linux 6.7 ABI of
// PAGEMAP_SCAN and asynchronous write-protection (also used to list populated pages). Private
// to src/tiering.
#pragma once

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hetmem::tiering_detail {

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

}  // namespace hetmem::tiering_detail
