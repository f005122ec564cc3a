// runtime.cpp — a policy plan at allocation time (see hetmem/detail/policy_runtime.hpp).
#include "hetmem/detail/policy_runtime.hpp"

#include <cerrno>
#include <new>

namespace hetmem::detail {
namespace {

// Per thread: live-byte counts not yet published, per arena id.
struct pending_counts {
  policy_runtime *owner;  // the runtime these counts belong to (a process normally has one)
  std::int64_t bytes[max_tier_arenas + 1];
  std::uint32_t allocations;
};
thread_local pending_counts tl_pending{};  // trivially constructed: safe inside malloc
constexpr std::int64_t publish_every = 256 << 10;

std::uint32_t site_hash(const void *callsite, unsigned rule) noexcept {
  auto x = reinterpret_cast<std::uintptr_t>(callsite) ^ (static_cast<std::uintptr_t>(rule) << 56);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return static_cast<std::uint32_t>(x);
}

}  // namespace

result<policy_runtime *> policy_runtime::create(const policy::plan &p) {
  if (p.rules.empty()) return error{EINVAL, "policy plan without rules"};
  if (p.rules.size() > max_rules)
    return error{E2BIG, "policy has " + std::to_string(p.rules.size()) + " rules; at most " +
                            std::to_string(max_rules) + " are supported"};
  // A tier whose arena cannot be made (a node the kernel refuses, say) is dropped from chains,
  // which go on with their other tiers; any other rule needs all of its tiers.
  std::vector<tier_arena *> arenas;
  std::vector<std::string> failures;
  for (const auto &t : p.tiers) {
    auto a = tier_arena::get(t.where, t.fill_limit_percent);
    arenas.push_back(a ? *a : nullptr);
    failures.push_back(a ? std::string() : a.error().message);
  }
  auto *rt = new (std::nothrow) policy_runtime();
  if (!rt) return error{ENOMEM, "out of memory"};
  rt->callsite_ = p.callsite;
  for (const auto &pr : p.rules) {
    if (pr.where.tiers.size() > max_route_tiers || pr.where.tiers.empty()) {
      delete rt;
      return error{E2BIG,
                   pr.origin + ": " + pr.text + ": a rule takes 1 to " + std::to_string(max_route_tiers) + " tiers"};
    }
    rule &r = rt->rules_[rt->rule_count_++];
    r.min_size = pr.min_size;
    r.max_size = pr.max_size;
    r.kind = pr.where.kind;
    std::string why;
    for (unsigned k = 0; k < pr.where.tiers.size(); ++k) {
      const unsigned ti = pr.where.tiers[k];
      if (!arenas[ti]) {
        why += (why.empty() ? "" : "; ") + failures[ti];
        if (r.kind == policy::route_kind::chain) continue;
        delete rt;
        return error{EINVAL, pr.origin + ": " + pr.text + ": " + failures[ti]};
      }
      const unsigned n = r.n++;
      r.arenas[n] = arenas[ti];
      r.ids[n] = r.arenas[n]->id();
      r.shares[n] = k < pr.where.shares.size() ? pr.where.shares[k] : 1;
      if (k < pr.where.thresholds.size()) {
        r.threshold[k].store(pr.where.thresholds[k].start, std::memory_order_relaxed);
        r.threshold_min[k] = pr.where.thresholds[k].min;
        r.threshold_max[k] = pr.where.thresholds[k].max;
      }
    }
    if (r.n == 0) {
      delete rt;
      return error{EINVAL, pr.origin + ": " + pr.text + ": no tier of it can be used: " + why};
    }
    if (r.kind == policy::route_kind::ratio || r.kind == policy::route_kind::threshold) rt->counting_ = true;
  }
  if (rt->rule_count_ == 1 && rt->rules_[0].n == 1 && rt->rules_[0].kind != policy::route_kind::ratio &&
      rt->rules_[0].kind != policy::route_kind::threshold)
    rt->single_ = rt->rules_[0].arenas[0];
  return rt;
}

std::int64_t policy_runtime::live_bytes(unsigned arena_id) const noexcept {
  return arena_id <= max_tier_arenas ? live_[arena_id].load(std::memory_order_relaxed) : 0;
}

std::int64_t policy_runtime::live_seen(unsigned id) const noexcept {
  return live_[id].load(std::memory_order_relaxed) + (tl_pending.owner == this ? tl_pending.bytes[id] : 0);
}

void policy_runtime::publish_thread_counts() noexcept {
  if (tl_pending.owner != this) return;
  for (unsigned id = 1; id <= max_tier_arenas; ++id)
    if (tl_pending.bytes[id] != 0) {
      live_[id].fetch_add(tl_pending.bytes[id], std::memory_order_relaxed);
      tl_pending.bytes[id] = 0;
    }
}

void policy_runtime::count(const void *p, unsigned id, std::int64_t sign) noexcept {
  if (id == 0 || id > max_tier_arenas) return;
  if (tl_pending.owner != this) [[unlikely]] {  // another runtime's counts: publish them there
    if (tl_pending.owner) tl_pending.owner->publish_thread_counts();
    tl_pending.owner = this;
  }
  std::int64_t &pending = tl_pending.bytes[id];
  pending += sign * static_cast<std::int64_t>(tier_arena::usable_size(p));
  if (pending >= publish_every || pending <= -publish_every) {
    live_[id].fetch_add(pending, std::memory_order_relaxed);
    pending = 0;
  }
}

void policy_runtime::note_free(const void *p) noexcept { count(p, tier_arena::id_of(p), -1); }

void policy_runtime::note_resize(const void *p, std::size_t old_usable) noexcept {
  const unsigned id = tier_arena::id_of(p);
  if (id == 0 || id > max_tier_arenas) return;
  count(p, id, +1);  // the new usable size, through the batching
  if (tl_pending.owner == this) tl_pending.bytes[id] -= static_cast<std::int64_t>(old_usable);
}

// The tier of a ratio or threshold rule for `bytes`.
unsigned policy_runtime::choose(rule &r, std::size_t bytes) noexcept {
  if (r.kind == policy::route_kind::threshold) {
    // Every 64 decisions of this thread, each threshold moves a step towards the shares: the
    // earlier tier over its share lowers it (fewer sizes go there), under its share raises it.
    if ((++tl_pending.allocations & 63) == 0) {
      for (unsigned k = 0; k + 1 < r.n; ++k) {
        const auto a = static_cast<long double>(std::max<std::int64_t>(0, live_seen(r.ids[k])));
        const auto b = static_cast<long double>(std::max<std::int64_t>(0, live_seen(r.ids[k + 1])));
        // a/share_a against b/share_b, 2% dead band.
        const long double lhs = a * static_cast<long double>(r.shares[k + 1]) * 100;
        const long double rhs = b * static_cast<long double>(r.shares[k]) * 100;
        const std::uint64_t t = r.threshold[k].load(std::memory_order_relaxed);
        const std::uint64_t step = std::max<std::uint64_t>(1, (r.threshold_max[k] - r.threshold_min[k]) / 64);
        if (lhs > rhs + rhs / 50 && t > r.threshold_min[k])
          r.threshold[k].store(std::max(r.threshold_min[k], t > step ? t - step : 0), std::memory_order_relaxed);
        else if (lhs + lhs / 50 < rhs && t < r.threshold_max[k])
          r.threshold[k].store(std::min(r.threshold_max[k], t + step), std::memory_order_relaxed);
      }
    }
    unsigned k = 0;
    while (k + 1 < r.n && bytes >= r.threshold[k].load(std::memory_order_relaxed)) ++k;
    return k;
  }
  // ratio: the tier whose live bytes per share are lowest (ties: the earlier tier).
  unsigned best = 0;
  auto best_live = static_cast<long double>(std::max<std::int64_t>(0, live_seen(r.ids[0])));
  for (unsigned k = 1; k < r.n; ++k) {
    const auto live = static_cast<long double>(std::max<std::int64_t>(0, live_seen(r.ids[k])));
    // live/share_k < best_live/share_best
    if (live * static_cast<long double>(r.shares[best]) < best_live * static_cast<long double>(r.shares[k])) {
      best = k;
      best_live = live;
    }
  }
  return best;
}

void *policy_runtime::route_allocate(rule &r, unsigned rule_index, std::size_t bytes, std::size_t alignment,
                                     const void *callsite, bool zeroed) noexcept {
  auto from = [&](unsigned k) {
    return zeroed ? r.arenas[k]->allocate_zeroed(bytes, alignment) : r.arenas[k]->allocate(bytes, alignment);
  };
  if (r.kind != policy::route_kind::ratio && r.kind != policy::route_kind::threshold) {
    for (unsigned k = 0; k < r.n; ++k)
      if (void *p = from(k)) return p;
    errno = ENOMEM;
    return nullptr;
  }
  unsigned first = 0;
  bool known = false;
  std::atomic<std::uint32_t> *site = nullptr;
  std::uint32_t tag = 0;
  if (callsite_ && callsite) {
    const std::uint32_t h = site_hash(callsite, rule_index);
    site = &sites_[h % site_slots];
    tag = (h | 0x80u) & ~0x7fu;  // never 0; the low 7 bits hold the tier
    const std::uint32_t seen = site->load(std::memory_order_relaxed);
    if ((seen & ~0x7fu) == tag && (seen & 0x7fu) < r.n) {
      first = seen & 0x7fu;
      known = true;
    }
  }
  if (!known) {
    first = choose(r, bytes);
    if (site) site->store(tag | first, std::memory_order_relaxed);
  }
  for (unsigned i = 0; i < r.n; ++i) {
    const unsigned k = (first + i) % r.n;
    if (void *p = from(k)) {
      count(p, r.ids[k], +1);
      return p;
    }
  }
  errno = ENOMEM;
  return nullptr;
}

void *policy_runtime::allocate_rules(std::size_t bytes, std::size_t alignment, const void *callsite,
                                     bool zeroed) noexcept {
  if (single_) {  // the single tier refused: nothing else to try
    errno = ENOMEM;
    return nullptr;
  }
  for (unsigned i = 0; i < rule_count_; ++i) {
    rule &r = rules_[i];
    if (bytes >= r.min_size && bytes <= r.max_size) return route_allocate(r, i, bytes, alignment, callsite, zeroed);
  }
  errno = ENOMEM;  // unreachable: a plan ends with an unconditional rule
  return nullptr;
}

}  // namespace hetmem::detail
