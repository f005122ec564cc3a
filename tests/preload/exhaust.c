// exhaust.c — the allocator runs out of memory: every entry point must return NULL with errno
// ENOMEM (operator new is cxx.cpp's), nothing crashes, nothing is lost, and the memory comes
// back once freed. Run under a limit (`ulimit -v`) so that the address space, not the machine,
// runs out; no block is touched beyond its first bytes, so little memory is used.
//
// Usage: hetmem_preload_exhaust [BLOCK_MIB]. Prints one summary line; exit 0 when every check
// held, 1 otherwise (each failure named on stderr).
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static void fail(const char *what) {
  fprintf(stderr, "FAIL %s\n", what);
  ++failures;
}

#define MAX_BLOCKS 65536
static void *blocks[MAX_BLOCKS];

int main(int argc, char **argv) {
  const size_t block = (size_t)(argc > 1 ? atol(argv[1]) : 64) << 20;
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
