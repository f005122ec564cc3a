// tier_order.cpp — each initiator's memory tiers, best first: classification's last step.
#include "tier_order.hpp"

#include <algorithm>
#include <optional>
#include <utility>

namespace hetmem::detail {
namespace {

using sysfs::id_set;

// Order of kinds by expected performance for general CPU use (used to rank local tiers).
int kind_rank(memory_kind k) {
  switch (k) {
    case memory_kind::hbm:
      return 0;
    case memory_kind::ddr:
      return 1;
    case memory_kind::unknown:
      return 2;
    case memory_kind::cxl:
      return 3;
    case memory_kind::pmem:
      return 4;
    case memory_kind::device:
      return 5;
    case memory_kind::none:
      return 6;
  }
  return 6;
}

}  // namespace

std::vector<initiator_view> order_tiers(const std::vector<node_info> &nodes, const sysfs::snapshot &snap,
                                        const sysfs::id_set &cpu_nodes) {
  std::vector<initiator_view> out;
  id_set initiators = cpu_nodes;
  if (initiators.empty()) {  // no CPU lists at all: let every memory node stand for itself
    for (const auto &n : nodes)
      if (n.has_memory) initiators.insert(n.id);
  }
  for (std::uint32_t i : initiators.to_vector()) {
    initiator_view view;
    view.node = i;
    if (const auto *sn = snap.find_node(i)) view.cpus = sn->cpus;
    struct entry {
      bool local;
      int rank;
      std::uint32_t dist;
      std::optional<std::uint32_t> d;
      const node_info *n;
    };
    std::vector<entry> es;
    for (const auto &n : nodes) {
      if (!n.has_memory || n.kind == memory_kind::none) continue;
      auto d = i == n.id ? std::optional<std::uint32_t>(10) : snap.distance(i, n.id);
      // Device memory (GPU HBM over NVLink and the like) is never a CPU's local tier.
      bool local = n.local_initiators.contains(i) && n.kind != memory_kind::device;
      es.push_back({local, kind_rank(n.kind), d.value_or(1000), d, &n});
    }
    std::stable_sort(es.begin(), es.end(), [](const entry &a, const entry &b) {
      if (a.local != b.local) return a.local;
      if (a.local) return a.rank != b.rank ? a.rank < b.rank : (a.dist != b.dist ? a.dist < b.dist : a.n->id < b.n->id);
      return a.dist != b.dist ? a.dist < b.dist : (a.rank != b.rank ? a.rank < b.rank : a.n->id < b.n->id);
    });
    for (const auto &e : es) {
      auto &tiers = view.tiers;
      if (!tiers.empty() && tiers.back().local == e.local && tiers.back().kind == e.n->kind &&
          tiers.back().distance == e.d) {
        tiers.back().nodes.push_back(e.n->id);
        continue;
      }
      tier_group g;
      g.rank = static_cast<std::uint32_t>(tiers.size());
      g.kind = e.n->kind;
      g.local = e.local;
      g.distance = e.d;
      g.nodes.push_back(e.n->id);
      tiers.push_back(std::move(g));
    }
    out.push_back(std::move(view));
  }
  return out;
}

}  // namespace hetmem::detail
