// classify.cpp — turns a sysfs snapshot into memory kinds and reasons (the tier order: tier_order.cpp).
//
// Evidence, most trusted first: user override; dax/kmem links (NVDIMM, CXL, soft-reserved);
// NVIDIA numa_status; memory-side caches (2LM / cache modes); a saved probe of this machine
// (measured); HMAT access1, then access0 when it names CPU initiators; the CPU model (Xeon
// Phi); SLIT distance, CPU-less-ness and zones. Kernel memory tiers are a cross-check. Where
// sources disagree, the node says so.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <new>

#include "hetmem/format.hpp"
#include "hetmem/sysfs/environment.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/topology.hpp"
#include "tier_order.hpp"

namespace hetmem {

namespace {

using sysfs::id_set;

std::optional<std::uint64_t> first_of(std::optional<std::uint64_t> a, std::optional<std::uint64_t> b) {
  return a ? a : b;
}

std::string describe_perf(const node_performance &p) {
  std::string s;
  auto lat = first_of(p.read_latency_ns, p.write_latency_ns);
  auto bw = first_of(p.read_bandwidth_mbps, p.write_bandwidth_mbps);
  if (lat) s += std::to_string(*lat) + " ns";
  if (bw) s += (s.empty() ? "" : ", ") + format_bandwidth_mbps(*bw);
  return s;
}

// How a node performs beside the DDR reference, by the ratios of its bandwidth and latency to
// the reference's: the thresholds HMAT's figures and a probe's measurements are judged by.
// fast: twice DDR's bandwidth at most twice its latency (HBM); slow: 1.8x its latency or 0.6x
// its bandwidth (CXL, PMEM); neither: performs like DDR.
struct performance_judgement {
  bool fast = false, slow = false;
};
constexpr double fast_min_bandwidth_ratio = 2.0, fast_max_latency_ratio = 2.0;
constexpr double slow_min_latency_ratio = 1.8, slow_max_bandwidth_ratio = 0.6;

performance_judgement judge_performance(std::optional<double> bandwidth_ratio, std::optional<double> latency_ratio) {
  performance_judgement j;
  j.fast = bandwidth_ratio && *bandwidth_ratio >= fast_min_bandwidth_ratio &&
           (!latency_ratio || *latency_ratio < fast_max_latency_ratio);
  j.slow = (latency_ratio && *latency_ratio >= slow_min_latency_ratio) ||
           (bandwidth_ratio && *bandwidth_ratio <= slow_max_bandwidth_ratio);
  return j;
}

// Whether a kind already decided by stronger evidence contradicts how the node performs: fast
// memory taken for PMEM, CXL or DDR; slow memory taken for HBM, or for DDR without a
// memory-side cache in front (which can make DDR measure slow).
bool contradicts(const performance_judgement &j, memory_kind decided, bool memory_side_cached) {
  return (j.fast && (decided == memory_kind::pmem || decided == memory_kind::cxl || decided == memory_kind::ddr)) ||
         (j.slow && (decided == memory_kind::hbm || (decided == memory_kind::ddr && !memory_side_cached)));
}

// The verdict being built. Contract: every set() is immediately followed by pushing the
// reason that justifies it, so `reason_index` names the deciding reason.
struct verdict {
  std::vector<reason> *reasons = nullptr;
  memory_kind kind = memory_kind::unknown;
  confidence certainty = confidence::low;
  bool decided = false;
  std::size_t reason_index = 0;
  void set(memory_kind k, confidence c) {
    kind = k;
    certainty = c;
    decided = true;
    reason_index = reasons->size();
  }
};

bool is_intel_family6(const sysfs::cpu_identity &cpu, std::initializer_list<std::uint32_t> models) {
  if (cpu.vendor != "GenuineIntel" || cpu.family.value_or(0) != 6 || !cpu.model) return false;
  return std::find(models.begin(), models.end(), *cpu.model) != models.end();
}
bool is_knl(const sysfs::cpu_identity &cpu) { return is_intel_family6(cpu, {87, 133}); }  // Knights Landing/Mill
bool is_optane_platform(const sysfs::cpu_identity &cpu) {  // Cascade/Cooper Lake, Ice Lake-SP
  return is_intel_family6(cpu, {85, 106});
}
bool is_xeon_max_platform(const sysfs::cpu_identity &cpu) {  // Sapphire Rapids (incl. Xeon Max)
  return is_intel_family6(cpu, {143});
}
std::string cpu_label(const sysfs::cpu_identity &cpu) {
  std::string s = cpu.model_name.empty() ? cpu.vendor : cpu.model_name;
  if (cpu.family && cpu.model)
    s += " (family " + std::to_string(*cpu.family) + " model " + std::to_string(*cpu.model) + ")";
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

class classifier {
 public:
  classifier(topology &t, const classify_options &opt) : t_(t), snap_(t.snapshot), opt_(opt) {}

  void run() {
    gather();
    take_probe();
    choose_performance();
    find_reference();
    for (auto &n : t_.nodes) decide(n);
    kernel_tier_crosscheck();
    apply_overrides();
    order_initiators();
    machine_notes();
  }

 private:
  topology &t_;
  const sysfs::snapshot &snap_;
  const classify_options &opt_;
  id_set cpu_nodes_;
  std::optional<double> ref_latency_, ref_bandwidth_;
  id_set ref_nodes_;
  std::vector<bool> soft_reserved_;         // by index into t_.nodes
  std::optional<std::uint32_t> probe_ref_;  // the probe's reference node, when a probe is used

  std::size_t index_of(const node_info &n) const { return static_cast<std::size_t>(&n - t_.nodes.data()); }

  // -----------------------------------------------------------------------------------------
  void gather() {
    for (const auto &sn : snap_.nodes) {
      node_info n;
      n.id = sn.id;
      n.cpus = sn.cpus;
      if (!sn.cpus.empty()) cpu_nodes_.insert(sn.id);
      n.is_generic_initiator = snap_.has_generic_initiator && snap_.has_generic_initiator->contains(sn.id);
      if (sn.mem_total_kb) {
        n.capacity_bytes = *sn.mem_total_kb * 1024;
        n.has_memory = *sn.mem_total_kb > 0;
      } else {
        n.has_memory = snap_.has_memory ? snap_.has_memory->contains(sn.id) : false;
      }
      if (sn.mem_free_kb) n.free_bytes = *sn.mem_free_kb * 1024;
      n.memory_side_caches = sn.memory_side_caches;
      for (const auto &tier : snap_.memory_tiers)
        if (tier.nodes.contains(sn.id)) n.kernel_tier = tier.id;
      n.allowed = !snap_.allowed_mems || snap_.allowed_mems->contains(sn.id);
      for (const auto &d : snap_.dax_devices)
        if (d.driver == sysfs::dax_driver::kmem && d.target_node && *d.target_node == static_cast<std::int64_t>(sn.id))
          n.dax_devices.push_back(d.name);
      for (const auto &g : snap_.nvidia_gpus)
        if (g.status.node && *g.status.node == static_cast<std::int64_t>(sn.id)) n.gpu = g.pci_address;
      t_.nodes.push_back(std::move(n));
    }
    soft_reserved_.assign(t_.nodes.size(), false);
  }

  const sysfs::node &raw(const node_info &n) const { return *snap_.find_node(n.id); }

  // A saved probe is used when it describes this machine; otherwise a note says why not.
  void take_probe() {
    if (!opt_.probe) return;
    const std::string origin = opt_.probe_origin.empty() ? std::string("the probe report") : opt_.probe_origin;
    // probe_mismatch() needs capacities and memory, which gather() has filled in.
    if (auto why = probe_mismatch(*opt_.probe, t_)) {
      t_.notes.push_back(origin + " not used: " + *why + " (a probe of another machine or configuration?)");
      return;
    }
    t_.probe = opt_.probe;
    t_.probe_origin = origin;
    for (auto &n : t_.nodes)
      if (const auto *m = opt_.probe->find(n.id)) n.measured = *m;
    probe_ref_ = probe_reference_node(*opt_.probe, t_);
  }

  // Pick access1, else access0 when it names CPU initiators. Record local initiators.
  void choose_performance() {
    int used1 = 0, used0 = 0;
    for (auto &n : t_.nodes) {
      const auto &sn = raw(n);
      const auto &a1 = sn.access[1];
      const auto &a0 = sn.access[0];
      auto take = [&](const sysfs::access_class &a, int cls) {
        n.performance.access_class = cls;
        n.performance.read_latency_ns = a.performance.read_latency_ns;
        n.performance.write_latency_ns = a.performance.write_latency_ns;
        n.performance.read_bandwidth_mbps = a.performance.read_bandwidth_mbps;
        n.performance.write_bandwidth_mbps = a.performance.write_bandwidth_mbps;
      };
      if (a1.present && a1.performance.any()) {
        take(a1, 1);
        ++used1;
      } else if (a0.present && a0.performance.any()) {
        if (!a0.initiators.empty() && !a0.initiators.intersects(cpu_nodes_)) {
          n.reasons.push_back(
              {evidence_source::hmat_access0, "access0 describes access from generic initiator node(s) " +
                                                  a0.initiators.to_string() + " only, not from CPUs: ignored"});
        } else {
          take(a0, 0);
          ++used0;
        }
      } else if ((a1.present && a1.performance.zero_values_seen) || (a0.present && a0.performance.zero_values_seen)) {
        n.reasons.push_back({evidence_source::hmat_access1,
                             "HMAT access files exist but report 0 for latency and bandwidth (= not reported)"});
      }
      // Local initiators: HMAT links first (access1, then access0), else the nearest CPU nodes.
      if (a1.present && !a1.initiators.empty())
        n.local_initiators = a1.initiators;
      else if (a0.present && !a0.initiators.empty() && a0.initiators.intersects(cpu_nodes_))
        n.local_initiators = a0.initiators;
      else
        n.local_initiators = nearest_cpu_nodes(n.id);
    }
    t_.hmat_reported = used1 + used0 > 0;
    t_.hmat_access_class = used1 > 0 ? 1 : (used0 > 0 ? 0 : -1);
  }

  id_set nearest_cpu_nodes(std::uint32_t target) const {
    id_set out;
    if (cpu_nodes_.contains(target)) {
      out.insert(target);
      return out;
    }
    // Local by SLIT only when one initiator is strictly nearest: memory equally far from
    // every socket is nobody's local memory.
    std::optional<std::uint32_t> best;
    for (std::uint32_t c : cpu_nodes_.to_vector()) {
      auto d = snap_.distance(c, target);
      if (!d) continue;
      if (!best || *d < *best) {
        best = d;
        out = id_set{};
      }
      if (*d == *best) out.insert(c);
    }
    if (out.count() > 1) return id_set{};
    return out;
  }

  bool is_dax_or_gpu(const node_info &n) const { return !n.dax_devices.empty() || !n.gpu.empty(); }

  // Reference DDR performance: system-RAM nodes (not dax, not GPU, normal zone) with HMAT values.
  void find_reference() {
    // Candidates: system RAM with HMAT values. Nodes with CPUs among them are the reference
    // (CPU-less nodes may be HBM); where no candidate has CPUs (CPU-only initiator nodes, as
    // on Cascade Lake with a generic initiator), all candidates are.
    std::vector<const node_info *> cands;
    for (const auto &n : t_.nodes) {
      if (!n.has_memory || is_dax_or_gpu(n) || n.performance.access_class < 0) continue;
      if (snap_.has_normal_memory && !snap_.has_normal_memory->contains(n.id)) continue;
      if (!n.memory_side_caches.empty()) continue;  // 2LM: the far memory is not a DDR reference
      cands.push_back(&n);
    }
    if (std::any_of(cands.begin(), cands.end(), [](const node_info *n) { return !n->cpus.empty(); }))
      cands.erase(std::remove_if(cands.begin(), cands.end(), [](const node_info *n) { return n->cpus.empty(); }),
                  cands.end());
    std::vector<double> lat, bw;
    for (const node_info *np : cands) {
      const node_info &n = *np;
      ref_nodes_.insert(n.id);
      if (auto l = first_of(n.performance.read_latency_ns, n.performance.write_latency_ns))
        lat.push_back(static_cast<double>(*l));
      if (auto b = first_of(n.performance.read_bandwidth_mbps, n.performance.write_bandwidth_mbps))
        bw.push_back(static_cast<double>(*b));
    }
    if (!lat.empty()) ref_latency_ = median(lat);
    if (!bw.empty()) ref_bandwidth_ = median(bw);
  }

  // -----------------------------------------------------------------------------------------
  void decide(node_info &n) {
    std::vector<reason> rs;
    verdict v;
    v.reasons = &rs;
    if (!n.has_memory) {
      n.kind = memory_kind::none;
      n.certainty = confidence::high;
      std::string what = n.is_generic_initiator ? "generic initiator (accelerator) node"
                                                : (n.cpus.empty() ? "empty node" : "CPU-only node");
      n.reasons.insert(n.reasons.begin(), reason{evidence_source::topology,
                                                 what + " with no memory (MemTotal 0 kB): not a memory target"});
      return;
    }
    dax_evidence(n, v, rs);
    gpu_evidence(n, v, rs);
    cache_evidence(n, v, rs);
    probe_evidence(n, v, rs);
    hmat_evidence(n, v, rs);
    knl_evidence(n, v, rs);
    fallback_evidence(n, v, rs);
    slit_note(n, rs);
    n.kind = v.kind;
    n.certainty = v.certainty;
    // The deciding reason first, the others in the order they were gathered.
    if (v.decided && v.reason_index < rs.size())
      std::rotate(rs.begin(), rs.begin() + static_cast<std::ptrdiff_t>(v.reason_index),
                  rs.begin() + static_cast<std::ptrdiff_t>(v.reason_index) + 1);
    // Reasons gathered during choose_performance() (ignored access0, zero HMAT) go last.
    rs.insert(rs.end(), n.reasons.begin(), n.reasons.end());
    n.reasons = std::move(rs);
  }

  void dax_evidence(node_info &n, verdict &v, std::vector<reason> &rs) {
    for (const auto &d : snap_.dax_devices) {
      if (d.driver != sysfs::dax_driver::kmem || !d.target_node || *d.target_node != static_cast<std::int64_t>(n.id))
        continue;
      std::string src = d.name + " (kmem) on ";
      switch (d.parent) {
        case sysfs::dax_parent::nvdimm:
          if (!v.decided) v.set(memory_kind::pmem, confidence::high);
          rs.push_back(
              {evidence_source::dax_kmem, src + "an NVDIMM region (ndbus): persistent memory onlined as system RAM"});
          break;
        case sysfs::dax_parent::legacy_pmem:
          if (!v.decided) v.set(memory_kind::pmem, confidence::high);
          rs.push_back(
              {evidence_source::dax_kmem, src + "a legacy e820 pmem region: persistent memory onlined as system RAM"});
          break;
        case sysfs::dax_parent::cxl_ram:
          if (!v.decided) v.set(memory_kind::cxl, confidence::high);
          rs.push_back({evidence_source::dax_kmem, src + "a CXL RAM region: CXL memory expander"});
          break;
        case sysfs::dax_parent::cxl_pmem:
          if (!v.decided) v.set(memory_kind::cxl, confidence::high);
          rs.push_back({evidence_source::dax_kmem, src + "a CXL persistent region: CXL memory used as RAM"});
          break;
        case sysfs::dax_parent::soft_reserved:
          soft_reserved_[index_of(n)] = true;
          rs.push_back(
              {evidence_source::dax_kmem,
               src + "soft-reserved (EFI specific-purpose) memory: HBM or firmware-mapped CXL; performance decides"});
          break;
        case sysfs::dax_parent::unknown:
          rs.push_back({evidence_source::dax_kmem, src + "an unrecognised parent '" + d.device_path + "'"});
          break;
      }
    }
  }

  void gpu_evidence(node_info &n, verdict &v, std::vector<reason> &rs) {
    for (const auto &g : snap_.nvidia_gpus) {
      if (!g.status.node || *g.status.node != static_cast<std::int64_t>(n.id)) continue;
      std::string text = "NVIDIA GPU " + g.pci_address + " exposes its memory as this node (status " +
                         (g.status.status.empty() ? std::string("unknown") : g.status.status) + ")";
      if (g.status.size_bytes) text += ", " + format_bytes(*g.status.size_bytes);
      if (v.decided && v.kind != memory_kind::device)
        n.disagreements.push_back("/proc/driver/nvidia says GPU memory, but " + std::string(to_string(v.kind)) +
                                  " was decided first");
      else
        v.set(memory_kind::device, confidence::high);
      rs.push_back({evidence_source::nvidia_numa, text});
    }
  }

  // Far memory behind a memory-side cache (Optane Memory Mode, KNL / Xeon Max cache modes).
  void cache_evidence(node_info &n, verdict &v, std::vector<reason> &rs) {
    const auto &cpu = snap_.cpu;
    if (!n.memory_side_caches.empty()) {
      const auto &c = n.memory_side_caches.back();  // highest index = nearest to the CPU
      if (!c.size_bytes) return;
      std::string desc = format_bytes(*c.size_bytes) + " memory-side cache (index" + std::to_string(c.index);
      if (c.indexing) desc += *c.indexing == 0 ? ", direct-mapped" : ", indexed";
      if (c.write_policy)
        desc += *c.write_policy == 0 ? ", write-back" : (*c.write_policy == 1 ? ", write-through" : "");
      if (c.line_size_bytes) desc += ", " + std::to_string(*c.line_size_bytes) + " B lines";
      desc += ")";
      n.memory_side_cache_bytes = c.size_bytes;
      bool smaller = !n.capacity_bytes || *c.size_bytes < *n.capacity_bytes;
      if (!smaller) {
        rs.push_back({evidence_source::memory_side_cache, desc + " not smaller than the node: ignored"});
        return;
      }
      if (is_knl(cpu)) {
        n.memory_side_cache_note = desc + " of MCDRAM";
        if (!v.decided) v.set(memory_kind::ddr, confidence::high);
        rs.push_back({evidence_source::memory_side_cache, "DDR behind a " + desc + " of MCDRAM (Xeon Phi cache mode)"});
      } else if (is_xeon_max_platform(cpu)) {
        n.memory_side_cache_note = desc + " of HBM";
        if (!v.decided) v.set(memory_kind::ddr, confidence::medium);
        rs.push_back({evidence_source::memory_side_cache, "DDR behind a " + desc + " of HBM (Xeon Max cache mode)"});
      } else {
        n.memory_side_cache_note = desc + " of DDR";
        if (!v.decided) v.set(memory_kind::pmem, is_optane_platform(cpu) ? confidence::medium : confidence::low);
        rs.push_back({evidence_source::memory_side_cache,
                      "far memory behind a " + desc + ": two-level memory, as with Optane Memory Mode" +
                          (is_optane_platform(cpu) ? " (this CPU supports Optane)" : "")});
      }
      return;
    }
    // KNL without sysfs caches: hwloc-dump-hwdata tells the MCDRAM cache of each DDR node.
    if (snap_.knl && is_knl(cpu) && !n.cpus.empty() && snap_.knl->cache_size_bytes &&
        *snap_.knl->cache_size_bytes > 0 && snap_.knl->memory_mode != "Flat") {
      n.memory_side_cache_bytes = snap_.knl->cache_size_bytes;
      n.memory_side_cache_note = format_bytes(*snap_.knl->cache_size_bytes) +
                                 " MCDRAM cache (hwloc-dump-hwdata: " + snap_.knl->memory_mode + ", " +
                                 snap_.knl->cluster_mode + ")";
      rs.push_back({evidence_source::memory_side_cache, "DDR behind a " + n.memory_side_cache_note});
    }
  }

  void hmat_evidence(node_info &n, verdict &v, std::vector<reason> &rs) {
    const auto &p = n.performance;
    if (p.access_class < 0) return;
    const evidence_source src = p.access_class == 1 ? evidence_source::hmat_access1 : evidence_source::hmat_access0;
    const std::string cls = "access" + std::to_string(p.access_class);
    auto lat = first_of(p.read_latency_ns, p.write_latency_ns);
    auto bw = first_of(p.read_bandwidth_mbps, p.write_bandwidth_mbps);
    if (!ref_latency_ && !ref_bandwidth_) {
      rs.push_back({src, cls + ": " + describe_perf(p) + "; no DDR reference node to compare with"});
      return;
    }
    std::optional<double> bw_ratio, lat_ratio;
    if (bw && ref_bandwidth_) bw_ratio = static_cast<double>(*bw) / *ref_bandwidth_;
    if (lat && ref_latency_) lat_ratio = static_cast<double>(*lat) / *ref_latency_;
    std::string cmp;
    if (bw_ratio) cmp += "bandwidth " + format_bandwidth_mbps(*bw) + " = " + format_ratio(*bw_ratio) + " DDR";
    if (lat_ratio)
      cmp += (cmp.empty() ? "" : ", ") + std::string("latency ") + std::to_string(*lat) +
             " ns = " + format_ratio(*lat_ratio) + " DDR";
    const auto [fast, slow] = judge_performance(bw_ratio, lat_ratio);
    const bool sp = soft_reserved_[index_of(n)];
    const bool ref = ref_nodes_.contains(n.id);
    if (v.decided) {
      // Cross-check only.
      if (contradicts({fast, slow}, v.kind, !n.memory_side_cache_note.empty()))
        n.disagreements.push_back(cls + " (" + cmp + ") does not fit " + std::string(to_string(v.kind)));
      rs.push_back({src, cls + ": " + cmp});
      return;
    }
    if (fast) {
      v.set(memory_kind::hbm, sp ? confidence::high : confidence::medium);
      rs.push_back({src, cls + ": " + cmp + ": high-bandwidth memory"});
    } else if (slow) {
      if (sp) {
        v.set(memory_kind::cxl, confidence::medium);
        rs.push_back({src, cls + ": " + cmp + ": slower than DDR; soft-reserved slow memory is firmware-mapped CXL"});
      } else {
        v.set(memory_kind::cxl, confidence::low);
        rs.push_back(
            {src,
             cls + ": " + cmp +
                 ": slower than DDR and not an NVDIMM dax device; firmware-described slow memory is most likely CXL"});
      }
    } else {
      v.set(memory_kind::ddr, ref ? confidence::high : confidence::medium);
      rs.push_back({src, cls + ": " + cmp + (ref ? ": DDR reference node" : ": performs like DDR")});
    }
  }

  // Measured by `hetmem probe` from one initiator: judged against the reference node measured in
  // the same run, with the same thresholds as HMAT. Ahead of HMAT: a measurement of this
  // machine outranks what its firmware claims, and HMAT becomes the cross-check.
  void probe_evidence(node_info &n, verdict &v, std::vector<reason> &rs) {
    if (!t_.probe || !n.measured) return;
    const auto &m = *n.measured;
    const auto *ref = probe_ref_ ? t_.probe->find(*probe_ref_) : nullptr;
    std::string what = "measured from node " + std::to_string(t_.probe->initiator) + " (" + t_.probe_origin + ")";
    auto measured_bw = [](const probe_node_result &r) { return r.read_mbps ? r.read_mbps : r.write_mbps; };
    if (!ref) {
      std::string vals;
      if (m.latency_ns) vals += ": latency " + std::to_string(std::llround(*m.latency_ns)) + " ns";
      if (auto bw = measured_bw(m))
        vals += (vals.empty() ? ": " : ", ") + std::string("bandwidth ") +
                format_bandwidth_mbps(static_cast<std::uint64_t>(std::llround(*bw)));
      rs.push_back({evidence_source::probe, what + vals + "; no reference node was measured to compare with"});
      return;
    }
    std::optional<double> lat_ratio, bw_ratio;
    if (m.latency_ns && ref->latency_ns) lat_ratio = *m.latency_ns / *ref->latency_ns;
    if (auto bw = measured_bw(m), rbw = measured_bw(*ref); bw && rbw) bw_ratio = *bw / *rbw;
    const std::string refname = "node " + std::to_string(*probe_ref_);
    std::string cmp;
    if (m.latency_ns && lat_ratio)
      cmp += "latency " + std::to_string(std::llround(*m.latency_ns)) + " ns = " + format_ratio(*lat_ratio) + " " +
             refname;
    if (auto bw = measured_bw(m); bw && bw_ratio)
      cmp += (cmp.empty() ? "" : ", ") + std::string("bandwidth ") +
             format_bandwidth_mbps(static_cast<std::uint64_t>(std::llround(*bw))) + " = " + format_ratio(*bw_ratio) +
             " " + refname;
    what += ": " + cmp;
    const auto [fast, slow] = judge_performance(bw_ratio, lat_ratio);
    const bool sp = soft_reserved_[index_of(n)];
    if (v.decided) {
      if (contradicts({fast, slow}, v.kind, !n.memory_side_cache_note.empty()))
        n.disagreements.push_back("the probe (" + cmp + ") does not fit " + std::string(to_string(v.kind)));
      rs.push_back({evidence_source::probe, what});
      return;
    }
    if (n.id == *probe_ref_) {
      v.set(memory_kind::ddr, confidence::high);
      rs.push_back({evidence_source::probe, what + ": the reference (the measuring CPUs' own memory): DDR"});
    } else if (fast) {
      v.set(memory_kind::hbm, confidence::medium);
      rs.push_back({evidence_source::probe, what + ": high-bandwidth memory"});
    } else if (slow) {
      v.set(memory_kind::cxl, sp ? confidence::medium : confidence::low);
      rs.push_back(
          {evidence_source::probe, what + (sp ? ": slower than DDR; soft-reserved slow memory is firmware-mapped CXL"
                                              : ": slower than DDR and not an NVDIMM dax device: most likely CXL")});
    } else {
      v.set(memory_kind::ddr, confidence::medium);
      rs.push_back({evidence_source::probe, what + ": performs like DDR"});
    }
  }

  void knl_evidence(node_info &n, verdict &v, std::vector<reason> &rs) {
    if (v.decided || !is_knl(snap_.cpu)) return;
    std::string mode =
        snap_.knl ? " (hwloc-dump-hwdata: " + snap_.knl->memory_mode + ", " + snap_.knl->cluster_mode + ")" : "";
    if (n.cpus.empty()) {
      v.set(memory_kind::hbm, snap_.knl ? confidence::high : confidence::medium);
      rs.push_back(
          {evidence_source::cpu_model, "Xeon Phi " + cpu_label(snap_.cpu) + ": CPU-less nodes are MCDRAM" + mode});
    } else {
      v.set(memory_kind::ddr, confidence::high);
      rs.push_back(
          {evidence_source::cpu_model, "Xeon Phi " + cpu_label(snap_.cpu) + ": nodes with CPUs are DDR" + mode});
    }
  }

  void fallback_evidence(node_info &n, verdict &v, std::vector<reason> &rs) {
    if (v.decided) return;
    const bool movable_only = snap_.has_normal_memory && !snap_.has_normal_memory->contains(n.id);
    if (soft_reserved_[index_of(n)]) {
      rs.push_back({evidence_source::topology,
                    "soft-reserved memory without HMAT performance: HBM or CXL cannot be told apart"});
      v.set(memory_kind::unknown, confidence::low);
      return;
    }
    if (!n.cpus.empty()) {
      v.set(memory_kind::ddr, confidence::medium);
      rs.push_back({evidence_source::topology,
                    "memory of a node with CPUs " + n.cpus.to_string() + " and no evidence of another kind: DDR"});
      return;
    }
    // CPU-less, nothing direct: compare its distance with CPU-attached memory.
    std::optional<std::uint32_t> near, socket;
    for (std::uint32_t c : cpu_nodes_.to_vector()) {
      if (auto d = snap_.distance(c, n.id); d && (!near || *d < *near)) near = d;
      for (std::uint32_t c2 : cpu_nodes_.to_vector())
        if (auto d = snap_.distance(c, c2); d && (!socket || *d > *socket)) socket = d;
    }
    if (movable_only) {
      rs.push_back(
          {evidence_source::topology,
           "CPU-less and only in ZONE_MOVABLE (not in has_normal_memory): hot-plugged or special-purpose memory"});
    }
    if (near && socket && *near <= *socket && !movable_only) {
      v.set(memory_kind::ddr, confidence::low);
      rs.push_back({evidence_source::slit, "CPU-less, but at distance " + std::to_string(*near) +
                                               " no farther than CPU-attached memory (up to " +
                                               std::to_string(*socket) + "): a memory-only DDR node"});
      return;
    }
    v.set(memory_kind::unknown, confidence::low);
    std::string why = "CPU-less";
    if (near && socket)
      why += ", farther (distance " + std::to_string(*near) + ") than any CPU-attached memory (" +
             std::to_string(*socket) + ")";
    why += "; no HMAT, dax or CXL link says what it is";
    rs.push_back({evidence_source::slit, why});
  }

  void slit_note(node_info &n, std::vector<reason> &rs) {
    if (n.local_initiators.empty()) {
      if (!cpu_nodes_.empty())
        rs.push_back({evidence_source::slit, "no initiator is strictly nearest: local to none, ranked by distance"});
      return;
    }
    auto first = n.local_initiators.first();
    auto d = snap_.distance(first, n.id);
    bool from_hmat = raw(n).access[1].initiators.intersects(n.local_initiators) ||
                     raw(n).access[0].initiators.intersects(n.local_initiators);
    std::string text =
        "local to initiator node(s) " + n.local_initiators.to_string() + (from_hmat ? " (HMAT)" : " (nearest by SLIT)");
    if (d) text += ", distance " + std::to_string(*d);
    rs.push_back({evidence_source::slit, text});
  }

  // -----------------------------------------------------------------------------------------
  void kernel_tier_crosscheck() {
    if (!snap_.memory_tiers_reported) return;
    std::optional<std::uint32_t> ddr_tier;
    for (const auto &n : t_.nodes)
      if (n.kind == memory_kind::ddr && n.kernel_tier && (!ddr_tier || *n.kernel_tier < *ddr_tier) && !n.cpus.empty())
        ddr_tier = n.kernel_tier;
    if (!ddr_tier)
      for (const auto &n : t_.nodes)
        if (n.kind == memory_kind::ddr && n.kernel_tier && (!ddr_tier || *n.kernel_tier < *ddr_tier))
          ddr_tier = n.kernel_tier;
    for (auto &n : t_.nodes) {
      if (!n.has_memory || !n.kernel_tier) continue;
      std::string where = "kernel memory_tier" + std::to_string(*n.kernel_tier);
      if (!ddr_tier) {
        n.reasons.push_back({evidence_source::memory_tiers, where});
        continue;
      }
      int rel = *n.kernel_tier < *ddr_tier ? -1 : (*n.kernel_tier > *ddr_tier ? 1 : 0);
      where += rel == 0 ? " (same as DDR)"
                        : (rel < 0 ? " (faster than DDR's memory_tier" : " (slower than DDR's memory_tier") +
                              (rel == 0 ? std::string() : std::to_string(*ddr_tier) + ")");
      n.reasons.push_back({evidence_source::memory_tiers, where});
      bool conflict = (n.kind == memory_kind::hbm && rel >= 0 && t_.hmat_reported) ||
                      ((n.kind == memory_kind::pmem || n.kind == memory_kind::cxl) && rel < 0) ||
                      (n.kind == memory_kind::ddr && rel != 0);
      if (conflict) n.disagreements.push_back(where + " does not fit " + std::string(to_string(n.kind)));
    }
  }

  void apply_overrides() {
    for (const auto &o : opt_.overrides) {
      auto it = std::find_if(t_.nodes.begin(), t_.nodes.end(), [&](const node_info &n) { return n.id == o.node; });
      if (it == t_.nodes.end()) {
        t_.notes.push_back("override for node " + std::to_string(o.node) + " ignored: no such online node");
        continue;
      }
      if (it->kind != o.kind && it->kind != memory_kind::none)
        it->disagreements.push_back("the evidence says " + std::string(to_string(it->kind)) + " (" +
                                    (it->reasons.empty() ? std::string("no reason") : it->reasons.front().text) +
                                    "); overridden by the user");
      it->kind = o.kind;
      it->certainty = confidence::high;
      it->reasons.insert(it->reasons.begin(), reason{evidence_source::user_override,
                                                     "set to " + std::string(to_string(o.kind)) + " by the user"});
    }
  }

  // -----------------------------------------------------------------------------------------
  void order_initiators() { t_.initiators = detail::order_tiers(t_.nodes, snap_, cpu_nodes_); }

  void machine_notes() {
    auto &notes = t_.notes;
    std::size_t mem_nodes = 0;
    for (const auto &n : t_.nodes) mem_nodes += n.has_memory ? 1 : 0;
    if (!snap_.numa_dir_present)
      notes.push_back("no /sys/devices/system/node: a kernel without NUMA support; the machine is one node");
    if (mem_nodes == 1)
      notes.push_back("one memory node: there is a single tier and nothing to place or move between tiers");
    if (!t_.hmat_reported) {
      bool zeros = false;
      for (const auto &sn : snap_.nodes)
        zeros = zeros || sn.access[0].performance.zero_values_seen || sn.access[1].performance.zero_values_seen;
      notes.push_back(
          zeros ? "HMAT access attributes exist but every value is 0: the firmware reports no performance "
                  "(treated as not reported); kinds come from other evidence"
                : std::string("no HMAT reported (no nodeN/access0 or access1 performance): kinds come from ") +
                      (t_.probe ? "the measured probe, " : "") +
                      "dax links, SLIT distances, CPU-less-ness, size and the CPU model");
    } else if (t_.hmat_access_class == 0) {
      notes.push_back("HMAT access1 (CPU initiators) not reported; access0 used where it names CPU initiators");
    }
    if (snap_.numa_fake)
      notes.push_back(
          "numa=fake on the kernel command line: SLIT distances are synthetic and HMAT does not match them");
    if (!snap_.memory_tiers_reported && snap_.numa_dir_present)
      notes.push_back("kernel memory tiers not reported (memory_tiering needs Linux 6.1+)");
    for (const auto &d : snap_.dax_devices) {
      if (d.driver == sysfs::dax_driver::kmem && d.target_node && *d.target_node >= 0 &&
          !snap_.find_node(static_cast<std::uint32_t>(*d.target_node)))
        notes.push_back(d.name + " is bound to kmem with target node " + std::to_string(*d.target_node) +
                        ", which is not online: ignored");
      if (d.driver == sysfs::dax_driver::device_dax) {
        std::string what =
            d.parent == sysfs::dax_parent::nvdimm || d.parent == sysfs::dax_parent::legacy_pmem ? "persistent memory"
            : d.parent == sysfs::dax_parent::cxl_ram || d.parent == sysfs::dax_parent::cxl_pmem ? "CXL memory"
            : d.parent == sysfs::dax_parent::soft_reserved                                      ? "soft-reserved memory"
                                                                                                : "memory";
        notes.push_back(d.name + ": " + (d.size_bytes ? format_bytes(*d.size_bytes) + " of " : std::string()) + what +
                        " as a devdax character device (/dev/" + d.name + "), not a NUMA node");
      }
    }
    for (const auto &g : snap_.nvidia_gpus)
      if (g.status.node && (*g.status.node < 0 || !snap_.find_node(static_cast<std::uint32_t>(*g.status.node))))
        notes.push_back("NVIDIA GPU " + g.pci_address + " reports node " + std::to_string(*g.status.node) + " (" +
                        g.status.status + "), which is not online");
    if (snap_.allowed_mems) {
      id_set mem;
      for (const auto &n : t_.nodes)
        if (n.has_memory) mem.insert(n.id);
      const id_set usable = mem.intersect(*snap_.allowed_mems);
      if (!usable.empty() && usable != mem)
        notes.push_back("the cpuset allows memory nodes " + snap_.allowed_mems->to_string() + " only (" +
                        snap_.allowed_mems_source + ")");
    }
    for (const auto &n : t_.nodes)
      if (!n.disagreements.empty()) {
        notes.push_back("sources disagree about node " + std::to_string(n.id) + ": see its reasons");
      }
    if (!snap_.diagnostics.empty())
      notes.push_back(std::to_string(snap_.diagnostics.size()) + " file(s) could not be used: see diagnostics");
  }
};

}  // namespace

result<topology> classify(sysfs::snapshot snap, const classify_options &options) noexcept {
  try {
    topology t;
    t.root = snap.root;
    t.snapshot = std::move(snap);
    classifier(t, options).run();
    return t;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  } catch (...) {
    return error{EIO, "internal error"};
  }
}

result<topology> load_topology(const load_options &options) noexcept {
  try {
    sysfs::read_options ro;
    ro.root = options.root.empty() ? sysfs::default_root() : options.root;
    ro.scope = options.scope;
    classify_options co;
    std::string overrides;
    std::string origin = "node kind overrides";
    if (options.overrides) {
      overrides = *options.overrides;
    } else if (const char *env = hetmem::sysfs::environment("HETMEM_NODE_KINDS")) {
      overrides = env;
      origin = "HETMEM_NODE_KINDS";
    }
    if (!overrides.empty()) {
      auto parsed = parse_kind_overrides(overrides);
      if (!parsed) return error{parsed.error().code, origin + ": " + parsed.error().message};
      co.overrides = std::move(parsed).value();
    }
    // A probe named by the caller must be usable; one from the environment that is not only
    // costs its evidence (a note says why), so that a stale HETMEM_PROBE cannot stop a program.
    std::string env_probe_problem;
    if (options.probe_file) {
      if (!options.probe_file->empty()) {
        auto report = read_probe_report(*options.probe_file);
        if (!report) return report.error();
        co.probe = std::move(report).value();
        co.probe_origin = *options.probe_file;
      }
    } else if (const char *env = hetmem::sysfs::environment("HETMEM_PROBE"); env && *env) {
      auto report = read_probe_report(env);
      if (report) {
        co.probe = std::move(report).value();
        co.probe_origin = std::string("HETMEM_PROBE=") + env;
      } else {
        env_probe_problem = "HETMEM_PROBE: " + report.error().message + "; classified without it";
      }
    }
    auto snap = sysfs::read_snapshot(ro);
    if (!snap) return snap.error();
    auto t = classify(std::move(snap).value(), co);
    if (t && !env_probe_problem.empty()) t->notes.push_back(env_probe_problem);
    return t;
  } catch (const std::bad_alloc &) {
    return error{ENOMEM, "out of memory"};
  }
}

}  // namespace hetmem
