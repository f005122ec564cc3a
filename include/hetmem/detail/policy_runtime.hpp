// hetmem/detail/policy_runtime.hpp — a resolved policy plan at allocation time: which tier
// arena each malloc goes to. Used by the preload (libhetmem-preload.so).
//
// Contract:
// - create() makes every tier arena of the plan up front; allocate() never creates anything,
//   never allocates from the system allocator and throws nothing.
// - Rules are tried in order; the first whose size range holds decides. Chains try their tiers
//   in order (each refusing at its watermark); bind/interleave/weighted use one tier arena;
//   ratio picks the tier furthest below its share of live bytes; threshold sends sizes below a
//   moving threshold to the earlier tier and moves the threshold to hold the shares.
// - Live bytes per tier arena are counted only when a ratio or threshold rule exists (free()
//   then calls note_free()); each thread batches its counts (up to 256 KiB) before publishing.
// - With callsite, a ratio or threshold rule decides once per call site (hash of the return
//   address) and sends later allocations from that site to the same tier.
// - allocate() returns nullptr with errno ENOMEM when no tier of the rule could take it (the
//   engine's thread error names the tier and why).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "hetmem/detail/tier_arena.hpp"
#include "hetmem/policy.hpp"

namespace hetmem::detail {

class policy_runtime {
 public:
  // Lives as long as the process (like the arenas it uses).
  [[nodiscard]] static result<policy_runtime *> create(const policy::plan &p);

  [[nodiscard]] void *allocate(std::size_t bytes, std::size_t alignment, const void *callsite) noexcept {
    if (single_) [[likely]] {
      if (void *p = single_->allocate(bytes, alignment)) [[likely]]
        return p;
    }
    return allocate_rules(bytes, alignment, callsite, false);
  }
  // allocate(), the block reading as zeros (calloc): memory fresh from the kernel is not
  // cleared again (tier_arena::allocate_zeroed).
  [[nodiscard]] void *allocate_zeroed(std::size_t bytes, std::size_t alignment, const void *callsite) noexcept {
    if (single_) {
      if (void *p = single_->allocate_zeroed(bytes, alignment)) return p;
    }
    return allocate_rules(bytes, alignment, callsite, true);
  }
  // Serves the arena most requests reach (the last rule's first tier: the catch-all) through
  // jemalloc's own per-thread caches (tier_arena::use_thread_tcache), the fastest path there is.
  // Right after create(), before anything is allocated; false when that arena cannot.
  bool use_thread_tcache() noexcept {
    return rule_count_ != 0 && rules_[rule_count_ - 1].n != 0 && rules_[rule_count_ - 1].arenas[0]->use_thread_tcache();
  }
  [[nodiscard]] bool counting() const noexcept { return counting_; }
  // Whether every allocation without an alignment goes first to the direct arena (one rule, a
  // chain or a single tier, no counting), so that the preload may try tier_arena's direct fast
  // path before allocate() and free() with deallocate_direct. After use_thread_tcache().
  [[nodiscard]] bool direct_first() const noexcept {
    return !counting_ && rule_count_ == 1 && rules_[0].n != 0 &&
           (rules_[0].kind == policy::route_kind::chain || rules_[0].n == 1) && rules_[0].arenas[0]->is_direct_arena();
  }
  // After use_thread_tcache(), when direct_first(): lets the direct arena place its extents on
  // the chain's later tiers by itself once its nodes pass their fill limit
  // (tier_arena::overflow_to), so that a failed allocation there is final. False when it cannot
  // (a file or hugetlb tier in the chain): callers then check each result and fall back through
  // allocate().
  bool direct_overflow() noexcept {
    return direct_first() && rules_[0].arenas[0]->overflow_to(rules_[0].arenas + 1, rules_[0].n - 1);
  }
  // The direct arena (the one rule's first tier) when direct_first(), else nullptr.
  [[nodiscard]] tier_arena *direct_arena() const noexcept { return direct_first() ? rules_[0].arenas[0] : nullptr; }
  // A block of this runtime's arenas is about to be freed (only needed when counting()).
  void note_free(const void *p) noexcept;
  // A block of this runtime's arenas was resized within its arena: it had `old_usable` bytes.
  void note_resize(const void *p, std::size_t old_usable) noexcept;
  // Live bytes the runtime has seen on arena `id` (published counts; for tests and stats).
  [[nodiscard]] std::int64_t live_bytes(unsigned arena_id) const noexcept;
  // Flushes the calling thread's pending counts.
  void publish_thread_counts() noexcept;

  static constexpr unsigned max_rules = 16;
  static constexpr unsigned max_route_tiers = 8;

 private:
  policy_runtime() = default;
  void *allocate_rules(std::size_t bytes, std::size_t alignment, const void *callsite, bool zeroed) noexcept;
  struct rule;
  void *route_allocate(rule &r, unsigned rule_index, std::size_t bytes, std::size_t alignment, const void *callsite,
                       bool zeroed) noexcept;
  unsigned choose(rule &r, std::size_t bytes) noexcept;
  void count(const void *p, unsigned arena_id, std::int64_t sign) noexcept;
  [[nodiscard]] std::int64_t live_seen(unsigned arena_id) const noexcept;

  struct rule {
    std::uint64_t min_size = 0, max_size = UINT64_MAX;
    policy::route_kind kind = policy::route_kind::chain;
    unsigned n = 0;
    tier_arena *arenas[max_route_tiers] = {};
    unsigned ids[max_route_tiers] = {};
    std::uint64_t shares[max_route_tiers] = {};
    std::atomic<std::uint64_t> threshold[max_route_tiers] = {};
    std::uint64_t threshold_min[max_route_tiers] = {}, threshold_max[max_route_tiers] = {};
    std::atomic<std::uint32_t> decisions{0};
  };
  rule rules_[max_rules];
  unsigned rule_count_ = 0;
  tier_arena *single_ = nullptr;  // the plan is one rule, one tier: allocate() goes straight there
  bool counting_ = false;
  bool callsite_ = false;
  std::atomic<std::int64_t> live_[max_tier_arenas + 1] = {};
  static constexpr unsigned site_slots = 4096;
  std::atomic<std::uint32_t> sites_[site_slots] = {};
};

}  // namespace hetmem::detail
