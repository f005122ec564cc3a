// The tiering settings as one string (the preload's HETMEM_TIERING): "1" / "on" for the
// defaults, or "key=value,key=value". Errors name the key or value at fault.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hetmem/policy.hpp"
#include "hetmem/tiering.hpp"

namespace hetmem {
namespace {

result<double> number(std::string_view key, std::string_view v, double lo, double hi) {
  const std::string s(v);
  char *end = nullptr;
  errno = 0;
  const double d = std::strtod(s.c_str(), &end);
  if (s.empty() || errno != 0 || end != s.c_str() + s.size() || !(d >= lo && d <= hi)) {
    char range[64];
    std::snprintf(range, sizeof range, "%g to %g", lo, hi);
    return error{EINVAL, "tiering: " + std::string(key) + "=" + s + ": expected a number from " + range};
  }
  return d;
}

constexpr const char *known_keys =
    "fast-limit, rate, interval, threshold, hysteresis, cooldown, reserve, chunk, window, source, coexist, sites, "
    "perf-event, perf-period, damon-takeover, max-overhead";

// The settings that are plain numbers in a range.
struct number_setting {
  std::string_view key;
  double lo, hi;
  double tiering_options::*field;
};
constexpr number_setting number_settings[] = {
    {"interval", 0.01, 3600, &tiering_options::interval_seconds},
    {"threshold", 0, 1, &tiering_options::promote_threshold},
    {"hysteresis", 0, 1, &tiering_options::hysteresis},
    {"cooldown", 0, 86400, &tiering_options::cooldown_seconds},
    {"window", 0.001, 60, &tiering_options::soft_dirty_window_seconds},
    {"max-overhead", 0, 1, &tiering_options::write_protect_max_overhead},
};

}  // namespace

result<tiering_options> parse_tiering_options(const std::string &spec) {
  tiering_options o;
  if (spec.size() > 4096) return error{E2BIG, "tiering: the settings are longer than 4096 characters"};
  if (spec.empty() || spec == "1" || spec == "on" || spec == "yes" || spec == "true") return o;
  std::string_view rest(spec);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos)
      return error{EINVAL, "tiering: '" + std::string(item) + "': expected key=value (keys: " + known_keys + ")"};
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    auto size = [&]() -> result<std::uint64_t> {
      auto v = policy::parse_size(value);
      if (!v)
        return error{EINVAL, "tiering: " + std::string(key) + "=" + std::string(value) + ": " + v.error().message};
      return *v;
    };
    const number_setting *plain = nullptr;
    for (const auto &n : number_settings)
      if (n.key == key) plain = &n;
    if (plain) {
      auto v = number(key, value, plain->lo, plain->hi);
      if (!v) return v.error();
      o.*(plain->field) = *v;
    } else if (key == "fast-limit") {
      auto v = size();
      if (!v) return v.error();
      o.fast_limit_bytes = *v;
    } else if (key == "rate") {
      std::string_view r = value;
      if (r.size() > 2 && r.substr(r.size() - 2) == "/s") r.remove_suffix(2);
      auto v = policy::parse_size(r);
      if (!v)
        return error{EINVAL, "tiering: rate=" + std::string(value) + ": " + v.error().message +
                                 " (bytes per second, e.g. 256M)"};
      o.max_bytes_per_second = *v;
    } else if (key == "reserve") {
      std::string_view r = value;
      const bool percent = !r.empty() && r.back() == '%';
      if (percent) r.remove_suffix(1);
      auto v = number(key, r, 0, percent ? 99 : 0.99);
      if (!v) return v.error();
      o.fast_reserve_fraction = percent ? *v / 100 : *v;
    } else if (key == "chunk") {
      auto v = size();
      if (!v) return v.error();
      if (*v < 4096 || (*v & (*v - 1)) != 0)
        return error{EINVAL, "tiering: chunk=" + std::string(value) + ": a power of two of at least 4K"};
      o.chunk_bytes = static_cast<std::size_t>(*v);
    } else if (key == "source") {
      if (value == "auto")
        o.source = hotness_source::automatic;
      else if (value == "damon")
        o.source = hotness_source::damon;
      else if (value == "soft-dirty")
        o.source = hotness_source::soft_dirty;
      else if (value == "write-protect" || value == "uffd-wp")
        o.source = hotness_source::write_protect;
      else if (value == "perf")
        o.source = hotness_source::perf;
      else
        return error{EINVAL, "tiering: source=" + std::string(value) +
                                 ": expected auto, damon, soft-dirty, write-protect or perf"};
    } else if (key == "perf-event") {
      if (value != "auto" && value != "mem-loads" && value != "ibs-op" && value != "page-faults")
        return error{EINVAL,
                     "tiering: perf-event=" + std::string(value) + ": expected auto, mem-loads, ibs-op or page-faults"};
      o.perf_event = std::string(value);
    } else if (key == "perf-period") {
      auto v = number(key, value, 1, 1e9);
      if (!v) return v.error();
      if (*v != static_cast<double>(static_cast<std::uint64_t>(*v)))
        return error{EINVAL, "tiering: perf-period=" + std::string(value) + ": a whole number of events"};
      o.perf_period = static_cast<std::uint64_t>(*v);
    } else if (key == "sites") {
      // The preload's allocation sites: off, on (1 MiB), or the smallest block to follow.
      if (value == "off" || value == "0") {
        o.site_min_bytes = 0;
      } else if (value != "on") {
        auto v = size();
        if (!v) return error{v.error().code, v.error().message + " (sites=off, on, or the smallest block, e.g. 1M)"};
        if (*v < 4096)
          return error{EINVAL, "tiering: sites=" + std::string(value) + ": blocks under 4K are not followed by site"};
        o.site_min_bytes = static_cast<std::size_t>(*v);
      }
    } else if (key == "damon-takeover") {
      if (value == "on" || value == "1")
        o.damon_takeover = true;
      else if (value == "off" || value == "0")
        o.damon_takeover = false;
      else
        return error{EINVAL, "tiering: damon-takeover=" + std::string(value) + ": expected on or off"};
    } else if (key == "coexist") {
      if (value == "coexist" || value == "auto")
        o.coexist = kernel_coexistence::coexist;
      else if (value == "yield")
        o.coexist = kernel_coexistence::yield;
      else if (value == "force")
        o.coexist = kernel_coexistence::force;
      else
        return error{EINVAL, "tiering: coexist=" + std::string(value) + ": expected coexist, yield or force"};
    } else {
      return error{EINVAL, "tiering: unknown key '" + std::string(key) + "' (keys: " + known_keys + ")"};
    }
  }
  if (o.soft_dirty_window_seconds >= o.interval_seconds)
    return error{EINVAL, "tiering: window must be shorter than interval"};
  return o;
}

}  // namespace hetmem
