/* hbwmalloc.h — memkind's hbwmalloc API, implemented by hetmem (libhetmem-hbwmalloc).
 *
 * Source-compatible with memkind's <hbwmalloc.h> (same names, types and values): programs
 * written for it build unchanged with `pkg-config --cflags --libs hetmem-hbwmalloc` in place of
 * -lmemkind. Semantics, as memkind documents them, with hetmem's topology deciding what "high
 * bandwidth" is (nodes classified HBM; $MEMKIND_HBW_NODES, a node list, overrides):
 * - hbw_check_available(): 0 when HBM is present (and allowed by the cpuset), else ENODEV.
 * - Policy (hbw_set_policy, once, before the first allocation; EPERM after; EINVAL for an
 *   unknown one). PREFERRED (default): the nearest HBM, else the next tiers by rank for the
 *   calling CPU — and on a machine without HBM, ordinary memory. BIND: nearest HBM only
 *   (NULL/ENOMEM when it is full or absent, instead of memkind's OOM killer). BIND_ALL: all
 *   HBM nodes. INTERLEAVE: pages interleaved over all HBM nodes.
 * - hbw_posix_memalign_psize: HBW_PAGESIZE_4KB or _2MB (transparent huge pages requested);
 *   the deprecated 1 GB sizes return EINVAL.
 * - hbw_verify_memory_region(): 0 when every page is on HBM, -1 when one is not (or is not
 *   faulted in), EINVAL for bad arguments, EFAULT when the kernel cannot tell.
 */
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
#include <stdlib.h>

typedef enum {
  HBW_POLICY_BIND = 1,
  HBW_POLICY_PREFERRED = 2,
  HBW_POLICY_INTERLEAVE = 3,
  HBW_POLICY_BIND_ALL = 4,
} hbw_policy_t;

typedef enum {
  HBW_PAGESIZE_4KB = 1,
  HBW_PAGESIZE_2MB = 2,
  HBW_PAGESIZE_1GB_STRICT = 3,
  HBW_PAGESIZE_1GB = 4,
  HBW_PAGESIZE_MAX_VALUE
} hbw_pagesize_t;

enum { HBW_TOUCH_PAGES = (1 << 0) };

hbw_policy_t hbw_get_policy(void);
int hbw_set_policy(hbw_policy_t mode);
int hbw_check_available(void);
int hbw_verify_memory_region(void *addr, size_t size, int flags);
void *hbw_malloc(size_t size);
void *hbw_calloc(size_t num, size_t size);
int hbw_posix_memalign(void **memptr, size_t alignment, size_t size);
int hbw_posix_memalign_psize(void **memptr, size_t alignment, size_t size, hbw_pagesize_t pagesize);
void *hbw_realloc(void *ptr, size_t size);
void hbw_free(void *ptr);
size_t hbw_malloc_usable_size(void *ptr);

#ifdef __cplusplus
}
#endif
