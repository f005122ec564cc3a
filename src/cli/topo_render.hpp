// topo_render.hpp — rendering of `hetmem topo` (text table and JSON schema hetmem.topo/1).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "hetmem/tiering.hpp"
#include "hetmem/topology.hpp"

namespace hetmem::cli {

struct view_choice {
  std::optional<std::uint32_t> initiator_node;  // --initiator
  std::optional<std::uint32_t> cpu;             // --cpu
};

struct render_options {
  bool explain = false;
  view_choice view;
  std::optional<std::string> hwloc_note;  // one line about the hwloc cross-check
  // The kernel's own tiering (NUMA balancing's promotion, per-node reclaim, DAMON), read
  // beside the topology; shown under --explain and in JSON when given.
  std::optional<kernel_tiering_state> kernel;
};

// The rank of `node`'s tier as `view` sees it; nullopt without a view or when it ranks no such node.
std::optional<std::uint32_t> rank_of(const initiator_view *view, std::uint32_t node);
// The initiator whose ranks the table shows; `why` says how it was chosen.
const initiator_view *pick_view(const topology &t, const view_choice &choice, std::string &why);
// "4 nodes (4 with memory, 2 with CPUs), 1.9 GiB of memory. HMAT: ... Kernel memory tiers: ...."
std::string summary_line(const topology &t);
std::string render_text(const topology &t, const render_options &opt);
std::string render_json(const topology &t, const render_options &opt);

}  // namespace hetmem::cli
