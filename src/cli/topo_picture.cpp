// topo_picture.cpp — `hetmem topo --format tree|dot|svg`.
#include "topo_picture.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <clocale>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "hetmem/format.hpp"
#include "hetmem/sysfs/environment.hpp"
#include "topo_render.hpp"

namespace hetmem::cli {
namespace {

// Nodes with memory that no initiator ranks (no CPU node reported, or none reaches them).
std::vector<std::uint32_t> unranked_memory(const topology &t) {
  std::vector<std::uint32_t> out;
  for (const auto &n : t.nodes) {
    if (!n.has_memory) continue;
    bool ranked = false;
    for (const auto &iv : t.initiators)
      for (const auto &g : iv.tiers)
        ranked = ranked || std::find(g.nodes.begin(), g.nodes.end(), n.id) != g.nodes.end();
    if (!ranked) out.push_back(n.id);
  }
  return out;
}

std::string size_text(const node_info &n) {
  if (!n.capacity_bytes) return "size ?";
  std::string s = format_bytes(*n.capacity_bytes);
  if (n.free_bytes) s += ", " + format_bytes(*n.free_bytes) + " free";
  return s;
}

std::string perf_text(const node_info &n, std::string_view sep) {
  const auto &p = n.performance;
  if (!p.read_latency_ns && !p.read_bandwidth_mbps) return "no HMAT";
  std::string s = p.read_latency_ns ? std::to_string(*p.read_latency_ns) + " ns" : "? ns";
  s += sep;
  s += p.read_bandwidth_mbps ? format_bandwidth_mbps(*p.read_bandwidth_mbps) : "? GB/s";
  return s;
}

std::string extras_text(const node_info &n) {
  std::string s;
  auto add = [&](const std::string &x) { s += (s.empty() ? "" : ", ") + x; };
  if (n.memory_side_cache_bytes) add(format_bytes(*n.memory_side_cache_bytes) + " memory-side cache");
  if (!n.dax_devices.empty()) {
    std::string d;
    for (const auto &x : n.dax_devices) d += (d.empty() ? "" : "+") + x;
    add("kmem " + d);
  }
  if (!n.gpu.empty()) add("GPU " + n.gpu);
  if (n.kernel_tier) add("kernel tier " + std::to_string(*n.kernel_tier));
  if (!n.allowed) add("outside this cpuset");
  return s;
}

// Display width of UTF-8 text: code points (the box-drawing characters are one column each).
std::size_t display_width(std::string_view s) {
  std::size_t w = 0;
  for (char c : s) w += (static_cast<unsigned char>(c) & 0xC0u) != 0x80u ? 1u : 0u;
  return w;
}

struct glyphs {
  const char *branch, *last, *pipe, *blank;
};
constexpr glyphs unicode_glyphs{"├── ", "└── ", "│   ", "    "};
constexpr glyphs ascii_glyphs{"|-- ", "`-- ", "|   ", "    "};

// Rows of (prefix, cells); cells are aligned across all rows.
struct tree_rows {
  std::vector<std::pair<std::string, std::vector<std::string>>> rows;
  std::string render() const {
    std::vector<std::size_t> width;
    for (const auto &[prefix, cells] : rows) {
      if (width.size() < cells.size()) width.resize(cells.size(), 0);
      for (std::size_t i = 0; i < cells.size(); ++i)
        width[i] = std::max(width[i], display_width(cells[i]) + (i == 0 ? display_width(prefix) : 0));
    }
    std::string out;
    for (const auto &[prefix, cells] : rows) {
      std::string line = prefix;
      for (std::size_t i = 0; i < cells.size(); ++i) {
        line += cells[i];
        const std::size_t used = display_width(cells[i]) + (i == 0 ? display_width(prefix) : 0);
        if (i + 1 < cells.size()) line += std::string(width[i] - used + 2, ' ');
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    return out;
  }
};

std::vector<std::string> node_cells(const node_info &n) {
  std::vector<std::string> c{"node " + std::to_string(n.id), std::string(to_string(n.kind))};
  c.push_back(size_text(n));
  c.push_back(perf_text(n, "  "));
  c.push_back(extras_text(n));
  return c;
}

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string dot_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string_view kind_colour(memory_kind k) {
  switch (k) {
    case memory_kind::ddr:
      return "#8ecae6";
    case memory_kind::hbm:
      return "#ffb703";
    case memory_kind::pmem:
      return "#90be6d";
    case memory_kind::cxl:
      return "#c77dff";
    case memory_kind::device:
      return "#adb5bd";
    case memory_kind::unknown:
      return "#e9ecef";
    case memory_kind::none:
      return "#ffffff";
  }
  return "#ffffff";
}

std::string cpus_text(const sysfs::id_set &cpus, std::size_t max_chars) {
  std::string s = cpus.empty() ? "-" : cpus.to_string();
  if (s.size() > max_chars) s = s.substr(0, max_chars - 3) + "...";
  return s;
}

}  // namespace

bool terminal_is_utf8() {
  for (const char *var : {"LC_ALL", "LC_CTYPE", "LANG"}) {
    const char *v = hetmem::sysfs::environment(var);
    if (v && *v) {
      std::string s(v);
      std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      return s.find("utf-8") != std::string::npos || s.find("utf8") != std::string::npos;
    }
  }
  return false;
}

std::string render_tree(const topology &t, const tree_options &opt) {
  const glyphs &g = opt.unicode ? unicode_glyphs : ascii_glyphs;
  std::string out = fmt::format("hetmem topo: {}\n{}\n", t.root, summary_line(t));
  out +=
      "Each initiator's memory, best tier first (rank, kind, SLIT distance; size, free; HMAT read latency "
      "and bandwidth).\n";
  for (const auto &iv : t.initiators) {
    tree_rows rows;
    out += fmt::format("\nnode {} (CPUs {})\n", iv.node, cpus_text(iv.cpus, 60));
    for (std::size_t gi = 0; gi < iv.tiers.size(); ++gi) {
      const auto &grp = iv.tiers[gi];
      const bool last_group = gi + 1 == iv.tiers.size();
      std::string head = fmt::format("rank {}", grp.rank);
      std::string where = std::string(grp.local ? "local" : "remote") +
                          (grp.distance ? ", distance " + std::to_string(*grp.distance) : std::string());
      if (grp.nodes.size() == 1) {
        const node_info *n = t.find(grp.nodes.front());
        if (!n) continue;
        auto cells = node_cells(*n);
        cells.insert(cells.begin(), head);
        cells.insert(cells.begin() + 3, where);
        rows.rows.emplace_back(last_group ? g.last : g.branch, std::move(cells));
        continue;
      }
      rows.rows.emplace_back(last_group ? g.last : g.branch,
                             std::vector<std::string>{head, fmt::format("{} nodes", grp.nodes.size()),
                                                      std::string(to_string(grp.kind)), where});
      for (std::size_t ni = 0; ni < grp.nodes.size(); ++ni) {
        const node_info *n = t.find(grp.nodes[ni]);
        if (!n) continue;
        std::string prefix =
            std::string(last_group ? g.blank : g.pipe) + (ni + 1 == grp.nodes.size() ? g.last : g.branch);
        auto cells = node_cells(*n);
        cells.insert(cells.begin(), "");      // under "rank N"
        cells.insert(cells.begin() + 3, "");  // under "local, distance D"
        rows.rows.emplace_back(prefix, std::move(cells));
      }
    }
    if (iv.tiers.empty()) rows.rows.emplace_back(g.last, std::vector<std::string>{"no memory ranked"});
    out += rows.render();
  }
  const auto unranked = unranked_memory(t);
  if (!unranked.empty()) {
    out += "\nMemory no initiator ranks:\n";
    tree_rows rows;
    for (std::size_t i = 0; i < unranked.size(); ++i)
      if (const node_info *n = t.find(unranked[i]))
        rows.rows.emplace_back(i + 1 == unranked.size() ? g.last : g.branch, node_cells(*n));
    out += rows.render();
  }
  if (t.initiators.empty() && unranked.empty()) out += "\nNo memory nodes.\n";
  return out;
}

std::string render_dot(const topology &t) {
  std::string out = "digraph hetmem {\n";
  out += fmt::format("  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=12, labelloc=t, label=\"{}\\n{}\"];\n",
                     dot_escape("hetmem topo: " + t.root), dot_escape(summary_line(t)));
  out += "  node [fontname=\"Helvetica\", fontsize=10, shape=box, style=\"rounded,filled\"];\n";
  out += "  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\"];\n";
  if (!t.initiators.empty()) {
    out += "  { rank=source;";
    for (const auto &iv : t.initiators) out += fmt::format(" cpu{};", iv.node);
    out += " }\n";
  }
  for (const auto &iv : t.initiators)
    out += fmt::format("  cpu{} [fillcolor=\"#f1f3f5\", label=\"node {}\\nCPUs {}\"];\n", iv.node, iv.node,
                       dot_escape(cpus_text(iv.cpus, 40)));
  for (const auto &n : t.nodes) {
    if (!n.has_memory) continue;
    std::string label = fmt::format("node {} {}\\n{}\\n{}", n.id, to_string(n.kind), dot_escape(size_text(n)),
                                    dot_escape(perf_text(n, ", ")));
    if (auto x = extras_text(n); !x.empty()) label += "\\n" + dot_escape(x);
    out += fmt::format("  mem{} [fillcolor=\"{}\", label=\"{}\"{}];\n", n.id, kind_colour(n.kind), label,
                       n.allowed ? "" : ", style=\"rounded,filled,dashed\"");
  }
  for (const auto &iv : t.initiators)
    for (const auto &grp : iv.tiers)
      for (auto id : grp.nodes) {
        const double width = std::max(0.6, 2.6 - 0.5 * grp.rank);
        out += fmt::format("  cpu{} -> mem{} [label=\"rank {}{}\", penwidth={:.1f}{}];\n", iv.node, id, grp.rank,
                           grp.distance ? fmt::format(", d {}", *grp.distance) : std::string(), width,
                           grp.local ? ", style=bold, color=\"#222222\"" : ", style=dashed");
      }
  out += "}\n";
  return out;
}

std::string render_svg(const topology &t) {
  // Geometry (px): columns of boxes, one per initiator (and one for unranked memory).
  constexpr int col_w = 250, gap = 24, margin = 20, head_h = 46, box_h = 50, label_h = 18, title_h = 56, legend_h = 40;
  struct column {
    std::string title, subtitle;
    std::vector<std::pair<std::string, std::vector<const node_info *>>> groups;  // label, nodes
    std::vector<bool> local;
  };
  std::vector<column> cols;
  for (const auto &iv : t.initiators) {
    column c{fmt::format("node {}", iv.node), "CPUs " + cpus_text(iv.cpus, 34), {}, {}};
    for (const auto &grp : iv.tiers) {
      std::vector<const node_info *> ns;
      for (auto id : grp.nodes)
        if (const node_info *n = t.find(id)) ns.push_back(n);
      c.groups.emplace_back(fmt::format("rank {} · {}{}", grp.rank, grp.local ? "local" : "remote",
                                        grp.distance ? fmt::format(" · distance {}", *grp.distance) : std::string()),
                            std::move(ns));
      c.local.push_back(grp.local);
    }
    cols.push_back(std::move(c));
  }
  if (auto un = unranked_memory(t); !un.empty()) {
    column c{"no initiator", "memory no CPU node ranks", {}, {}};
    std::vector<const node_info *> ns;
    for (auto id : un)
      if (const node_info *n = t.find(id)) ns.push_back(n);
    c.groups.emplace_back("unranked", std::move(ns));
    c.local.push_back(false);
    cols.push_back(std::move(c));
  }
  int body_h = 0;
  for (const auto &c : cols) {
    int h = head_h;
    for (const auto &[label, ns] : c.groups) h += label_h + static_cast<int>(ns.size()) * (box_h + 6);
    body_h = std::max(body_h, h);
  }
  const int ncols = std::max<int>(1, static_cast<int>(cols.size()));
  const int width = std::max(2 * margin + ncols * col_w + (ncols - 1) * gap, 560);
  const int height = margin + title_h + body_h + legend_h + margin;

  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n",
      width, height);
  s += fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", width, height);
  s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"15\" font-weight=\"bold\">{}</text>\n", margin, margin + 16,
                   xml_escape("hetmem topo: " + t.root));
  s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#444444\">{}</text>\n", margin, margin + 34,
                   xml_escape(summary_line(t)));
  if (cols.empty())
    s += fmt::format("<text x=\"{}\" y=\"{}\">No memory nodes.</text>\n", margin, margin + title_h + 20);
  for (std::size_t ci = 0; ci < cols.size(); ++ci) {
    const auto &c = cols[ci];
    const int x = margin + static_cast<int>(ci) * (col_w + gap);
    int y = margin + title_h;
    s += fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"6\" fill=\"#f1f3f5\" stroke=\"#495057\"/>\n", x, y,
        col_w, head_h - 8);
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text>\n", x + 8, y + 16, xml_escape(c.title));
    s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#444444\">{}</text>\n", x + 8, y + 31, xml_escape(c.subtitle));
    y += head_h;
    for (std::size_t gi = 0; gi < c.groups.size(); ++gi) {
      const auto &[label, ns] = c.groups[gi];
      s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#444444\" font-size=\"10\">{}</text>\n", x + 2, y + 12,
                       xml_escape(label));
      y += label_h;
      for (const node_info *n : ns) {
        const bool local = c.local[gi];
        s += fmt::format(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"{}\" stroke=\"#212529\" "
            "stroke-width=\"{}\"{}/>\n",
            x, y, col_w, box_h, kind_colour(n->kind), local ? 2.5 : 1, n->allowed ? "" : " stroke-dasharray=\"4 3\"");
        s += fmt::format("<text x=\"{}\" y=\"{}\"><tspan font-weight=\"bold\">node {} {}</tspan> {}</text>\n", x + 8,
                         y + 15, n->id, to_string(n->kind), xml_escape(size_text(*n)));
        s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", x + 8, y + 29, xml_escape(perf_text(*n, " · ")));
        if (auto ex = extras_text(*n); !ex.empty())
          s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#333333\" font-size=\"10\">{}</text>\n", x + 8, y + 43,
                           xml_escape(ex.size() > 44 ? ex.substr(0, 41) + "..." : ex));
        y += box_h + 6;
      }
    }
  }
  int lx = margin;
  const int ly = margin + title_h + body_h + 12;
  for (auto k : {memory_kind::ddr, memory_kind::hbm, memory_kind::pmem, memory_kind::cxl, memory_kind::device,
                 memory_kind::unknown}) {
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"14\" fill=\"{}\" stroke=\"#212529\"/>\n", lx, ly,
                     kind_colour(k));
    s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", lx + 18, ly + 11, to_string(k));
    lx += 80;
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#444444\">thick border: local</text>\n", lx, ly + 11);
  s += "</svg>\n";
  return s;
}

}  // namespace hetmem::cli
