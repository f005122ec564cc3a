#include "hetmem/sysfs/parse.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>

namespace hetmem::sysfs {
namespace {

error bad(std::string msg) { return error{EINVAL, std::move(msg)}; }

// Shows at most 24 characters of the offending text, with non-printables escaped.
std::string quote(std::string_view s) {
  std::string out = "'";
  std::size_t n = 0;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (++n > 24) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out + "'";
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Trailing NUL bytes are padding (hwloc's gather script leaves one after the newline);
// a NUL inside the content is binary data and an error.
result<std::string_view> clean(std::string_view text) {
  while (!text.empty() && text.back() == '\0') text.remove_suffix(1);
  if (text.find('\0') != std::string_view::npos) return bad("binary content (NUL byte) in a text attribute");
  return text;
}

template <class T>
result<T> to_number(std::string_view tok, int base, std::string_view what) {
  if (tok.empty()) return bad("expected " + std::string(what) + ", found nothing");
  T value{};
  auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), value, base);
  if (ec == std::errc::result_out_of_range)
    return error{ERANGE, std::string(what) + " " + quote(tok) + " is out of range"};
  if (ec != std::errc() || ptr != tok.data() + tok.size())
    return bad("expected " + std::string(what) + ", found " + quote(tok));
  return value;
}

std::string_view strip_prefix_0x(std::string_view s) {
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
  return s;
}

}  // namespace

std::string_view trim(std::string_view text) noexcept {
  while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
  return text;
}

std::vector<std::string_view> split_fields(std::string_view text, char separator) {
  std::vector<std::string_view> fields;
  while (!text.empty()) {
    auto at = text.find(separator);
    fields.push_back(text.substr(0, at));
    if (at == std::string_view::npos) break;
    text.remove_prefix(at + 1);
  }
  return fields;
}

std::vector<std::string_view> split_lines(std::string_view text) { return split_fields(text, '\n'); }

result<id_set> parse_id_list(std::string_view text, std::uint32_t max_id) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  text = trim(text);
  id_set set;
  if (text.empty()) return set;
  while (true) {
    auto comma = text.find(',');
    std::string_view item = trim(text.substr(0, comma));
    auto dash = item.find('-');
    auto lo = to_number<std::uint32_t>(trim(item.substr(0, dash)), 10, "an id");
    if (!lo) return bad(lo.error().message + " in list " + quote(text));
    std::uint32_t hi_v = *lo;
    if (dash != std::string_view::npos) {
      auto hi = to_number<std::uint32_t>(trim(item.substr(dash + 1)), 10, "an id");
      if (!hi) return bad(hi.error().message + " in list " + quote(text));
      hi_v = *hi;
      if (hi_v < *lo) return bad("descending range " + quote(item));
    }
    if (hi_v > max_id)
      return error{ERANGE, "id " + std::to_string(hi_v) + " exceeds the limit " + std::to_string(max_id)};
    set.insert_range(*lo, hi_v);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return set;
}

result<id_set> parse_id_mask(std::string_view text, std::uint32_t max_id) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  text = trim(text);
  if (text.empty()) return bad("empty mask");
  // Split into words, most significant first.
  std::vector<std::string_view> words;
  while (true) {
    auto comma = text.find(',');
    words.push_back(text.substr(0, comma));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  id_set set;
  const std::size_t n = words.size();
  for (std::size_t i = 0; i < n; ++i) {
    std::string_view w = words[i];
    if (w.empty() || w.size() > 8) return bad("mask word " + quote(w) + " is not 1-8 hex digits");
    auto v = to_number<std::uint32_t>(w, 16, "a hex mask word");
    if (!v) return v.error();
    const std::uint64_t base = static_cast<std::uint64_t>(n - 1 - i) * 32;
    for (unsigned bit = 0; bit < 32; ++bit) {
      if (*v & (1u << bit)) {
        std::uint64_t id = base + bit;
        if (id > max_id)
          return error{ERANGE, "mask bit " + std::to_string(id) + " exceeds the limit " + std::to_string(max_id)};
        set.insert(static_cast<std::uint32_t>(id));
      }
    }
  }
  return set;
}

result<std::uint64_t> parse_uint64(std::string_view text) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  return to_number<std::uint64_t>(trim(text), 10, "a decimal number");
}

result<std::int64_t> parse_int64(std::string_view text) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  return to_number<std::int64_t>(trim(text), 10, "a decimal number");
}

result<bool> parse_bool(std::string_view text) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  std::string_view t = trim(text);
  if (t == "true" || t == "1" || t == "y" || t == "Y" || t == "yes" || t == "on" || t == "enabled") return true;
  if (t == "false" || t == "0" || t == "n" || t == "N" || t == "no" || t == "off" || t == "disabled") return false;
  return bad("expected true or false, found " + quote(t));
}

result<std::vector<std::uint32_t>> parse_distance_row(std::string_view text) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  std::vector<std::uint32_t> row;
  text = trim(text);
  if (text.empty()) return bad("empty distance row");
  while (!text.empty()) {
    std::size_t end = 0;
    while (end < text.size() && !is_blank(text[end])) ++end;
    auto v = to_number<std::uint32_t>(text.substr(0, end), 10, "a distance");
    if (!v) return v.error();
    if (*v > 255) return error{ERANGE, "distance " + std::to_string(*v) + " exceeds 255"};
    row.push_back(*v);
    text = trim(text.substr(end));
    if (row.size() > 65536) return error{E2BIG, "distance row has more than 65536 values"};
  }
  return row;
}

result<node_meminfo> parse_node_meminfo(std::string_view text, std::uint32_t node_id) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  node_meminfo out;
  const std::string prefix = "Node " + std::to_string(node_id) + " ";
  for (std::string_view line : split_lines(text)) {
    line = trim(line);
    if (line.empty()) continue;
    if (line.substr(0, prefix.size()) != prefix) {
      return bad("line " + quote(line) + " does not start with " + quote(prefix));
    }
    line.remove_prefix(prefix.size());
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return bad("line without ':' " + quote(line));
    std::string_view key = trim(line.substr(0, colon));
    std::string_view val = trim(line.substr(colon + 1));
    if (key != "MemTotal" && key != "MemFree") continue;
    bool kb = false;
    if (val.size() >= 2 && val.substr(val.size() - 2) == "kB") {
      kb = true;
      val = trim(val.substr(0, val.size() - 2));
    }
    if (!kb) return bad(std::string(key) + " value " + quote(val) + " lacks its 'kB' unit");
    auto v = to_number<std::uint64_t>(val, 10, "a size in kB");
    if (!v) return bad(std::string(key) + ": " + v.error().message);
    if (*v > (std::numeric_limits<std::uint64_t>::max() >> 10))
      return error{ERANGE, std::string(key) + " is out of range"};
    (key == "MemTotal" ? out.total_kb : out.free_kb) = *v;
  }
  if (!out.total_kb) return bad("no MemTotal line");
  return out;
}

result<nvidia_numa_status> parse_nvidia_numa_status(std::string_view text) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  nvidia_numa_status out;
  for (std::string_view line : split_lines(text)) {
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = trim(line.substr(0, colon));
    std::string_view val = trim(line.substr(colon + 1));
    if (key == "Node") {
      auto v = to_number<std::int64_t>(val, 10, "a node id");
      if (!v) return bad("Node: " + v.error().message);
      out.node = *v;
    } else if (key == "Status") {
      out.status = std::string(val);
    } else if (key == "Address" || key == "Size") {
      auto v = to_number<std::uint64_t>(strip_prefix_0x(val), 16, "a hex number");
      if (!v) return bad(std::string(key) + ": " + v.error().message);
      (key == "Address" ? out.address : out.size_bytes) = *v;
    }
  }
  if (!out.node) return bad("no 'Node:' line");
  return out;
}

result<cpu_identity> parse_cpuinfo(std::string_view text) {
  // cpuinfo is read as a bounded prefix: a NUL is tolerated only as the end of the text.
  if (auto nul = text.find('\0'); nul != std::string_view::npos) text = text.substr(0, nul);
  cpu_identity out;
  std::string implementer, part;
  for (std::string_view line : split_lines(text)) {
    if (trim(line).empty()) {
      if (!out.vendor.empty() || !out.model_name.empty()) break;  // end of the first processor block
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = trim(line.substr(0, colon));
    std::string_view val = trim(line.substr(colon + 1));
    if (key == "vendor_id") {
      out.vendor = std::string(val);
    } else if (key == "model name") {
      out.model_name = std::string(val);
    } else if (key == "cpu family") {
      auto v = to_number<std::uint32_t>(val, 10, "a cpu family");
      if (!v) return bad("cpu family: " + v.error().message);
      out.family = *v;
    } else if (key == "model" && !val.empty() && std::isdigit(static_cast<unsigned char>(val[0]))) {
      auto v = to_number<std::uint32_t>(val, 10, "a cpu model");
      if (!v) return bad("model: " + v.error().message);
      out.model = *v;
    } else if (key == "cpu" && out.model_name.empty()) {  // POWER: "cpu : POWER9, altivec supported"
      out.model_name = std::string(val);
      if (out.vendor.empty()) out.vendor = "IBM";
    } else if (key == "CPU implementer") {
      implementer = std::string(val);
    } else if (key == "CPU part") {
      part = std::string(val);
    }
  }
  if (out.vendor.empty() && !implementer.empty()) out.vendor = "ARM implementer " + implementer;
  if (out.model_name.empty() && !part.empty()) out.model_name = "CPU part " + part;
  return out;
}

result<knl_hwdata> parse_knl_hwdata(std::string_view text) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  knl_hwdata out;
  for (std::string_view line : split_lines(text)) {
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = trim(line.substr(0, colon));
    std::string_view val = trim(line.substr(colon + 1));
    if (key == "cache_size" || key == "line_size") {
      auto v = to_number<std::uint64_t>(val, 10, "a size in bytes");
      if (!v) return bad(std::string(key) + ": " + v.error().message);
      (key == "cache_size" ? out.cache_size_bytes : out.line_size_bytes) = *v;
    } else if (key == "cluster_mode") {
      out.cluster_mode = std::string(val);
    } else if (key == "memory_mode") {
      out.memory_mode = std::string(val);
    }
  }
  if (out.memory_mode.empty()) return bad("no 'memory_mode:' line");
  return out;
}

result<cgroup_membership> parse_proc_self_cgroup(std::string_view text) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  text = *cleaned;
  cgroup_membership out;
  for (std::string_view line : split_lines(text)) {
    line = trim(line);
    if (line.empty()) continue;
    auto c1 = line.find(':');
    auto c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) return bad("line " + quote(line) + " is not 'id:controllers:path'");
    std::string_view id = line.substr(0, c1);
    std::string_view controllers = line.substr(c1 + 1, c2 - c1 - 1);
    std::string_view path = line.substr(c2 + 1);
    if (path.empty() || path.front() != '/') return bad("cgroup path " + quote(path) + " is not absolute");
    if (id == "0" && controllers.empty()) {
      out.unified_path = std::string(path);
      continue;
    }
    // v1: the controllers field is a comma-separated list.
    std::string_view rest = controllers;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      if (rest.substr(0, comma) == "cpuset") out.cpuset_path = std::string(path);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return out;
}

std::optional<std::string_view> find_status_field(std::string_view text, std::string_view key) {
  for (std::string_view line : split_lines(text)) {
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    if (line.substr(0, colon) == key) return trim(line.substr(colon + 1));
  }
  return std::nullopt;
}

namespace {

// Blank-separated tokens of one line.
std::vector<std::string_view> tokens(std::string_view line) {
  std::vector<std::string_view> out;
  while (true) {
    while (!line.empty() && is_blank(line.front())) line.remove_prefix(1);
    if (line.empty()) break;
    std::size_t n = 0;
    while (n < line.size() && !is_blank(line[n])) ++n;
    out.push_back(line.substr(0, n));
    line.remove_prefix(n);
  }
  return out;
}

}  // namespace

std::optional<std::string_view> find_stat_field(std::string_view text, unsigned n) {
  const auto close = text.rfind(')');  // the name may hold anything, ')' and blanks included
  if (n < 3 || close == std::string_view::npos) return std::nullopt;
  const auto fields = tokens(text.substr(close + 1));  // from field 3, the state
  if (n - 3 >= fields.size()) return std::nullopt;
  return fields[n - 3];
}

namespace {

// "N<id>=<number>" -> (id, number); nullopt when the token has another shape.
std::optional<result<std::pair<std::uint32_t, std::uint64_t>>> node_count(std::string_view tok,
                                                                          std::uint32_t max_node) {
  if (tok.size() < 4 || tok[0] != 'N' || !std::isdigit(static_cast<unsigned char>(tok[1]))) return std::nullopt;
  const auto eq = tok.find('=');
  if (eq == std::string_view::npos) return std::nullopt;
  auto id = to_number<std::uint32_t>(tok.substr(1, eq - 1), 10, "a node id");
  if (!id) return result<std::pair<std::uint32_t, std::uint64_t>>(id.error());
  if (*id > max_node)
    return result<std::pair<std::uint32_t, std::uint64_t>>(
        error{ERANGE, "node " + std::to_string(*id) + " is past the limit of " + std::to_string(max_node)});
  auto n = to_number<std::uint64_t>(tok.substr(eq + 1), 10, "a count");
  if (!n) return result<std::pair<std::uint32_t, std::uint64_t>>(n.error());
  return result<std::pair<std::uint32_t, std::uint64_t>>(std::pair{*id, *n});
}

bool numa_maps_key(std::string_view tok) {
  static constexpr std::string_view keys[] = {
      "file=", "anon=", "dirty=", "mapped=", "mapmax=", "swapcache=", "active=", "writeback=", "kernelpagesize_kB="};
  if (tok == "heap" || tok == "stack" || tok == "huge") return true;
  if (tok.size() > 1 && tok[0] == 'N' && std::isdigit(static_cast<unsigned char>(tok[1]))) return true;
  return std::any_of(std::begin(keys), std::end(keys),
                     [&](std::string_view k) { return tok.substr(0, k.size()) == k; });
}

// The non-blank lines of a line-oriented table (numa_maps, memory.numa_stat) as tokens, with
// their 1-based line numbers for error messages.
struct token_line {
  std::size_t number = 0;
  std::vector<std::string_view> tokens;
  [[nodiscard]] std::string where(const std::string &msg) const {
    return "line " + std::to_string(number) + ": " + msg;
  }
};

std::vector<token_line> token_lines(std::string_view text) {
  std::vector<token_line> out;
  std::size_t number = 0;
  for (std::string_view line : split_lines(text)) {
    ++number;
    auto toks = tokens(line);
    if (!toks.empty()) out.push_back({number, std::move(toks)});
  }
  return out;
}

bool add_checked(std::uint64_t &to, std::uint64_t v) {
  if (to > std::numeric_limits<std::uint64_t>::max() - v) return false;
  to += v;
  return true;
}

}  // namespace

result<numa_maps_summary> parse_numa_maps(std::string_view text, std::uint32_t max_node) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  numa_maps_summary out;
  for (const auto &tl : token_lines(*cleaned)) {
    const auto &toks = tl.tokens;
    auto where = [&](const std::string &msg) { return tl.where(msg); };
    if (auto addr = to_number<std::uint64_t>(toks[0], 16, "a hex address"); !addr)
      return error{addr.error().code, where(addr.error().message)};
    ++out.mappings;
    std::size_t i = 1;
    std::string policy;
    for (; i < toks.size() && !numa_maps_key(toks[i]); ++i)
      policy += (policy.empty() ? "" : " ") + std::string(toks[i]);
    if (policy.empty()) return bad(where("no memory policy after the address"));
    bool file = false;
    std::uint64_t page_kb = 4;
    std::vector<std::pair<std::uint32_t, std::uint64_t>> counts;
    for (; i < toks.size(); ++i) {
      const auto tok = toks[i];
      if (tok.substr(0, 5) == "file=") {
        file = true;
      } else if (tok.substr(0, 18) == "kernelpagesize_kB=") {
        auto kb = to_number<std::uint64_t>(tok.substr(18), 10, "a page size in kB");
        if (!kb) return error{kb.error().code, where(kb.error().message)};
        if (*kb == 0 || (*kb & (*kb - 1)) != 0)
          return bad(where("page size " + quote(tok.substr(18)) + " kB is not a power of two"));
        page_kb = *kb;
      } else if (auto nc = node_count(tok, max_node)) {
        if (!*nc) return error{nc->error().code, where(nc->error().message)};
        counts.push_back(**nc);
      }
    }
    std::uint64_t mapping_bytes = 0;
    for (auto [node, pages] : counts) {
      if (pages > std::numeric_limits<std::uint64_t>::max() / (page_kb * 1024))
        return error{ERANGE, where("N" + std::to_string(node) + "=" + std::to_string(pages) + " pages overflow")};
      const std::uint64_t bytes = pages * page_kb * 1024;
      auto it = std::lower_bound(out.nodes.begin(), out.nodes.end(), node,
                                 [](const numa_maps_summary::node_bytes &a, std::uint32_t id) { return a.node < id; });
      if (it == out.nodes.end() || it->node != node)
        it = out.nodes.insert(it, numa_maps_summary::node_bytes{node, 0, 0});
      if (!add_checked(file ? it->file_bytes : it->anon_bytes, bytes) || !add_checked(mapping_bytes, bytes))
        return error{ERANGE, where("the byte count overflows")};
    }
    auto pol = std::find_if(out.policies.begin(), out.policies.end(), [&](const auto &p) { return p.first == policy; });
    if (pol == out.policies.end()) {
      if (out.policies.size() >= 256) return bad(where("more than 256 different memory policies"));
      out.policies.emplace_back(policy, 0);
      pol = std::prev(out.policies.end());
    }
    if (!add_checked(pol->second, mapping_bytes)) return error{ERANGE, where("the byte count overflows")};
  }
  return out;
}

const cgroup_numa_stat::entry *cgroup_numa_stat::find(std::string_view key) const noexcept {
  for (const auto &e : entries)
    if (e.key == key) return &e;
  return nullptr;
}

result<cgroup_numa_stat> parse_cgroup_numa_stat(std::string_view text, std::uint32_t max_node,
                                                std::uint64_t page_size) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  if (page_size == 0 || (page_size & (page_size - 1)) != 0) return bad("page size is not a power of two");
  cgroup_numa_stat out;
  bool first = true;
  for (const auto &tl : token_lines(*cleaned)) {
    const auto &toks = tl.tokens;
    auto where = [&](const std::string &msg) { return tl.where(msg); };
    if (out.entries.size() >= 256) return bad(where("more than 256 lines"));
    cgroup_numa_stat::entry e;
    std::string_view key = toks[0];
    const auto eq = key.find('=');
    const bool v1 = eq != std::string_view::npos;  // "anon=<pages>"
    if (first) out.v1 = v1;                        // the first line decides the format
    first = false;
    if (v1 != out.v1) return bad(where("mixes the cgroup v1 (KEY=pages) and v2 (KEY) formats"));
    if (v1) {
      if (auto total = to_number<std::uint64_t>(key.substr(eq + 1), 10, "a page count"); !total)
        return error{total.error().code, where(total.error().message)};
      key = key.substr(0, eq);
    }
    if (key.empty()) return bad(where("no key"));
    e.key = std::string(key.substr(0, 64));
    for (std::size_t i = 1; i < toks.size(); ++i) {
      auto nc = node_count(toks[i], max_node);
      if (!nc)
        return bad(where(std::string("expected N<node>=<") + (v1 ? "pages" : "bytes") + ">, found " + quote(toks[i])));
      if (!*nc) return error{nc->error().code, where(nc->error().message)};
      auto [node, value] = **nc;
      if (v1) {
        if (value > std::numeric_limits<std::uint64_t>::max() / page_size)
          return error{ERANGE, where("N" + std::to_string(node) + "=" + std::to_string(value) + " pages overflow")};
        value *= page_size;
      }
      e.per_node.emplace_back(node, value);
    }
    out.entries.push_back(std::move(e));
  }
  return out;
}

result<vmstat_counters> parse_vmstat(std::string_view text) {
  auto cleaned = clean(text);
  if (!cleaned) return cleaned.error();
  vmstat_counters out;
  for (const auto &tl : token_lines(*cleaned)) {
    const auto &toks = tl.tokens;
    if (out.entries.size() >= 1024) return bad(tl.where("more than 1024 counters"));
    if (toks.size() != 2)
      return bad(tl.where("expected \"<name> <count>\", found " + quote(toks[0]) + " and " +
                          std::to_string(toks.size() - 1) + " more field(s)"));
    auto v = to_number<std::uint64_t>(toks[1], 10, "a count");
    if (!v) return error{v.error().code, tl.where(v.error().message)};
    out.entries.emplace_back(std::string(toks[0].substr(0, 64)), *v);
  }
  return out;
}

std::optional<std::uint64_t> vmstat_counters::find(std::string_view key) const noexcept {
  for (const auto &[k, v] : entries)
    if (k == key) return v;
  return std::nullopt;
}

}  // namespace hetmem::sysfs
