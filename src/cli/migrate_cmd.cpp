// migrate_cmd.cpp — `hetmem migrate --pid P --to TIER [--from TIER] [--range A-B]...`.
#include "migrate_cmd.hpp"

#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "hetmem/format.hpp"
#include "hetmem/migrate.hpp"
#include "hetmem/policy.hpp"
#include "hetmem/topology.hpp"

namespace hetmem::cli {
namespace {

std::optional<address_range> parse_range(const std::string &text) {
  const auto dash = text.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 >= text.size()) return std::nullopt;
  auto number = [](const std::string &s) -> std::optional<std::uintptr_t> {
    char *end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 16);
    if (errno != 0 || !end || *end != '\0' || s.empty() || s[0] == '-' || s[0] == '+') return std::nullopt;
    return static_cast<std::uintptr_t>(v);
  };
  auto lo = number(text.substr(0, dash)), hi = number(text.substr(dash + 1));
  if (!lo || !hi || *hi <= *lo) return std::nullopt;
  return address_range{*lo, *hi, "--range"};
}

}  // namespace

int run_migrate(const migrate_args &a) {
  std::uint64_t rate_bytes = 0;  // 0: as fast as the kernel goes
  if (a.rate_mib_s) {
    // A rate is a finite number of MiB/s of at least one byte per second and at most 1 PiB/s
    // (no machine copies faster; and the product must fit the byte count). 0 would read as
    // "unlimited" below, and infinity (1e400) would overflow the conversion.
    const double r = *a.rate_mib_s;
    constexpr double max_mib_s = 1024.0 * 1024 * 1024;
    if (!std::isfinite(r) || r * 1024 * 1024 < 1 || r > max_mib_s) {
      std::fprintf(stderr, "hetmem migrate: --rate %g: expected MiB/s, above 0 (at least 1 byte/s) and at most %.0f\n",
                   r, max_mib_s);
      return exit_usage;
    }
    rate_bytes = static_cast<std::uint64_t>(r * 1024 * 1024);
  }
  if (a.pid <= 0) {
    std::fprintf(stderr, "hetmem migrate: --pid must name a process (a positive number)\n");
    return exit_usage;
  }
  auto topo = load_topology();
  if (!topo) {
    std::fprintf(stderr, "hetmem migrate: cannot read the memory topology: %s\n", topo.error().message.c_str());
    return exit_failure;
  }
  auto to = tier_named(a.to, "--to", *topo);
  if (!to) {
    std::fprintf(stderr, "hetmem migrate: %s\n", to.error().message.c_str());
    return exit_usage;
  }
  migration_options o;
  o.pid = a.pid;
  o.max_bytes_per_second = rate_bytes;
  if (a.from) {
    auto from = tier_named(*a.from, "--from", *topo);
    if (!from) {
      std::fprintf(stderr, "hetmem migrate: %s\n", from.error().message.c_str());
      return exit_usage;
    }
    o.only_from = from->where.nodes;
  }
  std::vector<address_range> ranges;
  if (!a.ranges.empty()) {
    for (const auto &r : a.ranges) {
      auto parsed = parse_range(r);
      if (!parsed) {
        std::fprintf(stderr, "hetmem migrate: --range '%s': expected START-END in hex, START below END\n", r.c_str());
        return exit_usage;
      }
      ranges.push_back(*parsed);
    }
  } else {
    auto all = process_ranges(a.pid, a.all_mappings);
    if (!all) {
      std::fprintf(stderr, "hetmem migrate: %s\n", all.error().message.c_str());
      return exit_failure;
    }
    ranges = std::move(*all);
  }
  const bool bar = !a.quiet && !a.json && (a.progress || ::isatty(2) == 1);
  if (bar) {
    o.progress = [last = -1](std::uint64_t done, std::uint64_t total) mutable {
      const int percent = total ? static_cast<int>(done * 100 / total) : 100;
      if (percent == last) return;  // one update per percent
      last = percent;
      const int width = 40;
      const int filled =
          total ? static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * width) : width;
      std::fprintf(stderr, "\r[%-*.*s] %3d%% of %" PRIu64 " pages", width, filled,
                   "########################################", percent, total);
      std::fflush(stderr);
    };
  }
  auto r = migrate(ranges, *to, o);
  if (bar) std::fputc('\n', stderr);
  if (!r) {
    std::fprintf(stderr, "hetmem migrate: %s\n", r.error().message.c_str());
    return exit_failure;
  }
  if (a.json) {
    nlohmann::json j;
    j["schema"] = "hetmem.migrate/1";
    j["pid"] = a.pid;
    j["to"] = {{"text", a.to}, {"nodes", to->where.nodes.to_vector()}};
    if (a.from) j["from"] = {{"text", *a.from}, {"nodes", o.only_from.to_vector()}};
    j["pages"] = r->pages;
    j["page_size"] = r->page_size;
    j["moved"] = r->moved;
    j["bytes_moved"] = r->bytes_moved();
    j["already_there"] = r->already_there;
    j["not_selected"] = r->not_selected;
    j["not_present"] = r->not_present;
    j["failed"] = {{"busy", r->busy}, {"no_memory", r->no_memory}, {"shared", r->shared}, {"other", r->other_failed}};
    if (r->first_error) j["first_error"] = r->first_error;
    nlohmann::json per = nlohmann::json::object();
    for (const auto &[node, n] : r->moved_to) per[std::to_string(node)] = n;
    j["moved_to"] = per;
    j["seconds"] = r->seconds;
    std::printf("%s\n", j.dump(2).c_str());
  } else if (!a.quiet) {
    std::printf("hetmem migrate: pid %d to %s (node%s %s): %s\n", static_cast<int>(a.pid), a.to.c_str(),
                to->where.nodes.count() > 1 ? "s" : "", to->where.nodes.to_string().c_str(), r->summary().c_str());
  }
  return r->failed() ? exit_partial : exit_ok;
}

}  // namespace hetmem::cli
