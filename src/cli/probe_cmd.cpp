// probe_cmd.cpp — `hetmem probe [--initiator N | --cpu C] [--nodes LIST] [--size S] [--save FILE]`.
#include "probe_cmd.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "hetmem/format.hpp"
#include "hetmem/policy.hpp"
#include "hetmem/probe.hpp"
#include "hetmem/sysfs/model.hpp"
#include "hetmem/sysfs/parse.hpp"

namespace hetmem::cli {
namespace {

using ojson = nlohmann::ordered_json;

std::string ratio_text(const std::optional<double> &r) { return r ? format_ratio(*r) : ""; }

std::string latency_text(const std::optional<double> &ns) { return ns ? fmt::format("{:.0f} ns", *ns) : "-"; }

std::string bandwidth_text(const std::optional<double> &mbps) {
  return mbps ? format_bandwidth_mbps(static_cast<std::uint64_t>(std::llround(*mbps))) : "-";
}

// Writes `text` to `path` through a temporary file renamed over it, so a failed write never
// leaves half a report behind.
result<void> save_text(const std::string &path, const std::string &text) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  FILE *f = std::fopen(tmp.c_str(), "we");
  if (!f) return error{errno, "cannot write " + tmp + ": " + std::strerror(errno)};
  const bool wrote = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const int werr = errno;
  if (std::fclose(f) != 0 || !wrote) {
    const int err = wrote ? errno : werr;
    std::remove(tmp.c_str());
    return error{err, "cannot write " + tmp + ": " + std::strerror(err)};
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return error{err, "cannot rename " + tmp + " to " + path + ": " + std::strerror(err)};
  }
  return {};
}

}  // namespace

int run_probe(const probe_args &a) {
  if (a.latency_only && a.bandwidth_only) {
    std::fprintf(stderr, "hetmem probe: --latency-only and --bandwidth-only exclude each other\n");
    return exit_usage;
  }
  if (!(a.seconds > 0 && a.seconds <= 60)) {
    std::fprintf(stderr, "hetmem probe: --time %g: give seconds per measurement, above 0 and at most 60\n", a.seconds);
    return exit_usage;
  }
  if (a.threads > 4096) {
    std::fprintf(stderr, "hetmem probe: --threads %u: at most 4096\n", a.threads);
    return exit_usage;
  }
  probe_options o;
  o.initiator = a.initiator;
  o.cpu = a.cpu;
  o.threads = a.threads;
  o.seconds_per_measurement = a.seconds;
  o.latency = !a.bandwidth_only;
  o.bandwidth = !a.latency_only;
  if (a.nodes) {
    auto set = sysfs::parse_id_list(*a.nodes, sysfs::max_node_id);
    if (!set || set->empty()) {
      std::fprintf(stderr, "hetmem probe: --nodes '%s': %s\n", a.nodes->c_str(),
                   set ? "no node given" : set.error().message.c_str());
      return exit_usage;
    }
    o.nodes = *set;
  }
  if (a.size) {
    auto bytes = policy::parse_size(*a.size);
    if (!bytes || *bytes < (2u << 20) || *bytes > (std::uint64_t{256} << 30)) {
      std::fprintf(stderr, "hetmem probe: --size '%s': %s\n", a.size->c_str(),
                   bytes ? "give 2M to 256G" : bytes.error().message.c_str());
      return exit_usage;
    }
    o.buffer_bytes = static_cast<std::size_t>(*bytes);
  }
  load_options lo;
  lo.probe_file = "";  // measure against HMAT alone, not against an earlier probe
  auto topo = load_topology(lo);
  if (!topo) {
    std::fprintf(stderr, "hetmem probe: %s\n", topo.error().message.c_str());
    return exit_failure;
  }
  const bool bar = a.progress || ::isatty(2) == 1;
  if (bar) {
    o.progress = [last = -1](double fraction, std::string_view step) mutable {
      const int percent = static_cast<int>(fraction * 100);
      if (percent == last) return;
      last = percent;
      const int width = 30;
      const int filled = static_cast<int>(fraction * width);
      std::fprintf(stderr, "\r[%-*.*s] %3d%% %-32.*s", width, filled, "##############################", percent,
                   static_cast<int>(std::min<std::size_t>(step.size(), 32)), step.data());
      std::fflush(stderr);
    };
  }
  auto outcome = hetmem::run_probe(*topo, o);
  if (bar) std::fputc('\n', stderr);
  if (!outcome) {
    std::fprintf(stderr, "hetmem probe: %s\n", outcome.error().message.c_str());
    return outcome.error().code == EINVAL ? exit_usage : exit_failure;
  }
  const auto &rep = outcome->report;
  const auto cmp = compare_with_hmat(rep, *topo);
  std::string saved_error;
  if (a.save && !rep.nodes.empty())
    if (auto s = save_text(*a.save, format_probe_report(rep)); !s) saved_error = s.error().message;

  if (a.json) {
    auto opt_d = [](const std::optional<double> &v) { return v ? ojson(*v) : ojson(nullptr); };
    auto opt_u = [](const std::optional<std::uint64_t> &v) { return v ? ojson(*v) : ojson(nullptr); };
    ojson j;
    j["schema"] = "hetmem.probe/1";
    j["initiator"] = rep.initiator;
    j["cpus"] = rep.cpus.to_string();
    j["threads"] = rep.threads;
    j["buffer_bytes"] = rep.buffer_bytes;
    j["last_level_cache_bytes"] = opt_u(outcome->last_level_cache_bytes);
    j["reference"] = cmp.reference ? ojson(*cmp.reference) : ojson(nullptr);
    j["hmat_reported"] = topo->hmat_reported;
    ojson nodes = ojson::array();
    for (const auto &r : cmp.rows) {
      const auto &m = r.measured;
      nodes.push_back({{"node", r.node},
                       {"kind", std::string(to_string(r.kind))},
                       {"latency_ns", opt_d(m.latency_ns)},
                       {"read_mbps", opt_d(m.read_mbps)},
                       {"write_mbps", opt_d(m.write_mbps)},
                       {"huge_page_fraction", opt_d(m.huge_page_fraction)},
                       {"placed_fraction", opt_d(m.placed_fraction)},
                       {"latency_ratio", opt_d(r.latency_ratio)},
                       {"read_ratio", opt_d(r.read_ratio)},
                       {"write_ratio", opt_d(r.write_ratio)},
                       {"hmat",
                        {{"latency_ns", opt_u(r.hmat_latency_ns)},
                         {"read_mbps", opt_u(r.hmat_read_mbps)},
                         {"write_mbps", opt_u(r.hmat_write_mbps)},
                         {"latency_ratio", opt_d(r.hmat_latency_ratio)},
                         {"read_ratio", opt_d(r.hmat_read_ratio)}}},
                       {"flags", r.flags}});
    }
    j["nodes"] = nodes;
    ojson skipped = ojson::array();
    for (const auto &s : outcome->skipped) skipped.push_back({{"node", s.node}, {"reason", s.reason}});
    j["skipped"] = skipped;
    ojson notes = ojson::array();
    for (const auto &n : outcome->notes) notes.push_back(n);
    for (const auto &n : cmp.notes) notes.push_back(n);
    j["notes"] = notes;
    j["saved"] = a.save && saved_error.empty() && !rep.nodes.empty() ? ojson(*a.save) : ojson(nullptr);
    std::fputs((j.dump(2) + "\n").c_str(), stdout);
  } else {
    std::string out;
    std::string huge;
    out += fmt::format("hetmem probe: from node {}, latency on CPU {}, bandwidth with {} thread{} on CPUs {}\n",
                       rep.initiator, rep.cpus.empty() ? 0 : rep.cpus.first(), rep.threads, rep.threads == 1 ? "" : "s",
                       rep.cpus.to_string());
    out += fmt::format("Buffer {} per node{}.", format_bytes(rep.buffer_bytes),
                       outcome->last_level_cache_bytes
                           ? " (last-level cache " + format_bytes(*outcome->last_level_cache_bytes) + ")"
                           : std::string());
    if (cmp.reference)
      out += fmt::format(" Ratios: to node {} as measured; HMAT's to node {}'s HMAT values.\n", *cmp.reference,
                         *cmp.reference);
    else
      out += "\n";
    out += "\n";
    std::vector<std::vector<std::string>> rows;
    rows.push_back(
        {"NODE", "KIND", "LATENCY", "", "READ BW", "", "WRITE BW", "", "HMAT LAT", "", "HMAT BW", "", "THP", ""});
    for (const auto &r : cmp.rows) {
      const auto &m = r.measured;
      rows.push_back({std::to_string(r.node), std::string(to_string(r.kind)), latency_text(m.latency_ns),
                      ratio_text(r.latency_ratio), bandwidth_text(m.read_mbps), ratio_text(r.read_ratio),
                      bandwidth_text(m.write_mbps), ratio_text(r.write_ratio),
                      r.hmat_latency_ns ? std::to_string(*r.hmat_latency_ns) + " ns" : "-",
                      ratio_text(r.hmat_latency_ratio),
                      r.hmat_read_mbps ? format_bandwidth_mbps(*r.hmat_read_mbps) : "-", ratio_text(r.hmat_read_ratio),
                      m.huge_page_fraction ? fmt::format("{:.0f}%", *m.huge_page_fraction * 100) : "-",
                      r.flags.empty() ? "" : "DISAGREES"});
    }
    out += render_table(rows);
    if (cmp.flagged() > 0) {
      out += "\nDisagreements with HMAT (differing by more than 2x, or in the opposite order):\n";
      for (const auto &r : cmp.rows)
        for (const auto &f : r.flags) out += fmt::format("  node {}: {}\n", r.node, f);
    }
    if (!outcome->skipped.empty()) {
      out += "\nNot measured:\n";
      for (const auto &s : outcome->skipped) out += fmt::format("  node {}: {}\n", s.node, s.reason);
    }
    if (!outcome->notes.empty() || !cmp.notes.empty()) {
      out += "\nNotes:\n";
      for (const auto &n : outcome->notes) out += "  - " + n + "\n";
      for (const auto &n : cmp.notes) out += "  - " + n + "\n";
    }
    if (a.save && saved_error.empty() && !rep.nodes.empty())
      out += fmt::format(
          "\nSaved to {}. The classifier takes it as evidence: hetmem topo --probe {} (or HETMEM_PROBE={}).\n", *a.save,
          *a.save, *a.save);
    std::fputs(out.c_str(), stdout);
  }
  if (rep.nodes.empty()) {
    std::fprintf(stderr, "hetmem probe: no node could be measured%s\n",
                 outcome->skipped.empty() ? ""
                                          : (" (first: node " + std::to_string(outcome->skipped.front().node) + ": " +
                                             outcome->skipped.front().reason + ")")
                                                .c_str());
    return exit_failure;
  }
  if (!saved_error.empty()) {
    std::fprintf(stderr, "hetmem probe: --save: %s\n", saved_error.c_str());
    return exit_failure;
  }
  return cmp.flagged() > 0 ? exit_partial : exit_ok;
}

}  // namespace hetmem::cli
