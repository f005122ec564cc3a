// Hardware sampling events for the perf source, read from the PMUs' sysfs descriptions
// (detail::resolve_perf_event, tiering.hpp): every read relative to a root, so a captured or
// made-up tree answers as the machine would.
#include <linux/perf_event.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

#include "hetmem/sysfs/parse.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/tiering.hpp"

namespace hetmem::detail {
namespace {

constexpr std::string_view pmu_dir = "/sys/bus/event_source/devices/";

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}

result<std::string> read_small(const std::string &path) {
  auto t = sysfs::read_text_file(path, 4096);
  if (!t) return error{t.error().code, path + ": " + t.error().message};
  return trimmed(std::move(*t));
}

result<std::uint64_t> parse_number(std::string_view text, const std::string &what) {
  if (text.empty()) return error{EINVAL, what + ": an empty value"};
  std::uint64_t v = 0;
  const bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  for (std::size_t i = hex ? 2 : 0; i < text.size(); ++i) {
    const char c = text[i];
    unsigned d = 0;
    if (c >= '0' && c <= '9')
      d = static_cast<unsigned>(c - '0');
    else if (hex && c >= 'a' && c <= 'f')
      d = static_cast<unsigned>(c - 'a' + 10);
    else if (hex && c >= 'A' && c <= 'F')
      d = static_cast<unsigned>(c - 'A' + 10);
    else
      return error{EINVAL, what + ": '" + std::string(text) + "' is not a number"};
    const unsigned base = hex ? 16 : 10;
    if (v > (UINT64_MAX - d) / base) return error{ERANGE, what + ": '" + std::string(text) + "' is too large"};
    v = v * base + d;
  }
  return v;
}

// Puts `value` into the bits a format file describes ("config:0-7", "config1:0-15",
// "config:0-7,32-35", "config:19"), low bits first.
result<void> place_term(perf_event_spec &spec, const std::string &format, std::uint64_t value,
                        const std::string &what) {
  const auto colon = format.find(':');
  if (colon == std::string::npos) return error{EINVAL, what + ": format '" + format + "' has no ':'"};
  const std::string field = format.substr(0, colon);
  std::uint64_t *target = field == "config"    ? &spec.config
                          : field == "config1" ? &spec.config1
                          : field == "config2" ? &spec.config2
                                               : nullptr;
  if (!target) return error{EINVAL, what + ": format field '" + field + "' is not config, config1 or config2"};
  std::string_view ranges(format);
  ranges.remove_prefix(colon + 1);
  std::uint64_t left = value;
  unsigned placed = 0;
  while (!ranges.empty()) {
    const auto comma = ranges.find(',');
    const std::string_view r = ranges.substr(0, comma);
    ranges = comma == std::string_view::npos ? std::string_view{} : ranges.substr(comma + 1);
    const auto dash = r.find('-');
    auto lo = parse_number(r.substr(0, dash), what + " (format)");
    auto hi = dash == std::string_view::npos ? lo : parse_number(r.substr(dash + 1), what + " (format)");
    if (!lo) return lo.error();
    if (!hi) return hi.error();
    if (*hi < *lo || *hi > 63) return error{EINVAL, what + ": format bits '" + std::string(r) + "' out of range"};
    for (std::uint64_t b = *lo; b <= *hi; ++b, ++placed) {
      if (left & 1U) *target |= std::uint64_t{1} << b;
      left >>= 1;
    }
  }
  if (left != 0) return error{ERANGE, what + ": the value does not fit in " + std::to_string(placed) + " bits"};
  return {};
}

}  // namespace

result<perf_event_spec> resolve_perf_event(const std::string &root, const std::string &pmu, const std::string &event,
                                           const std::vector<std::pair<std::string, std::uint64_t>> &overrides) {
  const std::string dir = root + std::string(pmu_dir) + pmu;
  perf_event_spec spec;
  spec.name = pmu + "/" + event;
  auto type = read_small(dir + "/type");
  if (!type) return error{ENOENT, "no " + pmu + " PMU (" + type.error().message + ")"};
  auto t = parse_number(*type, dir + "/type");
  if (!t) return t.error();
  if (*t > UINT32_MAX) return error{ERANGE, dir + "/type: " + *type + " is not a PMU type"};
  spec.type = static_cast<std::uint32_t>(*t);
  std::string terms;
  if (!event.empty()) {
    auto text = read_small(dir + "/events/" + event);
    if (!text) return error{ENOENT, "the " + pmu + " PMU has no event " + event + " (" + text.error().message + ")"};
    terms = *text;
  }
  // "event=0xcd,umask=0x1,ldlat=3": each term through its format file; the overrides replace
  // or add terms (ldlat=64).
  std::vector<std::pair<std::string, std::uint64_t>> values;
  std::string_view rest(terms);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view term = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    if (term.empty()) continue;
    const auto eq = term.find('=');
    const std::string key(term.substr(0, eq));
    std::uint64_t v = 1;  // a bare term is a flag
    if (eq != std::string_view::npos) {
      auto n = parse_number(term.substr(eq + 1), dir + "/events/" + event + " term " + key);
      if (!n) return n.error();
      v = *n;
    }
    values.emplace_back(key, v);
  }
  for (const auto &[k, v] : overrides) {
    bool replaced = false;
    for (auto &kv : values)
      if (kv.first == k) kv.second = v, replaced = true;
    if (!replaced) values.emplace_back(k, v);
  }
  for (const auto &[key, v] : values) {
    auto format = read_small(dir + "/format/" + key);
    if (!format)
      return error{ENOENT, "the " + pmu + " PMU has no format for '" + key + "' (" + format.error().message + ")"};
    if (auto ok = place_term(spec, *format, v, dir + "/format/" + key); !ok) return ok.error();
  }
  return spec;
}

}  // namespace hetmem::detail
