// hetmem — the command-line tool. Exit codes: 0 success; 1 the system or tree could not be
// read (or, for migrate, the system refused); 2 bad usage; 3 --strict and some file could not be
// used; 4 migrate moved some pages but not all, doctor found a warning, or probe measured a node
// that disagrees with HMAT. `hetmem run` exits with the program's status.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "common.hpp"
#include "doctor_cmd.hpp"
#include "gather_cmd.hpp"
#include "hetmem/hwloc_check.hpp"
#include "hetmem/policy.hpp"
#include "hetmem/sysfs/environment.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/topology.hpp"
#include "migrate_cmd.hpp"
#include "probe_cmd.hpp"
#include "stat_cmd.hpp"
#include "tierd_cmd.hpp"
#include "topo_picture.hpp"
#include "topo_render.hpp"

namespace {

using hetmem::cli::exit_failure;
using hetmem::cli::exit_ok;
using hetmem::cli::exit_strict;
using hetmem::cli::exit_usage;

struct topo_args {
  std::string root;
  bool json = false;
  std::string format = "table";
  bool ascii = false;
  bool explain = false;
  bool no_hwloc = false;
  bool strict = false;
  std::optional<std::uint32_t> initiator;
  std::optional<std::uint32_t> cpu;
  std::optional<std::string> kinds;
  std::optional<std::string> probe;
};

int run_topo(topo_args a) {
  if (a.json) {
    if (a.format != "table" && a.format != "json") {
      std::fprintf(stderr, "hetmem topo: --json and --format %s contradict each other\n", a.format.c_str());
      return exit_usage;
    }
    a.format = "json";
  }
  if (a.explain && a.format != "table" && a.format != "json") {
    std::fprintf(
        stderr, "hetmem topo: --explain goes with the table (or JSON, which always has the reasons), not --format %s\n",
        a.format.c_str());
    return exit_usage;
  }
  hetmem::load_options lo;
  lo.root = a.root;
  lo.overrides = a.kinds;
  lo.probe_file = a.probe;
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
  if (!a.no_hwloc && (a.format == "table" || a.format == "json")) {
    auto hw = hetmem::hwloc_view(topo->root);
    if (hw) {
      hetmem::crosscheck(*topo, *hw);
      ro.hwloc_note =
          "hwloc " + hw->hwloc_version + " cross-check: " + std::to_string(hw->nodes.size()) + " NUMA node(s) seen.";
    } else {
      ro.hwloc_note = "hwloc cross-check unavailable: " + hw.error().message + ".";
    }
  }
  if (a.format == "table" || a.format == "json") ro.kernel = hetmem::detect_kernel_tiering(topo->root, topo->snapshot);
  std::string out;
  if (a.format == "json")
    out = hetmem::cli::render_json(*topo, ro);
  else if (a.format == "tree")
    out = hetmem::cli::render_tree(*topo, {.unicode = !a.ascii && hetmem::cli::terminal_is_utf8()});
  else if (a.format == "dot")
    out = hetmem::cli::render_dot(*topo);
  else if (a.format == "svg")
    out = hetmem::cli::render_svg(*topo);
  else
    out = hetmem::cli::render_text(*topo, ro);
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (a.strict && !topo->snapshot.diagnostics.empty()) {
    std::fprintf(stderr, "hetmem topo: --strict: %zu file(s) could not be used (first: %s: %s)\n",
                 topo->snapshot.diagnostics.size(), topo->snapshot.diagnostics.front().path.c_str(),
                 topo->snapshot.diagnostics.front().message.c_str());
    return exit_strict;
  }
  return exit_ok;
}

struct run_args {
  std::optional<std::string> policy, config, report;
  bool explain = false;
  bool strict = false;
  std::vector<std::string> command;
};

// libhetmem-preload.so: $HETMEM_PRELOAD, else beside this executable as installed
// (BINDIR/../LIBDIR), else in the build tree this executable was built in.
std::string find_preload() {
  if (const char *env = hetmem::sysfs::environment("HETMEM_PRELOAD"); env && *env) return env;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto installed = exe.parent_path() / HETMEM_PRELOAD_FROM_BINDIR;
    if (std::filesystem::exists(installed, ec)) return std::filesystem::weakly_canonical(installed, ec).string();
  }
  return HETMEM_PRELOAD_BUILD_PATH;
}

int run_program(const run_args &a) {
  if (a.command.empty()) {
    std::fprintf(stderr, "hetmem run: no command given (hetmem run [OPTIONS] -- COMMAND [ARGS...])\n");
    return exit_usage;
  }
  const std::string preload = find_preload();
  if (::access(preload.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "hetmem run: cannot use the preload library %s: %s (set HETMEM_PRELOAD)\n", preload.c_str(),
                 std::strerror(errno));
    return exit_failure;
  }
  // The command's environment: what the preload will read.
  if (a.policy) ::setenv("HETMEM_POLICY", a.policy->c_str(), 1);
  if (a.config) {
    ::unsetenv("HETMEM_POLICY");
    ::setenv("HETMEM_CONFIG", a.config->c_str(), 1);
  }
  if (a.strict) ::setenv("HETMEM_STRICT", "1", 1);
  if (a.report) ::setenv("HETMEM_REPORT", a.report->c_str(), 1);
  if (a.explain) {
    const auto env = hetmem::policy::read_environment();
    auto topo = hetmem::load_topology();
    hetmem::topology none;
    const hetmem::topology &t = topo ? *topo : none;
    std::printf("hetmem run: %s under %s\n%s\n", a.command.front().c_str(), preload.c_str(),
                hetmem::policy::describe_machine(t).c_str());
    if (!topo) std::printf("topology unreadable (%s): the kernel's default placement\n", topo.error().message.c_str());
    auto chosen = hetmem::policy::choose_plan(env, t);
    if (!chosen.problem.empty()) {
      std::printf("the configured policy cannot be used:\n  %s\n", chosen.problem.c_str());
      if (hetmem::policy::strict_requested(env)) {
        std::printf("strict mode: the program would stop; not running it\n");
        return exit_usage;
      }
      std::printf("the preload falls back to the default:\n");
    }
    std::fputs(hetmem::policy::explain(chosen.used).c_str(), stdout);
    std::fflush(stdout);
  }
  std::string ld = preload;
  if (const char *old = hetmem::sysfs::environment("LD_PRELOAD"); old && *old) ld += std::string(":") + old;
  ::setenv("LD_PRELOAD", ld.c_str(), 1);
  std::vector<char *> argv;
  for (const auto &s : a.command)
    argv.push_back(const_cast<char *>(s.c_str()));  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  const int err = errno;
  std::fprintf(stderr, "hetmem run: cannot run %s: %s\n", argv[0], std::strerror(err));
  return err == ENOENT ? 127 : 126;
}

}  // namespace

int main(int argc, char **argv) try {
  CLI::App app{"hetmem: see, place and move memory across DDR, HBM, PMEM, CXL and device tiers"};
  app.name("hetmem");  // not argv[0]: the usage lines (and the man page made from them) say "hetmem"
  app.set_version_flag("--version", std::string("hetmem ") + HETMEM_VERSION);
  app.require_subcommand(1);
  app.footer("Run 'hetmem SUBCOMMAND --help' for the options of each subcommand.");

  topo_args ta;
  auto *topo =
      app.add_subcommand("topo", "Show the memory nodes, their kind, performance and tier order per initiator");
  topo->add_option("--root", ta.root,
                   "Read a captured sysfs/procfs tree instead of the live system (default: $HETMEM_SYSFS_ROOT or /)");
  topo->add_option("--format", ta.format,
                   "table (default); tree: initiators and their tiers as a tree; json (schema hetmem.topo/1, "
                   "docs/topo-json.md); dot: a Graphviz graph; svg: a picture (no Graphviz needed)")
      ->check(CLI::IsMember({"table", "tree", "json", "dot", "svg"}));
  topo->add_flag("--json", ta.json, "Same as --format json");
  topo->add_flag("--ascii", ta.ascii, "Draw the tree with ASCII characters (default: box drawing on UTF-8 terminals)");
  topo->add_flag("--explain", ta.explain, "Print every reason behind each verdict, disagreements and kernel settings");
  topo->add_option("--initiator", ta.initiator, "Show tier ranks as seen from this initiator node");
  topo->add_option("--cpu", ta.cpu, "Show tier ranks as seen from the node of this CPU");
  topo->add_option("--kind", ta.kinds, "Override node kinds, e.g. '2=hbm,4=pmem' (default: $HETMEM_NODE_KINDS)");
  topo->add_option("--probe", ta.probe,
                   "Use a saved 'hetmem probe --save' report as evidence ahead of HMAT (default: $HETMEM_PROBE)");
  topo->add_flag("--no-hwloc", ta.no_hwloc, "Skip the cross-check against hwloc's view of the same tree");
  topo->add_flag("--strict", ta.strict, "Exit with status 3 if any sysfs file could not be used");
  topo->footer(
      "Examples:\n"
      "  hetmem topo                       this machine\n"
      "  hetmem topo --explain             with every reason and kernel setting\n"
      "  hetmem topo --root tree/ --json   a captured tree, as JSON\n"
      "  hetmem topo --cpu 40              ranks as seen from CPU 40\n"
      "  hetmem topo --format tree         each initiator's tiers as a tree\n"
      "  hetmem topo --format svg > m.svg  a picture for documentation (or --format dot | dot -Tpng)\n"
      "  hetmem topo --probe probe.txt     kinds judged by measured performance (hetmem probe --save)\n"
      "Exit status: 0 shown; 1 the tree could not be read; 2 bad usage; 3 --strict and some file could\n"
      "not be used.");
  topo->callback([] {});

  run_args ra;
  auto *run = app.add_subcommand("run", "Run a program with hetmem's preload (libhetmem-preload.so) and a policy");
  run->add_option("--policy", ra.policy, "Policy text (sets HETMEM_POLICY; see docs/policy.md)");
  run->add_option("--config", ra.config, "Policy file (sets HETMEM_CONFIG)");
  run->add_flag("--explain", ra.explain,
                "Print the effective policy, its tiers and where each setting came from first");
  run->add_flag("--strict", ra.strict, "A bad policy stops the program instead of falling back (HETMEM_STRICT=1)");
  run->add_option("--report", ra.report,
                  "At exit, write the program's pages per node (kernel's numa_maps) to FILE, or 'stderr'");
  run->add_option("command", ra.command, "The program and its arguments (after --)")->required(false);
  run->footer(
      "Examples:\n"
      "  hetmem run -- ./app                          the default policy (local first, spill before reclaim)\n"
      "  hetmem run --policy 'hbm>ddr' -- ./app       HBM first, DDR when HBM nears its watermark\n"
      "  hetmem run --policy 'size>=1M -> hbm; ddr' --explain -- ./app\n"
      "  hetmem run --policy 'ratio ddr:3,cxl:1' --report stderr -- ./app\n"
      "Exit status: the program's; 127 when it cannot be found, 2 bad usage (or, with --explain and\n"
      "--strict, a policy that cannot be used), 1 the preload library is missing.");

  hetmem::cli::stat_args sa;
  auto *stat =
      app.add_subcommand("stat", "Memory per node and per tier of a process or cgroup, as the kernel counts it");
  stat->add_option("pid", sa.pid, "The process (its /proc/PID/numa_maps)");
  stat->add_option("--cgroup", sa.cgroup,
                   "A cgroup directory, v2 or v1 memory (its memory.numa_stat), e.g. /sys/fs/cgroup/db.slice");
  stat->add_option("--watch", sa.watch, "Sample every SECONDS (default 1) until Ctrl-C or the process ends")
      ->expected(0, 1)
      ->default_str("1");
  stat->add_option("--count", sa.count, "With --watch: stop after this many samples");
  stat->add_flag("--json", sa.json, "Print JSON (schema hetmem.stat/1; one object per line with --watch)");
  stat->add_option("--root", sa.root, "Read proc/ and sys/ from a captured tree instead of the live system");
  stat->footer(
      "Examples:\n"
      "  hetmem stat 4242                          pages per node and tier of process 4242\n"
      "  hetmem stat 4242 --watch                  a live view, every second, with the change per node\n"
      "  hetmem stat --cgroup /sys/fs/cgroup/db.slice --json\n"
      "  hetmem stat 4242 --watch 5 --count 12 --json > usage.jsonl\n"
      "Columns: ANON anonymous memory (heap, stacks, anonymous mappings), FILE file-backed mappings (page\n"
      "cache they map; a cgroup's FILE includes shmem), KERNEL (cgroups) stacks, page tables and slab.\n"
      "Exit status: 0 shown; 1 the process or cgroup could not be read (no such process, no permission:\n"
      "another user's process needs root or CAP_SYS_PTRACE; no memory controller); 2 bad usage.");

  hetmem::cli::doctor_args doc;
  auto *doctor = app.add_subcommand(
      "doctor", "What this machine and kernel offer for tiered memory, what is off, and how to change it");
  doctor->add_option("--root", doc.root, "Examine a captured sysfs/procfs tree instead of the live system");
  doctor->add_flag("--json", doc.json, "Print JSON (schema hetmem.doctor/1)");
  doctor->footer(
      "Checks: memory nodes and their kinds, HMAT, kernel memory tiers, demotion, NUMA balancing mode,\n"
      "weighted interleave, DAMON and PSI (hotness and pressure for tiering), transparent huge pages, this\n"
      "process's cpuset, dax devices not onlined, offline memory blocks, zone_reclaim_mode, unreadable files.\n"
      "Each finding is ok, note or warn; notes and warnings say the command that changes them.\n"
      "Examples:\n"
      "  hetmem doctor\n"
      "  hetmem doctor --json | jq '.findings[] | select(.status == \"warn\")'\n"
      "  hetmem doctor --root captured-tree/\n"
      "Exit status: 0 nothing needs attention (notes at most); 1 the topology could not be read; 2 bad\n"
      "usage; 4 at least one warning.");

  hetmem::cli::probe_args pa;
  auto *probe = app.add_subcommand(
      "probe", "Measure each node's latency and bandwidth from one initiator and compare them with HMAT");
  probe->add_option("--initiator", pa.initiator,
                    "Measure from this node's CPUs (default: the node of the current CPU)");
  probe->add_option("--cpu", pa.cpu, "Run the latency thread on this CPU (its node is the initiator)");
  probe->add_option("--nodes", pa.nodes, "Only these memory nodes, e.g. 0,2-3 (default: all this process may use)");
  probe->add_option("--size", pa.size,
                    "Buffer per node, e.g. 1G (default 256M, or 4x the last-level cache when that is larger)");
  probe->add_option("--threads", pa.threads, "Bandwidth threads (default: one per CPU of the initiator)");
  probe->add_option("--time", pa.seconds, "Seconds per measurement: latency, read, write per node (default 0.25)");
  probe->add_flag("--latency-only", pa.latency_only, "Measure latency only");
  probe->add_flag("--bandwidth-only", pa.bandwidth_only, "Measure bandwidth only");
  probe->add_option("--save", pa.save, "Write the measurements to FILE (for hetmem topo --probe and HETMEM_PROBE)");
  probe->add_flag("--json", pa.json, "Print JSON (schema hetmem.probe/1)");
  probe->add_flag("--progress", pa.progress, "Show a progress bar even when stderr is not a terminal");
  probe->footer(
      "Latency: one thread follows a pointer chain through every cache line of a buffer bound to the\n"
      "node (MPOL_BIND, huge pages, placement confirmed with move_pages), in random order. Bandwidth:\n"
      "all threads stream over it, reading, then writing. Ratios are to the initiator's own node.\n"
      "A node is flagged when its ratio and HMAT's differ by more than 2x, or when HMAT orders two\n"
      "nodes the other way round.\n"
      "Examples:\n"
      "  hetmem probe                                   every node, from where it runs\n"
      "  hetmem probe --initiator 1 --size 1G --save /var/lib/hetmem/probe\n"
      "  hetmem probe --nodes 0,2 --latency-only --json\n"
      "Exit status: 0 measured, no disagreement with HMAT (or no HMAT); 4 measured, some node disagrees\n"
      "with HMAT; 1 nothing could be measured, or --save failed; 2 bad usage.");

  hetmem::cli::migrate_args ma;
  auto *mig = app.add_subcommand("migrate", "Move a process's pages to a tier (move_pages, in batches)");
  mig->add_option("--pid", ma.pid, "The process whose pages move")->required();
  mig->add_option("--to", ma.to,
                  "Target tier, as the policy language writes one: hbm, ddr, cxl, pmem, node 1+2, rank 1")
      ->required();
  mig->add_option("--from", ma.from, "Move only pages now on this tier's nodes");
  mig->add_option("--range", ma.ranges, "Only this address range, START-END in hex (repeatable)");
  mig->add_flag("--all-mappings", ma.all_mappings,
                "Also file-backed shared mappings (default: anonymous and private writable memory)");
  mig->add_option("--rate", ma.rate_mib_s, "At most this many MiB/s (default: as fast as the kernel goes)");
  mig->add_flag("--json", ma.json, "Print the report as JSON (schema hetmem.migrate/1)");
  mig->add_flag("--quiet", ma.quiet, "Print nothing; the exit status tells");
  mig->add_flag("--progress", ma.progress, "Show a progress bar even when stderr is not a terminal");
  mig->footer(
      "Examples:\n"
      "  hetmem migrate --pid 4242 --to cxl                 all of its data to the CXL tier\n"
      "  hetmem migrate --pid 4242 --to ddr --from cxl      bring back what is on CXL\n"
      "  hetmem migrate --pid 4242 --to 'node 1' --range 7f00000000-7f40000000 --rate 500\n"
      "Exit status: 0 all selected pages moved (or nothing to move); 1 the system refused (no such\n"
      "process, no permission: moving another user's pages needs CAP_SYS_NICE); 2 bad usage or a tier\n"
      "this machine lacks; 4 some pages could not be moved (busy, target full, shared), as reported.");

  hetmem::cli::tierd_args da;
  auto *tierd = app.add_subcommand("tierd", "Keep the hot pages of processes in the fast tier (automatic tiering)");
  tierd->add_option("--pid", da.pids, "A process to manage (repeatable)");
  tierd->add_option("--cgroup", da.cgroup, "A cgroup v2 directory: manage every process in it");
  tierd->add_option("--fast", da.fast, "The fast tier (default: rank 0 for the CPUs running tierd)");
  tierd->add_option("--slow", da.slow, "Where cold pages go (default: the next tier after --fast)");
  tierd->add_option("--fast-limit", da.fast_limit,
                    "Most bytes of the managed memory on the fast tier (e.g. 512M; default: its free memory "
                    "above a 5% reserve)");
  tierd->add_option("--rate", da.rate, "Migration limit in bytes per second, both ways (default 256M)");
  tierd->add_option("--interval", da.interval, "Seconds between decisions (default 1)");
  tierd->add_option("--threshold", da.threshold, "Heat (0..1) a 2 MiB chunk needs to be promoted (default 0.05)");
  tierd->add_option("--source", da.source,
                    "Hotness source: auto, damon, soft-dirty or perf (default auto; write-protect bits work only "
                    "inside a program, see HETMEM_TIERING)");
  tierd->add_option("--max-overhead", da.max_overhead,
                    "Share (0..1) of a managed program's time the soft-dirty source's write faults may cost it: "
                    "past it, the bits are cleared less often (default 0.05; 0: every interval, whatever it costs)");
  tierd->add_option("--coexist", da.coexist,
                    "With the kernel's NUMA-balancing tiering on: coexist (only demote), yield (do nothing), force");
  tierd->add_flag("--damon-takeover", da.damon_takeover,
                  "Stop the kernel's DAMON_STAT monitor while tierd uses DAMON (the kernel starts no other kdamond "
                  "while it runs) and start it again at exit");
  tierd->add_option("--duration", da.duration, "Stop after this many seconds (default: until a signal)");
  tierd->add_flag("--json", da.json, "One JSON object per interval (schema hetmem.tierd/1)");
  tierd->add_flag("--quiet", da.quiet, "Print nothing");
  tierd->footer(
      "Examples:\n"
      "  hetmem tierd --pid 4242                          DAMON (as root) or soft-dirty bits decide\n"
      "  hetmem tierd --pid 4242 --fast-limit 512M --rate 128M --json\n"
      "  hetmem tierd --cgroup /sys/fs/cgroup/db.slice --fast ddr --slow cxl\n"
      "Exit status: 0 stopped by --duration, a signal, or the processes ending; 1 the engine could not\n"
      "start (no hotness source, no permission, --coexist yield with kernel tiering on); 2 bad usage.");

  hetmem::cli::gather_args ga;
  auto *gather = app.add_subcommand("gather", "Snapshot the sysfs and procfs files hetmem reads into NAME.tar.gz");
  gather->add_option("name", ga.name, "The snapshot's name: the tarball's and its top folder's")->required();
  gather->add_option("--out", ga.out, "Folder to write NAME.tar.gz into (default: the current folder)");
  gather->add_option("--root", ga.root, "Gather from a captured tree instead of the live system");
  gather->footer(
      "The tarball unpacks to NAME/{sys,proc}: replay it anywhere with `hetmem topo --root NAME`.\n"
      "Only regular files and symbolic links are copied (links as links). The tarball appears complete\n"
      "or not at all.\n"
      "Examples:\n"
      "  hetmem gather my-server                       ./my-server.tar.gz from this machine\n"
      "  hetmem gather cxl-box --out /tmp/trees\n"
      "Exit status: 0 written; 1 it could not be (the message says why); 2 bad usage (a NAME that\n"
      "is not one plain file name).");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    int rc = app.exit(e);
    return rc == 0 ? exit_ok : exit_usage;
  }
  if (topo->parsed()) return run_topo(ta);
  if (run->parsed()) return run_program(ra);
  if (mig->parsed()) return hetmem::cli::run_migrate(ma);
  if (doctor->parsed()) return hetmem::cli::run_doctor(doc);
  if (probe->parsed()) return hetmem::cli::run_probe(pa);
  if (stat->parsed()) {
    if (stat->count("--watch") > 0 && !sa.watch) sa.watch = 1.0;
    return hetmem::cli::run_stat(sa);
  }
  if (tierd->parsed()) return hetmem::cli::run_tierd(da);
  if (gather->parsed()) return hetmem::cli::run_gather(ga);
  return exit_usage;
} catch (const std::exception &e) {
  std::fprintf(stderr, "hetmem: internal error: %s\n", e.what());
  return exit_failure;
}
