// stat_cmd.cpp — `hetmem stat PID | --cgroup PATH [--watch [S]] [--count N] [--json]`.
#include "stat_cmd.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "common.hpp"
#include "hetmem/format.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/topology.hpp"
#include "topo_render.hpp"

namespace hetmem::cli {
namespace {

using ojson = nlohmann::ordered_json;

volatile std::sig_atomic_t stop_requested = 0;
extern "C" void stat_stop_signal(int /*sig*/) { stop_requested = 1; }

struct node_usage {
  std::uint32_t node = 0;
  std::uint64_t anon = 0, file = 0, kernel = 0;
  [[nodiscard]] std::uint64_t total() const { return anon + file + kernel; }
};

// The kernel's own tiering moves on one node, whole machine (nodeN/vmstat, pages since boot):
// promotions are counted on the node pages moved to, demotions on the node they left.
struct node_moves {
  std::uint32_t node = 0;
  std::uint64_t promoted = 0, promote_candidates = 0;
  std::uint64_t demoted_kswapd = 0, demoted_direct = 0, demoted_other = 0;  // other: khugepaged, proactive
  [[nodiscard]] std::uint64_t demoted() const { return demoted_kswapd + demoted_direct + demoted_other; }
};

struct sample {
  std::vector<node_usage> nodes;                 // ascending node id
  std::vector<node_moves> kernel_moves;          // every online node whose vmstat has the counters
  std::vector<std::string> kernel_moves_unread;  // "node2/vmstat: line 1: ..." for a malformed file
  std::vector<std::pair<std::string, std::uint64_t>> policies;
  std::uint64_t mappings = 0;
  [[nodiscard]] std::uint64_t total() const {
    std::uint64_t t = 0;
    for (const auto &n : nodes) t += n.total();
    return t;
  }
  node_usage &at(std::uint32_t node) {
    auto it = std::lower_bound(nodes.begin(), nodes.end(), node,
                               [](const node_usage &u, std::uint32_t id) { return u.node < id; });
    if (it == nodes.end() || it->node != node) it = nodes.insert(it, node_usage{node, 0, 0, 0});
    return *it;
  }
};

// What failed and the exit code it means.
struct failure {
  std::string message;
  bool gone = false;  // the process ended (or the cgroup was removed) while watching
};

std::optional<failure> read_process(const stat_args &a, sample &out) {
  const std::string path = under_root(a.root, fmt::format("/proc/{}/numa_maps", *a.pid));
  auto text = sysfs::read_text_file(path, std::size_t{1} << 28);
  if (!text) {
    const int e = text.error().code;
    if (e == ENOENT || e == ESRCH)
      return failure{fmt::format("no process {} ({})", *a.pid, text.error().message), true};
    if (e == EACCES || e == EPERM)
      return failure{text.error().message +
                     " (another user's process: needs root or CAP_SYS_PTRACE, and a kernel.yama.ptrace_scope that "
                     "allows it)"};
    return failure{"cannot read " + text.error().message};
  }
  auto parsed = sysfs::parse_numa_maps(*text, sysfs::max_node_id);
  if (!parsed) return failure{path + ": " + parsed.error().message};
  for (const auto &n : parsed->nodes) {
    auto &u = out.at(n.node);
    u.anon = n.anon_bytes;
    u.file = n.file_bytes;
  }
  out.policies = parsed->policies;
  out.mappings = parsed->mappings;
  return std::nullopt;
}

std::optional<failure> read_cgroup(const stat_args &a, sample &out) {
  const std::string path = under_root(a.root, *a.cgroup + "/memory.numa_stat");
  auto text = sysfs::read_text_file(path, std::size_t{1} << 20);
  if (!text) {
    const int e = text.error().code;
    std::string why = text.error().message;
    if (e == ENOENT)
      why += ::access(under_root(a.root, *a.cgroup).c_str(), F_OK) == 0
                 ? " (a cgroup v2 directory whose parent has not enabled the memory controller in "
                   "cgroup.subtree_control?)"
                 : " (no such cgroup directory)";
    return failure{why, e == ENOENT};
  }
  auto parsed =
      sysfs::parse_cgroup_numa_stat(*text, sysfs::max_node_id, static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)));
  if (!parsed) return failure{path + ": " + parsed.error().message};
  auto add = [&](std::string_view key, std::uint64_t node_usage::*field) {
    if (const auto *e = parsed->find(key))
      for (auto [node, bytes] : e->per_node) out.at(node).*field += bytes;
  };
  // v1 lists the cgroup alone and with its descendants (hierarchical_*); v2 counts descendants.
  add(parsed->find("hierarchical_anon") ? "hierarchical_anon" : "anon", &node_usage::anon);
  add(parsed->find("hierarchical_file") ? "hierarchical_file" : "file", &node_usage::file);  // includes shmem
  for (auto key : {"kernel_stack", "pagetables", "sec_pagetables", "slab_reclaimable", "slab_unreclaimable"})
    add(key, &node_usage::kernel);
  if (!parsed->find("anon") && !parsed->find("file")) return failure{path + ": neither 'anon' nor 'file' is listed"};
  return std::nullopt;
}

// The kernel's promotion and demotion counters of every node: promotions are NUMA balancing's
// (tiering mode), demotions reclaim's (kswapd, direct, khugepaged, proactive); pages DAMON's
// migrate_hot/migrate_cold schemes move count in neither (their schemes' own stats do). Nodes
// whose vmstat lacks them (kernels before 5.18) are left out.
void read_kernel_moves(const stat_args &a, const topology &t, sample &out) {
  for (const auto &n : t.nodes) {
    auto text = sysfs::read_text_file(under_root(a.root, fmt::format("/sys/devices/system/node/node{}/vmstat", n.id)),
                                      std::size_t{1} << 16);
    if (!text) {
      // No file: a kernel or tree without it, nothing to say. Anything else is named.
      if (text.error().code != ENOENT)
        out.kernel_moves_unread.push_back(fmt::format("node{}/vmstat: {}", n.id, text.error().message));
      continue;
    }
    auto v = sysfs::parse_vmstat(*text);
    if (!v) {
      out.kernel_moves_unread.push_back(fmt::format("node{}/vmstat: {}", n.id, v.error().message));
      continue;
    }
    if (!v->find("pgpromote_success") && !v->find("pgdemote_kswapd")) continue;
    node_moves m;
    m.node = n.id;
    m.promoted = v->find("pgpromote_success").value_or(0);
    m.promote_candidates = v->find("pgpromote_candidate").value_or(0);
    m.demoted_kswapd = v->find("pgdemote_kswapd").value_or(0);
    m.demoted_direct = v->find("pgdemote_direct").value_or(0);
    m.demoted_other = v->find("pgdemote_khugepaged").value_or(0) + v->find("pgdemote_proactive").value_or(0);
    out.kernel_moves.push_back(m);
  }
}

// Where a process last ran: field 39 of /proc/PID/stat (after the ')' that ends its name).
std::optional<std::uint32_t> last_cpu(const stat_args &a) {
  auto text = sysfs::read_text_file(under_root(a.root, fmt::format("/proc/{}/stat", *a.pid)), 4096);
  if (!text) return std::nullopt;
  const auto field = sysfs::find_stat_field(*text, 39);
  if (!field) return std::nullopt;
  auto v = sysfs::parse_uint64(*field);
  if (v && *v <= sysfs::max_cpu_id) return static_cast<std::uint32_t>(*v);
  return std::nullopt;
}

std::string comm_of(const stat_args &a) {
  auto text = sysfs::read_text_file(under_root(a.root, fmt::format("/proc/{}/comm", *a.pid)), 4096);
  if (!text) return "?";
  return std::string(sysfs::trim(*text));
}

struct view_info {
  const initiator_view *view = nullptr;
  std::string why;
};

view_info choose_view(const stat_args &a, const topology &t) {
  if (a.pid)
    if (auto cpu = last_cpu(a))
      if (const auto *v = t.initiator_for_cpu(*cpu))
        return {v, fmt::format("ranks as seen from node {} (CPU {}, where it last ran)", v->node, *cpu)};
  if (a.root.empty())
    if (const auto *v = t.initiator_for_calling_thread())
      return {v, fmt::format("ranks as seen from node {}, where this command runs", v->node)};
  if (!t.initiators.empty())
    return {&t.initiators.front(), fmt::format("ranks as seen from node {}", t.initiators.front().node)};
  return {nullptr, "no initiator to rank from"};
}

std::string kind_of(const topology &t, std::uint32_t node) {
  const node_info *n = t.find(node);
  return n ? std::string(to_string(n->kind)) : "?";
}

std::string percent(std::uint64_t part, std::uint64_t whole) {
  return whole ? fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) / static_cast<double>(whole)) : "-";
}

std::string signed_bytes(std::int64_t d) {
  if (d == 0) return "0";
  return (d > 0 ? "+" : "-") + format_bytes(static_cast<std::uint64_t>(d > 0 ? d : -d));
}

// Tiers (the view's rank groups) with the bytes on their nodes; nodes no rank covers go last.
struct tier_total {
  std::string label;
  std::optional<std::uint32_t> rank;
  std::vector<std::uint32_t> nodes;
  std::uint64_t bytes = 0;
};

std::vector<tier_total> by_tier(const sample &s, const topology &t, const initiator_view *v) {
  std::vector<tier_total> out;
  std::vector<std::uint32_t> covered;
  if (v)
    for (const auto &g : v->tiers) {
      tier_total tt{std::string(to_string(g.kind)), g.rank, g.nodes, 0};
      for (const auto &n : s.nodes)
        if (std::find(g.nodes.begin(), g.nodes.end(), n.node) != g.nodes.end()) tt.bytes += n.total();
      covered.insert(covered.end(), g.nodes.begin(), g.nodes.end());
      if (tt.bytes) out.push_back(tt);
    }
  for (const auto &n : s.nodes)
    if (std::find(covered.begin(), covered.end(), n.node) == covered.end() && n.total())
      out.push_back({kind_of(t, n.node), std::nullopt, {n.node}, n.total()});
  return out;
}

std::string nodes_text(const std::vector<std::uint32_t> &nodes) {
  std::string s;
  for (auto n : nodes) s += (s.empty() ? "" : ",") + std::to_string(n);
  return s;
}

std::string render_text(const stat_args &a, const sample &s, const sample *prev, const topology &t, const view_info &vi,
                        const std::string &title) {
  const bool cg = a.cgroup.has_value();
  std::string out = title + "\n";
  out += fmt::format("{} on {} node{}; {}.\n", format_bytes(s.total()), s.nodes.size(), s.nodes.size() == 1 ? "" : "s",
                     vi.why);
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> head{"NODE", "KIND", "RANK", "ANON", "FILE"};
  if (cg) head.emplace_back("KERNEL");
  head.insert(head.end(), {"TOTAL", "SHARE"});
  if (prev) head.emplace_back("CHANGE");
  rows.push_back(head);
  for (const auto &n : s.nodes) {
    auto r = rank_of(vi.view, n.node);
    std::vector<std::string> row{std::to_string(n.node), kind_of(t, n.node), r ? std::to_string(*r) : "-",
                                 format_bytes(n.anon), format_bytes(n.file)};
    if (cg) row.push_back(format_bytes(n.kernel));
    row.insert(row.end(), {format_bytes(n.total()), percent(n.total(), s.total())});
    if (prev) {
      std::uint64_t before = 0;
      for (const auto &p : prev->nodes)
        if (p.node == n.node) before = p.total();
      row.push_back(signed_bytes(static_cast<std::int64_t>(n.total()) - static_cast<std::int64_t>(before)));
    }
    rows.push_back(row);
  }
  out += render_table(rows, 3);  // numbers right-aligned, names left
  if (s.nodes.empty()) out += "(nothing resident)\n";
  const auto tiers = by_tier(s, t, vi.view);
  if (!tiers.empty()) {
    std::string line;
    for (const auto &tt : tiers)
      line += fmt::format("{}{} {} (node{} {}) {} {}", line.empty() ? "" : "; ",
                          tt.rank ? fmt::format("rank {}", *tt.rank) : std::string("unranked"), tt.label,
                          tt.nodes.size() == 1 ? "" : "s", nodes_text(tt.nodes), format_bytes(tt.bytes),
                          percent(tt.bytes, s.total()));
    out += "By tier: " + line + "\n";
  }
  if (!s.policies.empty()) {
    std::string line;
    for (const auto &[policy, bytes] : s.policies)
      if (bytes) line += (line.empty() ? "" : "; ") + policy + " " + format_bytes(bytes);
    if (!line.empty()) out += "By memory policy: " + line + "\n";
  }
  const bool any_moves = std::any_of(s.kernel_moves.begin(), s.kernel_moves.end(),
                                     [](const node_moves &m) { return m.promoted || m.demoted(); });
  if (s.kernel_moves.size() > 1 || any_moves) {  // one node that never moved anything: nothing to say
    // Whole machine, not this target: the kernel does not count moves per process.
    out += "The kernel's own tiering, whole machine (nodeN/vmstat, pages since boot";
    out += prev ? ", change since the last sample in brackets):\n" : "):\n";
    std::vector<std::vector<std::string>> moves{
        {"NODE", "PROMOTED TO", "CANDIDATES", "DEMOTED FROM", "BY KSWAPD", "DIRECT", "OTHER"}};
    for (const auto &m : s.kernel_moves) {
      const node_moves *before = nullptr;
      if (prev)
        for (const auto &p : prev->kernel_moves)
          if (p.node == m.node) before = &p;
      // A count, and under --watch its change since the last sample.
      auto cell = [&](std::uint64_t now, std::uint64_t then) {
        return before ? fmt::format("{} (+{})", now, now >= then ? now - then : 0) : std::to_string(now);
      };
      const node_moves b = before ? *before : node_moves{};
      moves.push_back({std::to_string(m.node), cell(m.promoted, b.promoted),
                       cell(m.promote_candidates, b.promote_candidates), cell(m.demoted(), b.demoted()),
                       cell(m.demoted_kswapd, b.demoted_kswapd), cell(m.demoted_direct, b.demoted_direct),
                       cell(m.demoted_other, b.demoted_other)});
    }
    out += render_table(moves, 1);
  }
  for (const auto &why : s.kernel_moves_unread) out += "Not counted: " + why + "\n";
  return out;
}

ojson render_json(const stat_args &a, const sample &s, const topology &t, const view_info &vi,
                  std::optional<double> elapsed, std::uint64_t index) {
  ojson j;
  j["schema"] = "hetmem.stat/1";
  if (a.pid)
    j["target"] = {{"pid", *a.pid}, {"comm", comm_of(a)}};
  else
    j["target"] = {{"cgroup", *a.cgroup}};
  if (elapsed) {
    j["sample"] = index;
    j["elapsed_s"] = std::round(*elapsed * 1000.0) / 1000.0;
  }
  j["ranked_for_initiator"] = vi.view ? ojson(vi.view->node) : ojson(nullptr);
  j["total_bytes"] = s.total();
  ojson nodes = ojson::array();
  for (const auto &n : s.nodes) {
    auto r = rank_of(vi.view, n.node);
    ojson o{{"node", n.node},
            {"kind", kind_of(t, n.node)},
            {"rank", r ? ojson(*r) : ojson(nullptr)},
            {"anon_bytes", n.anon},
            {"file_bytes", n.file}};
    if (a.cgroup) o["kernel_bytes"] = n.kernel;
    o["total_bytes"] = n.total();
    nodes.push_back(o);
  }
  j["nodes"] = nodes;
  ojson tiers = ojson::array();
  for (const auto &tt : by_tier(s, t, vi.view))
    tiers.push_back({{"rank", tt.rank ? ojson(*tt.rank) : ojson(nullptr)},
                     {"kind", tt.label},
                     {"nodes", tt.nodes},
                     {"total_bytes", tt.bytes}});
  j["tiers"] = tiers;
  if (a.pid) {
    ojson pol = ojson::array();
    for (const auto &[policy, bytes] : s.policies) pol.push_back({{"policy", policy}, {"bytes", bytes}});
    j["policies"] = pol;
    j["mappings"] = s.mappings;
  }
  // Whole machine, counted by the kernel since boot (pages).
  ojson moves = ojson::array();
  for (const auto &m : s.kernel_moves)
    moves.push_back({{"node", m.node},
                     {"pgpromote_success", m.promoted},
                     {"pgpromote_candidate", m.promote_candidates},
                     {"pgdemote_kswapd", m.demoted_kswapd},
                     {"pgdemote_direct", m.demoted_direct},
                     {"pgdemote_other", m.demoted_other}});
  j["kernel_moves"] = moves;
  j["kernel_moves_unread"] = s.kernel_moves_unread;
  return j;
}

}  // namespace

int run_stat(const stat_args &a) {
  if (a.pid.has_value() == a.cgroup.has_value()) {
    std::fprintf(stderr, "hetmem stat: name a process (PID) or a cgroup (--cgroup PATH), one of the two\n");
    return exit_usage;
  }
  if (a.pid && *a.pid <= 0) {
    std::fprintf(stderr, "hetmem stat: PID must be a positive number, not %d\n", *a.pid);
    return exit_usage;
  }
  if (a.watch && !(*a.watch >= 0.05 && *a.watch <= 86400)) {
    std::fprintf(stderr, "hetmem stat: --watch takes seconds between 0.05 and 86400, not %g\n", *a.watch);
    return exit_usage;
  }
  if (a.count && !a.watch) {
    std::fprintf(stderr, "hetmem stat: --count goes with --watch\n");
    return exit_usage;
  }
  load_options lo;
  lo.root = a.root;
  auto topo = load_topology(lo);
  if (!topo) {
    std::fprintf(stderr, "hetmem stat: cannot read the memory topology: %s\n", topo.error().message.c_str());
    return exit_failure;
  }
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  if (a.watch) {
    struct sigaction sa {};
    sa.sa_handler = stat_stop_signal;  // no SA_RESTART: the sleep ends at once
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
  }
  const auto start = std::chrono::steady_clock::now();
  std::optional<sample> prev;
  std::uint64_t index = 0;
  while (true) {
    sample s;
    auto fail = a.pid ? read_process(a, s) : read_cgroup(a, s);
    if (fail) {
      if (index > 0 && fail->gone) {  // watched it to its end
        if (!a.json)
          std::printf("%s: gone; stopping\n", a.pid ? fmt::format("process {}", *a.pid).c_str() : a.cgroup->c_str());
        return exit_ok;
      }
      std::fprintf(stderr, "hetmem stat: %s\n", fail->message.c_str());
      return exit_failure;
    }
    read_kernel_moves(a, *topo, s);
    const auto vi = choose_view(a, *topo);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (a.json) {
      auto j = render_json(a, s, *topo, vi, a.watch ? std::optional<double>(elapsed) : std::nullopt, index);
      std::string text = a.watch ? j.dump() : j.dump(2);  // JSON lines when watching
      std::printf("%s\n", text.c_str());
    } else {
      std::string title = a.pid
                              ? fmt::format("hetmem stat: process {} ({}), {} mappings", *a.pid, comm_of(a), s.mappings)
                              : fmt::format("hetmem stat: cgroup {}", *a.cgroup);
      if (a.watch)
        title += fmt::format(" — sample {} at {:.1f} s (every {:g} s; Ctrl-C stops)", index + 1, elapsed, *a.watch);
      if (a.watch && tty)
        std::fputs("\x1b[H\x1b[2J", stdout);
      else if (index > 0)
        std::fputs("\n", stdout);
      std::fputs(render_text(a, s, prev ? &*prev : nullptr, *topo, vi, title).c_str(), stdout);
    }
    std::fflush(stdout);
    ++index;
    if (!a.watch || (a.count && index >= *a.count)) return exit_ok;
    prev = std::move(s);
    const auto until = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                   std::chrono::duration<double>(*a.watch * static_cast<double>(index)));
    while (!stop_requested && std::chrono::steady_clock::now() < until) {
      const std::chrono::steady_clock::duration left = until - std::chrono::steady_clock::now();
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(100)));
    }
    if (stop_requested) return exit_ok;
  }
}

}  // namespace hetmem::cli
