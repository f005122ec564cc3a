/* check.h — a tiny assertion helper for the C tests: prints the failing expression and counts. */
#pragma once
#include <stdio.h>
static int check_failures = 0;
#define CHECK(expr)                                                            \
  do {                                                                         \
    if (!(expr)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
      ++check_failures;                                                        \
    }                                                                          \
  } while (0)
#define CHECK_DONE(name) \
  (printf("%s: %s\n", name, check_failures ? "FAILED" : "all checks passed"), check_failures ? 1 : 0)
