// probe_report.cpp — the saved probe format (parse and write) and the comparison with HMAT.
#include "hetmem/probe_report.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "hetmem/format.hpp"
#include "hetmem/sysfs/model.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/topology.hpp"

namespace hetmem {

namespace {

using sysfs::trim;
constexpr int format_version = 1;
constexpr std::size_t max_report_bytes = 1 << 20;

// Splits off the first blank-separated word of `s`.
std::string_view next_word(std::string_view &s) {
  s = trim(s);
  std::size_t end = 0;
  while (end < s.size() && s[end] != ' ' && s[end] != '\t') ++end;
  std::string_view w = s.substr(0, end);
  s.remove_prefix(end);
  return w;
}

std::string quoted(std::string_view s) {
  constexpr std::size_t shown = 40;
  std::string out = "'";
  for (char c : s.substr(0, shown)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > shown) out += "...";
  return out + "'";
}

error line_error(std::size_t line, const std::string &what) {
  return error{EINVAL, "line " + std::to_string(line) + ": " + what};
}

std::optional<std::uint64_t> to_u64(std::string_view w) {
  auto r = sysfs::parse_uint64(w);
  if (!r) return std::nullopt;
  return *r;
}

// A finite decimal in [lo, hi].
std::optional<double> to_double(std::string_view w, double lo, double hi) {
  if (w.empty() || w.front() == '+' || w.front() == '-') return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), v, std::chars_format::fixed);
  if (ec != std::errc{} || p != w.data() + w.size() || !std::isfinite(v) || v < lo || v > hi) return std::nullopt;
  return v;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string one_line(std::string_view s) {
  std::string out(s);
  for (char &c : out)
    if (c == '\n' || c == '\r' || c == '#') c = ' ';
  return std::string(trim(out));
}

std::optional<std::uint64_t> first_of(std::optional<std::uint64_t> a, std::optional<std::uint64_t> b) {
  return a ? a : b;
}

}  // namespace

const probe_node_result *probe_report::find(std::uint32_t node) const noexcept {
  for (const auto &n : nodes)
    if (n.node == node) return &n;
  return nullptr;
}

result<probe_report> parse_probe_report(std::string_view text) {
  try {
    probe_report r;
    bool header = false, have_initiator = false, have_cpus = false, have_threads = false, have_buffer = false;
    std::vector<std::pair<std::string, std::size_t>> seen;  // keyword -> line
    std::size_t line_no = 0;
    while (!text.empty()) {
      const std::size_t nl = text.find('\n');
      std::string_view line = text.substr(0, nl);
      text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
      ++line_no;
      if (line.find('\0') != std::string_view::npos) return line_error(line_no, "contains a NUL byte");
      line = trim(line);
      if (line.empty() || line.front() == '#') continue;
      std::string_view rest = line;
      const std::string_view key = next_word(rest);
      if (!header) {
        if (key != "hetmem-probe")
          return line_error(line_no,
                            "not a hetmem probe file (it starts with 'hetmem-probe 1'; found " + quoted(line) + ")");
        const std::string_view v = next_word(rest);
        auto version = to_u64(v);
        if (!version || !trim(rest).empty())
          return line_error(line_no, "format version " + quoted(v) + " is not a number");
        if (*version > format_version)
          return line_error(line_no, "format " + std::to_string(*version) +
                                         " was written by a newer hetmem; this one reads format 1");
        if (*version < 1) return line_error(line_no, "format 0 does not exist");
        header = true;
        continue;
      }
      if (key != "node") {
        for (const auto &[k, at] : seen)
          if (k == key)
            return line_error(line_no, std::string(key) + " given twice (first on line " + std::to_string(at) + ")");
        seen.emplace_back(std::string(key), line_no);
      }
      if (key == "initiator") {
        const std::string_view v = next_word(rest);
        auto id = to_u64(v);
        if (!id || *id > sysfs::max_node_id || !trim(rest).empty())
          return line_error(
              line_no, "initiator " + quoted(v) + " is not a node id (0-" + std::to_string(sysfs::max_node_id) + ")");
        r.initiator = static_cast<std::uint32_t>(*id);
        have_initiator = true;
      } else if (key == "cpus") {
        auto set = sysfs::parse_id_list(trim(rest), sysfs::max_cpu_id);
        if (!set) return line_error(line_no, "cpus: " + set.error().message);
        r.cpus = std::move(*set);
        have_cpus = true;
      } else if (key == "threads") {
        const std::string_view v = next_word(rest);
        auto n = to_u64(v);
        if (!n || *n == 0 || *n > 65536 || !trim(rest).empty())
          return line_error(line_no, "threads " + quoted(v) + " is not a count from 1 to 65536");
        r.threads = static_cast<std::uint32_t>(*n);
        have_threads = true;
      } else if (key == "buffer") {
        const std::string_view v = next_word(rest);
        auto n = to_u64(v);
        if (!n || *n == 0 || !trim(rest).empty())
          return line_error(line_no, "buffer " + quoted(v) + " is not a size in bytes");
        r.buffer_bytes = *n;
        have_buffer = true;
      } else if (key == "taken") {
        r.taken_at = std::string(trim(rest));
      } else if (key == "kernel") {
        r.kernel = std::string(trim(rest));
      } else if (key == "cpu") {
        r.cpu_model = std::string(trim(rest));
      } else if (key == "node") {
        const std::string_view idw = next_word(rest);
        auto id = to_u64(idw);
        if (!id || *id > sysfs::max_node_id)
          return line_error(line_no,
                            "node " + quoted(idw) + " is not a node id (0-" + std::to_string(sysfs::max_node_id) + ")");
        probe_node_result n;
        n.node = static_cast<std::uint32_t>(*id);
        if (r.find(n.node)) return line_error(line_no, "node " + std::to_string(n.node) + " given twice");
        const std::string where = "node " + std::to_string(n.node) + ": ";
        std::vector<std::string_view> keys;
        while (!trim(rest).empty()) {
          const std::string_view k = next_word(rest);
          const std::string_view v = next_word(rest);
          if (v.empty()) return line_error(line_no, where + std::string(k) + " has no value");
          if (std::find(keys.begin(), keys.end(), k) != keys.end())
            return line_error(line_no, where + std::string(k) + " given twice");
          keys.push_back(k);
          auto bad = [&](const char *want) {
            return line_error(line_no, where + std::string(k) + " " + quoted(v) + " is not " + want);
          };
          if (k == "capacity") {
            auto b = to_u64(v);
            if (!b) return bad("a size in bytes");
            n.capacity_bytes = *b;
          } else if (k == "latency_ns") {
            auto d = to_double(v, 0.001, 1e9);
            if (!d) return bad("a latency in ns (0.001 to 10^9)");
            n.latency_ns = *d;
          } else if (k == "read_mbps" || k == "write_mbps") {
            auto d = to_double(v, 0.001, 1e12);
            if (!d) return bad("a bandwidth in MB/s (0.001 to 10^12)");
            (k == "read_mbps" ? n.read_mbps : n.write_mbps) = *d;
          } else if (k == "huge" || k == "placed") {
            auto d = to_double(v, 0, 1);
            if (!d) return bad("a fraction from 0 to 1");
            (k == "huge" ? n.huge_page_fraction : n.placed_fraction) = *d;
          }  // other keys: a later format's, ignored
        }
        if (!n.latency_ns && !n.read_mbps && !n.write_mbps)
          return line_error(line_no, where + "neither latency_ns nor read_mbps nor write_mbps");
        if (r.nodes.size() > sysfs::max_node_id) return line_error(line_no, "more nodes than any machine has");
        r.nodes.push_back(n);
      }
      // other keywords: a later format's, ignored
    }
    if (!header) return error{EINVAL, "empty: not a hetmem probe file (it starts with 'hetmem-probe 1')"};
    const char *missing = !have_initiator   ? "initiator"
                          : !have_cpus      ? "cpus"
                          : !have_threads   ? "threads"
                          : !have_buffer    ? "buffer"
                          : r.nodes.empty() ? "node"
                                            : nullptr;
    if (missing) return error{EINVAL, std::string("no '") + missing + "' line"};
    std::sort(r.nodes.begin(), r.nodes.end(),
              [](const probe_node_result &a, const probe_node_result &b) { return a.node < b.node; });
    return r;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

std::string format_probe_report(const probe_report &r) {
  std::string out = "hetmem-probe 1\n";
  out += "# Measured by `hetmem probe`; see docs/probe-format.md. Latency in ns, bandwidth in MB/s.\n";
  // A free-text field that is empty once made one line (only blanks or '#') is left out: the
  // parser would read "cpu " back as an empty model, and the next write would drop the line.
  auto text_line = [&out](const char *key, std::string_view value) {
    const std::string v = one_line(value);
    if (!v.empty()) out += std::string(key) + " " + v + "\n";
  };
  text_line("taken", r.taken_at);
  text_line("kernel", r.kernel);
  text_line("cpu", r.cpu_model);
  out += "initiator " + std::to_string(r.initiator) + "\n";
  out += "cpus " + r.cpus.to_string() + "\n";
  out += "threads " + std::to_string(r.threads) + "\n";
  out += "buffer " + std::to_string(r.buffer_bytes) + "\n";
  for (const auto &n : r.nodes) {
    out += "node " + std::to_string(n.node);
    if (n.capacity_bytes) out += " capacity " + std::to_string(*n.capacity_bytes);
    if (n.latency_ns) out += " latency_ns " + fixed(std::max(*n.latency_ns, 0.1), 1);
    if (n.read_mbps) out += " read_mbps " + fixed(std::max(*n.read_mbps, 1.0), 0);
    if (n.write_mbps) out += " write_mbps " + fixed(std::max(*n.write_mbps, 1.0), 0);
    if (n.huge_page_fraction) out += " huge " + fixed(*n.huge_page_fraction, 2);
    if (n.placed_fraction) out += " placed " + fixed(*n.placed_fraction, 4);
    out += "\n";
  }
  return out;
}

result<probe_report> read_probe_report(const std::string &path) {
  try {
    auto text = sysfs::read_text_file(path, max_report_bytes);
    if (!text && text.error().code == EFBIG)
      return error{EFBIG, "the probe file " + path + " is larger than 1 MiB: not a probe report"};
    if (!text) return error{text.error().code, "cannot read the probe file " + text.error().message};
    auto r = parse_probe_report(*text);
    if (!r) return error{r.error().code, "probe file " + path + ": " + r.error().message};
    return r;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

std::optional<std::uint32_t> probe_reference_node(const probe_report &report, const topology &topo) {
  if (const auto *own = report.find(report.initiator); own) {
    const node_info *n = topo.find(report.initiator);
    if (!n || n->has_memory) return report.initiator;
  }
  for (const auto &m : report.nodes)
    if (const node_info *n = topo.find(m.node); n && !n->cpus.empty() && n->has_memory) return m.node;
  return std::nullopt;
}

std::optional<std::string> probe_mismatch(const probe_report &report, const topology &topo) {
  for (const auto &m : report.nodes) {
    const node_info *n = topo.find(m.node);
    if (!n || !n->has_memory)
      return "it measured node " + std::to_string(m.node) + ", which is not an online memory node here";
    if (m.capacity_bytes && n->capacity_bytes) {
      const double was = static_cast<double>(*m.capacity_bytes), now = static_cast<double>(*n->capacity_bytes);
      if (std::abs(was - now) > 0.05 * std::max(was, now))
        return "node " + std::to_string(m.node) + " had " + format_bytes(*m.capacity_bytes) + " when probed and has " +
               format_bytes(*n->capacity_bytes) + " now";
    }
  }
  return std::nullopt;
}

std::size_t probe_comparison::flagged() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(rows.begin(), rows.end(), [](const probe_comparison_row &r) { return !r.flags.empty(); }));
}

probe_comparison compare_with_hmat(const probe_report &report, const topology &topo) {
  probe_comparison c;
  c.reference = probe_reference_node(report, topo);
  const probe_node_result *ref = c.reference ? report.find(*c.reference) : nullptr;
  const node_info *ref_info = c.reference ? topo.find(*c.reference) : nullptr;
  std::optional<std::uint64_t> ref_hmat_lat, ref_hmat_bw;
  if (ref_info) {
    ref_hmat_lat = first_of(ref_info->performance.read_latency_ns, ref_info->performance.write_latency_ns);
    ref_hmat_bw = first_of(ref_info->performance.read_bandwidth_mbps, ref_info->performance.write_bandwidth_mbps);
  }
  if (!c.reference)
    c.notes.push_back("no reference node measured (the initiator's own memory or a node with CPUs): no ratios");
  if (!topo.hmat_reported)
    c.notes.push_back("the firmware reports no HMAT performance: the measurement is the only performance evidence");
  for (const auto &m : report.nodes) {
    probe_comparison_row row;
    row.node = m.node;
    row.measured = m;
    const node_info *info = topo.find(m.node);
    row.kind = info ? info->kind : memory_kind::unknown;
    if (ref) {
      if (m.latency_ns && ref->latency_ns) row.latency_ratio = *m.latency_ns / *ref->latency_ns;
      if (m.read_mbps && ref->read_mbps) row.read_ratio = *m.read_mbps / *ref->read_mbps;
      if (m.write_mbps && ref->write_mbps) row.write_ratio = *m.write_mbps / *ref->write_mbps;
    }
    if (info) {
      const auto &p = info->performance;
      row.hmat_latency_ns = first_of(p.read_latency_ns, p.write_latency_ns);
      row.hmat_read_mbps = first_of(p.read_bandwidth_mbps, p.write_bandwidth_mbps);
      row.hmat_write_mbps = p.write_bandwidth_mbps;
      if (row.hmat_latency_ns && ref_hmat_lat && *ref_hmat_lat > 0)
        row.hmat_latency_ratio = static_cast<double>(*row.hmat_latency_ns) / static_cast<double>(*ref_hmat_lat);
      if (row.hmat_read_mbps && ref_hmat_bw && *ref_hmat_bw > 0)
        row.hmat_read_ratio = static_cast<double>(*row.hmat_read_mbps) / static_cast<double>(*ref_hmat_bw);
    }
    auto off_by = [](double a, double b) { return std::max(a / b, b / a); };
    if (row.latency_ratio && row.hmat_latency_ratio && off_by(*row.latency_ratio, *row.hmat_latency_ratio) > 2.0)
      row.flags.push_back("latency " + format_ratio(*row.latency_ratio) + " node " + std::to_string(*c.reference) +
                          "'s as measured, " + format_ratio(*row.hmat_latency_ratio) + " by HMAT");
    if (row.read_ratio && row.hmat_read_ratio && off_by(*row.read_ratio, *row.hmat_read_ratio) > 2.0)
      row.flags.push_back("read bandwidth " + format_ratio(*row.read_ratio) + " node " + std::to_string(*c.reference) +
                          "'s as measured, " + format_ratio(*row.hmat_read_ratio) + " by HMAT");
    c.rows.push_back(std::move(row));
  }
  // Order: HMAT and the measurement rank a pair of nodes the opposite way, each by more than 25%.
  auto opposite = [](double hmat_a, double hmat_b, double meas_a, double meas_b) {
    return (hmat_a * 1.25 < hmat_b && meas_b * 1.25 < meas_a) || (hmat_b * 1.25 < hmat_a && meas_a * 1.25 < meas_b);
  };
  for (std::size_t i = 0; i < c.rows.size(); ++i)
    for (std::size_t j = i + 1; j < c.rows.size(); ++j) {
      auto &a = c.rows[i];
      auto &b = c.rows[j];
      const std::string pair = "nodes " + std::to_string(a.node) + " and " + std::to_string(b.node);
      if (a.hmat_latency_ns && b.hmat_latency_ns && a.measured.latency_ns && b.measured.latency_ns &&
          opposite(static_cast<double>(*a.hmat_latency_ns), static_cast<double>(*b.hmat_latency_ns),
                   *a.measured.latency_ns, *b.measured.latency_ns)) {
        const std::string text = "latency order of " + pair + " is the reverse of HMAT's";
        a.flags.push_back(text);
        b.flags.push_back(text);
      }
      // Bandwidth: higher is better, so compare the inverses.
      if (a.hmat_read_mbps && b.hmat_read_mbps && a.measured.read_mbps && b.measured.read_mbps &&
          *a.hmat_read_mbps > 0 && *b.hmat_read_mbps > 0 &&
          opposite(1.0 / static_cast<double>(*a.hmat_read_mbps), 1.0 / static_cast<double>(*b.hmat_read_mbps),
                   1.0 / *a.measured.read_mbps, 1.0 / *b.measured.read_mbps)) {
        const std::string text = "bandwidth order of " + pair + " is the reverse of HMAT's";
        a.flags.push_back(text);
        b.flags.push_back(text);
      }
    }
  return c;
}

}  // namespace hetmem
