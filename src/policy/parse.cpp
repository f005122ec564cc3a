// parse.cpp — the policy language and memkind's / autohbw's variables, text to policy.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "hetmem/policy.hpp"
#include "hetmem/sysfs/environment.hpp"
#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"

namespace hetmem::policy {
namespace {

struct token {
  enum class type { word, number, op, end };
  type t = type::end;
  std::string text;
  std::size_t column = 0;  // 1-based, in the line
};

bool word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/' || c == '+' || c == '@';
}

// One statement's tokens. Words may contain letters, digits and _ . / + @ (paths, node lists);
// numbers are words that start with a digit (sizes: 4K, 1M).
std::vector<token> tokenize(std::string_view s, std::size_t offset) {
  std::vector<token> out;
  std::size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    token t;
    t.column = offset + i + 1;
    if (c == '-' && i + 1 < s.size() && s[i + 1] == '>') {
      t.t = token::type::op;
      t.text = "->";
      i += 2;
    } else if ((c == '>' || c == '<') && i + 1 < s.size() && s[i + 1] == '=') {
      t.t = token::type::op;
      t.text = std::string(1, c) + "=";
      i += 2;
    } else if (word_char(c) || c == '-') {
      std::size_t j = i;
      while (j < s.size() && (word_char(s[j]) || (s[j] == '-' && !(j + 1 < s.size() && s[j + 1] == '>')))) ++j;
      t.text = std::string(s.substr(i, j - i));
      t.t = std::isdigit(static_cast<unsigned char>(c)) ? token::type::number : token::type::word;
      i = j;
    } else {  // > < , : = %, or a character the parser reports
      t.t = token::type::op;
      t.text = std::string(1, c);
      ++i;
    }
    out.push_back(std::move(t));
  }
  token end;
  end.column = offset + s.size() + 1;
  out.push_back(end);
  return out;
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto &c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// Long tokens are cut in messages: "aaaa...aaaa" (first 32 characters and "...").
std::string shorten(std::string_view s) {
  return s.size() <= 40 ? std::string(s) : std::string(s.substr(0, 32)) + "...";
}

// A parse error pointing at `column` of `line` (a window of it around the column when long).
error at(std::string_view origin, std::string_view line, std::size_t column, const std::string &what) {
  std::size_t from = 0, caret = column > 0 ? column - 1 : 0;
  std::string shown(line);
  if (line.size() > 100) {
    from = caret > 40 ? caret - 40 : 0;
    shown = (from > 0 ? "..." : "") + std::string(line.substr(from, 80)) + (from + 80 < line.size() ? "..." : "");
    caret = caret - from + (from > 0 ? 3 : 0);
  }
  std::string msg = std::string(origin) + ", column " + std::to_string(column) + ": " + what + "\n  " + shown + "\n  " +
                    std::string(caret, ' ') + "^";
  return error{EINVAL, msg};
}

// The topology's kind names (ddr/dram, hbm/mcdram, pmem/nvm/optane, cxl, device/gpu) and
// memkind's spellings (hbw, kmem_dax) and nvdimm; "unknown" names no tier.
std::optional<memory_kind> kind_named(const std::string &w) {
  if (w == "hbw") return memory_kind::hbm;
  if (w == "kmem_dax" || w == "nvdimm") return memory_kind::pmem;
  auto k = parse_memory_kind(w);
  if (k == memory_kind::unknown) return std::nullopt;
  return k;
}

std::string trim(std::string_view s) { return std::string(sysfs::trim(s)); }

constexpr const char *tier_names =
    "hbm, ddr, pmem, cxl, device, fastest, largest, local, rank N, node N[+N], file PATH SIZE";

class parser {
 public:
  parser(std::string_view origin, std::string_view line, std::string_view statement, std::vector<token> toks)
      : origin_(origin), line_(line), statement_(statement), t_(std::move(toks)) {}

  result<void> statement(policy &p, const std::string &rule_origin);
  // The whole text is one tier.
  result<tier_ref> single_tier() {
    auto r = tier();
    if (!r) return r.error();
    if (peek().t != token::type::end) return fail(peek(), std::string("expected the end after the tier"));
    return r;
  }

 private:
  const token &peek(std::size_t k = 0) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  const token &next() { return t_[std::min(i_++, t_.size() - 1)]; }
  bool is_op(const char *op) const { return peek().t == token::type::op && peek().text == op; }
  bool is_word(const char *w) const { return peek().t == token::type::word && lower(peek().text) == w; }
  error fail(const token &t, const std::string &what) const {
    return at(
        origin_, line_, t.column,
        what + (t.t == token::type::end ? std::string(" but the text ends") : " but found '" + shorten(t.text) + "'"));
  }

  result<std::uint64_t> size_value() {
    const token &t = next();
    if (t.t != token::type::number) return fail(t, "expected a size (4096, 64K, 1M, 2G)");
    auto v = parse_size(t.text);
    if (!v) return at(origin_, line_, t.column, v.error().message);
    return *v;
  }

  result<std::uint64_t> count_value(const char *what) {
    const token &t = next();
    char *end = nullptr;
    errno = 0;
    const unsigned long long v = t.t == token::type::number ? std::strtoull(t.text.c_str(), &end, 10) : 0;
    if (t.t != token::type::number || !end || *end != '\0' || errno == ERANGE || v == 0)
      return fail(t, std::string("expected ") + what + " (a whole number from 1)");
    return static_cast<std::uint64_t>(v);
  }

  result<tier_ref> tier() {
    const token &t = next();
    tier_ref r;
    r.text = t.text;
    if (t.t != token::type::word) return fail(t, std::string("expected a tier (") + tier_names + ")");
    const std::string w = lower(t.text);
    if (auto k = kind_named(w)) {
      r.what = tier_ref::form::kind;
      r.kind = *k;
      return r;
    }
    if (w == "fastest")
      r.what = tier_ref::form::fastest;
    else if (w == "largest")
      r.what = tier_ref::form::largest;
    else if (w == "local")
      r.what = tier_ref::form::local;
    if (w == "fastest" || w == "largest" || w == "local") return r;
    if (w == "rank") {
      r.what = tier_ref::form::rank;
      const token &n = next();
      char *end = nullptr;
      const unsigned long v = n.t == token::type::number ? std::strtoul(n.text.c_str(), &end, 10) : 0;
      if (n.t != token::type::number || !end || *end != '\0' || v > 64) return fail(n, "expected a rank (0-64)");
      r.rank = static_cast<std::uint32_t>(v);
      r.text += " " + n.text;
      return r;
    }
    if (w == "node" || w == "nodes") {
      r.what = tier_ref::form::nodes;
      const token &n = next();
      std::string list = n.text;
      for (auto &c : list)
        if (c == '+') c = ',';
      auto ids = sysfs::parse_id_list(list, 1023);
      if (n.t != token::type::number || !ids || ids->empty()) return fail(n, "expected node numbers (2, 2+3, 0-3)");
      r.nodes = *ids;
      r.text += " " + n.text;
      return r;
    }
    if (w == "file") {
      r.what = tier_ref::form::file;
      const token &path = next();
      if (path.t != token::type::word || path.text.empty() || path.text[0] != '/')
        return fail(path, "expected an absolute path (a devdax device or a directory on a DAX file system)");
      r.path = path.text;
      auto bytes = size_value();
      if (!bytes) return bytes.error();
      r.file_bytes = *bytes;
      r.text += " " + path.text + " " + t_[i_ - 1].text;
      return r;
    }
    return at(origin_, line_, t.column, "unknown tier '" + shorten(t.text) + "' (expected " + tier_names + ")");
  }

  result<std::vector<tier_ref>> tier_list() {
    std::vector<tier_ref> out;
    do {
      if (!out.empty()) next();  // ','
      auto t = tier();
      if (!t) return t.error();
      out.push_back(std::move(*t));
    } while (is_op(","));
    return out;
  }

  result<void> shares(route &r) {
    do {
      if (!r.tiers.empty()) next();  // ','
      auto t = tier();
      if (!t) return t.error();
      if (!is_op(":")) return fail(peek(), "expected ':' and a share after the tier (ddr:3)");
      next();
      auto n = count_value("a share");
      if (!n) return n.error();
      r.tiers.push_back(std::move(*t));
      r.shares.push_back(*n);
    } while (is_op(","));
    if (r.tiers.size() < 2 && r.kind == route_kind::threshold)
      return fail(peek(), "a threshold needs two tiers or more");
    return {};
  }

  result<route> route_of() {
    route r;
    const std::string w = peek().t == token::type::word ? lower(peek().text) : "";
    if (w == "bind" || w == "interleave" || w == "weighted" || w == "weighted-interleave") {
      next();
      r.kind = w == "bind" ? route_kind::bind : w == "interleave" ? route_kind::interleave : route_kind::weighted;
      auto l = tier_list();
      if (!l) return l.error();
      r.tiers = std::move(*l);
      return r;
    }
    if (w == "ratio" || w == "threshold") {
      next();
      r.kind = w == "ratio" ? route_kind::ratio : route_kind::threshold;
      if (auto s = shares(r); !s) return s.error();
      if (r.kind == route_kind::threshold) {
        r.thresholds.resize(r.tiers.size() - 1);
        for (std::string k; is_word("start") || is_word("min") || is_word("max");) {
          k = lower(next().text);
          auto v = size_value();
          if (!v) return v.error();
          for (auto &b : r.thresholds) (k == "start" ? b.start : k == "min" ? b.min : b.max) = *v;
        }
        const auto &b = r.thresholds.front();
        if (!(b.min <= b.start && b.start <= b.max))
          return fail(peek(), "threshold bounds must hold min <= start <= max (" + std::to_string(b.min) + ", " +
                                  std::to_string(b.start) + ", " + std::to_string(b.max) + ")");
      }
      return r;
    }
    if (w == "preferred") next();
    r.kind = route_kind::chain;
    do {
      if (!r.tiers.empty()) next();  // '>'
      auto t = tier();
      if (!t) return t.error();
      r.tiers.push_back(std::move(*t));
    } while (is_op(">"));
    return r;
  }

  std::string_view origin_, line_, statement_;
  std::vector<token> t_;
  std::size_t i_ = 0;
};

result<void> parser::statement(policy &p, const std::string &rule_origin) {
  const std::size_t first = peek().column;
  if (is_word("strict") && peek(1).t == token::type::end) {
    p.strict = true;
    return {};
  }
  if (is_word("callsite") && peek(1).t == token::type::end) {
    p.callsite = true;
    return {};
  }
  if (is_word("watermark")) {
    next();
    watermark wm;
    wm.origin = rule_origin;
    if (peek().t == token::type::word) {
      auto t = tier();
      if (!t) return t.error();
      wm.tier = std::move(*t);
      if (!is_op("=")) return fail(peek(), "expected '=' and a percentage (watermark hbm=80%)");
      next();
    }
    const token &n = peek();
    auto v = count_value("a percentage");
    if (!v) return v.error();
    if (*v > 100) return at(origin_, line_, n.column, "a watermark is a percentage from 1 to 100, not " + n.text);
    if (!is_op("%")) return fail(peek(), "expected '%' after the watermark");
    next();
    wm.percent = static_cast<unsigned>(*v);
    if (peek().t != token::type::end) return fail(peek(), "expected the end of the watermark");
    p.watermarks.push_back(std::move(wm));
    return {};
  }
  rule r;
  r.origin = rule_origin;
  if (is_word("size")) {
    for (bool more = true; more;) {
      if (!is_word("size")) return fail(peek(), "expected 'size'");
      next();
      const token &op = next();
      if (op.t != token::type::op || (op.text != ">=" && op.text != ">" && op.text != "<=" && op.text != "<"))
        return fail(op, "expected a comparison (>=, >, <=, <) after 'size'");
      auto v = size_value();
      if (!v) return v.error();
      if (op.text == ">=") r.min_size = std::max(r.min_size, *v);
      if (op.text == ">") r.min_size = std::max(r.min_size, *v + 1);
      if (op.text == "<=") r.max_size = std::min(r.max_size, *v);
      if (op.text == "<") {
        if (*v == 0) return at(origin_, line_, op.column, "size < 0 matches nothing");
        r.max_size = std::min(r.max_size, *v - 1);
      }
      more = is_word("and");
      if (more) next();
    }
    if (r.min_size > r.max_size) return at(origin_, line_, first, "this size condition matches no size");
    if (!is_op("->")) return fail(peek(), "expected '->' and where such allocations go");
    next();
  }
  auto where = route_of();
  if (!where) return where.error();
  r.where = std::move(*where);
  if (peek().t != token::type::end)
    return fail(peek(), r.where.kind == route_kind::chain ? "expected '>' (a chain), ';' or the end"
                                                          : "expected ',' (more tiers), ';' or the end");
  r.text = trim(statement_);
  p.rules.push_back(std::move(r));
  return {};
}

}  // namespace

const char *to_string(route_kind k) noexcept {
  switch (k) {
    case route_kind::chain:
      return "chain";
    case route_kind::bind:
      return "bind";
    case route_kind::interleave:
      return "interleave";
    case route_kind::weighted:
      return "weighted interleave";
    case route_kind::ratio:
      return "ratio";
    case route_kind::threshold:
      return "threshold";
  }
  return "?";
}

result<std::uint64_t> parse_size(std::string_view text) {
  const std::string t = trim(text);
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) {
    const auto d = static_cast<std::uint64_t>(t[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return error{ERANGE, "size '" + t + "' is too large"};
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) return error{EINVAL, "'" + t + "' is not a size (4096, 64K, 1M, 2G)"};
  std::uint64_t unit = 1;
  if (i < t.size()) {
    switch (std::toupper(static_cast<unsigned char>(t[i]))) {
      case 'K':
        unit = 1ull << 10;
        break;
      case 'M':
        unit = 1ull << 20;
        break;
      case 'G':
        unit = 1ull << 30;
        break;
      case 'T':
        unit = 1ull << 40;
        break;
      default:
        return error{EINVAL, "'" + t + "' is not a size: unknown unit '" + t.substr(i) + "' (K, M, G or T)"};
    }
    ++i;
    if (i < t.size() && (t[i] == 'i' || t[i] == 'I')) ++i;
    if (i < t.size() && (t[i] == 'b' || t[i] == 'B')) ++i;
    if (i != t.size()) return error{EINVAL, "'" + t + "' is not a size: unexpected '" + t.substr(i) + "'"};
  }
  if (v > UINT64_MAX / unit) return error{ERANGE, "size '" + t + "' is too large"};
  return v * unit;
}

result<tier_ref> parse_tier(std::string_view text, std::string_view origin) {
  if (text.size() > 4096) return error{E2BIG, std::string(origin) + ": longer than 4 KiB"};
  if (text.find_first_of("\n;") != std::string_view::npos)
    return error{EINVAL, std::string(origin) + ": one tier expected (" + tier_names + ")"};
  parser ps(origin, text, text, tokenize(text, 0));
  return ps.single_tier();
}

result<policy> parse(std::string_view text, std::string_view origin) {
  policy p;
  if (text.size() > (1u << 20)) return error{E2BIG, std::string(origin) + ": longer than 1 MiB"};
  std::size_t line_no = 0, line_start = 0;
  const bool multi_line = text.find('\n') != std::string_view::npos;
  while (line_start <= text.size()) {
    std::size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    ++line_no;
    std::string_view line = text.substr(line_start, line_end - line_start);
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    const std::string where = multi_line ? std::string(origin) + ":" + std::to_string(line_no) : std::string(origin);
    std::size_t s = 0;
    while (s <= line.size()) {
      std::size_t e = line.find(';', s);
      if (e == std::string_view::npos) e = line.size();
      const std::string_view stmt = line.substr(s, e - s);
      if (!trim(stmt).empty()) {
        parser ps(where, line, stmt, tokenize(stmt, s));
        if (auto r = ps.statement(p, where); !r) return r.error();
      }
      s = e + 1;
    }
    line_start = line_end + 1;
  }
  if (p.rules.empty() && p.watermarks.empty() && !p.strict && !p.callsite)
    return error{EINVAL,
                 std::string(origin) + ": empty policy (expected rules such as 'hbm>ddr' or 'size>=1M -> hbm')"};
  return p;
}

// ---------------------------------------------------------------------------------------------
// memkind's MEMKIND_MEM_TIERS:
// "KIND:DRAM,RATIO:1;KIND:FS_DAX,PATH:/mnt/pmem0,PMEM_SIZE_LIMIT:10G,RATIO:4;POLICY:STATIC_RATIO"
result<policy> from_memkind(std::string_view tiers, std::string_view thresholds) {
  const std::string origin = "MEMKIND_MEM_TIERS";
  auto bad = [&](const std::string &what) { return error{EINVAL, origin + " '" + std::string(tiers) + "': " + what}; };
  route r;
  std::string policy_name;
  std::vector<std::string> parts;
  for (std::string_view part : sysfs::split_fields(tiers, ';')) parts.push_back(trim(part));
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string &part = parts[i];
    if (part.empty()) return bad("empty tier configuration (two ';' in a row?)");
    std::optional<std::string> kind, path, limit, ratio, pol;
    for (const std::string_view field : sysfs::split_fields(part, ',')) {
      const std::string param(field);
      const auto colon = param.find(':');
      if (colon == std::string::npos) return bad("'" + param + "' is not NAME:VALUE");
      const std::string name = trim(param.substr(0, colon)), value = trim(param.substr(colon + 1));
      std::optional<std::string> *slot = name == "KIND"              ? &kind
                                         : name == "PATH"            ? &path
                                         : name == "PMEM_SIZE_LIMIT" ? &limit
                                         : name == "RATIO"           ? &ratio
                                         : name == "POLICY"          ? &pol
                                                                     : nullptr;
      if (!slot) return bad("unknown parameter '" + name + "' (KIND, PATH, PMEM_SIZE_LIMIT, RATIO, POLICY)");
      if (*slot) return bad("'" + name + "' given twice in '" + part + "'");
      *slot = value;
    }
    if (pol) {
      if (kind || path || limit || ratio || i + 1 != parts.size())
        return bad("POLICY must be the last parameter, on its own");
      policy_name = *pol;
      continue;
    }
    if (!kind) return bad("'" + part + "' has no KIND");
    if (!ratio) return bad("'" + part + "' has no RATIO");
    tier_ref t;
    t.text = *kind;
    if (*kind == "DRAM") {
      t.what = tier_ref::form::local;  // MEMKIND_DEFAULT: the kernel's local placement
    } else if (*kind == "KMEM_DAX") {
      t.what = tier_ref::form::kind;
      t.kind = memory_kind::pmem;
    } else if (*kind == "FS_DAX") {
      if (!path) return bad("KIND:FS_DAX needs PATH");
      t.what = tier_ref::form::file;
      t.path = *path;
      t.file_bytes = UINT64_MAX;  // memkind: no limit unless PMEM_SIZE_LIMIT
      if (limit) {
        auto v = parse_size(*limit);
        if (!v) return bad("PMEM_SIZE_LIMIT: " + v.error().message);
        t.file_bytes = *v;
      }
      t.text += " " + *path;
    } else {
      return bad("unknown KIND '" + *kind + "' (DRAM, KMEM_DAX, FS_DAX)");
    }
    if ((path || limit) && *kind != "FS_DAX") return bad("PATH and PMEM_SIZE_LIMIT are for KIND:FS_DAX only");
    char *end = nullptr;
    errno = 0;
    const unsigned long long share = std::strtoull(ratio->c_str(), &end, 10);
    if (ratio->empty() || *end != '\0' || share == 0 || share > UINT32_MAX || errno == ERANGE)
      return bad("RATIO '" + *ratio + "' is not a whole number from 1 to " + std::to_string(UINT32_MAX));
    r.tiers.push_back(std::move(t));
    r.shares.push_back(share);
  }
  if (policy_name.empty()) return bad("no POLICY (STATIC_RATIO or DYNAMIC_THRESHOLD) at the end");
  if (r.tiers.empty()) return bad("no tiers");
  policy p;
  if (policy_name == "STATIC_RATIO") {
    r.kind = route_kind::ratio;
    if (!thresholds.empty()) p.notes.push_back("MEMKIND_MEM_THRESHOLDS ignored: it is for DYNAMIC_THRESHOLD only");
  } else if (policy_name == "DYNAMIC_THRESHOLD") {
    r.kind = route_kind::threshold;
    if (r.tiers.size() < 2) return bad("DYNAMIC_THRESHOLD needs two tiers or more");
    r.thresholds.resize(r.tiers.size() - 1);
    std::size_t n = 0;
    for (const std::string_view conf : sysfs::split_fields(thresholds, ';')) {
      if (n >= r.thresholds.size())
        return error{EINVAL, "MEMKIND_MEM_THRESHOLDS: more thresholds than tiers less one (" +
                                 std::to_string(r.thresholds.size()) + ")"};
      auto &b = r.thresholds[n];
      bool seen[3] = {};
      for (const std::string_view field : sysfs::split_fields(conf, ',')) {
        const std::string param(field);
        const auto colon = param.find(':');
        const std::string name = trim(param.substr(0, colon));
        const int which = name == "INIT_VAL" ? 0 : name == "MIN_VAL" ? 1 : name == "MAX_VAL" ? 2 : -1;
        if (colon == std::string::npos || which < 0)
          return error{EINVAL, "MEMKIND_MEM_THRESHOLDS: '" + param + "' is not INIT_VAL:N, MIN_VAL:N or MAX_VAL:N"};
        if (seen[which]) return error{EINVAL, "MEMKIND_MEM_THRESHOLDS: " + name + " given twice"};
        seen[which] = true;
        auto v = parse_size(param.substr(colon + 1));
        if (!v) return error{EINVAL, "MEMKIND_MEM_THRESHOLDS: " + name + ": " + v.error().message};
        (which == 0 ? b.start : which == 1 ? b.min : b.max) = *v;
      }
      // Bounds not given follow the start value as memkind's defaults do (1024: 513 to 1536).
      if (seen[0] && !seen[1]) b.min = std::min(b.start, b.start / 2 + 1);
      if (seen[0] && !seen[2]) b.max = b.start + b.start / 2;
      if (!(b.min <= b.start && b.start <= b.max))
        return error{EINVAL, "MEMKIND_MEM_THRESHOLDS: threshold " + std::to_string(n + 1) +
                                 " must hold MIN_VAL <= INIT_VAL <= MAX_VAL"};
      ++n;
    }
  } else {
    return bad("unknown POLICY '" + policy_name + "' (STATIC_RATIO, DYNAMIC_THRESHOLD)");
  }
  rule ru;
  ru.where = std::move(r);
  ru.text = std::string(tiers);
  ru.origin = origin;
  p.rules.push_back(std::move(ru));
  return p;
}

// autohbw: AUTO_HBW_SIZE=x[:y] — allocations larger than x (and smaller than y) go to HBM.
result<policy> from_autohbw(std::string_view size, std::string_view mem_type) {
  const std::string text = trim(size);
  const auto colon = text.find(':');
  auto lo = parse_size(text.substr(0, colon));
  if (!lo) return error{EINVAL, "AUTO_HBW_SIZE '" + text + "': " + lo.error().message};
  rule r;
  r.min_size = *lo + 1;
  if (colon != std::string::npos && colon + 1 < text.size()) {
    auto hi = parse_size(text.substr(colon + 1));
    if (!hi) return error{EINVAL, "AUTO_HBW_SIZE '" + text + "': " + hi.error().message};
    if (*hi <= *lo + 1)
      return error{EINVAL, "AUTO_HBW_SIZE '" + text + "': no size is larger than x and smaller than y"};
    r.max_size = *hi - 1;
  }
  tier_ref hbm;
  hbm.what = tier_ref::form::kind;
  hbm.kind = memory_kind::hbm;
  hbm.text = "hbm";
  const std::string type = trim(mem_type);
  policy p;
  // memkind's kinds: HBW (strict), HBW_PREFERRED (falls back), HBW_INTERLEAVE; the default is
  // HBW_PREFERRED where HBM exists (resolve() turns a chain to missing HBM into the default).
  if (type.empty() || type == "MEMKIND_HBW_PREFERRED" || type == "MEMKIND_HBW_PREFERRED_HUGETLB") {
    r.where.kind = route_kind::chain;
    tier_ref local;
    local.what = tier_ref::form::local;
    local.text = "local";
    r.where.tiers = {hbm, local};
  } else if (type == "MEMKIND_HBW" || type == "MEMKIND_HBW_HUGETLB") {
    r.where.kind = route_kind::bind;
    r.where.tiers = {hbm};
  } else if (type == "MEMKIND_HBW_INTERLEAVE") {
    r.where.kind = route_kind::interleave;
    r.where.tiers = {hbm};
  } else if (type == "MEMKIND_DEFAULT" || type == "MEMKIND_HUGETLB") {
    r.where.kind = route_kind::chain;
    tier_ref local;
    local.what = tier_ref::form::local;
    local.text = "local";
    r.where.tiers = {local};
  } else {
    return error{EINVAL, "AUTO_HBW_MEM_TYPE '" + type +
                             "': not one hetmem maps (MEMKIND_HBW, MEMKIND_HBW_PREFERRED, MEMKIND_HBW_INTERLEAVE, "
                             "MEMKIND_DEFAULT and their _HUGETLB forms)"};
  }
  if (type.find("HUGETLB") != std::string::npos)
    p.notes.push_back("AUTO_HBW_MEM_TYPE " + type + ": huge pages are left to the system's THP setting");
  r.text = "AUTO_HBW_SIZE=" + text + (type.empty() ? "" : " AUTO_HBW_MEM_TYPE=" + type);
  r.origin = "AUTO_HBW_SIZE";
  p.rules.push_back(std::move(r));
  return p;
}

// ---------------------------------------------------------------------------------------------
environment read_environment() {
  environment e;
  auto get = [](const char *name) -> std::optional<std::string> {
    const char *v = hetmem::sysfs::environment(name);
    if (!v) return std::nullopt;
    return std::string(v);
  };
  e.policy = get("HETMEM_POLICY");
  e.config = get("HETMEM_CONFIG");
  e.strict = get("HETMEM_STRICT");
  e.memkind_tiers = get("MEMKIND_MEM_TIERS");
  e.memkind_thresholds = get("MEMKIND_MEM_THRESHOLDS");
  e.autohbw_size = get("AUTO_HBW_SIZE");
  e.autohbw_type = get("AUTO_HBW_MEM_TYPE");
  e.autohbw_log = get("AUTO_HBW_LOG");
  return e;
}

result<std::optional<int>> autohbw_log_level(const environment &env) {
  if (!env.autohbw_size || !env.autohbw_log) return std::optional<int>{};
  const std::string text = trim(*env.autohbw_log);
  int level = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), level);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
    return error{EINVAL, "AUTO_HBW_LOG '" + text + "': not an integer (autohbw's levels are -2 to 2)"};
  return std::optional<int>{level};
}

bool strict_requested(const environment &env) {
  if (env.strict && !env.strict->empty() && *env.strict != "0") return true;
  // "strict" as a statement of HETMEM_POLICY, even when the rest of it does not parse.
  if (env.policy) {
    for (const std::string_view s : sysfs::split_fields(*env.policy, ';'))
      if (lower(trim(s)) == "strict") return true;
  }
  return false;
}

bool names_a_policy(const environment &env) noexcept {
  return env.policy || env.config || env.memkind_tiers || env.autohbw_size;
}

result<loaded_policy> load(const environment &env) {
  loaded_policy out;
  std::vector<std::string> ignored;
  auto note_ignored = [&](const std::optional<std::string> &v, const char *name) {
    if (v) ignored.emplace_back(name);
  };
  if (env.policy) {
    auto p = parse(*env.policy, "HETMEM_POLICY");
    if (!p) return p.error();
    out.p = std::move(*p);
    out.source = "HETMEM_POLICY";
    note_ignored(env.config, "HETMEM_CONFIG");
    note_ignored(env.memkind_tiers, "MEMKIND_MEM_TIERS");
    note_ignored(env.autohbw_size, "AUTO_HBW_SIZE");
  } else if (env.config) {
    auto text = sysfs::read_text_file(*env.config, std::size_t{1} << 20);
    if (!text && text.error().code == EFBIG)
      return error{E2BIG, "HETMEM_CONFIG: " + *env.config + " is larger than 1 MiB"};
    if (!text) return error{text.error().code, "HETMEM_CONFIG: cannot read " + text.error().message};
    auto p = parse(*text, *env.config);
    if (!p) return p.error();
    out.p = std::move(*p);
    out.source = "HETMEM_CONFIG (" + *env.config + ")";
    note_ignored(env.memkind_tiers, "MEMKIND_MEM_TIERS");
    note_ignored(env.autohbw_size, "AUTO_HBW_SIZE");
  } else if (env.memkind_tiers) {
    auto p = from_memkind(*env.memkind_tiers, env.memkind_thresholds.value_or(""));
    if (!p) return p.error();
    out.p = std::move(*p);
    out.source = "MEMKIND_MEM_TIERS";
    note_ignored(env.autohbw_size, "AUTO_HBW_SIZE");
  } else if (env.autohbw_size) {
    auto p = from_autohbw(*env.autohbw_size, env.autohbw_type.value_or(""));
    if (!p) return p.error();
    out.p = std::move(*p);
    out.source = "AUTO_HBW_SIZE";
  }
  if (!ignored.empty()) {
    std::string list;
    for (const auto &n : ignored) list += (list.empty() ? "" : ", ") + n;
    out.p.notes.push_back(list + " ignored: " + out.source + " takes precedence");
  }
  if (strict_requested(env)) out.p.strict = true;
  return out;
}

}  // namespace hetmem::policy
