// exhaust.c — the allocator runs out of memory: every entry point must return NULL with errno
// ENOMEM (operator new is cxx.cpp's), nothing crashes, nothing is lost, and the memory comes
// back once freed. Run under a limit (`ulimit -v`) so that the address space, not the machine,
// runs out; no block is touched beyond its first bytes, so little memory is used.
//
// Usage: hetmem_preload_exhaust [BLOCK_MIB [touch]]. Prints one summary line; exit 0 when every
// check held, 1 otherwise (each failure named on stderr).
// With `touch` (for a machine whose memory, not address space, runs out: the VM test sets
// vm.overcommit_memory=2), every page of every large block is written with a value of its own
// and checked before it is freed, and the kernel's count of the process's pages per node at the
// peak (/proc/self/numa_maps) is printed as "peak: N0=KiB N1=KiB ...".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;
static void fail(const char *what) {
  fprintf(stderr, "FAIL %s\n", what);
  ++failures;
}

#define MAX_BLOCKS 65536
static void *blocks[MAX_BLOCKS];

// Prints the process's resident KiB per node, summed over /proc/self/numa_maps (each line's
// N<node>=<pages> in its kernelpagesize_kB). Reads with a static buffer: no allocation.
static void print_peak(void) {
  static char buf[1 << 20];
  static unsigned long long kib[64];
  int fd = open("/proc/self/numa_maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("cannot open /proc/self/numa_maps");
  size_t have = 0;
  for (ssize_t r; have < sizeof buf - 1 && (r = read(fd, buf + have, sizeof buf - 1 - have)) > 0;) have += (size_t)r;
  close(fd);
  buf[have] = '\0';
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    unsigned long long page_kib = 4;
    const char *ps = strstr(line, "kernelpagesize_kB=");
    if (ps) page_kib = strtoull(ps + 18, NULL, 10);
    for (const char *p = strstr(line, " N"); p; p = strstr(p + 1, " N")) {
      char *end = NULL;
      unsigned long node = strtoul(p + 2, &end, 10);
      if (end && *end == '=' && node < 64) kib[node] += strtoull(end + 1, NULL, 10) * page_kib;
    }
  }
  printf("peak:");
  for (int n = 0; n < 64; ++n)
    if (kib[n]) printf(" N%d=%llu", n, kib[n]);
  printf("\n");
}

int main(int argc, char **argv) {
  const size_t block = (size_t)(argc > 1 ? atol(argv[1]) : 64) << 20;
  const int touch = argc > 2 && strcmp(argv[2], "touch") == 0;
  const size_t page = 4096;
  // A few small blocks with known contents, allocated first: they must survive the exhaustion.
  enum { kept = 64 };
  unsigned char *small[kept];
  for (int i = 0; i < kept; ++i) {
    small[i] = malloc(100 + (size_t)i);
    if (!small[i]) return fail("small blocks before the exhaustion"), 1;
    memset(small[i], i + 1, 100 + (size_t)i);
  }
  // Large blocks until the allocator says no.
  size_t n = 0;
  int err = 0;
  while (n < MAX_BLOCKS) {
    errno = 0;
    void *p = malloc(block);
    if (!p) {
      err = errno;
      break;
    }
    if (touch)
      for (size_t off = 0; off < block; off += page) *(size_t *)((char *)p + off) = n * 1000003u + off;
    else
      ((volatile char *)p)[0] = 1;
    blocks[n++] = p;
  }
  if (n == MAX_BLOCKS) return fail("the limit was never reached (run under ulimit -v)"), 1;
  if (n == 0) fail("not even one large block");
  if (err != ENOMEM) fail("malloc's failure sets errno ENOMEM");
  // Every other entry point fails the same way at this size, and says so.
  errno = 0;
  if (calloc(1, block) || errno != ENOMEM) fail("calloc: NULL with ENOMEM");
  errno = 0;
  if (realloc(small[0], block) || errno != ENOMEM) fail("realloc: NULL with ENOMEM");
  void *q = NULL;
  if (posix_memalign(&q, 4096, block) != ENOMEM || q) fail("posix_memalign: ENOMEM, the pointer untouched");
  errno = 0;
  if (aligned_alloc(4096, block) || errno != ENOMEM) fail("aligned_alloc: NULL with ENOMEM");
  errno = 0;
  if (memalign(1 << 21, block) || errno != ENOMEM) fail("memalign: NULL with ENOMEM");
  // realloc that failed left its block as it was; the small blocks are intact.
  for (int i = 0; i < kept; ++i)
    for (size_t k = 0; k < 100 + (size_t)i; ++k)
      if (small[i][k] != (unsigned char)(i + 1)) {
        fail("small blocks intact after the exhaustion");
        i = kept;
        break;
      }
  // Every page of every block kept its value.
  if (touch) {
    print_peak();
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i)
      for (size_t off = 0; off < block; off += page) bad += *(size_t *)((char *)blocks[i] + off) != i * 1000003u + off;
    if (bad) fail("every page of the large blocks kept its value");
    printf("exhaust: %zu MiB written and checked, %zu page(s) wrong\n", (n * block) >> 20, bad);
  }
  // Freed, the memory comes back: as many large blocks again.
  for (size_t i = 0; i < n; ++i) free(blocks[i]);
  size_t again = 0;
  while (again < n) {
    void *p = malloc(block);
    if (!p) break;
    blocks[again++] = p;
  }
  if (again != n) fail("after freeing, as many large blocks as before");
  for (size_t i = 0; i < again; ++i) free(blocks[i]);
  for (int i = 0; i < kept; ++i) free(small[i]);
  printf("exhaust: %zu blocks of %zu MiB before ENOMEM, %zu again after freeing, %d failure(s)\n", n, block >> 20,
         again, failures);
  return failures ? 1 : 0;
}
