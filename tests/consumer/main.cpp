// Prints the kind of every node: proves the public headers and targets work for a downstream user.
#include <cstdio>

#include "hetmem/heap.hpp"
#include "hetmem/probe.hpp"
#include "hetmem/topology.hpp"

int main() {
  auto topo = hetmem::load_topology();
  if (!topo) {
    std::fprintf(stderr, "consumer: %s\n", topo.error().message.c_str());
    return 1;
  }
  for (const auto &n : topo->nodes) std::printf("node %u: %s\n", n.id, std::string(hetmem::to_string(n.kind)).c_str());
  // The engine (with its private jemalloc) links from the installed package too.
  auto fastest = hetmem::fastest_tier(*topo);
  auto heap = fastest ? hetmem::heap::create(*fastest) : hetmem::result<std::unique_ptr<hetmem::heap>>(fastest.error());
  if (!heap) {
    std::fprintf(stderr, "consumer: %s\n", heap.error().message.c_str());
    return 1;
  }
  void *p = (*heap)->allocate(1000);
  std::printf("1000 bytes on %s\n", p ? hetmem::tier_of(p)->name.c_str() : "(failed)");
  hetmem::deallocate(p);
  // And the probe library: a quick latency measurement of every node.
  hetmem::probe_options o;
  o.buffer_bytes = 2u << 20;
  o.seconds_per_measurement = 0.001;
  o.bandwidth = false;
  auto probed = hetmem::run_probe(*topo, o);
  if (!probed) {
    std::fprintf(stderr, "consumer: %s\n", probed.error().message.c_str());
    return 1;
  }
  std::printf("%zu node(s) probed\n", probed->report.nodes.size());
  return topo->nodes.empty() || !p ? 1 : 0;
}
