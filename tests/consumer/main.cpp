// Prints the kind of every node: proves the public headers and targets work for a downstream user.
#include <cstdio>

#include "hetmem/topology.hpp"

int main() {
  auto topo = hetmem::load_topology();
  if (!topo) {
    std::fprintf(stderr, "consumer: %s\n", topo.error().message.c_str());
    return 1;
  }
  for (const auto &n : topo->nodes) std::printf("node %u: %s\n", n.id, std::string(hetmem::to_string(n.kind)).c_str());
  return topo->nodes.empty() ? 1 : 0;
}
