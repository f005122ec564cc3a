// tiering_statistics::summary(): the engine's statistics as one line of text (tierd, HETMEM_REPORT).
#include <cstdio>
#include <string>

#include "hetmem/format.hpp"
#include "hetmem/tiering.hpp"

namespace hetmem {

std::string tiering_statistics::summary() const {
  char cpu[64];
  std::snprintf(cpu, sizeof cpu, "%.2f s", engine_cpu_seconds + source_cpu_seconds);
  std::string s = "interval " + std::to_string(intervals) + ": fast " + format_bytes(fast_bytes) + ", slow " +
                  format_bytes(slow_bytes) + ", hot " + format_bytes(hot_bytes) + "; promoted " +
                  std::to_string(pages_promoted) + ", demoted " + std::to_string(pages_demoted) + " pages";
  if (promote_failed + demote_failed > 0) s += " (" + std::to_string(promote_failed + demote_failed) + " refused)";
  s += "; cpu " + std::string(cpu);
  if (engine_cpu_seconds > 0) {
    char parts[128];
    if (source_cpu_seconds > 0)
      std::snprintf(parts, sizeof parts, " (observing %.2f s, moving pages %.2f s, kdamond %.2f s)",
                    observe_cpu_seconds, migrate_cpu_seconds, source_cpu_seconds);
    else
      std::snprintf(parts, sizeof parts, " (observing %.2f s, moving pages %.2f s)", observe_cpu_seconds,
                    migrate_cpu_seconds);
    s += parts;
  }
  if (write_fault_seconds > 0) {
    char cost[160];
    std::snprintf(cost, sizeof cost, "; write faults %.1f us each, about %.1f%% of the program's time",
                  write_fault_seconds * 1e6, source_overhead * 100);
    s += cost;
    if (scan_chunks > 0) s += ", " + std::to_string(scan_chunks) + " chunks scanned";
  }
  if (site_knowledge) {
    s += "; sites " + std::to_string(sites) + " (" + std::to_string(sites_hot) + " hot, " + std::to_string(sites_cold) +
         " cold), " + std::to_string(cold_placed_blocks) + " blocks placed on the slow tier by site (" +
         format_bytes(cold_placed_bytes) + ")";
  }
  if (!last_error.empty()) s += "; last error: " + last_error;
  return s;
}

}  // namespace hetmem
