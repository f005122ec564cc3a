/* dl_alloc.c — a library that allocates in its constructor and frees in its destructor
 * (for the preload's dlopen/dlclose check). */
#include <stdlib.h>
#include <string.h>

static void *held[100];

__attribute__((constructor)) static void start(void) {
  for (int i = 0; i < 100; ++i) held[i] = malloc(100 + (size_t)i * 300);
}
__attribute__((destructor)) static void stop(void) {
  for (int i = 0; i < 100; ++i) free(held[i]);
}

char *hetmem_test_make(size_t n) {
  char *s = malloc(n);
  if (s) memset(s, 'x', n);
  return s;
}
