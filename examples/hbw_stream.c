/* hbw_stream.c — a program written for memkind's hbwmalloc, built against hetmem's
 * libhetmem-hbwmalloc without changes: a STREAM-like triad on high-bandwidth memory when the
 * machine has it, on ordinary memory when it does not (the PREFERRED policy, memkind's
 * default). hbw_verify_memory_region asks the kernel where the pages ended up.
 *
 *   cc hbw_stream.c $(pkg-config --cflags --libs hetmem-hbwmalloc)
 */
#include <hbwmalloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  const size_t n = (size_t)4 << 20; /* 4 Mi doubles per array, 32 MiB each */
  int has_hbw = hbw_check_available() == 0;
  printf("high-bandwidth memory: %s; policy %s\n", has_hbw ? "present" : "absent (PREFERRED falls back)",
         hbw_get_policy() == HBW_POLICY_PREFERRED ? "PREFERRED" : "other");
  double *a = hbw_malloc(n * sizeof *a);
  double *b = hbw_calloc(n, sizeof *b);
  double *c = NULL;
  if (!a || !b || hbw_posix_memalign((void **)&c, 64, n * sizeof *c) != 0) {
    fprintf(stderr, "hbw allocation failed\n");
    return 1;
  }
  for (size_t i = 0; i < n; ++i) {
    b[i] = 1.0;
    c[i] = 2.0;
  }
  for (size_t i = 0; i < n; ++i) a[i] = b[i] + 3.0 * c[i];
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += a[i];
  const char *where[] = {"on high-bandwidth memory", "not (all) on high-bandwidth memory"};
  int va = hbw_verify_memory_region(a, n * sizeof *a, 0);
  printf("triad checksum %.0f (expect %.0f); arrays %s\n", sum, 7.0 * (double)n,
         va == 0    ? where[0]
         : va == -1 ? where[1]
                    : "unverifiable");
  a = hbw_realloc(a, 2 * n * sizeof *a);
  printf("realloc kept the data: %s\n", a && a[n - 1] == 7.0 ? "yes" : "NO");
  hbw_free(a);
  hbw_free(b);
  hbw_free(c);
  return sum == 7.0 * (double)n ? 0 : 1;
}
