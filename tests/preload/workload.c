/* workload.c — allocates MIB mebibytes through malloc in blocks of 4 KiB to 1 MiB (random),
 * writes every byte, checks it all, prints each node's MemFree at the peak, then frees.
 * For the preload's VM tests: the byte split between tiers comes from HETMEM_REPORT (the
 * kernel's numa_maps), not from here.   Usage: workload MIB  */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  const size_t total = (size_t)(argc > 1 ? atol(argv[1]) : 1024) << 20;
  size_t cap = 1 << 16, n = 0, done = 0;
  unsigned char **blocks = malloc(cap * sizeof *blocks);
  size_t *sizes = malloc(cap * sizeof *sizes);
  uint64_t s = 0x9e3779b97f4a7c15ull;
  while (done < total) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    size_t len = 4096 + (size_t)(s % (1u << 20));
    if (len > total - done) len = total - done;
    if (n == cap) {
      cap *= 2;
      blocks = realloc(blocks, cap * sizeof *blocks);
      sizes = realloc(sizes, cap * sizeof *sizes);
    }
    blocks[n] = malloc(len);
    if (!blocks[n]) {
      printf("malloc of %zu failed after %zu MiB\n", len, done >> 20);
      return 1;
    }
    memset(blocks[n], (int)(n & 0xff), len);
    sizes[n++] = len;
    done += len;
  }
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < sizes[i]; j += 4093)
      if (blocks[i][j] != (unsigned char)(i & 0xff)) {
        printf("block %zu corrupted\n", i);
        return 1;
      }
  printf("workload: %zu MiB in %zu blocks, intact\n", done >> 20, n);
  DIR *d = opendir("/sys/devices/system/node");
  struct dirent *e;
  while (d && (e = readdir(d))) {
    unsigned node;
    if (sscanf(e->d_name, "node%u", &node) != 1) continue;
    char path[128], line[256];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%u/meminfo", node);
    FILE *f = fopen(path, "r");
    unsigned long long tot = 0, fr = 0;
    while (f && fgets(line, sizeof line, f)) {
      sscanf(line, "Node %*u MemTotal: %llu", &tot);
      sscanf(line, "Node %*u MemFree: %llu", &fr);
    }
    if (f) fclose(f);
    printf("node %u: MemFree %llu of %llu KiB at the peak\n", node, fr, tot);
  }
  if (d) closedir(d);
  if (getenv("WORKLOAD_KEEP")) return 0; /* exit with everything live: the report sees it all */
  for (size_t i = 0; i < n; ++i) free(blocks[i]);
  free(blocks);
  free(sizes);
  return 0;
}
