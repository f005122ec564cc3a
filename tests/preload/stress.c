/* stress.c — many threads, mixed sizes, checksummed data, for a bounded time. Meant to run under
 * libhetmem-preload.so while pages migrate (HETMEM_TIERING, `hetmem migrate` from outside).
 *
 * Each block starts with a header {magic, size, seed} and is filled with bytes derived from its
 * seed; blocks are handed between threads through a shared table, grown with realloc (the old
 * bytes must survive), and verified in full before they are freed. Any mismatch is a
 * corruption. Prints a summary line and exits 1 on any corruption or failed allocation.
 * Usage: stress SECONDS [THREADS]  */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 2048
#define MAGIC 0x6865746d656d3031ull /* "hetmem01" */

struct header {
  uint64_t magic, size, seed;
};

static _Atomic(unsigned char *) slots[SLOTS];
static atomic_ullong ops, verified_bytes, corruptions, failed_allocs;
static atomic_int stop;

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}
static unsigned char byte_at(uint64_t seed, uint64_t i) {
  return (unsigned char)(mix(seed + (i >> 3)) >> ((i & 7) * 8));
}

static void fill(unsigned char *p, uint64_t from, uint64_t to, uint64_t seed) {
  for (uint64_t i = from; i < to; ++i) p[i] = byte_at(seed, i);
}

/* Whole-block check; counts a corruption (and reports the first few) on any mismatch. */
static void verify(const unsigned char *p, const char *when) {
  struct header h;
  memcpy(&h, p, sizeof h);
  uint64_t bad = h.magic != MAGIC;
  for (uint64_t i = sizeof h; !bad && i < h.size; ++i) bad = p[i] != byte_at(h.seed, i) ? i : 0;
  if (bad) {
    if (atomic_fetch_add(&corruptions, 1) < 5)
      fprintf(stderr, "stress: corruption %s: block %p, magic %llx, size %llu, first bad byte %llu\n", when,
              (const void *)p, (unsigned long long)h.magic, (unsigned long long)h.size, (unsigned long long)bad);
    return;
  }
  atomic_fetch_add(&verified_bytes, h.size);
}

static uint64_t pick_size(uint64_t r) {
  const unsigned k = (unsigned)(r % 100);
  if (k < 73) return sizeof(struct header) + (r >> 8) % 512;         /* small */
  if (k < 98) return sizeof(struct header) + (r >> 8) % (64u << 10); /* medium */
  return sizeof(struct header) + (1u << 20) + (r >> 8) % (3u << 20); /* large: 1-4 MiB */
}

static unsigned char *make(uint64_t size, uint64_t seed) {
  unsigned char *p = malloc(size);
  if (!p) {
    atomic_fetch_add(&failed_allocs, 1);
    return NULL;
  }
  struct header h = {MAGIC, size, seed};
  memcpy(p, &h, sizeof h);
  fill(p, sizeof h, size, seed);
  return p;
}

static void *worker(void *arg) {
  uint64_t r = mix((uintptr_t)arg + 1);
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    r = mix(r);
    unsigned char *p = make(pick_size(r), r);
    if (!p) continue;
    if ((r >> 40) % 8 == 0) { /* grow it: the old bytes must survive the move */
      struct header h;
      memcpy(&h, p, sizeof h);
      verify(p, "before realloc");
      const uint64_t bigger = h.size + (r >> 20) % (256u << 10);
      unsigned char *q = realloc(p, bigger);
      if (!q) {
        atomic_fetch_add(&failed_allocs, 1);
      } else {
        p = q;
        const uint64_t old = h.size;
        h.size = bigger;
        memcpy(p, &h, sizeof h);
        for (uint64_t i = sizeof h; i < old; ++i)
          if (p[i] != byte_at(h.seed, i)) {
            if (atomic_fetch_add(&corruptions, 1) < 5)
              fprintf(stderr, "stress: realloc lost byte %llu\n", (unsigned long long)i);
            break;
          }
        fill(p, old, bigger, h.seed);
      }
    }
    unsigned char *old = atomic_exchange(&slots[(r >> 12) % SLOTS], p);
    if (old) {
      verify(old, "at free");
      free(old);
    }
    atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const double seconds = argc > 1 ? atof(argv[1]) : 5;
  const int threads = argc > 2 ? atoi(argv[2]) : 8;
  if (seconds <= 0 || threads < 1 || threads > 256) {
    fprintf(stderr, "usage: stress SECONDS [THREADS (1-256)]\n");
    return 2;
  }
  pthread_t t[256];
  for (intptr_t i = 0; i < threads; ++i) pthread_create(&t[i], NULL, worker, (void *)i);
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  printf("stress: %d threads for %.0f s, pid %d\n", threads, seconds, (int)getpid());
  fflush(stdout);
  for (;;) {
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 >= seconds) break;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < threads; ++i) pthread_join(t[i], NULL);
  for (int i = 0; i < SLOTS; ++i) {
    unsigned char *p = atomic_exchange(&slots[i], NULL);
    if (p) {
      verify(p, "at the end");
      free(p);
    }
  }
  printf("stress: %llu operations, %llu MiB verified, %llu corruption(s), %llu failed allocation(s)\n",
         (unsigned long long)atomic_load(&ops), (unsigned long long)(atomic_load(&verified_bytes) >> 20),
         (unsigned long long)atomic_load(&corruptions), (unsigned long long)atomic_load(&failed_allocs));
  return atomic_load(&corruptions) || atomic_load(&failed_allocs) ? 1 : 0;
}
