// sites.cpp — hetmem_preload_sites: a program that never heard of hetmem, allocating large
// blocks from two call sites whose blocks behave differently, for the allocator's knowledge
// (HETMEM_TIERING's `sites`; tests/vm/sites-guest.sh).
//
// Every round (--round-ms) it allocates one block from each site with malloc and fills it: the
// "hot" site's blocks are then written all the time (a byte per page, sweep after sweep), the
// "cold" site's never again. Blocks older than --keep rounds (cold ones: --cold-keep, twice as
// long by default, so that most watched memory is cold, as in programs with a hot working set)
// are checked and freed. The new blocks are filled a piece at a time, the live hot blocks
// swept after each piece, so that they are written all through the round on a slow host too.
// It asks the kernel (move_pages) which node each new block's pages are on right after filling
// it, and how much of the live hot blocks is on the fast node at the end of each round, and
// prints:
//   round 7: new hot block 100% on the fast node, new cold block 0%; live hot blocks 100%
//            (allocated and filled in 870 ms, 49 sweeps of the hot blocks in the round)
//   summary: new cold blocks on the fast node: rounds 1-4 100%, last 4 rounds 0%; new hot blocks: ...
// Data is checked before each free (every byte of a cold block is its fill; every byte of a hot
// block its fill, but the first of each page: its last sweep's value): "data intact" or exit 1.
// Usage: hetmem_preload_sites [--rounds 14] [--block 64M] [--keep 3] [--cold-keep 6] [--round-ms 1000]
//                             [--fast-node 0]
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// The two call sites (never inlined, and malloc is not their tail call: the return address
// malloc sees lies in each of them; exported, so that the preload's report can name them).
extern "C" [[gnu::noinline]] unsigned char *allocate_hot(std::size_t bytes) {
  auto *p = static_cast<unsigned char *>(std::malloc(bytes));
  if (p) *static_cast<volatile unsigned char *>(p) = 0;
  return p;
}
// The cold site grows its blocks from half their size with realloc: a block followed by site
// keeps its site through realloc (and the engine learns nothing if it did not).
extern "C" [[gnu::noinline]] unsigned char *allocate_cold(std::size_t bytes) {
  auto *p = static_cast<unsigned char *>(std::malloc(bytes / 2));
  if (!p) return nullptr;
  std::memset(p, 1, bytes / 2);
  auto *q = static_cast<unsigned char *>(std::realloc(p, bytes));
  if (!q) {
    std::free(p);
    return nullptr;
  }
  *static_cast<volatile unsigned char *>(q) = 0;
  return q;
}

namespace {

constexpr std::size_t page = 4096;

struct block {
  unsigned char *p = nullptr;
  unsigned char fill = 0;
  unsigned char last = 0;  // hot blocks: the value of the latest sweep
  int round = 0;
};

// Share of the block's pages (every 16th) on `node`, by move_pages; -1 if the kernel refused.
double share_on(const unsigned char *p, std::size_t bytes, int node) {
  std::vector<void *> pages;
  for (std::size_t off = 0; off < bytes; off += 16 * page) pages.push_back(const_cast<unsigned char *>(p) + off);
  std::vector<int> status(pages.size(), -1);
  if (::syscall(SYS_move_pages, 0, pages.size(), pages.data(), nullptr, status.data(), 0) != 0) return -1;
  std::size_t on = 0, present = 0;
  for (int s : status) {
    if (s < 0) continue;
    ++present;
    on += s == node ? 1 : 0;
  }
  return present ? static_cast<double>(on) / static_cast<double>(present) : -1;
}

bool intact(const block &b, std::size_t bytes, bool hot) {
  for (std::size_t i = 0; i < bytes; ++i) {
    const unsigned char want = hot && i % page == 0 ? b.last : b.fill;
    if (b.p[i] != want) {
      std::printf("FAIL %s block of round %d: byte %zu is %u, expected %u\n", hot ? "hot" : "cold", b.round, i, b.p[i],
                  want);
      return false;
    }
  }
  return true;
}

std::size_t parse_size(const char *s) {
  char *end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  const std::size_t unit = *end == 'G' ? (1ULL << 30) : *end == 'M' ? (1ULL << 20) : *end == 'K' ? 1024 : 1;
  return static_cast<std::size_t>(v) * unit;
}

double mean(const std::vector<double> &v, std::size_t from, std::size_t to) {
  double s = 0;
  std::size_t n = 0;
  for (std::size_t i = from; i < to && i < v.size(); ++i)
    if (v[i] >= 0) s += v[i], ++n;
  return n ? s / static_cast<double>(n) : -1;
}

}  // namespace

int main(int argc, char **argv) {
  int rounds = 14, keep = 3, cold_keep = 0, round_ms = 1000, fast = 0;
  std::size_t bytes = 64ULL << 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--rounds")
      rounds = std::atoi(argv[i + 1]);
    else if (k == "--block")
      bytes = parse_size(argv[i + 1]);
    else if (k == "--keep")
      keep = std::atoi(argv[i + 1]);
    else if (k == "--cold-keep")
      cold_keep = std::atoi(argv[i + 1]);
    else if (k == "--round-ms")
      round_ms = std::atoi(argv[i + 1]);
    else if (k == "--fast-node")
      fast = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "hetmem_preload_sites: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (cold_keep == 0) cold_keep = 2 * keep;
  if (rounds < 8 || keep < 1 || cold_keep < 1 || round_ms < 10 || bytes < page) {
    std::fprintf(stderr,
                 "hetmem_preload_sites: needs --rounds >= 8, --keep >= 1, --cold-keep >= 1, --round-ms >= 10, "
                 "--block >= 4K\n");
    return 2;
  }
  std::vector<block> hot, cold;
  std::vector<double> hot_new, cold_new, hot_live;
  bool ok = true;
  unsigned char sweep = 0;
  for (int r = 1; r <= rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    block h{allocate_hot(bytes), static_cast<unsigned char>(2 * r), 0, r};
    block c{allocate_cold(bytes), static_cast<unsigned char>(2 * r + 1), 0, r};
    if (!h.p || !c.p) {
      std::printf("FAIL malloc of %zu bytes returned NULL in round %d\n", bytes, r);
      return 1;
    }
    // The fill, a piece at a time, with a sweep of the live hot blocks after each piece: the hot
    // blocks are written all through the round, however long filling takes on this host (under
    // TCG filling took 0.7-1.0 s of a 1 s round: swept only after it, the hot blocks were
    // written in a fifth of the round or none of it, and an engine window that fell in the
    // fill saw them cold).
    int sweeps = 0;
    auto sweep_hot = [&] {
      sweep = static_cast<unsigned char>(sweep == 250 ? 100 : sweep < 100 ? 100 : sweep + 1);  // never a fill value
      for (auto &b : hot) {
        for (std::size_t off = 0; off < bytes; off += page) b.p[off] = sweep;
        b.last = sweep;
      }
      ++sweeps;
    };
    constexpr std::size_t piece = std::size_t{4} << 20;
    for (std::size_t at = 0; at < bytes; at += piece) {
      const std::size_t n = std::min(piece, bytes - at);
      std::memset(h.p + at, h.fill, n);
      std::memset(c.p + at, c.fill, n);
      sweep_hot();
    }
    h.last = h.fill;
    hot_new.push_back(share_on(h.p, bytes, fast));
    cold_new.push_back(share_on(c.p, bytes, fast));
    hot.push_back(h);
    cold.push_back(c);
    const auto filled = std::chrono::steady_clock::now();
    // The rest of the round: sweep the live hot blocks.
    while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(round_ms)) sweep_hot();
    double live = 0;
    for (const auto &b : hot) live += share_on(b.p, bytes, fast);
    hot_live.push_back(live / static_cast<double>(hot.size()));
    const auto ms = [](auto d) {
      return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
    };
    std::printf(
        "round %d: new hot block %.0f%% on the fast node, new cold block %.0f%%; live hot blocks %.0f%% "
        "(allocated and filled in %lld ms, %d sweeps of the hot blocks in the round)\n",
        r, 100 * hot_new.back(), 100 * cold_new.back(), 100 * hot_live.back(), ms(filled - t0), sweeps);
    std::fflush(stdout);
    if (static_cast<int>(hot.size()) > keep) {
      ok = intact(hot.front(), bytes, true) && ok;
      std::free(hot.front().p);
      hot.erase(hot.begin());
    }
    if (static_cast<int>(cold.size()) > cold_keep) {
      ok = intact(cold.front(), bytes, false) && ok;
      std::free(cold.front().p);
      cold.erase(cold.begin());
    }
  }
  for (const auto &b : hot) ok = intact(b, bytes, true) && ok;
  for (const auto &b : cold) ok = intact(b, bytes, false) && ok;
  const auto n = static_cast<std::size_t>(rounds);
  std::printf(
      "summary: new cold blocks on the fast node: rounds 1-4 %.0f%%, last 4 rounds %.0f%%; new hot blocks: rounds "
      "1-4 %.0f%%, last 4 rounds %.0f%%; live hot blocks at the end of the last 4 rounds %.0f%%; data %s\n",
      100 * mean(cold_new, 0, 4), 100 * mean(cold_new, n - 4, n), 100 * mean(hot_new, 0, 4),
      100 * mean(hot_new, n - 4, n), 100 * mean(hot_live, n - 4, n), ok ? "intact" : "CORRUPTED");
  for (auto &b : hot) std::free(b.p);
  for (auto &b : cold) std::free(b.p);
  return ok ? 0 : 1;
}
