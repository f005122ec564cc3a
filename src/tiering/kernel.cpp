// What the kernel does about tiering on its own: NUMA balancing's mode, demotion, DAMON users,
// PSI. Read only, relative to a root so a captured tree reads the same.
#include <dirent.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "hetmem/sysfs/reader.hpp"
#include "hetmem/tiering.hpp"
#include "text.hpp"

namespace hetmem {
namespace {

int read_int(const std::string &path, int absent) {
  std::string s;
  if (!tiering_detail::read_text(path, s) || s.empty()) return absent;
  if (s == "true" || s == "Y") return 1;
  if (s == "false" || s == "N") return 0;
  try {
    return std::stoi(s);
  } catch (...) {
    return absent;
  }
}

bool exists(const std::string &path) { return ::access(path.c_str(), F_OK) == 0; }

}  // namespace

kernel_tiering_state detect_kernel_tiering(const std::string &root) {
  // NUMA balancing's mode and demotion: as the topology reader reads them (bounded, checked).
  sysfs::read_options ro;
  ro.root = root.empty() ? "/" : root;
  auto snap = sysfs::read_snapshot(ro);
  return detect_kernel_tiering(root, snap ? *snap : sysfs::snapshot{});
}

kernel_tiering_state detect_kernel_tiering(const std::string &root, const sysfs::snapshot &snap) {
  kernel_tiering_state s;
  if (snap.numa_balancing) s.numa_balancing = static_cast<int>(*snap.numa_balancing);
  if (snap.demotion_enabled) s.demotion_enabled = *snap.demotion_enabled ? 1 : 0;
  s.promote_rate_limit_mbps = read_int(root + "/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps", -1);
  s.hot_threshold_ms = read_int(root + "/sys/kernel/debug/sched/numa_balancing/hot_threshold_ms", -1);
  // A kernel offers it on every node or on none: the first node tells.
  s.node_reclaim = !snap.nodes.empty() &&
                   exists(root + "/sys/devices/system/node/node" + std::to_string(snap.nodes.front().id) + "/reclaim");
  const std::string admin = root + "/sys/kernel/mm/damon/admin";
  s.damon_sysfs = exists(admin + "/kdamonds/nr_kdamonds");
  if (s.damon_sysfs) {
    s.damon_kdamonds = read_int(admin + "/kdamonds/nr_kdamonds", 0);
    for (int k = 0; k < s.damon_kdamonds && k < 1024; ++k) {
      const std::string kd = admin + "/kdamonds/" + std::to_string(k);
      std::string state;
      const bool on = tiering_detail::read_text(kd + "/state", state) && state == "on";
      if (on) ++s.damon_running;
      const int contexts = read_int(kd + "/contexts/nr_contexts", 0);
      for (int c = 0; c < contexts && c < 64; ++c) {
        const std::string ctx = kd + "/contexts/" + std::to_string(c);
        std::string ops;
        (void)tiering_detail::read_text(ctx + "/operations", ops);
        const int schemes = read_int(ctx + "/schemes/nr_schemes", 0);
        for (int i = 0; i < schemes && i < 64; ++i) {
          const std::string scheme = ctx + "/schemes/" + std::to_string(i);
          std::string action;
          (void)tiering_detail::read_text(scheme + "/action", action);
          std::string line =
              "kdamond " + std::to_string(k) + (on ? " (running)" : " (off)") + ": " + ops + " " + action;
          // migrate_hot/migrate_cold (6.11) move to target_nid.
          if (std::string nid; (action == "migrate_hot" || action == "migrate_cold") &&
                               tiering_detail::read_text(scheme + "/target_nid", nid))
            line += " to node " + nid;
          // Quota goals (6.8; node_mem_used_bp/node_mem_free_bp with nid, 6.16): what the scheme
          // tunes its quota to keep, and where it stands.
          const int goals = read_int(scheme + "/quotas/goals/nr_goals", 0);
          for (int g = 0; g < goals && g < 16; ++g) {
            const std::string goal = scheme + "/quotas/goals/" + std::to_string(g);
            std::string metric, target, current, nid;
            (void)tiering_detail::read_text(goal + "/target_metric", metric);
            (void)tiering_detail::read_text(goal + "/target_value", target);
            line += "; goal " + (metric.empty() ? std::string("user_input") : metric);
            if (metric.rfind("node_mem_", 0) == 0 && tiering_detail::read_text(goal + "/nid", nid))
              line += " of node " + nid;
            line += " " + (target.empty() ? std::string("?") : target);
            if (tiering_detail::read_text(goal + "/current_value", current) && !current.empty())
              line += " (now " + current + ")";
          }
          s.damon_schemes.push_back(line);
        }
      }
    }
  }
  s.damon_reclaim = read_int(root + "/sys/module/damon_reclaim/parameters/enabled", 0) == 1;
  s.damon_lru_sort = read_int(root + "/sys/module/damon_lru_sort/parameters/enabled", 0) == 1;
  s.damon_stat = read_int(root + "/sys/module/damon_stat/parameters/enabled", 0) == 1;
  std::string psi;
  s.psi = tiering_detail::read_text(root + "/proc/pressure/memory", psi) && psi.rfind("some", 0) == 0;
  return s;
}

std::vector<std::string> kernel_tiering_state::notes() const {
  std::vector<std::string> n;
  switch (numa_balancing) {
    case -1:
      n.emplace_back("NUMA balancing: not built into this kernel");
      break;
    case 0:
      n.emplace_back("NUMA balancing: off (kernel.numa_balancing=0)");
      break;
    default:
      if (kernel_promotes())
        n.push_back("NUMA balancing is in tiering mode (kernel.numa_balancing=" + std::to_string(numa_balancing) +
                    "): the kernel promotes hot pages itself" +
                    (promote_rate_limit_mbps >= 0 ? " (at most " + std::to_string(promote_rate_limit_mbps) + " MB/s)"
                                                  : std::string()) +
                    (hot_threshold_ms >= 0 ? ", pages accessed again within " + std::to_string(hot_threshold_ms) +
                                                 " ms of a hint fault count as hot"
                                           : std::string()));
      if (balancing_pulls_back())
        n.emplace_back(
            "NUMA balancing is in its normal mode (kernel.numa_balancing has bit 1): it moves pages to the node of the "
            "CPUs using them, which undoes demotion to CPU-less nodes; `sysctl kernel.numa_balancing=0` (or 2) stops "
            "that");
      break;
  }
  if (node_reclaim)
    n.emplace_back(
        "per-node proactive reclaim is offered (nodeN/reclaim): writing a size there reclaims from that node, "
        "demoting first where demotion is on");
  if (demotion_enabled == 1)
    n.emplace_back(
        "demotion on reclaim is enabled (/sys/kernel/mm/numa/demotion_enabled): the kernel demotes when a "
        "fast node is reclaimed; hetmem demotes earlier, before reclaim starts");
  else if (demotion_enabled == 0)
    n.emplace_back("demotion on reclaim is disabled: a full fast node reclaims (or swaps) instead of demoting");
  if (!damon_sysfs)
    n.emplace_back("DAMON sysfs interface: absent (no CONFIG_DAMON_SYSFS, or sysfs not mounted)");
  else if (damon_kdamonds == 0)
    n.emplace_back("DAMON: available, no kdamond configured");
  else
    n.push_back("DAMON: " + std::to_string(damon_kdamonds) + " kdamond(s) configured by someone else, " +
                std::to_string(damon_running) + " running; hetmem leaves them alone");
  for (const auto &sc : damon_schemes) n.push_back("DAMON scheme " + sc);
  if (damon_stat)
    n.emplace_back(
        "DAMON_STAT is running (/sys/module/damon_stat/parameters/enabled = Y): while it does, the kernel starts no "
        "other kdamond, so hetmem's DAMON source cannot run; the tiering setting damon-takeover=on (tierd "
        "--damon-takeover) stops it while hetmem uses DAMON and starts it again after");
  if (damon_reclaim) n.emplace_back("DAMON_RECLAIM is enabled: the kernel pages out cold memory itself");
  if (damon_lru_sort) n.emplace_back("DAMON_LRU_SORT is enabled: the kernel sorts LRU lists by access itself");
  if (!psi) n.emplace_back("PSI (/proc/pressure/memory): unavailable; pressure is judged by free memory only");
  return n;
}

}  // namespace hetmem
