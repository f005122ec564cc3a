// best_tier — which memory is best for the CPU this thread runs on, and why.
//
//   $ ./best_tier            (the live system)
//   $ ./best_tier TREE       (a captured sysfs tree; ranks for its first initiator)
#include <cstdio>
#include <string>

#include "hetmem/format.hpp"
#include "hetmem/topology.hpp"

int main(int argc, char **argv) {
  hetmem::load_options options;
  if (argc > 1) options.root = argv[1];
  auto topo = hetmem::load_topology(options);
  if (!topo) {
    std::fprintf(stderr, "best_tier: %s\n", topo.error().message.c_str());
    return 1;
  }
  const hetmem::initiator_view *me = topo->initiator_for_calling_thread();
  if (!me && !topo->initiators.empty()) me = &topo->initiators.front();
  if (!me) {
    std::fprintf(stderr, "best_tier: no initiator (no node lists CPUs)\n");
    return 1;
  }
  std::printf("from node %u (CPUs %s), best first:\n", me->node, me->cpus.to_string().c_str());
  for (const auto &tier : me->tiers) {
    for (auto id : tier.nodes) {
      const hetmem::node_info *n = topo->find(id);
      std::printf("  rank %u  node %-3u %-7s %-9s %s%s\n", tier.rank, id,
                  std::string(hetmem::to_string(n->kind)).c_str(),
                  n->capacity_bytes ? hetmem::format_bytes(*n->capacity_bytes).c_str() : "-",
                  tier.local ? "local; " : "", n->reasons.empty() ? "" : n->reasons.front().text.c_str());
    }
  }
  return 0;
}
