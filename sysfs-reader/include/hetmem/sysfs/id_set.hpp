// hetmem/sysfs/id_set.hpp — a set of small non-negative ids (NUMA nodes, CPUs) kept as ranges.
//
// Contract: memory is proportional to the number of ranges, never to the ids' values, so a
// hostile "0-4000000000" costs one range. Ranges are kept sorted, disjoint and merged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hetmem::sysfs {

class id_set {
 public:
  using range = std::pair<std::uint32_t, std::uint32_t>;  // inclusive [first, second]

  id_set() = default;
  id_set(std::initializer_list<std::uint32_t> ids) {
    for (auto id : ids) insert(id);
  }

  void insert(std::uint32_t id) { insert_range(id, id); }
  void insert_range(std::uint32_t lo, std::uint32_t hi);
  [[nodiscard]] bool contains(std::uint32_t id) const noexcept;
  [[nodiscard]] bool empty() const noexcept { return ranges_.empty(); }
  [[nodiscard]] std::uint64_t count() const noexcept;
  [[nodiscard]] std::uint32_t first() const noexcept { return ranges_.empty() ? 0 : ranges_.front().first; }
  [[nodiscard]] std::uint32_t last() const noexcept { return ranges_.empty() ? 0 : ranges_.back().second; }
  [[nodiscard]] const std::vector<range> &ranges() const noexcept { return ranges_; }
  // Position of `id` among the members in ascending order, or -1.
  [[nodiscard]] std::int64_t index_of(std::uint32_t id) const noexcept;
  // Kernel list format: "0-3,8,10-11" (empty string for the empty set).
  [[nodiscard]] std::string to_string() const;
  // All members; only for sets known to be small (node sets are bounded by max_node_id).
  [[nodiscard]] std::vector<std::uint32_t> to_vector() const;
  [[nodiscard]] id_set intersect(const id_set &other) const;
  [[nodiscard]] bool intersects(const id_set &other) const noexcept;

  friend bool operator==(const id_set &, const id_set &) = default;

 private:
  std::vector<range> ranges_;
};

}  // namespace hetmem::sysfs
