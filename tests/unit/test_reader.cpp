#include <catch2/catch_test_macros.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "../../sysfs-reader/src/root_dir.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "tree.hpp"

using namespace hetmem::sysfs;
using hetmem::test::temp_tree;
using namespace std::string_literals;

namespace {
snapshot read(const temp_tree &t) {
  auto s = read_snapshot({t.root()});
  REQUIRE(s);
  return std::move(s).value();
}
const diagnostic *diag_for(const snapshot &s, const std::string &path_suffix) {
  for (const auto &d : s.diagnostics)
    if (d.path.size() >= path_suffix.size() &&
        d.path.compare(d.path.size() - path_suffix.size(), path_suffix.size(), path_suffix) == 0)
      return &d;
  return nullptr;
}
}  // namespace

TEST_CASE("an unusable root is the only fatal error", "[reader]") {
  auto r = read_snapshot({"/nonexistent/hetmem-root"});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ENOENT);
  CHECK(r.error().message.find("/nonexistent/hetmem-root") != std::string::npos);
}

// Two nodes with HMAT, a memory-side cache, a hugepage pool, memory tiers, a dax device, the
// kernel's knobs, a cpuset and a CPU model.
void two_node_hmat_tree(temp_tree &t) {
  t.masks("0-1", "0").node(0, 1048576, "0-1", "10 20").node(1, 524288, "", "20 10");
  t.hmat(0, 1, "0", 80, 20000).hmat(1, 1, "0", 100, 80000);
  t.file("sys/devices/system/node/has_normal_memory", "0\n");
  t.file("sys/devices/system/node/node1/memory_side_cache/index1/size", "1073741824\n");
  t.file("sys/devices/system/node/node1/memory_side_cache/index1/line_size", "64\n");
  t.file("sys/devices/system/node/node1/memory_side_cache/index1/indexing", "0\n");
  t.file("sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages", "16\n");
  t.file("sys/devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages", "8\n");
  t.file("sys/devices/virtual/memory_tiering/memory_tier4/nodelist", "0\n");
  t.file("sys/devices/virtual/memory_tiering/memory_tier2/nodelist", "1\n");
  t.file("sys/kernel/mm/numa/demotion_enabled", "true\n");
  t.file("proc/sys/kernel/numa_balancing", "2\n");
  t.file("sys/kernel/mm/mempolicy/weighted_interleave/node0", "1\n");
  t.file("sys/kernel/mm/mempolicy/weighted_interleave/node1", "4\n");
  t.file("sys/kernel/mm/mempolicy/weighted_interleave/auto", "true\n");
  t.file("proc/self/cgroup", "0::/a/b\n");
  t.file("sys/fs/cgroup/a/cpuset.mems.effective", "0-1\n");  // b has no cpuset: inherits from a
  t.file("proc/cpuinfo", "processor : 0\nvendor_id : GenuineIntel\ncpu family : 6\nmodel : 143\n");

  t.link("sys/devices/system/node/node0/access1/targets/node1", "../../../node1");
  t.file("sys/devices/platform/hmem.0/dax0.0/target_node", "1\n");
  t.file("sys/devices/platform/hmem.0/dax0.0/numa_node", "0\n");
  t.file("sys/devices/platform/hmem.0/dax0.0/size", "1073741824\n");
  t.link("sys/bus/dax/devices/dax0.0", "../../../devices/platform/hmem.0/dax0.0");
}

TEST_CASE("a two-node HMAT tree is read completely", "[reader]") {
  temp_tree t;
  two_node_hmat_tree(t);
  auto s = read(t);
  CHECK(s.diagnostics.empty());
  REQUIRE(s.nodes.size() == 2);
  CHECK(s.nodes[0].cpus.to_string() == "0-1");
  CHECK(*s.nodes[1].mem_total_kb == 524288);
  CHECK(s.nodes[1].access[1].present);
  CHECK_FALSE(s.nodes[1].access[0].present);
  CHECK(s.nodes[1].access[1].initiators.to_string() == "0");
  CHECK(*s.nodes[1].access[1].performance.read_bandwidth_mbps == 80000);
  CHECK(*s.nodes[1].access[1].performance.write_latency_ns == 100);
  REQUIRE(s.nodes[1].memory_side_caches.size() == 1);
  CHECK(*s.nodes[1].memory_side_caches[0].size_bytes == 1073741824ull);
  REQUIRE(s.nodes[0].hugepages.size() == 1);
  CHECK(s.nodes[0].hugepages[0].page_size_kb == 2048);
  CHECK(*s.nodes[0].hugepages[0].free == 8);
  CHECK(s.memory_tiers_reported);
  REQUIRE(s.memory_tiers.size() == 2);
  CHECK(s.memory_tiers[0].id == 2);  // sorted by id
  CHECK(*s.demotion_enabled);
  CHECK(*s.numa_balancing == 2);
  CHECK(s.weighted_interleave.present);
  CHECK(*s.weighted_interleave.auto_mode);
  CHECK(s.weighted_interleave.weights == std::vector<std::pair<std::uint32_t, std::uint32_t>>{{0, 1}, {1, 4}});
  CHECK(s.allowed_mems->to_string() == "0-1");
  CHECK(s.allowed_mems_source == "sys/fs/cgroup/a/cpuset.mems.effective");
  CHECK(*s.cpu.model == 143);
  CHECK(*s.distance(0, 1) == 20);
  CHECK(*s.distance(1, 1) == 10);
}

TEST_CASE("the placement scope reads all that classification uses and leaves out the rest", "[reader]") {
  temp_tree t;
  two_node_hmat_tree(t);
  t.hmat(1, 0, "0", 100, 80000);  // access0 beside an access1 that decides alone
  auto full = read(t);
  auto r = read_snapshot({t.root(), read_scope::placement});
  REQUIRE(r);
  const auto &s = *r;
  CHECK(s.scope == read_scope::placement);
  CHECK(s.diagnostics.empty());
  REQUIRE(s.nodes.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(s.nodes[i].cpus == full.nodes[i].cpus);
    CHECK(s.nodes[i].mem_total_kb == full.nodes[i].mem_total_kb);
    CHECK(s.nodes[i].distance_row == full.nodes[i].distance_row);
    CHECK(s.nodes[i].memory_side_caches.size() == full.nodes[i].memory_side_caches.size());
    for (std::size_t y = 0; y < 2; ++y) {
      if (i == 1 && y == 0) continue;  // below
      CHECK(s.nodes[i].access[y].present == full.nodes[i].access[y].present);
      CHECK(s.nodes[i].access[y].initiators == full.nodes[i].access[y].initiators);
      CHECK(s.nodes[i].access[y].performance.read_bandwidth_mbps ==
            full.nodes[i].access[y].performance.read_bandwidth_mbps);
    }
  }
  CHECK_FALSE(s.nodes[1].access[0].present);
  CHECK(full.nodes[1].access[0].present);
  CHECK(s.memory_tiers.size() == full.memory_tiers.size());
  REQUIRE(s.dax_devices.size() == 1);
  CHECK(*s.dax_devices[0].target_node == 1);
  CHECK(s.allowed_mems == full.allowed_mems);
  CHECK(s.cpu.model == full.cpu.model);
  // Left out (and there in the full read).
  CHECK(s.nodes[0].hugepages.empty());
  CHECK_FALSE(full.nodes[0].hugepages.empty());
  CHECK(s.nodes[0].access[1].targets.empty());
  CHECK(full.nodes[0].access[1].targets.to_string() == "1");
  CHECK_FALSE(s.dax_devices[0].size_bytes);
  CHECK(*full.dax_devices[0].size_bytes == 1073741824ull);
  CHECK_FALSE(s.dax_devices[0].numa_node);
  CHECK_FALSE(s.demotion_enabled);
  CHECK_FALSE(s.numa_balancing);
  CHECK_FALSE(s.weighted_interleave.present);
  CHECK(full.weighted_interleave.present);
}

TEST_CASE("missing files are 'not reported', never guessed", "[reader]") {
  temp_tree t;
  t.dir("sys/devices/system/node/node0");
  auto s = read(t);
  REQUIRE(s.nodes.size() == 1);
  CHECK_FALSE(s.online);
  CHECK_FALSE(s.nodes[0].mem_total_kb);
  CHECK_FALSE(s.nodes[0].cpus_reported);
  CHECK_FALSE(s.nodes[0].access[1].present);
  CHECK_FALSE(s.memory_tiers_reported);
  CHECK_FALSE(s.demotion_enabled);
  CHECK_FALSE(s.numa_balancing);
  CHECK(s.diagnostics.empty());
}

TEST_CASE("zero HMAT values mean not reported", "[reader]") {
  temp_tree t;
  t.masks("0", "0").node(0, 1024, "0", "10").hmat(0, 0, "0", 0, 0);
  auto s = read(t);
  const auto &p = s.nodes[0].access[0].performance;
  CHECK(s.nodes[0].access[0].present);
  CHECK_FALSE(p.any());
  CHECK(p.zero_values_seen);
}

TEST_CASE("malformed content gives a diagnostic naming the file, and the rest is read", "[reader][hostile]") {
  temp_tree t;
  t.masks("0-1", "0").node(0, 1024, "0-3", "10 20").node(1, 2048, "", "20 10");
  t.file("sys/devices/system/node/node1/cpulist", "4-x\n");
  t.file("sys/devices/system/node/node0/distance", "10 twenty\n");
  t.file("sys/devices/system/node/node1/meminfo",
         "\x7f"
         "ELF\x01\x02\x00\x00garbage"s);
  t.file("proc/sys/kernel/numa_balancing", "lots\n");
  auto s = read(t);
  REQUIRE(s.nodes.size() == 2);
  CHECK(s.nodes[0].cpus.to_string() == "0-3");
  CHECK(s.nodes[0].distance_row.empty());
  CHECK_FALSE(s.nodes[1].mem_total_kb);
  CHECK_FALSE(s.numa_balancing);
  const auto *d = diag_for(s, "node1/cpulist");
  REQUIRE(d);
  CHECK(d->message.find("'x'") != std::string::npos);
  REQUIRE(diag_for(s, "node0/distance"));
  REQUIRE(diag_for(s, "node1/meminfo"));
  CHECK(diag_for(s, "node1/meminfo")->message.find("NUL") != std::string::npos);
  REQUIRE(diag_for(s, "numa_balancing"));
}

TEST_CASE("hostile trees: enormous files, FIFOs, symlink loops, escaping links, huge ids", "[reader][hostile]") {
  temp_tree t;
  t.masks("0", "0").node(0, 1024, "0", "10");
  t.file("sys/devices/system/node/node0/cpulist", std::string(200000, '1'));  // enormous
  t.remove("sys/devices/system/node/node0/meminfo")
      .fifo("sys/devices/system/node/node0/meminfo");  // would block a naive reader
  t.remove("sys/devices/system/node/node0/distance")
      .link("sys/devices/system/node/node0/distance", "distance");  // loops on itself
  t.link("sys/kernel/mm/numa/demotion_enabled", "/etc/passwd");     // absolute: must stay in the root
  t.dir("sys/devices/system/node/node99999");                       // id beyond the limit
  t.file("sys/devices/system/node/node0/cpumap", "00000001\n");
  auto s = read(t);
  REQUIRE(s.nodes.size() == 1);
  REQUIRE(diag_for(s, "node0/cpulist"));
  CHECK(diag_for(s, "node0/cpulist")->code == EFBIG);
  CHECK(s.nodes[0].cpus.to_string() == "0");  // fell back to cpumap
  REQUIRE(diag_for(s, "node0/meminfo"));
  CHECK(diag_for(s, "node0/meminfo")->message.find("regular file") != std::string::npos);
  REQUIRE(diag_for(s, "node0/distance"));
  CHECK(diag_for(s, "node0/distance")->code == ELOOP);
  CHECK_FALSE(s.demotion_enabled);                    // /etc/passwd of the host was not read
  CHECK(diag_for(s, "demotion_enabled") == nullptr);  // resolved inside the root: simply absent
}

TEST_CASE("online is authoritative; listed but absent nodes are reported", "[reader]") {
  temp_tree t;
  t.file("sys/devices/system/node/online", "0,2\n");
  t.node(0, 1024, "0", "10 20").node(1, 1024, "1", "20 10").file("sys/devices/system/node/possible", "0-2\n");
  auto s = read(t);
  REQUIRE(s.nodes.size() == 1);  // node1 is offline, node2 missing
  CHECK(s.nodes[0].id == 0);
  REQUIRE(diag_for(s, "node/online"));
  CHECK(diag_for(s, "node/online")->message.find("node2/ does not exist") != std::string::npos);
}

TEST_CASE("distance rows map to online nodes in id order, sparse ids included", "[reader]") {
  temp_tree t;
  t.masks("0,4,9", "0,4,9").node(0, 1, "0", "10 21 31").node(4, 1, "1", "21 10 41").node(9, 1, "2", "31 41 10");
  auto s = read(t);
  CHECK(*s.distance(0, 9) == 31);
  CHECK(*s.distance(9, 4) == 41);
  CHECK_FALSE(s.distance(0, 5));
  CHECK(s.diagnostics.empty());
  temp_tree bad;
  bad.masks("0-1", "0-1").node(0, 1, "0", "10 20 30").node(1, 1, "1", "20 10");
  auto b = read(bad);
  CHECK_FALSE(b.distance(0, 1));
  REQUIRE(diag_for(b, "node0/distance"));
  CHECK(diag_for(b, "node0/distance")->message.find("3 values but 2 nodes") != std::string::npos);
}

TEST_CASE("dax devices: parent bus, driver, target node", "[reader]") {
  temp_tree t;
  t.masks("0", "0").node(0, 1, "0", "10");
  const std::string nd = "sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0/region1/dax1.0/dax1.0";
  const std::string cxl = "sys/devices/platform/ACPI0017:00/root0/decoder0.0/region0/dax_region0/dax0.0";
  t.file(nd + "/target_node", "3\n")
      .file(nd + "/size", "1024\n")
      .link(nd + "/driver", "../../../../../../../../bus/dax/drivers/kmem");
  t.file(cxl + "/target_node", "2\n").link(cxl + "/driver", "../../../../../../../bus/dax/drivers/device_dax");
  t.dir("sys/bus/dax/drivers/kmem").dir("sys/bus/dax/drivers/device_dax");
  t.link("sys/bus/dax/devices/dax1.0",
         "../../../devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0/region1/dax1.0/dax1.0");
  t.link("sys/bus/dax/devices/dax0.0",
         "../../../devices/platform/ACPI0017:00/root0/decoder0.0/region0/dax_region0/dax0.0");
  auto s = read(t);
  REQUIRE(s.dax_devices.size() == 2);
  const auto &cx = s.dax_devices[0];
  const auto &pm = s.dax_devices[1];
  CHECK(cx.name == "dax0.0");
  CHECK(cx.parent == dax_parent::cxl_ram);
  CHECK(cx.driver == dax_driver::device_dax);
  CHECK(pm.parent == dax_parent::nvdimm);
  CHECK(pm.driver == dax_driver::kmem);
  CHECK(*pm.target_node == 3);
  CHECK(*pm.size_bytes == 1024);
  CHECK(pm.device_path.rfind("devices/LNXSYSTM:00", 0) == 0);
}

TEST_CASE("a kernel without NUMA is one node built from /proc/meminfo", "[reader]") {
  temp_tree t;
  t.file("proc/meminfo", "MemTotal:       16384 kB\nMemFree:         8192 kB\n");
  t.file("sys/devices/system/cpu/online", "0-3\n");
  auto s = read(t);
  CHECK_FALSE(s.numa_dir_present);
  REQUIRE(s.nodes.size() == 1);
  CHECK(*s.nodes[0].mem_total_kb == 16384);
  CHECK(s.nodes[0].cpus.to_string() == "0-3");
}

TEST_CASE("cpuset fallbacks: cgroup v1 then /proc/self/status", "[reader]") {
  temp_tree v1;
  v1.masks("0-1", "0-1").node(0, 1, "0", "10 20").node(1, 1, "1", "20 10");
  v1.file("proc/self/cgroup", "4:cpuset:/jobs/42\n").file("sys/fs/cgroup/cpuset/jobs/42/cpuset.effective_mems", "1\n");
  auto a = read(v1);
  CHECK(a.allowed_mems->to_string() == "1");
  temp_tree st;
  st.masks("0", "0").node(0, 1, "0", "10").file("proc/self/status", "Name:\tx\nMems_allowed_list:\t0\n");
  auto b = read(st);
  CHECK(b.allowed_mems_source == "proc/self/status");
}

TEST_CASE("the live system can be read", "[reader][live]") {
  auto s = read_snapshot({"/"});
  REQUIRE(s);
  CHECK_FALSE(s->nodes.empty());
  for (const auto &d : s->diagnostics) WARN(d.path << ": " << d.message);
}

TEST_CASE("read_text_file: the content, or an error naming the path", "[reader][hostile]") {
  temp_tree t;
  t.file("config", "tier hbm\nrule any -> hbm\n").file("big", std::string(5000, 'x')).dir("a-directory");
  auto ok = read_text_file(t.root() + "/config", 1 << 20);
  REQUIRE(ok);
  CHECK(*ok == "tier hbm\nrule any -> hbm\n");
  auto exact = read_text_file(t.root() + "/big", 5000);
  REQUIRE(exact);
  CHECK(exact->size() == 5000);

  auto expect = [](const hetmem::result<std::string> &r, int code, const std::string &needle) {
    REQUIRE_FALSE(r);
    INFO(r.error().message);
    CHECK(r.error().code == code);
    CHECK(r.error().message.find(needle) != std::string::npos);
  };
  expect(read_text_file(t.root() + "/missing", 1 << 20), ENOENT, t.root() + "/missing: No such file");
  expect(read_text_file(t.root() + "/big", 4999), EFBIG, t.root() + "/big: file is larger than 4999 bytes");
  expect(read_text_file(t.root() + "/a-directory", 1 << 20), EINVAL, "not a regular file");
  // A FIFO would block a reader that opened it blocking, and never end: refused.
  const std::string fifo = t.root() + "/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  expect(read_text_file(fifo, 1 << 20), EINVAL, "fifo: not a regular file");
  // /proc files report size 0 and are read to their end.
  auto status = read_text_file("/proc/self/status", 1 << 20);
  REQUIRE(status);
  CHECK(status->find("VmRSS") != std::string::npos);

  // Without the fstat before the first read (not_procfs): the same contents and the same refusals.
  t.file("page", std::string(4096, 'p')).file("empty", "");
  for (const char *name : {"config", "big", "page", "empty"}) {
    INFO(name);
    auto with = read_text_file(t.root() + "/" + name, 1 << 20);
    auto without = read_text_file(t.root() + "/" + name, 1 << 20, /*not_procfs=*/true);
    REQUIRE(with);
    REQUIRE(without);
    CHECK(*with == *without);
  }
  expect(read_text_file(t.root() + "/big", 4999, true), EFBIG, "file is larger than 4999 bytes");
  expect(read_text_file(t.root() + "/a-directory", 1 << 20, true), EINVAL, "not a regular file");
  expect(read_text_file(fifo, 1 << 20, true), EINVAL, "fifo: not a regular file");
  // A device streams forever: refused once its first read fills the buffer (opened through a
  // symlink, as a captured tree could hold one).
  if (::symlink("/dev/zero", (t.root() + "/zero").c_str()) == 0)
    expect(read_text_file(t.root() + "/zero", 1 << 20, true), EINVAL, "zero: not a regular file");
}

TEST_CASE("the reader's table of errno texts is glibc's, word for word", "[reader]") {
  // sysfs::detail::errno_text answers the common errnos from a table (no locale lookup at
  // start-up); every entry must read exactly as strerror's text in the C locale.
  unsigned in_table = 0;
  for (int err = 1; err < 140; ++err) {
    const char *ours = hetmem::sysfs::detail::common_errno_text(err);
    if (!ours) continue;
    ++in_table;
    const char *glibc = strerrordesc_np(err);
    REQUIRE(glibc != nullptr);
    INFO("errno " << err);
    CHECK(std::string(ours) == glibc);
    CHECK(hetmem::sysfs::detail::errno_text(err) == glibc);
  }
  CHECK(in_table >= 20);
  CHECK(hetmem::sysfs::detail::errno_text(EHOSTDOWN) == strerrordesc_np(EHOSTDOWN));  // not in the table
}
