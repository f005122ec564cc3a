#include <catch2/catch_test_macros.hpp>

#include "hetmem/sysfs/id_set.hpp"
#include "hetmem/sysfs/parse.hpp"

using namespace hetmem::sysfs;
using namespace std::string_literals;

TEST_CASE("id_set merges, counts and prints ranges", "[parse][id_set]") {
  id_set s;
  s.insert_range(4, 6);
  s.insert(0);
  s.insert(7);
  s.insert_range(2, 3);
  CHECK(s.to_string() == "0,2-7");
  CHECK(s.count() == 7);
  CHECK(s.contains(5));
  CHECK_FALSE(s.contains(1));
  CHECK(s.index_of(0) == 0);
  CHECK(s.index_of(2) == 1);
  CHECK(s.index_of(7) == 6);
  CHECK(s.index_of(1) == -1);
  CHECK(s.intersect(id_set{1, 2, 9}).to_string() == "2");
  CHECK(s.intersects(id_set{7}));
  CHECK_FALSE(s.intersects(id_set{1, 8}));
  id_set big;
  big.insert_range(0, 4000000000u);  // one range, not four billion ids
  CHECK(big.ranges().size() == 1);
  CHECK(big.count() == 4000000001ull);
}

TEST_CASE("node lists in the kernel's %*pbl format", "[parse]") {
  CHECK(parse_id_list("0-2,4,6,8-9\n", 4095)->to_string() == "0-2,4,6,8-9");
  CHECK(parse_id_list("\n", 4095)->empty());
  CHECK(parse_id_list("", 4095)->empty());
  CHECK(parse_id_list("0-1\n\0"s, 4095)->to_string() == "0-1");  // hwloc gather pads with NUL

  auto bad = parse_id_list("0-2,x\n", 4095);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("'x'") != std::string::npos);
  CHECK(parse_id_list("3-1", 4095).error().message.find("descending") != std::string::npos);
  CHECK(parse_id_list("0,99999", 4095).error().code == ERANGE);
  CHECK_FALSE(parse_id_list("1,,2", 4095));
  CHECK_FALSE(parse_id_list("0-", 4095));
  CHECK_FALSE(
      parse_id_list("0\0"
                    "1"s,
                    4095));  // embedded NUL: binary content
  CHECK(parse_id_list("0\0"
                      "1"s,
                      4095)
            .error()
            .message.find("NUL") != std::string::npos);
  CHECK_FALSE(parse_id_list("99999999999999999999", 4095));
}

TEST_CASE("cpumap hex masks, most significant word first", "[parse]") {
  CHECK(parse_id_mask("0000,00000000,00000003\n", 1u << 20)->to_string() == "0-1");
  CHECK(parse_id_mask("00f000f0,00f000f0\n", 1u << 20)->to_string() == "4-7,20-23,36-39,52-55");
  CHECK(parse_id_mask("00000000\n", 1u << 20)->empty());
  CHECK_FALSE(parse_id_mask("xyz", 1u << 20));
  CHECK_FALSE(parse_id_mask("123456789", 1u << 20));  // word wider than 32 bits
  CHECK(parse_id_mask("1,00000000", 31).error().code == ERANGE);
}

TEST_CASE("numbers, booleans and distance rows", "[parse]") {
  CHECK(*parse_uint64("131072\n") == 131072);
  CHECK_FALSE(parse_uint64("12 kB"));
  CHECK_FALSE(parse_uint64("-1"));
  CHECK(parse_uint64("18446744073709551616").error().code == ERANGE);
  CHECK(*parse_int64("-1\n") == -1);
  CHECK(*parse_bool("true\n"));
  CHECK_FALSE(*parse_bool("0"));
  CHECK(parse_bool("maybe").error().message.find("'maybe'") != std::string::npos);
  CHECK(*parse_distance_row("10 20 20\n") == std::vector<std::uint32_t>{10, 20, 20});
  CHECK_FALSE(parse_distance_row("10 abc"));
  CHECK_FALSE(parse_distance_row("10 256"));
  CHECK_FALSE(parse_distance_row("\n"));
}

TEST_CASE("node meminfo", "[parse]") {
  auto mi = parse_node_meminfo(
      "Node 3 MemTotal:       97447340 kB\nNode 3 MemFree:  100 kB\nNode 3 HugePages_Total:     0\n", 3);
  REQUIRE(mi);
  CHECK(*mi->total_kb == 97447340);
  CHECK(*mi->free_kb == 100);
  CHECK(parse_node_meminfo("Node 2 MemTotal: 1 kB\n", 3).error().message.find("does not start with") !=
        std::string::npos);
  CHECK_FALSE(parse_node_meminfo("Node 3 MemTotal: 12\n", 3));    // no unit
  CHECK_FALSE(parse_node_meminfo("Node 3 MemFree: 12 kB\n", 3));  // no MemTotal
  CHECK_FALSE(parse_node_meminfo("Node 3 MemTotal: 99999999999999999999 kB\n", 3));
}

TEST_CASE("nvidia numa_status, cpuinfo, KNL hwdata, cgroup", "[parse]") {
  auto st =
      parse_nvidia_numa_status("Node:      255\nStatus:    online\nAddress:   40000000000\nSize:      3f0000000\n");
  REQUIRE(st);
  CHECK(*st->node == 255);
  CHECK(st->status == "online");
  CHECK(*st->size_bytes == 0x3f0000000ull);
  CHECK_FALSE(parse_nvidia_numa_status("Status: online\n"));

  auto cpu = parse_cpuinfo(
      "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 87\nmodel name\t: 06/57\n\nprocessor : "
      "1\nmodel : 99\n");
  REQUIRE(cpu);
  CHECK(cpu->vendor == "GenuineIntel");
  CHECK(*cpu->family == 6);
  CHECK(*cpu->model == 87);  // first block only
  auto power = parse_cpuinfo("processor\t: 0\ncpu\t\t: POWER9, altivec supported\n");
  CHECK(power->model_name == "POWER9, altivec supported");
  CHECK_FALSE(parse_cpuinfo("cpu family : six\nvendor_id : x\n"));

  auto knl = parse_knl_hwdata(
      "version: 2\ncache_size: 2147483648\nline_size: 64\ncluster_mode: SNC4\nmemory_mode: Hybrid50\n");
  REQUIRE(knl);
  CHECK(*knl->cache_size_bytes == 2147483648ull);
  CHECK(knl->memory_mode == "Hybrid50");

  auto cg = parse_proc_self_cgroup("6:cpuset:/jjh\n0::/user.slice/x.scope\n");
  REQUIRE(cg);
  CHECK(*cg->unified_path == "/user.slice/x.scope");
  CHECK(*cg->cpuset_path == "/jjh");
  CHECK(*parse_proc_self_cgroup("5:cpu,cpuset:/a\n")->cpuset_path == "/a");
  CHECK_FALSE(parse_proc_self_cgroup("garbage\n"));
  CHECK(*find_status_field("Name:\tx\nMems_allowed_list:\t0-1\n", "Mems_allowed_list") == "0-1");
}
