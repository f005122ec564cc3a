#include "hetmem/sysfs/id_set.hpp"

#include <algorithm>

namespace hetmem::sysfs {

void id_set::insert_range(std::uint32_t lo, std::uint32_t hi) {
  if (lo > hi) std::swap(lo, hi);
  // Find the first range that could touch [lo, hi] (its end + 1 >= lo).
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), lo, [](const range &r, std::uint32_t v) {
    return static_cast<std::uint64_t>(r.second) + 1 < v;
  });
  auto merge_end = it;
  while (merge_end != ranges_.end() &&
         static_cast<std::uint64_t>(merge_end->first) <= static_cast<std::uint64_t>(hi) + 1) {
    lo = std::min(lo, merge_end->first);
    hi = std::max(hi, merge_end->second);
    ++merge_end;
  }
  it = ranges_.erase(it, merge_end);
  ranges_.insert(it, range{lo, hi});
}

bool id_set::contains(std::uint32_t id) const noexcept {
  auto it =
      std::upper_bound(ranges_.begin(), ranges_.end(), id, [](std::uint32_t v, const range &r) { return v < r.first; });
  if (it == ranges_.begin()) return false;
  --it;
  return id >= it->first && id <= it->second;
}

std::uint64_t id_set::count() const noexcept {
  std::uint64_t n = 0;
  for (const auto &r : ranges_) n += static_cast<std::uint64_t>(r.second) - r.first + 1;
  return n;
}

std::int64_t id_set::index_of(std::uint32_t id) const noexcept {
  std::int64_t before = 0;
  for (const auto &r : ranges_) {
    if (id < r.first) return -1;
    if (id <= r.second) return before + (id - r.first);
    before += static_cast<std::int64_t>(r.second) - r.first + 1;
  }
  return -1;
}

std::string id_set::to_string() const {
  std::string out;
  for (const auto &r : ranges_) {
    if (!out.empty()) out += ',';
    out += std::to_string(r.first);
    if (r.second != r.first) {
      out += '-';
      out += std::to_string(r.second);
    }
  }
  return out;
}

std::vector<std::uint32_t> id_set::to_vector() const {
  std::vector<std::uint32_t> out;
  out.reserve(static_cast<std::size_t>(count()));
  for (const auto &r : ranges_)
    for (std::uint64_t id = r.first; id <= r.second; ++id) out.push_back(static_cast<std::uint32_t>(id));
  return out;
}

id_set id_set::intersect(const id_set &other) const {
  id_set out;
  std::size_t i = 0, j = 0;
  while (i < ranges_.size() && j < other.ranges_.size()) {
    std::uint32_t lo = std::max(ranges_[i].first, other.ranges_[j].first);
    std::uint32_t hi = std::min(ranges_[i].second, other.ranges_[j].second);
    if (lo <= hi) out.ranges_.push_back({lo, hi});
    if (ranges_[i].second < other.ranges_[j].second)
      ++i;
    else
      ++j;
  }
  return out;
}

bool id_set::intersects(const id_set &other) const noexcept {
  std::size_t i = 0, j = 0;
  while (i < ranges_.size() && j < other.ranges_.size()) {
    if (std::max(ranges_[i].first, other.ranges_[j].first) <= std::min(ranges_[i].second, other.ranges_[j].second))
      return true;
    if (ranges_[i].second < other.ranges_[j].second)
      ++i;
    else
      ++j;
  }
  return false;
}

}  // namespace hetmem::sysfs
