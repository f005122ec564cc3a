// The kernel's weighted interleave weights beside HMAT's bandwidth shares (doctor, topo).
#include <cmath>
#include <cstdio>

#include "hetmem/topology.hpp"

namespace hetmem {

interleave_weight_check check_interleave_weights(const topology &t) {
  interleave_weight_check c;
  const auto &wi = t.snapshot.weighted_interleave;
  bool complete = !wi.weights.empty();
  double weight_sum = 0, bandwidth_sum = 0;
  for (auto [node, weight] : wi.weights) {
    const node_info *n = t.find(node);
    if (!n || !n->has_memory) continue;
    const auto &p = n->performance;
    std::optional<std::uint64_t> bw = p.read_bandwidth_mbps;
    if (p.write_bandwidth_mbps && (!bw || *p.write_bandwidth_mbps < *bw)) bw = p.write_bandwidth_mbps;
    if (!bw || *bw == 0) complete = false;
    c.nodes.push_back({node, static_cast<double>(weight), bw ? static_cast<double>(*bw) : 0.0});
    weight_sum += weight;
    bandwidth_sum += bw ? static_cast<double>(*bw) : 0.0;
  }
  c.comparable = complete && c.nodes.size() > 1 && weight_sum > 0 && bandwidth_sum > 0;
  for (auto &n : c.nodes) {
    n.page_share = weight_sum > 0 ? 100.0 * n.page_share / weight_sum : 0;
    n.bandwidth_share = bandwidth_sum > 0 ? 100.0 * n.bandwidth_share / bandwidth_sum : 0;
    c.differ = c.differ || (c.comparable && std::fabs(n.page_share - n.bandwidth_share) > 5.0);
  }
  return c;
}

std::string interleave_weight_check::shares_text() const {
  if (!comparable) return {};
  std::string pages, bandwidth;
  char buf[32];
  for (const auto &n : nodes) {
    std::snprintf(buf, sizeof buf, "%s%.0f%%", pages.empty() ? "" : "/", n.page_share);
    pages += buf;
    std::snprintf(buf, sizeof buf, "%s%.0f%%", bandwidth.empty() ? "" : "/", n.bandwidth_share);
    bandwidth += buf;
  }
  return "shares of the pages " + pages + ", of HMAT's bandwidth " + bandwidth +
         (differ ? ": they differ by more than 5 points" : ": they agree");
}

}  // namespace hetmem
