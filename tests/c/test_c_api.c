/* The C API, as a C program uses it: heaps, errors, where, stats, reservations. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "hetmem/hetmem.h"

int main(void) {
  hetmem_heap_t *h = NULL;
  CHECK(hetmem_heap_create_rank(0, NULL, &h) == 0);
  if (!h) return CHECK_DONE("c api");
  CHECK(strstr(hetmem_heap_name(h), "rank 0 for node") != NULL);

  char *p = hetmem_malloc(h, 100000);
  CHECK(p != NULL);
  memset(p, 5, 100000);
  hetmem_kind_t kind = HETMEM_KIND_UNKNOWN;
  char name[64];
  CHECK(hetmem_tier_of(p, &kind, name, sizeof name) == 0);
  CHECK(strcmp(name, hetmem_heap_name(h)) == 0);
  CHECK(kind == hetmem_heap_kind(h));
  CHECK(hetmem_usable_size(p) >= 100000);
  size_t per_node[64], absent = 99;
  CHECK(hetmem_where(p, 100000, per_node, 64, &absent) == 0);
  size_t total = 0;
  for (int i = 0; i < 64; ++i) total += per_node[i];
  CHECK(total + absent >= 100000 / 4096 && absent == 0);

  int local = 0;
  CHECK(hetmem_tier_of(&local, NULL, NULL, 0) == -ENOENT);
  CHECK(strstr(hetmem_last_error(), "did not allocate") != NULL);

  /* calloc overflow, bad alignment, realloc */
  errno = 0;
  CHECK(hetmem_calloc(h, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
  void *al = NULL;
  CHECK(hetmem_posix_memalign(h, &al, 3, 10) == EINVAL);
  CHECK(hetmem_posix_memalign(h, &al, 4096, 10) == 0 && ((uintptr_t)al % 4096) == 0);
  p = hetmem_realloc(h, p, 1 << 20);
  CHECK(p != NULL && p[99999] == 5);
  hetmem_free(p);
  hetmem_free(al);
  hetmem_free(NULL);

  /* migration: on node 0 already (this test runs on any machine: node 0 is where rank 0 is
   * on one-node machines; elsewhere the counts still add up) */
  {
    char *m = NULL;
    CHECK(hetmem_posix_memalign(h, (void **)&m, 4096, 1 << 20) == 0 && m != NULL);
    memset(m, 7, 1 << 20);
    hetmem_migration_report_t rep;
    unsigned node0 = 0;
    CHECK(hetmem_migrate_nodes(0, m, 1 << 20, &node0, 1, NULL, 0, &rep) == 0);
    CHECK(rep.pages == 256 && rep.moved + rep.already_there + rep.not_present == 256 && rep.busy == 0);
    CHECK(hetmem_migrate_nodes(0, m, 1 << 20, NULL, 0, NULL, 0, &rep) == -EINVAL);
    CHECK(hetmem_migrate_nodes(-1, m, 1 << 20, &node0, 1, NULL, 0, &rep) == -EINVAL);
    CHECK(hetmem_migrate_kind(0, m, 1 << 20, (hetmem_kind_t)99, NULL, 0, &rep) == -EINVAL);
    CHECK(hetmem_migrate_nodes(999999999, m, 4096, &node0, 1, NULL, 0, &rep) == -ESRCH);
    CHECK(strstr(hetmem_last_error(), "no process") != NULL);
    hetmem_free(m);
  }

  /* statistics */
  void *keep = hetmem_malloc(h, 1 << 20);
  hetmem_tier_stats_t st[4];
  size_t count = 0;
  CHECK(hetmem_heap_stats(h, st, 4, &count) == 0);
  CHECK(count == 1);
  CHECK(st[0].allocated_bytes >= (1 << 20));
  CHECK(st[0].capacity_bytes > 0 && st[0].fill_limit_percent == 100);
  hetmem_free(keep);

  /* reservations */
  hetmem_reservation_t *r = NULL;
  CHECK(hetmem_reservation_create(h, 1 << 16, &r) == 0);
  void *c = hetmem_reservation_malloc(r, 1000);
  CHECK(c != NULL);
  CHECK(hetmem_tier_of(c, NULL, name, sizeof name) == 0);
  CHECK(hetmem_reservation_malloc(r, 1 << 20) == NULL && errno == ENOMEM);
  hetmem_free(c);
  hetmem_reservation_destroy(r);

  /* errors name the cause */
  hetmem_heap_t *none = NULL;
  unsigned bad[] = {4000};
  CHECK(hetmem_heap_create_nodes(bad, 1, NULL, &none) == -EINVAL && none == NULL);
  CHECK(strstr(hetmem_last_error(), "node 4000 is not a memory node") != NULL);
  CHECK(hetmem_heap_create_kind((hetmem_kind_t)42, NULL, &none) == -EINVAL);
  hetmem_heap_options_t o;
  memset(&o, 0, sizeof o);
  o.fill_limit_percent = 150;
  CHECK(hetmem_heap_create_rank(0, &o, &none) == -EINVAL);
  CHECK(strstr(hetmem_last_error(), "outside 1-100") != NULL);
  memset(&o, 0, sizeof o);
  o.when_full = (hetmem_on_full_t)7;
  CHECK(hetmem_heap_create_rank(0, &o, &none) == -EINVAL);
  CHECK(strstr(hetmem_last_error(), "when_full must be") != NULL);
  o.when_full = HETMEM_ON_FULL_FAIL;
  o.huge_pages = (hetmem_thp_t)9;
  CHECK(hetmem_heap_create_rank(0, &o, &none) == -EINVAL);
  memset(&o, 0, sizeof o);
  size_t n_ddr = 0;
  CHECK(hetmem_nodes_of_kind(HETMEM_KIND_DDR, NULL, 0, &n_ddr) == 0);
  CHECK(strcmp(hetmem_kind_name(HETMEM_KIND_HBM), "HBM") == 0);

  /* interleave and huge-page options */
  o.fill_limit_percent = 0;
  o.interleave = 1;
  o.huge_pages = HETMEM_THP_NEVER;
  hetmem_heap_t *il = NULL;
  CHECK(hetmem_heap_create_rank(0, &o, &il) == 0);
  CHECK(il && strstr(hetmem_heap_name(il), "interleaved, no huge pages") != NULL);
  void *q = hetmem_malloc(il, 3 << 20);
  CHECK(q != NULL);
  hetmem_free(q);
  hetmem_heap_destroy(il);

  /* a file-backed tier in /tmp (a DAX directory in the pmem VM) */
  hetmem_heap_t *f = NULL;
  CHECK(hetmem_heap_create_file("/tmp", 4 << 20, NULL, &f) == 0);
  if (f) {
    char *x = hetmem_malloc(f, 1 << 20);
    CHECK(x != NULL && hetmem_heap_kind(f) == HETMEM_KIND_PMEM);
    if (x) memset(x, 1, 1 << 20);
    CHECK(hetmem_malloc(f, 8 << 20) == NULL);
    CHECK(strstr(hetmem_last_error(), "file tier is full") != NULL);
    hetmem_free(x);
    hetmem_heap_destroy(f);
  }
  CHECK(hetmem_heap_create_file("/nonexistent", 1 << 20, NULL, &f) == -ENOENT);
  hetmem_heap_destroy(h);
  return CHECK_DONE("c api");
}
