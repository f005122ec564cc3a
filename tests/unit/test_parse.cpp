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

TEST_CASE("numa_maps: pages per node, anonymous and file-backed, by policy", "[parse][numa_maps]") {
  const auto text =
      "55d1e0a4c000 default file=/usr/bin/python3.11 mapped=10 N0=10 kernelpagesize_kB=4\n"
      "55d1e1b9c000 default heap anon=200 dirty=200 N0=150 N1=50 kernelpagesize_kB=4\n"
      "7f1c2e600000 bind:1 anon=512 dirty=512 N1=512 kernelpagesize_kB=4\n"
      "7f1c30000000 weighted interleave:0-1 anon=4 dirty=4 N0=2 N1=2 kernelpagesize_kB=4\n"
      "7f1c40000000 prefer (many):0-1 huge anon=2 dirty=2 N1=2 kernelpagesize_kB=2048\n"
      "7f1c50000000 default\n"  // nothing resident: no node counts at all
      "7ffd5b9e3000 default stack anon=9 dirty=9 N0=9 kernelpagesize_kB=4 newkey=7\n";
  auto r = parse_numa_maps(text, 1023);
  REQUIRE(r);
  CHECK(r->mappings == 7);
  REQUIRE(r->nodes.size() == 2);
  CHECK(r->nodes[0].node == 0);
  CHECK(r->nodes[0].anon_bytes == (150 + 2 + 9) * 4096ull);
  CHECK(r->nodes[0].file_bytes == 10 * 4096ull);
  CHECK(r->nodes[1].node == 1);
  CHECK(r->nodes[1].anon_bytes == (50 + 512 + 2) * 4096ull + 2 * (2048ull << 10));
  CHECK(r->nodes[1].file_bytes == 0);
  REQUIRE(r->policies.size() == 4);
  CHECK(r->policies[0] == std::pair<std::string, std::uint64_t>{"default", (10 + 200 + 9) * 4096ull});
  CHECK(r->policies[1] == std::pair<std::string, std::uint64_t>{"bind:1", 512 * 4096ull});
  CHECK(r->policies[2].first == "weighted interleave:0-1");  // policy names may hold blanks
  CHECK(r->policies[3].first == "prefer (many):0-1");
  CHECK(r->policies[3].second == 2 * (2048ull << 10));
  CHECK(parse_numa_maps("", 1023)->nodes.empty());
}

TEST_CASE("numa_maps: malformed lines are errors naming the line", "[parse][numa_maps]") {
  auto err = [](std::string_view text) {
    auto r = parse_numa_maps(text, 63);
    REQUIRE_FALSE(r);
    return r.error().message;
  };
  CHECK(err("zz00 default N0=1\n").find("line 1: expected a hex address") != std::string::npos);
  CHECK(err("1000 default N0=1\n2000\n").find("line 2: no memory policy") != std::string::npos);
  CHECK(err("1000 default N64=1\n").find("node 64 is past the limit of 63") != std::string::npos);
  CHECK(err("1000 default N0=x1\n").find("expected a count") != std::string::npos);
  CHECK(err("1000 default N0=1 kernelpagesize_kB=3\n").find("not a power of two") != std::string::npos);
  CHECK(err("1000 default N0=18446744073709551615 kernelpagesize_kB=4\n").find("overflow") != std::string::npos);
  CHECK(err("1000 default N0=4503599627370495 kernelpagesize_kB=4\n2000 default N0=4503599627370495 "
            "kernelpagesize_kB=4\n")
            .find("overflows") != std::string::npos);
  CHECK(err("1000 default N0=1\n\x00\x01"s).find("binary") != std::string::npos);
}

TEST_CASE("cgroup memory.numa_stat: bytes per node per key", "[parse][numa_stat]") {
  auto r = parse_cgroup_numa_stat("anon N0=4096 N1=8192\nfile N0=0 N1=12288\nkernel_stack N0=16384 N1=0\n", 1023);
  REQUIRE(r);
  REQUIRE(r->entries.size() == 3);
  const auto *anon = r->find("anon");
  REQUIRE(anon);
  CHECK(anon->per_node == std::vector<std::pair<std::uint32_t, std::uint64_t>>{{0, 4096}, {1, 8192}});
  CHECK(r->find("file")->per_node[1].second == 12288);
  CHECK(r->find("shmem") == nullptr);
  auto bad = parse_cgroup_numa_stat("anon N0=1\nfile 12\n", 1023);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("line 2: expected N<node>=<bytes>, found '12'") != std::string::npos);
  CHECK_FALSE(parse_cgroup_numa_stat("anon N2000=1\n", 1023));
}

TEST_CASE("cgroup v1 memory.numa_stat: pages converted to bytes", "[parse][numa_stat]") {
  auto r = parse_cgroup_numa_stat(
      "total=160283 N0=160283 N1=0\nanon=515 N0=515 N1=0\nhierarchical_anon=600 N0=590 N1=10\n", 1023, 4096);
  REQUIRE(r);
  CHECK(r->v1);
  REQUIRE(r->find("hierarchical_anon"));
  CHECK(r->find("hierarchical_anon")->per_node[1] == std::pair<std::uint32_t, std::uint64_t>{1, 40960});
  CHECK(r->find("anon")->per_node[0].second == 515 * 4096ull);
  auto mixed = parse_cgroup_numa_stat("anon=1 N0=1\nfile N0=4096\n", 1023);
  REQUIRE_FALSE(mixed);
  CHECK(mixed.error().message.find("mixes") != std::string::npos);
  CHECK_FALSE(parse_cgroup_numa_stat("anon=x N0=1\n", 1023));
  CHECK_FALSE(parse_cgroup_numa_stat("anon=1 N0=18446744073709551615\n", 1023));
}

TEST_CASE("vmstat: counters by name, in the kernel's order; any other line is named", "[parse][vmstat]") {
  auto r = parse_vmstat("nr_free_pages 12\npgpromote_success 1500\n\npgdemote_kswapd 18446744073709551615\n");
  REQUIRE(r);
  REQUIRE(r->entries.size() == 3);
  CHECK(r->entries[1] == std::pair<std::string, std::uint64_t>{"pgpromote_success", 1500});
  CHECK(r->find("pgdemote_kswapd") == std::uint64_t{18446744073709551615u});
  CHECK_FALSE(r->find("pgdemote_direct"));
  auto two = parse_vmstat("a 1\nb 2 3\n");
  REQUIRE_FALSE(two);
  CHECK(two.error().message.find("line 2: expected \"<name> <count>\"") != std::string::npos);
  auto word = parse_vmstat("a x\n");
  REQUIRE_FALSE(word);
  CHECK(word.error().message.find("line 1: ") != std::string::npos);
  CHECK_FALSE(parse_vmstat("a -1\n"));
  CHECK_FALSE(parse_vmstat("a 18446744073709551616\n"));
  CHECK_FALSE(parse_vmstat("a 1\n\x00\x01"s));
}

TEST_CASE("split_fields gives the fields std::getline would", "[parse]") {
  using v = std::vector<std::string_view>;
  CHECK(split_fields("", ';').empty());
  CHECK(split_fields("a", ';') == v{"a"});
  CHECK(split_fields("a;b", ';') == v{"a", "b"});
  CHECK(split_fields("a;;b", ';') == v{"a", "", "b"});
  CHECK(split_fields("a;b;", ';') == v{"a", "b"});
  CHECK(split_fields(";", ';') == v{""});
  CHECK(split_fields(";a", ';') == v{"", "a"});
  CHECK(split_lines("x\ny\n") == v{"x", "y"});
}

TEST_CASE("find_stat_field counts /proc/PID/stat fields after the name", "[parse]") {
  // A name with blanks and ')' in it, as the kernel writes it.
  const std::string line =
      "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 52 0 0 20 0 1 0 "
      "99 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 7 0 0\n";
  CHECK(find_stat_field(line, 3) == "S");
  CHECK(find_stat_field(line, 14) == "731");
  CHECK(find_stat_field(line, 15) == "52");
  CHECK(find_stat_field(line, 39) == "7");
  CHECK(find_stat_field(line, 41) == "0");
  CHECK_FALSE(find_stat_field(line, 42));
  CHECK_FALSE(find_stat_field(line, 2));
  CHECK_FALSE(find_stat_field("4242 no name 0 0", 3));
}
