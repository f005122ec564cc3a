// The populated parts of a process's large mappings (PAGEMAP_SCAN), for the engine's chunks.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include "source.hpp"
#include "write_bits.hpp"

namespace hetmem::tiering_detail {

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

}  // namespace hetmem::tiering_detail
