// hetmem — the command-line tool. Exit codes: 0 success; 1 the system or tree could not be
// read; 2 bad usage; 3 --strict and some file could not be used.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "hetmem/hwloc_check.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/topology.hpp"
#include "topo_render.hpp"

namespace {

constexpr int exit_ok = 0, exit_failure = 1, exit_usage = 2, exit_strict = 3;

struct topo_args {
  std::string root;
  bool json = false;
  bool explain = false;
  bool no_hwloc = false;
  bool strict = false;
  std::optional<std::uint32_t> initiator;
  std::optional<std::uint32_t> cpu;
  std::optional<std::string> kinds;
};

int run_topo(const topo_args &a) {
  hetmem::load_options lo;
  lo.root = a.root;
  lo.overrides = a.kinds;
  auto topo = hetmem::load_topology(lo);
  if (!topo) {
    std::fprintf(stderr, "hetmem topo: %s\n", topo.error().message.c_str());
    return exit_failure;
  }
  hetmem::cli::render_options ro;
  ro.explain = a.explain;
  ro.view.initiator_node = a.initiator;
  ro.view.cpu = a.cpu;
  if (a.initiator && !topo->initiator(*a.initiator)) {
    std::fprintf(stderr, "hetmem topo: --initiator %u: node %u has no CPUs (initiators: nodes with CPUs)\n",
                 *a.initiator, *a.initiator);
    return exit_usage;
  }
  if (a.cpu && !topo->initiator_for_cpu(*a.cpu)) {
    std::fprintf(stderr, "hetmem topo: --cpu %u: no node lists CPU %u\n", *a.cpu, *a.cpu);
    return exit_usage;
  }
  if (!a.no_hwloc) {
    auto hw = hetmem::hwloc_view(topo->root);
    if (hw) {
      hetmem::crosscheck(*topo, *hw);
      ro.hwloc_note =
          "hwloc " + hw->hwloc_version + " cross-check: " + std::to_string(hw->nodes.size()) + " NUMA node(s) seen.";
    } else {
      ro.hwloc_note = "hwloc cross-check unavailable: " + hw.error().message + ".";
    }
  }
  std::string out = a.json ? hetmem::cli::render_json(*topo, ro) : hetmem::cli::render_text(*topo, ro);
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (a.strict && !topo->snapshot.diagnostics.empty()) {
    std::fprintf(stderr, "hetmem topo: --strict: %zu file(s) could not be used (first: %s: %s)\n",
                 topo->snapshot.diagnostics.size(), topo->snapshot.diagnostics.front().path.c_str(),
                 topo->snapshot.diagnostics.front().message.c_str());
    return exit_strict;
  }
  return exit_ok;
}

}  // namespace

int main(int argc, char **argv) try {
  CLI::App app{"hetmem: see, place and move memory across DDR, HBM, PMEM, CXL and device tiers"};
  app.set_version_flag("--version", std::string("hetmem ") + HETMEM_VERSION);
  app.require_subcommand(1);
  app.footer("Run 'hetmem SUBCOMMAND --help' for the options of each subcommand.");

  topo_args ta;
  auto *topo =
      app.add_subcommand("topo", "Show the memory nodes, their kind, performance and tier order per initiator");
  topo->add_option("--root", ta.root,
                   "Read a captured sysfs/procfs tree instead of the live system (default: $HETMEM_SYSFS_ROOT or /)");
  topo->add_flag("--json", ta.json, "Print JSON (schema hetmem.topo/1, see docs/topo-json.md)");
  topo->add_flag("--explain", ta.explain, "Print every reason behind each verdict, disagreements and kernel settings");
  topo->add_option("--initiator", ta.initiator, "Show tier ranks as seen from this initiator node");
  topo->add_option("--cpu", ta.cpu, "Show tier ranks as seen from the node of this CPU");
  topo->add_option("--kind", ta.kinds, "Override node kinds, e.g. '2=hbm,4=pmem' (default: $HETMEM_NODE_KINDS)");
  topo->add_flag("--no-hwloc", ta.no_hwloc, "Skip the cross-check against hwloc's view of the same tree");
  topo->add_flag("--strict", ta.strict, "Exit with status 3 if any sysfs file could not be used");
  topo->footer(
      "Examples:\n"
      "  hetmem topo                       this machine\n"
      "  hetmem topo --explain             with every reason and kernel setting\n"
      "  hetmem topo --root tree/ --json   a captured tree, as JSON\n"
      "  hetmem topo --cpu 40              ranks as seen from CPU 40");
  topo->callback([] {});

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    int rc = app.exit(e);
    return rc == 0 ? exit_ok : exit_usage;
  }
  if (topo->parsed()) return run_topo(ta);
  return exit_usage;
} catch (const std::exception &e) {
  std::fprintf(stderr, "hetmem: internal error: %s\n", e.what());
  return exit_failure;
}
