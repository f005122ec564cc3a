// topo_render.cpp — `hetmem topo` output: the table a person reads, and the JSON a program reads.
#include "topo_render.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "hetmem/format.hpp"

namespace hetmem::cli {
namespace {

using ojson = nlohmann::ordered_json;

std::string opt_ns(const std::optional<std::uint64_t> &v) { return v ? std::to_string(*v) + " ns" : "-"; }
std::string opt_bw(const std::optional<std::uint64_t> &v) { return v ? format_bandwidth_mbps(*v) : "-"; }
std::string opt_bytes(const std::optional<std::uint64_t> &v) { return v ? format_bytes(*v) : "-"; }

std::string tier_text(const tier_group &g) {
  std::string nodes;
  for (auto n : g.nodes) nodes += (nodes.empty() ? "" : ",") + std::to_string(n);
  return fmt::format("[{} {}{}]", nodes, to_string(g.kind), g.local ? "*" : "");
}

std::string cache_column(const node_info &n) {
  return n.memory_side_cache_bytes ? format_bytes(*n.memory_side_cache_bytes) : "-";
}

}  // namespace

std::optional<std::uint32_t> rank_of(const initiator_view *view, std::uint32_t node) {
  if (!view) return std::nullopt;
  for (const auto &g : view->tiers)
    if (std::find(g.nodes.begin(), g.nodes.end(), node) != g.nodes.end()) return g.rank;
  return std::nullopt;
}

const initiator_view *pick_view(const topology &t, const view_choice &choice, std::string &why) {
  if (choice.initiator_node) {
    why = fmt::format("as seen from node {} (--initiator)", *choice.initiator_node);
    return t.initiator(*choice.initiator_node);
  }
  if (choice.cpu) {
    why = fmt::format("as seen from CPU {} (--cpu)", *choice.cpu);
    return t.initiator_for_cpu(*choice.cpu);
  }
  if (const auto *v = t.initiator_for_calling_thread()) {
    why = fmt::format("as seen from node {} (CPUs {}), where this command runs", v->node, v->cpus.to_string());
    return v;
  }
  if (!t.initiators.empty()) {
    const auto &v = t.initiators.front();
    why = fmt::format("as seen from node {} (CPUs {}), the first initiator", v.node,
                      v.cpus.empty() ? "-" : v.cpus.to_string());
    return &v;
  }
  why = "no initiator";
  return nullptr;
}

std::string summary_line(const topology &t) {
  const auto &s = t.snapshot;
  std::size_t mem_nodes = 0, cpu_nodes = 0;
  std::uint64_t total = 0;
  for (const auto &n : t.nodes) {
    mem_nodes += n.has_memory ? 1u : 0u;
    cpu_nodes += n.cpus.empty() ? 0u : 1u;
    total += n.capacity_bytes.value_or(0);
  }
  std::string tiers = "not reported";
  if (s.memory_tiers_reported) {
    tiers.clear();
    for (const auto &mt : s.memory_tiers)
      tiers += (tiers.empty() ? "" : "  ") + fmt::format("tier{}: {}", mt.id, mt.nodes.to_string());
    if (tiers.empty()) tiers = "none";
  }
  std::string hmat = t.hmat_reported ? fmt::format("reported (access{})", t.hmat_access_class) : "not reported";
  return fmt::format("{} node{} ({} with memory, {} with CPUs), {} of memory. HMAT: {}. Kernel memory tiers: {}.",
                     t.nodes.size(), t.nodes.size() == 1 ? "" : "s", mem_nodes, cpu_nodes, format_bytes(total), hmat,
                     tiers);
}

std::string render_text(const topology &t, const render_options &opt) {
  std::string out;
  const auto &s = t.snapshot;
  out += fmt::format("hetmem topo: {}\n", t.root);
  out += summary_line(t) + "\n";
  if (opt.hwloc_note) out += *opt.hwloc_note + "\n";
  if (t.probe)
    out += fmt::format("Measured performance: {}, from node {}{} (LAT, BW: latency, read bandwidth).\n", t.probe_origin,
                       t.probe->initiator, t.probe->taken_at.empty() ? std::string() : ", " + t.probe->taken_at);
  std::string why;
  const initiator_view *view = pick_view(t, opt.view, why);
  out += fmt::format("Ranks {}.\n\n", why);

  std::vector<std::vector<std::string>> rows;
  rows.push_back({"NODE", "KIND", "CONF", "RANK", "SIZE", "FREE", "RD LAT", "WR LAT", "RD BW", "WR BW", "CPUS",
                  "LOCAL TO", "KTIER", "MS-CACHE"});
  if (t.probe) {
    rows.back().emplace_back("LAT");
    rows.back().emplace_back("BW");
  }
  for (const auto &n : t.nodes) {
    auto rank = rank_of(view, n.id);
    const auto &p = n.performance;
    rows.push_back({std::to_string(n.id) + (n.allowed ? "" : "!"), std::string(to_string(n.kind)),
                    std::string(to_string(n.certainty)), rank ? std::to_string(*rank) : "-",
                    n.has_memory ? opt_bytes(n.capacity_bytes) : "0", n.has_memory ? opt_bytes(n.free_bytes) : "-",
                    opt_ns(p.read_latency_ns), opt_ns(p.write_latency_ns), opt_bw(p.read_bandwidth_mbps),
                    opt_bw(p.write_bandwidth_mbps), n.cpus.empty() ? "-" : n.cpus.to_string(),
                    n.has_memory && !n.local_initiators.empty() ? n.local_initiators.to_string() : "-",
                    n.kernel_tier ? std::to_string(*n.kernel_tier) : "-", cache_column(n)});
    if (t.probe) {
      const auto &m = n.measured;
      rows.back().push_back(m && m->latency_ns ? fmt::format("{:.0f} ns", *m->latency_ns) : "-");
      rows.back().push_back(m && m->read_mbps ? format_bandwidth_mbps(static_cast<std::uint64_t>(*m->read_mbps)) : "-");
    }
  }
  out += render_table(rows);
  bool any_disallowed = std::any_of(t.nodes.begin(), t.nodes.end(), [](const node_info &n) { return !n.allowed; });
  if (any_disallowed) out += "(! = outside this process's cpuset)\n";

  out += "\nWhy:\n";
  for (const auto &n : t.nodes) {
    if (opt.explain) {
      out += fmt::format("  node {}: {} ({} confidence)\n", n.id, to_string(n.kind), to_string(n.certainty));
      for (const auto &r : n.reasons) out += fmt::format("    [{}] {}\n", to_string(r.source), r.text);
      for (const auto &d : n.disagreements) out += fmt::format("    DISAGREES: {}\n", d);
    } else {
      out += fmt::format("  node {:<4} {:<7} {}{}\n", n.id, to_string(n.kind),
                         n.reasons.empty() ? "-" : n.reasons.front().text,
                         n.disagreements.empty() ? "" : fmt::format(" (disagreement: {})", n.disagreements.front()));
    }
  }

  out += "\nTier order per initiator (best first; * = local):\n";
  for (const auto &iv : t.initiators) {
    std::string line;
    for (const auto &g : iv.tiers) line += (line.empty() ? "" : " > ") + tier_text(g);
    out += fmt::format("  node {} (CPUs {}): {}\n", iv.node, iv.cpus.empty() ? "-" : iv.cpus.to_string(), line);
  }

  if (opt.explain) {
    out += "\nKernel:\n";
    out += fmt::format("  demotion_enabled: {}\n",
                       s.demotion_enabled ? (*s.demotion_enabled ? "true" : "false") : "not reported");
    if (s.numa_balancing) {
      std::string mode = *s.numa_balancing == 0 ? "disabled" : "";
      if (*s.numa_balancing & 1) mode += "normal";
      if (*s.numa_balancing & 2) mode += std::string(mode.empty() ? "" : "+") + "memory tiering";
      out += fmt::format("  numa_balancing: {} ({})\n", *s.numa_balancing, mode);
    } else {
      out += "  numa_balancing: not reported\n";
    }
    if (opt.kernel) {
      const auto &k = *opt.kernel;
      if (k.kernel_promotes())
        out += fmt::format(
            "  promotion (tiering mode): rate limit {}, hot threshold {}\n",
            k.promote_rate_limit_mbps >= 0 ? fmt::format("{} MB/s", k.promote_rate_limit_mbps)
                                           : std::string("not reported"),
            k.hot_threshold_ms >= 0 ? fmt::format("{} ms", k.hot_threshold_ms) : std::string("not readable (debugfs)"));
      out +=
          fmt::format("  per-node proactive reclaim (nodeN/reclaim): {}\n", k.node_reclaim ? "offered" : "not offered");
    }
    if (s.memory_tiers_reported) out += fmt::format("  memory tiers: {}\n", describe_memory_tiers(s));
    if (s.weighted_interleave.present) {
      std::string w;
      for (auto [node, weight] : s.weighted_interleave.weights) w += fmt::format(" {}:{}", node, weight);
      const auto check = check_interleave_weights(t);
      out +=
          fmt::format("  weighted interleave: auto={}, weights{}{}\n",
                      s.weighted_interleave.auto_mode ? (*s.weighted_interleave.auto_mode ? "true" : "false") : "n/a",
                      w.empty() ? " none" : w, check.comparable ? "; " + check.shares_text() : std::string());
    } else {
      out += "  weighted interleave: not available (Linux 6.9+)\n";
    }
    out +=
        fmt::format("  cpuset mems: {}\n",
                    s.allowed_mems ? s.allowed_mems->to_string() + " (" + s.allowed_mems_source + ")" : "not reported");
    std::string cpu = s.cpu.model_name.empty() ? s.cpu.vendor : s.cpu.model_name;
    out += fmt::format("  CPU: {}\n", cpu.empty() ? "not reported" : cpu);
    if (opt.kernel) {
      const auto &k = *opt.kernel;
      std::string modules;
      for (auto [on, name] : {std::pair{k.damon_stat, "DAMON_STAT"}, std::pair{k.damon_reclaim, "DAMON_RECLAIM"},
                              std::pair{k.damon_lru_sort, "DAMON_LRU_SORT"}})
        if (on) modules += fmt::format("{}{}", modules.empty() ? "" : ", ", name);
      if (k.damon_sysfs)
        out += fmt::format("  DAMON: {} kdamond(s) configured, {} running; modules on: {}\n", k.damon_kdamonds,
                           k.damon_running, modules.empty() ? "none" : modules);
      else
        out += "  DAMON: no sysfs interface (/sys/kernel/mm/damon/admin)\n";
      for (const auto &scheme : k.damon_schemes) out += "    " + scheme + "\n";
    }
  }

  if (!t.notes.empty()) {
    out += "\nNotes:\n";
    for (const auto &n : t.notes) out += "  - " + n + "\n";
  }
  if (!s.diagnostics.empty()) {
    out += "\nDiagnostics (files that could not be used):\n";
    for (const auto &d : s.diagnostics) out += fmt::format("  {}: {}\n", d.path, d.message);
  }
  return out;
}

std::string render_json(const topology &t, const render_options &opt) {
  const auto &s = t.snapshot;
  auto opt_u = [](const std::optional<std::uint64_t> &v) { return v ? ojson(*v) : ojson(nullptr); };
  auto ids = [](const sysfs::id_set &set) {
    ojson a = ojson::array();
    for (auto id : set.to_vector()) a.push_back(id);
    return a;
  };
  ojson j;
  j["schema"] = "hetmem.topo/1";
  j["root"] = t.root;
  j["hmat"] = {{"reported", t.hmat_reported},
               {"access_class", t.hmat_access_class >= 0 ? ojson(t.hmat_access_class) : ojson(nullptr)}};
  ojson kernel;
  if (s.memory_tiers_reported) {
    ojson tiers = ojson::array();
    for (const auto &mt : s.memory_tiers)
      tiers.push_back({{"id", mt.id},
                       {"nodes", ids(mt.nodes)},
                       {"abstract_distance", {mt.first_abstract_distance(), mt.last_abstract_distance()}}});
    kernel["memory_tiers"] = tiers;
  } else {
    kernel["memory_tiers"] = nullptr;
  }
  kernel["demotion_enabled"] = s.demotion_enabled ? ojson(*s.demotion_enabled) : ojson(nullptr);
  kernel["numa_balancing"] = s.numa_balancing ? ojson(*s.numa_balancing) : ojson(nullptr);
  if (s.weighted_interleave.present) {
    ojson w = ojson::object();
    for (auto [node, weight] : s.weighted_interleave.weights) w[std::to_string(node)] = weight;
    kernel["weighted_interleave"] = {
        {"auto", s.weighted_interleave.auto_mode ? ojson(*s.weighted_interleave.auto_mode) : ojson(nullptr)},
        {"weights", w}};
  } else {
    kernel["weighted_interleave"] = nullptr;
  }
  kernel["numa_fake"] = s.numa_fake;
  if (s.weighted_interleave.present) {
    const auto check = check_interleave_weights(t);
    ojson shares = ojson::object();
    for (const auto &n : check.nodes)
      shares[std::to_string(n.node)] = {{"pages_percent", n.page_share}, {"hmat_bandwidth_percent", n.bandwidth_share}};
    kernel["weighted_interleave"]["shares"] = check.comparable ? shares : ojson(nullptr);
    kernel["weighted_interleave"]["match_hmat"] = check.comparable ? ojson(!check.differ) : ojson(nullptr);
  }
  if (opt.kernel) {
    const auto &k = *opt.kernel;
    auto known = [](int v) { return v >= 0 ? ojson(v) : ojson(nullptr); };
    kernel["numa_balancing_promote_rate_limit_mbps"] = known(k.promote_rate_limit_mbps);
    kernel["hot_threshold_ms"] = known(k.hot_threshold_ms);
    kernel["node_reclaim"] = k.node_reclaim;
    kernel["damon"] = k.damon_sysfs ? ojson{{"kdamonds", k.damon_kdamonds},     {"running", k.damon_running},
                                            {"schemes", k.damon_schemes},       {"damon_stat", k.damon_stat},
                                            {"damon_reclaim", k.damon_reclaim}, {"damon_lru_sort", k.damon_lru_sort}}
                                    : ojson(nullptr);
  }
  j["kernel"] = kernel;
  j["cpu"] = {{"vendor", s.cpu.vendor},
              {"model_name", s.cpu.model_name},
              {"family", s.cpu.family ? ojson(*s.cpu.family) : ojson(nullptr)},
              {"model", s.cpu.model ? ojson(*s.cpu.model) : ojson(nullptr)}};
  j["allowed_mems"] = s.allowed_mems ? ids(*s.allowed_mems) : ojson(nullptr);
  std::string why;
  const initiator_view *view = pick_view(t, opt.view, why);
  j["ranked_for_initiator"] = view ? ojson(view->node) : ojson(nullptr);

  ojson nodes = ojson::array();
  for (const auto &n : t.nodes) {
    const auto &p = n.performance;
    ojson node;
    node["id"] = n.id;
    node["kind"] = std::string(to_string(n.kind));
    node["confidence"] = std::string(to_string(n.certainty));
    auto rank = rank_of(view, n.id);
    node["rank"] = rank ? ojson(*rank) : ojson(nullptr);
    node["cpus"] = n.cpus.to_string();
    node["cpu_count"] = n.cpus.count();
    node["generic_initiator"] = n.is_generic_initiator;
    node["has_memory"] = n.has_memory;
    node["capacity_bytes"] = opt_u(n.capacity_bytes);
    node["free_bytes"] = opt_u(n.free_bytes);
    node["performance"] = p.access_class < 0 ? ojson(nullptr)
                                             : ojson{{"access_class", p.access_class},
                                                     {"read_latency_ns", opt_u(p.read_latency_ns)},
                                                     {"write_latency_ns", opt_u(p.write_latency_ns)},
                                                     {"read_bandwidth_mbps", opt_u(p.read_bandwidth_mbps)},
                                                     {"write_bandwidth_mbps", opt_u(p.write_bandwidth_mbps)}};
    auto opt_d = [](const std::optional<double> &v) { return v ? ojson(*v) : ojson(nullptr); };
    node["measured"] = !n.measured ? ojson(nullptr)
                                   : ojson{{"latency_ns", opt_d(n.measured->latency_ns)},
                                           {"read_mbps", opt_d(n.measured->read_mbps)},
                                           {"write_mbps", opt_d(n.measured->write_mbps)}};
    node["local_initiators"] = ids(n.local_initiators);
    ojson caches = ojson::array();
    for (const auto &c : n.memory_side_caches)
      caches.push_back({{"index", c.index},
                        {"size_bytes", opt_u(c.size_bytes)},
                        {"line_size_bytes", opt_u(c.line_size_bytes)},
                        {"indexing", c.indexing ? ojson(*c.indexing) : ojson(nullptr)},
                        {"write_policy", c.write_policy ? ojson(*c.write_policy) : ojson(nullptr)}});
    node["memory_side_caches"] = caches;
    node["memory_side_cache_note"] =
        n.memory_side_cache_note.empty() ? ojson(nullptr) : ojson(n.memory_side_cache_note);
    node["kernel_memory_tier"] = n.kernel_tier ? ojson(*n.kernel_tier) : ojson(nullptr);
    node["dax_devices"] = n.dax_devices;
    node["gpu"] = n.gpu.empty() ? ojson(nullptr) : ojson(n.gpu);
    node["allowed"] = n.allowed;
    ojson dist = ojson::object();
    for (const auto &other : t.nodes)
      if (auto d = s.distance(n.id, other.id)) dist[std::to_string(other.id)] = *d;
    node["distances"] = dist;
    ojson reasons = ojson::array();
    for (const auto &r : n.reasons) reasons.push_back({{"source", std::string(to_string(r.source))}, {"text", r.text}});
    node["reasons"] = reasons;
    node["disagreements"] = n.disagreements;
    nodes.push_back(node);
  }
  j["nodes"] = nodes;

  ojson inits = ojson::array();
  for (const auto &iv : t.initiators) {
    ojson tiers = ojson::array();
    for (const auto &g : iv.tiers)
      tiers.push_back({{"rank", g.rank},
                       {"kind", std::string(to_string(g.kind))},
                       {"local", g.local},
                       {"distance", g.distance ? ojson(*g.distance) : ojson(nullptr)},
                       {"nodes", g.nodes}});
    inits.push_back({{"node", iv.node}, {"cpus", iv.cpus.to_string()}, {"tiers", tiers}});
  }
  j["initiators"] = inits;
  j["probe"] = !t.probe ? ojson(nullptr)
                        : ojson{{"origin", t.probe_origin},
                                {"initiator", t.probe->initiator},
                                {"cpus", t.probe->cpus.to_string()},
                                {"threads", t.probe->threads},
                                {"buffer_bytes", t.probe->buffer_bytes},
                                {"taken", t.probe->taken_at.empty() ? ojson(nullptr) : ojson(t.probe->taken_at)}};
  j["notes"] = t.notes;
  ojson diags = ojson::array();
  for (const auto &d : s.diagnostics) diags.push_back({{"path", d.path}, {"message", d.message}, {"errno", d.code}});
  j["diagnostics"] = diags;
  if (opt.hwloc_note) j["hwloc"] = *opt.hwloc_note;
  return j.dump(2) + "\n";
}

}  // namespace hetmem::cli
