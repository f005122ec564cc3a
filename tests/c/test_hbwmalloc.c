/* hbwmalloc as memkind documents it. Run twice by ctest: on this machine as it is (no HBM
 * here: check_available says ENODEV, PREFERRED falls back, BIND fails), and with
 * MEMKIND_HBW_NODES naming node 0 (HBM "present"). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hbwmalloc.h"

int main(int argc, char **argv) {
  const int expect_hbw = argc > 1 && strcmp(argv[1], "with-hbw") == 0;
  const int bind = argc > 2 && strcmp(argv[2], "bind") == 0;
  CHECK(hbw_check_available() == (expect_hbw ? 0 : ENODEV));
  CHECK(hbw_get_policy() == HBW_POLICY_PREFERRED);
  CHECK(hbw_set_policy((hbw_policy_t)9) == EINVAL);
  const int interleave = argc > 2 && strcmp(argv[2], "interleave") == 0;
  if (interleave) {
    /* memkind: 2 MB pages are not supported with HBW_POLICY_INTERLEAVE: EINVAL, *memptr NULL */
    CHECK(hbw_set_policy(HBW_POLICY_INTERLEAVE) == 0);
    void *a = (void *)1;
    CHECK(hbw_posix_memalign_psize(&a, 64, 4096, HBW_PAGESIZE_2MB) == EINVAL && a == NULL);
    const int rc = hbw_posix_memalign_psize(&a, 64, 4096, HBW_PAGESIZE_4KB);
    CHECK(expect_hbw ? rc == 0 && a != NULL : rc == ENOMEM && a == NULL);
    hbw_free(a);
    return CHECK_DONE(expect_hbw ? "hbwmalloc (interleave, with HBM)" : "hbwmalloc (interleave, no HBM)");
  }
  /* Requests of 0 bytes, as memkind documents them: NULL from hbw_malloc and hbw_calloc, errno
   * untouched; hbw_posix_memalign succeeds with *memptr NULL. */
  {
    errno = 0;
    CHECK(hbw_malloc(0) == NULL && errno == 0);
    CHECK(hbw_calloc(1, 0) == NULL && errno == 0);
    CHECK(hbw_calloc(0, 1) == NULL && errno == 0);
    CHECK(hbw_realloc(NULL, 0) == NULL);
    void *z0 = (void *)1;
    CHECK(hbw_posix_memalign(&z0, 4096, 0) == 0 && z0 == NULL);
    z0 = (void *)1;
    CHECK(hbw_posix_memalign(&z0, 3, 100) == EINVAL && z0 == NULL);
  }
  if (bind) {
    CHECK(hbw_set_policy(HBW_POLICY_BIND) == 0);
    CHECK(hbw_set_policy(HBW_POLICY_PREFERRED) == EPERM); /* once only */
    CHECK(hbw_get_policy() == HBW_POLICY_BIND);
    void *p = hbw_malloc(1000);
    if (expect_hbw) {
      CHECK(p != NULL);
      CHECK(hbw_verify_memory_region(p, 1000, HBW_TOUCH_PAGES) == 0);
    } else {
      CHECK(p == NULL); /* BIND without HBM fails: nothing to bind to */
    }
    hbw_free(p);
    return CHECK_DONE(expect_hbw ? "hbwmalloc (bind, with HBM)" : "hbwmalloc (bind, no HBM)");
  }
  /* hbw_verify_memory_region as memkind's own tests use it: pages never touched are not
   * "on" anything (-1); HBW_TOUCH_PAGES faults them in without changing their content; any
   * sub-range of an object, not page aligned, can be asked about. */
  {
    const size_t big = 1024 * 4096;
    char *u = hbw_malloc(big);
    CHECK(u != NULL);
    CHECK(hbw_verify_memory_region(u, big, 0) == -1);
    memset(u, '.', 5 * 4096);
    CHECK(hbw_verify_memory_region(u, 5 * 4096, HBW_TOUCH_PAGES) == (expect_hbw ? 0 : -1));
    int same = 1;
    for (size_t i = 0; i < 5 * 4096; ++i) same = same && u[i] == '.';
    CHECK(same);
    CHECK(hbw_verify_memory_region(u + 1, 5 * 4096 - 2, 0) == (expect_hbw ? 0 : -1));
    CHECK(hbw_verify_memory_region(u, big, HBW_TOUCH_PAGES) == (expect_hbw ? 0 : -1));
    hbw_free(u);
    int all = 1;
    for (size_t size = 1; size <= 2 * 4096 + 2; size += 7) {
      char *s = hbw_malloc(size);
      all = all && s && hbw_verify_memory_region(s, size, HBW_TOUCH_PAGES) == (expect_hbw ? 0 : -1);
      hbw_free(s);
    }
    CHECK(all);
    void *plain = malloc(4096);
    /* glibc's memory: not HBM here (with MEMKIND_HBW_NODES=0 node 0 *is* "HBM", and so is it) */
    CHECK(hbw_verify_memory_region(plain, 4096, HBW_TOUCH_PAGES) == (expect_hbw ? 0 : -1));
    free(plain);
  }
  char *p = hbw_malloc(5000);
  CHECK(p != NULL);
  CHECK(hbw_set_policy(HBW_POLICY_BIND) == EPERM); /* after the first allocation */
  memset(p, 1, 5000);
  CHECK(hbw_malloc_usable_size(p) >= 5000);
  CHECK(hbw_verify_memory_region(p, 5000, 0) == (expect_hbw ? 0 : -1));
  CHECK(hbw_verify_memory_region(NULL, 5000, 0) == EINVAL);
  CHECK(hbw_verify_memory_region(p, 0, 0) == EINVAL);
  CHECK(hbw_verify_memory_region(p, 10, 8) == EINVAL);
  int *z = hbw_calloc(1000, sizeof *z);
  CHECK(z != NULL && z[0] == 0 && z[999] == 0);
  CHECK(hbw_calloc(SIZE_MAX / 2, 4) == NULL);
  p = hbw_realloc(p, 100000);
  CHECK(p != NULL && p[4999] == 1);
  CHECK(hbw_realloc(p, 0) == NULL); /* frees */
  void *a = NULL;
  CHECK(hbw_posix_memalign(&a, 3, 100) == EINVAL);
  CHECK(hbw_posix_memalign(&a, 256, 100) == 0 && ((uintptr_t)a % 256) == 0);
  hbw_free(a);
  CHECK(hbw_posix_memalign_psize(&a, 64, 3 << 20, HBW_PAGESIZE_2MB) == 0 && ((uintptr_t)a % (2u << 20)) == 0);
  hbw_free(a);
  CHECK(hbw_posix_memalign_psize(&a, 64, 100, HBW_PAGESIZE_1GB) == EINVAL);
  hbw_free(z);
  hbw_free(NULL);
  return CHECK_DONE(expect_hbw ? "hbwmalloc (with HBM)" : "hbwmalloc (no HBM)");
}
