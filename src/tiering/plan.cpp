// The decision of one tiering interval, apart from any system call: which chunks go up, which go
// down. See the contract in tiering.hpp.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "hetmem/tiering.hpp"

namespace hetmem::detail {
namespace {

constexpr double nearly_all = 0.99;  // a chunk with this share on the fast tier is there
constexpr double nearly_none = 0.01;

std::uint64_t share_of(std::uint64_t bytes, double share) {
  return static_cast<std::uint64_t>(static_cast<double>(bytes) * std::clamp(share, 0.0, 1.0));
}

}  // namespace

tiering_plan plan_interval(const std::vector<chunk_view> &chunks, const plan_limits &limits) {
  tiering_plan plan;
  std::vector<std::size_t> hot;
  std::uint64_t fast_now = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const auto &c = chunks[i];
    fast_now += share_of(c.bytes, c.fast_share);
    if (c.bytes > 0 && c.heat >= limits.promote_threshold) {
      hot.push_back(i);
      plan.hot_bytes += c.bytes;
    }
  }
  std::stable_sort(hot.begin(), hot.end(),
                   [&](std::size_t a, std::size_t b) { return chunks[a].heat > chunks[b].heat; });

  // The set the fast tier should hold: the hottest chunks that fit.
  const std::int64_t capacity = static_cast<std::int64_t>(fast_now) + limits.room_bytes;
  std::vector<char> admitted(chunks.size(), 0);
  std::int64_t used = 0;
  double coldest_admitted = limits.promote_threshold;
  for (std::size_t i : hot) {
    const auto b = static_cast<std::int64_t>(chunks[i].bytes);
    if (used + b > capacity) break;
    used += b;
    admitted[i] = 1;
    coldest_admitted = chunks[i].heat;
  }
  if (used == static_cast<std::int64_t>(plan.hot_bytes)) coldest_admitted = limits.promote_threshold;  // all hot fit
  // Below this a chunk is clearly colder than the set: it may leave to make room.
  const double cold_bar = std::max(coldest_admitted - limits.hysteresis, limits.promote_threshold * 0.5);

  // Chunks that may leave: outside the set, on the fast tier, not promoted within the cooldown;
  // coldest first. To make room for a promotion only those clearly colder than the set leave
  // (the hysteresis); to give back what is over the limit any of them does.
  std::vector<std::size_t> leaving;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const auto &c = chunks[i];
    if (admitted[i] || c.fast_share <= nearly_none || c.bytes == 0) continue;
    if (c.last_direction > 0 && limits.now - c.last_move < limits.cooldown) continue;
    leaving.push_back(i);
  }
  std::stable_sort(leaving.begin(), leaving.end(),
                   [&](std::size_t a, std::size_t b) { return chunks[a].heat < chunks[b].heat; });

  std::int64_t room = limits.room_bytes;
  std::uint64_t budget = limits.budget_bytes;
  std::size_t next_leaving = 0;
  // Demotes the next chunk that may leave if `keep` bytes of budget remain afterwards.
  auto demote_one = [&](bool only_cold, std::uint64_t keep) -> bool {
    if (next_leaving >= leaving.size()) return false;
    const std::size_t i = leaving[next_leaving];
    if (only_cold && chunks[i].heat >= cold_bar) return false;
    const std::uint64_t b = share_of(chunks[i].bytes, chunks[i].fast_share);
    if (b > budget || budget - b < keep) return false;
    ++next_leaving;
    budget -= b;
    room += static_cast<std::int64_t>(b);
    plan.demote.push_back(i);
    plan.demote_bytes += b;
    return true;
  };
  // Give back what is over the limit or under the reserve.
  while (room < 0 && demote_one(false, 0)) {
  }
  if (!limits.promote) return plan;
  for (std::size_t i : hot) {
    if (!admitted[i]) break;
    const auto &c = chunks[i];
    if (c.fast_share >= nearly_all) continue;
    if (c.last_direction < 0 && limits.now - c.last_move < limits.cooldown) continue;
    const std::uint64_t b = share_of(c.bytes, 1.0 - c.fast_share);
    if (b > budget) break;
    while (room < static_cast<std::int64_t>(b) && demote_one(true, b)) {
    }
    if (room < static_cast<std::int64_t>(b) || b > budget) break;
    room -= static_cast<std::int64_t>(b);
    budget -= b;
    plan.promote.push_back(i);
    plan.promote_bytes += b;
  }
  return plan;
}

}  // namespace hetmem::detail
