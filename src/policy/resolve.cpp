// resolve.cpp — a policy on this machine: tier names to nodes and placements, the default
// plan, and the explanation of both.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <map>
#include <numeric>

#include "hetmem/format.hpp"
#include "hetmem/policy.hpp"

namespace hetmem::policy {
namespace {

constexpr unsigned default_watermark = 90;

std::string kinds_present(const topology &t) {
  std::string s;
  for (const auto &n : t.nodes)
    if (n.has_memory) s += (s.empty() ? "" : ", ") + std::to_string(n.id) + "=" + std::string(to_string(n.kind));
  return s.empty() ? "no memory nodes" : "nodes " + s;
}

bool usable(const topology &t, std::uint32_t id) {
  const node_info *n = t.find(id);
  return n && n->has_memory && n->allowed;
}

// Memory the kernel would hand a thread on each initiator first, HBM and device memory aside
// (scarce, and only for policies that name them): each initiator's best other group. On a
// machine with nothing else (HBM only), its best group.
node_set local_nodes(const topology &t) {
  node_set out;
  for (const auto &v : t.initiators) {
    const tier_group *pick = nullptr;
    for (const auto &g : v.tiers)
      if (g.kind != memory_kind::hbm && g.kind != memory_kind::device) {
        pick = &g;
        break;
      }
    if (!pick && !v.tiers.empty()) pick = &v.tiers.front();
    if (pick)
      for (auto n : pick->nodes)
        if (usable(t, n)) out.insert(n);
  }
  if (out.empty())  // no initiator views (odd tree): every allowed memory node
    for (const auto &n : t.nodes)
      if (n.has_memory && n.allowed && n.kind != memory_kind::device) out.insert(n.id);
  return out;
}

// A tier of exactly `nodes`, named "LABEL (nodes N)" with their kind when they share one
// ("LABEL (KIND, nodes N)" when the label is not the kind, "mixed" when they differ).
tier nodes_tier(const topology &t, const std::string &label, const node_set &nodes) {
  std::optional<memory_kind> shared;
  bool mixed = false;
  for (auto id : nodes.to_vector()) {
    const node_info *n = t.find(id);
    const memory_kind k = n ? n->kind : memory_kind::unknown;
    if (!shared)
      shared = k;
    else if (*shared != k)
      mixed = true;
  }
  tier out;
  out.kind = mixed || !shared ? memory_kind::unknown : *shared;
  const std::string kind_text = mixed ? "mixed" : std::string(to_string(out.kind));
  out.name = label == kind_text ? label + " (nodes " + nodes.to_string() + ")"
                                : label + " (" + kind_text + ", nodes " + nodes.to_string() + ")";
  out.where.mode = policy_mode::bind;
  out.where.nodes = nodes;
  return out;
}

result<tier> resolve_ref(const tier_ref &r, const topology &t) {
  switch (r.what) {
    case tier_ref::form::kind: {
      node_set ns;
      for (const auto &n : t.nodes)
        if (n.kind == r.kind && usable(t, n.id)) ns.insert(n.id);
      if (ns.empty())
        return error{ENOENT, "'" + r.text + "': no " + std::string(to_string(r.kind)) +
                                 " memory this process may use on this machine (" + kinds_present(t) + ")"};
      return nodes_tier(t, std::string(to_string(r.kind)), ns);
    }
    case tier_ref::form::local: {
      node_set ns = local_nodes(t);
      if (ns.empty()) return error{ENOENT, "'local': no memory node this process may use"};
      return nodes_tier(t, "local", ns);
    }
    case tier_ref::form::fastest:
    case tier_ref::form::rank: {
      const std::uint32_t rank = r.what == tier_ref::form::rank ? r.rank : 0;
      node_set ns;
      for (const auto &v : t.initiators)
        if (rank < v.tiers.size())
          for (auto n : v.tiers[rank].nodes)
            if (usable(t, n)) ns.insert(n);
      if (ns.empty())
        return error{ERANGE, "'" + r.text + "': no initiator has a tier of rank " + std::to_string(rank) + " (" +
                                 kinds_present(t) + ")"};
      return nodes_tier(t, r.what == tier_ref::form::fastest ? "fastest" : "rank " + std::to_string(rank), ns);
    }
    case tier_ref::form::largest: {
      auto l = largest_tier(t);
      if (!l) return error{l.error().code, "'largest': " + l.error().message};
      l->next.clear();
      return l;
    }
    case tier_ref::form::nodes: {
      for (auto id : r.nodes.to_vector())
        if (!usable(t, id))
          return error{EINVAL, "'" + r.text + "': node " + std::to_string(id) +
                                   " is not a memory node this process may use (" + kinds_present(t) + ")"};
      return nodes_tier(t, "nodes " + r.nodes.to_string(), r.nodes);
    }
    case tier_ref::form::file: {
      auto f = file_tier(r.path, r.file_bytes);
      if (!f) return error{f.error().code, "'" + r.text + "': " + f.error().message};
      return f;
    }
  }
  return error{EINVAL, "unknown tier form"};
}

std::string placement_text(const tier &t) {
  if (t.file) return "file " + t.file->path + ", at most " + format_bytes(t.file->max_bytes);
  std::string s = to_string(t.where.mode);
  if (t.where.mode == policy_mode::default_policy) return "the kernel's default (local first, then by distance)";
  s += " nodes " + t.where.nodes.to_string();
  if (!t.where.weights.empty()) {
    s += ", weights";
    for (auto w : t.where.weights) s += " " + std::to_string(w);
  }
  if (t.where.mode == policy_mode::preferred_many && t.where.nodes.count() > 1)
    s += " (each thread its nearest node first)";
  if (t.where.mode == policy_mode::bind && t.where.nodes.count() > 1) s += " (each thread its nearest node first)";
  return s;
}

bool same_placement(const tier &a, const tier &b) {
  return a.name == b.name && a.where.mode == b.where.mode && a.where.nodes == b.where.nodes &&
         a.where.weights == b.where.weights && a.file.has_value() == b.file.has_value() &&
         (!a.file || (a.file->path == b.file->path && a.file->max_bytes == b.file->max_bytes));
}

class resolver {
 public:
  resolver(const topology &t, plan &out, const policy &p) : t_(t), out_(out), p_(p) {}

  // The watermark the policy sets for this tier (by the nodes or file it resolves to), if any.
  std::optional<std::pair<unsigned, std::string>> watermark_for(const tier &tr) {
    std::optional<std::pair<unsigned, std::string>> all, own;
    for (const auto &w : p_.watermarks) {
      if (!w.tier) {
        all = std::make_pair(w.percent, "watermark " + std::to_string(w.percent) + "% (" + w.origin + ")");
        continue;
      }
      auto r = resolve_ref(*w.tier, t_);
      if (!r) continue;  // reported by check_watermarks()
      const bool same = r->file ? (tr.file && tr.file->path == r->file->path) : tr.where.nodes == r->where.nodes;
      if (same)
        own = std::make_pair(
            w.percent, "watermark " + std::to_string(w.percent) + "% for " + w.tier->text + " (" + w.origin + ")");
    }
    return own ? own : all;
  }

  result<void> check_watermarks() {
    for (const auto &w : p_.watermarks)
      if (w.tier)
        if (auto r = resolve_ref(*w.tier, t_); !r)
          return error{r.error().code, w.origin + ": watermark: " + r.error().message};
    return {};
  }

  unsigned add(tier tr, unsigned fill, std::string why) {
    for (unsigned i = 0; i < out_.tiers.size(); ++i)
      if (out_.tiers[i].fill_limit_percent == fill && same_placement(out_.tiers[i].where, tr)) return i;
    out_.tiers.push_back({std::move(tr), fill, std::move(why)});
    return static_cast<unsigned>(out_.tiers.size() - 1);
  }

  // A tier in a route: its fill limit is the policy's watermark for it, else `fallback`.
  unsigned add_with_watermark(tier tr, unsigned fallback, const std::string &fallback_why) {
    if (auto w = watermark_for(tr)) return add(std::move(tr), w->first, w->second);
    return add(std::move(tr), fallback, fallback_why);
  }

  result<planned_route> route_of(const route &r) {
    planned_route pr;
    pr.kind = r.kind;
    pr.shares = r.shares;
    pr.thresholds = r.thresholds;
    std::vector<tier> tiers;
    std::string skipped;
    for (std::size_t i = 0; i < r.tiers.size(); ++i) {
      auto tr = resolve_ref(r.tiers[i], t_);
      // A chain written for a machine with more kinds of memory than this one runs on what
      // exists (memkind's HBW_PREFERRED does the same); the others need every tier they name.
      if (!tr && r.kind == route_kind::chain && (tr.error().code == ENOENT || tr.error().code == ERANGE)) {
        skipped += (skipped.empty() ? "" : "; ") + tr.error().message;
        continue;
      }
      if (!tr) return tr.error();
      tiers.push_back(std::move(*tr));
    }
    if (tiers.empty()) return error{ENOENT, "no tier of the chain exists here: " + skipped};
    if (!skipped.empty()) out_.notes.push_back("chain tiers skipped: " + skipped);
    switch (r.kind) {
      case route_kind::chain:
        for (std::size_t i = 0; i < tiers.size(); ++i) {
          const bool last = i + 1 == tiers.size();
          pr.tiers.push_back(add_with_watermark(
              softened(std::move(tiers[i])), last ? 100 : default_watermark,
              last ? "no watermark (the chain's last tier)"
                   : "watermark " + std::to_string(default_watermark) + "% (default for a chain's earlier tiers)"));
        }
        break;
      case route_kind::bind:
      case route_kind::interleave:
      case route_kind::weighted: {
        node_set all;
        std::string label;
        for (const auto &tr : tiers) {
          if (tr.file)
            return error{EINVAL, std::string(to_string(r.kind)) + " takes memory nodes, not a file tier (" +
                                     tr.file->path + ")"};
          for (auto n : tr.where.nodes.to_vector()) all.insert(n);
        }
        for (const auto &ref : r.tiers) label += (label.empty() ? "" : "+") + ref.text;
        tier u = nodes_tier(t_, label, all);
        if (r.kind == route_kind::interleave) u.where.mode = policy_mode::interleave;
        if (r.kind == route_kind::weighted) {
          u.where.mode = policy_mode::weighted_interleave;
          auto w = bandwidth_weights(all);
          if (w.empty()) {
            out_.notes.push_back("weighted interleave over nodes " + all.to_string() +
                                 ": HMAT gives no bandwidth for all of them; the kernel's weights are used (equal "
                                 "when it has none)");
          } else {
            u.where.weights = w;
          }
        }
        if (u.where.nodes.count() == 1 && r.kind != route_kind::bind) u.where.mode = policy_mode::bind;
        pr.tiers.push_back(add_with_watermark(std::move(u), 100, "no watermark"));
        break;
      }
      case route_kind::ratio:
      case route_kind::threshold:
        for (auto &tr : tiers) pr.tiers.push_back(add_with_watermark(softened(std::move(tr)), 100, "no watermark"));
        break;
    }
    return pr;
  }

  // Weights from HMAT read bandwidth (as seen by each node's local initiators), the slowest
  // node weighing 1, each at most 255; empty when a node has no bandwidth.
  std::vector<std::uint8_t> bandwidth_weights(const node_set &nodes) {
    std::vector<std::uint64_t> bw;
    for (auto id : nodes.to_vector()) {
      const node_info *n = t_.find(id);
      if (!n || !n->performance.read_bandwidth_mbps || *n->performance.read_bandwidth_mbps == 0) return {};
      bw.push_back(*n->performance.read_bandwidth_mbps);
    }
    const std::uint64_t lo = *std::min_element(bw.begin(), bw.end());
    std::vector<std::uint8_t> w;
    std::string text;
    for (auto b : bw) {
      const double ratio = static_cast<double>(b) / static_cast<double>(lo);
      w.push_back(static_cast<std::uint8_t>(std::clamp(std::lround(ratio), 1L, 255L)));
      text += (text.empty() ? "" : ":") + std::to_string(w.back());
    }
    out_.notes.push_back("weighted interleave over nodes " + nodes.to_string() + ": weights " + text +
                         " from HMAT read bandwidth");
    return w;
  }

 private:
  const topology &t_;
  plan &out_;
  const policy &p_;
};

void append_default(plan &out, const topology &t, const policy &p) {
  resolver rs(t, out, p);
  planned_rule rule;
  rule.text = "local memory first, then the next tiers, then anywhere";
  rule.origin = "default";
  rule.where.kind = route_kind::chain;
  std::size_t memory_nodes = 0;
  for (const auto &n : t.nodes)
    if (n.has_memory && n.allowed) ++memory_nodes;
  const node_set local = local_nodes(t);
  tier anywhere;
  anywhere.name = "anywhere (the kernel's default placement)";
  anywhere.where.mode = policy_mode::default_policy;
  if (memory_nodes <= 1 || local.empty()) {
    rule.text = "the kernel's default placement (one memory node)";
    rule.where.tiers.push_back(rs.add_with_watermark(anywhere, 100, "no watermark (the only tier)"));
    out.rules.push_back(std::move(rule));
    return;
  }
  const std::string wm = "watermark " + std::to_string(default_watermark) + "% (default: spill before reclaim)";
  rule.where.tiers.push_back(rs.add_with_watermark(softened(nodes_tier(t, "local", local)), default_watermark, wm));
  // The other tiers, in the rank order of the first initiator, HBM and device memory aside.
  node_set taken = local;
  if (!t.initiators.empty())
    for (const auto &g : t.initiators.front().tiers) {
      if (g.kind == memory_kind::hbm || g.kind == memory_kind::device) continue;
      node_set ns;
      for (auto n : g.nodes)
        if (usable(t, n) && !taken.contains(n)) ns.insert(n);
      if (ns.empty()) continue;
      for (auto n : ns.to_vector()) taken.insert(n);
      rule.where.tiers.push_back(
          rs.add_with_watermark(softened(nodes_tier(t, std::string(to_string(g.kind)), ns)), default_watermark, wm));
    }
  rule.where.tiers.push_back(rs.add(anywhere, 100, "no watermark (last resort)"));
  out.rules.push_back(std::move(rule));
}

std::string size_text(std::uint64_t b) {
  for (auto [unit, name] : {std::pair{1ull << 30, "G"}, {1ull << 20, "M"}, {1ull << 10, "K"}})
    if (b >= unit && b % unit == 0) return std::to_string(b / unit) + name;
  return std::to_string(b);
}

}  // namespace

result<plan> default_plan(const topology &topo) {
  plan out;
  policy none;
  append_default(out, topo, none);
  return out;
}

result<plan> resolve(const loaded_policy &lp, const topology &topo) {
  plan out;
  out.source = lp.source;
  out.strict = lp.p.strict;
  out.callsite = lp.p.callsite;
  out.notes = lp.p.notes;
  resolver rs(topo, out, lp.p);
  if (auto w = rs.check_watermarks(); !w) return w.error();
  bool has_default = false;
  for (const auto &r : lp.p.rules) {
    auto pr = rs.route_of(r.where);
    if (!pr) return error{pr.error().code, r.origin + ": " + r.text + ": " + pr.error().message};
    out.rules.push_back({r.min_size, r.max_size, std::move(*pr), r.text, r.origin});
    if (r.unconditional()) {
      has_default = true;
      if (&r != &lp.p.rules.back())
        out.notes.push_back("rules after \"" + r.text + "\" (" + r.origin +
                            ") never apply: it matches every size, and the first match decides");
      break;
    }
  }
  if (!has_default) append_default(out, topo, lp.p);
  return out;
}

chosen_plan choose_plan(const environment &env, const topology &topo) {
  chosen_plan out;
  auto loaded = load(env);
  auto resolved = loaded ? resolve(*loaded, topo) : result<plan>(loaded.error());
  if (resolved) {
    out.used = std::move(*resolved);
    return out;
  }
  out.problem = resolved.error().message;
  out.used = *default_plan(topo);  // the default always resolves
  return out;
}

std::string describe_machine(const topology &topo) {
  std::string s;
  for (const auto &n : topo.nodes)
    if (n.has_memory)
      s += (s.empty() ? "" : ", ") + std::to_string(n.id) + "=" + std::string(to_string(n.kind)) +
           (n.allowed ? "" : " (not allowed by the cpuset)");
  return s.empty() ? "no memory nodes known (topology unread)" : "memory nodes " + s;
}

std::string explain(const plan &p) {
  std::string s;
  s += "policy: " +
       (p.source.empty() ? std::string("the built-in default (for when none of HETMEM_POLICY, HETMEM_CONFIG, "
                                       "MEMKIND_MEM_TIERS, AUTO_HBW_SIZE is set, or the one set cannot be used)")
                         : "from " + p.source) +
       "\n";
  s += "rules (the first that matches an allocation's size decides):\n";
  for (std::size_t i = 0; i < p.rules.size(); ++i) {
    const auto &r = p.rules[i];
    std::string cond;
    if (r.min_size == 0 && r.max_size == UINT64_MAX)
      cond = "any size";
    else if (r.max_size == UINT64_MAX)
      cond = "size >= " + size_text(r.min_size);
    else if (r.min_size == 0)
      cond = "size <= " + size_text(r.max_size);
    else
      cond = size_text(r.min_size) + " <= size <= " + size_text(r.max_size);
    s += "  " + std::to_string(i + 1) + ". " + cond + " -> " + to_string(r.where.kind) + ":";
    for (std::size_t k = 0; k < r.where.tiers.size(); ++k) {
      s += (k == 0                              ? " "
            : r.where.kind == route_kind::chain ? " > "
                                                : ", ") +
           std::string("[") + std::to_string(r.where.tiers[k]) + "]";
      if (k < r.where.shares.size()) s += " x" + std::to_string(r.where.shares[k]);
    }
    if (r.where.kind == route_kind::threshold)
      for (std::size_t k = 0; k < r.where.thresholds.size(); ++k)
        s += "; threshold " + std::to_string(k + 1) + " starts at " + size_text(r.where.thresholds[k].start) + " (" +
             size_text(r.where.thresholds[k].min) + " to " + size_text(r.where.thresholds[k].max) + ")";
    s += "\n     from " + r.origin + (r.origin == "default" ? ": " : ": \"") + r.text +
         (r.origin == "default" ? "" : "\"") + "\n";
  }
  s += "tiers:\n";
  for (std::size_t i = 0; i < p.tiers.size(); ++i) {
    const auto &t = p.tiers[i];
    s += "  [" + std::to_string(i) + "] " + t.where.name + ": " + placement_text(t.where) + "; " + t.why + "\n";
  }
  s += std::string("settings:\n  strict: ") + (p.strict ? "yes (a bad configuration stops the program)" : "no") +
       "\n  callsite: " +
       (p.callsite ? "yes (ratio and threshold decisions once per call site)" : "no (decided per allocation)") + "\n";
  if (!p.notes.empty()) {
    s += "notes:\n";
    for (const auto &n : p.notes) s += "  - " + n + "\n";
  }
  return s;
}

}  // namespace hetmem::policy

namespace hetmem::policy {
result<tier> resolve_tier(const tier_ref &r, const topology &t) { return resolve_ref(r, t); }
}  // namespace hetmem::policy
