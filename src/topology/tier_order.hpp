// tier_order.hpp — each initiator's memory tiers, best first (the last step of classify()).
// Private to src/topology.
#pragma once

#include <vector>

#include "hetmem/sysfs/model.hpp"
#include "hetmem/topology.hpp"

namespace hetmem::detail {

// One view per initiator, by node id: the nodes with CPUs (`cpu_nodes`), or every memory node
// for itself when no node lists CPUs. Its tiers: the memory nodes local to it (HMAT's
// initiators; device memory never) first, by kind (HBM, DDR, unknown, CXL, PMEM, device) then
// SLIT distance; then the others by distance, then kind. Nodes of one kind at one distance with
// the same locality form one tier. Nodes without memory or of kind `none` are left out.
std::vector<initiator_view> order_tiers(const std::vector<node_info> &nodes, const sysfs::snapshot &snap,
                                        const sysfs::id_set &cpu_nodes);

}  // namespace hetmem::detail
