/* hbwmalloc.c — memkind's hbwmalloc API on hetmem's C API (see hetmem/compat/hbwmalloc.h).
 * Written in C against hetmem.h only: one engine per process, shared with libhetmem. */
#define _GNU_SOURCE
#include "hbwmalloc.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hetmem/hetmem.h"

#define MAX_NODES 1024
#define MAX_INITIATORS 64

static _Atomic int policy = 0;    /* 0: not set (PREFERRED) */
static _Atomic int allocated = 0; /* set on the first allocation: the policy is then fixed */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

/* HBM nodes: $MEMKIND_HBW_NODES (a node list, as memkind reads it) or hetmem's classification. */
static unsigned hbw_nodes[MAX_NODES];
static size_t hbw_count = 0;
static pthread_once_t nodes_once = PTHREAD_ONCE_INIT;
static int env_nodes = 0;

static void parse_env_nodes(const char *s) {
  while (*s) {
    char *end = NULL;
    unsigned long lo = strtoul(s, &end, 10), hi = lo;
    if (end == s) break;
    s = end;
    if (*s == '-') {
      hi = strtoul(s + 1, &end, 10);
      s = end;
    }
    for (unsigned long n = lo; n <= hi && n < MAX_NODES && hbw_count < MAX_NODES; ++n)
      hbw_nodes[hbw_count++] = (unsigned)n;
    if (*s == ',')
      ++s;
    else
      break;
  }
}

static void find_nodes(void) {
  const char *env = secure_getenv("MEMKIND_HBW_NODES");
  if (env && *env) {
    env_nodes = 1;
    parse_env_nodes(env);
    return;
  }
  size_t n = 0;
  if (hetmem_nodes_of_kind(HETMEM_KIND_HBM, hbw_nodes, MAX_NODES, &n) == 0) hbw_count = n < MAX_NODES ? n : MAX_NODES;
}

static size_t nodes(void) {
  pthread_once(&nodes_once, find_nodes);
  return hbw_count;
}

/* Heaps, made on first use: per initiator node for the nearest-HBM policies, one for the
 * all-HBM ones. */
static hetmem_heap_t *_Atomic nearest[MAX_INITIATORS];
static hetmem_heap_t *_Atomic all_nodes;

static int current_policy(void) {
  int p = atomic_load_explicit(&policy, memory_order_relaxed);
  return p ? p : HBW_POLICY_PREFERRED;
}

static hetmem_heap_t *make_heap(int pol) {
  hetmem_heap_options_t o;
  memset(&o, 0, sizeof o);
  hetmem_heap_t *h = NULL;
  if (nodes() == 0) {
    /* No HBM: PREFERRED falls back to ordinary memory (the fastest tier for this CPU). */
    if (pol != HBW_POLICY_PREFERRED) return NULL;
    o.when_full = HETMEM_ON_FULL_NEXT_TIER;
    return hetmem_heap_create_rank(0, &o, &h) == 0 ? h : NULL;
  }
  if (pol == HBW_POLICY_BIND_ALL || pol == HBW_POLICY_INTERLEAVE) {
    o.interleave = pol == HBW_POLICY_INTERLEAVE;
    return hetmem_heap_create_nodes(hbw_nodes, hbw_count, &o, &h) == 0 ? h : NULL;
  }
  o.when_full = pol == HBW_POLICY_PREFERRED ? HETMEM_ON_FULL_NEXT_TIER : HETMEM_ON_FULL_FAIL;
  if (env_nodes) return hetmem_heap_create_nodes(hbw_nodes, hbw_count, &o, &h) == 0 ? h : NULL;
  if (hetmem_heap_create_kind(HETMEM_KIND_HBM, &o, &h) == 0) return h;
  /* HBM exists but none is ranked for this CPU (a cpuset, odd firmware): use them all. */
  return hetmem_heap_create_nodes(hbw_nodes, hbw_count, &o, &h) == 0 ? h : NULL;
}

static hetmem_heap_t *heap_for_call(void) {
  atomic_store_explicit(&allocated, 1, memory_order_relaxed);
  const int pol = current_policy();
  hetmem_heap_t *_Atomic *slot = &all_nodes;
  if (pol == HBW_POLICY_BIND || pol == HBW_POLICY_PREFERRED) {
    unsigned cpu = 0, node = 0;
    if (getcpu(&cpu, &node) != 0 || node >= MAX_INITIATORS) node = 0;
    slot = &nearest[node];
  }
  hetmem_heap_t *h = atomic_load_explicit(slot, memory_order_acquire);
  if (h) return h;
  pthread_mutex_lock(&create_lock);
  h = atomic_load_explicit(slot, memory_order_relaxed);
  if (!h) {
    h = make_heap(pol);
    atomic_store_explicit(slot, h, memory_order_release);
  }
  pthread_mutex_unlock(&create_lock);
  return h;
}

hbw_policy_t hbw_get_policy(void) { return (hbw_policy_t)current_policy(); }

int hbw_set_policy(hbw_policy_t mode) {
  if (mode < HBW_POLICY_BIND || mode > HBW_POLICY_BIND_ALL) return EINVAL;
  if (atomic_load(&allocated)) return EPERM;
  int expected = 0;
  return atomic_compare_exchange_strong(&policy, &expected, (int)mode) ? 0 : EPERM;
}

int hbw_check_available(void) { return nodes() > 0 ? 0 : ENODEV; }

/* memkind's documented answers that differ from malloc's: a request of 0 bytes gives NULL
 * (errno untouched), from hbw_malloc, hbw_calloc (either count 0) and hbw_posix_memalign
 * (*memptr NULL, status 0). */
void *hbw_malloc(size_t size) {
  if (size == 0) return NULL;
  hetmem_heap_t *h = heap_for_call();
  if (!h) {
    errno = ENOMEM;
    return NULL;
  }
  return hetmem_malloc(h, size);
}

void *hbw_calloc(size_t num, size_t size) {
  if (num == 0 || size == 0) return NULL;
  hetmem_heap_t *h = heap_for_call();
  if (!h) {
    errno = ENOMEM;
    return NULL;
  }
  return hetmem_calloc(h, num, size);
}

void *hbw_realloc(void *ptr, size_t size) {
  if (size == 0) { /* frees ptr; hbw_realloc(NULL, 0) is hbw_malloc(0): NULL */
    hbw_free(ptr);
    return NULL;
  }
  hetmem_heap_t *h = heap_for_call();
  if (!h) {
    errno = ENOMEM;
    return NULL;
  }
  return hetmem_realloc(h, ptr, size);
}

int hbw_posix_memalign(void **memptr, size_t alignment, size_t size) {
  return hbw_posix_memalign_psize(memptr, alignment, size, HBW_PAGESIZE_4KB);
}

static hetmem_heap_t *_Atomic huge[2]; /* [0]: nearest (BIND/PREFERRED), [1]: all HBM */

int hbw_posix_memalign_psize(void **memptr, size_t alignment, size_t size, hbw_pagesize_t pagesize) {
  if (!memptr) return EINVAL;
  *memptr = NULL; /* as memkind: NULL on every failure, and for a size of 0 */
  if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
  if (pagesize != HBW_PAGESIZE_4KB && pagesize != HBW_PAGESIZE_2MB) return EINVAL;
  /* memkind: 2 MB pages are not supported with HBW_POLICY_INTERLEAVE (EINVAL). */
  if (pagesize == HBW_PAGESIZE_2MB && current_policy() == HBW_POLICY_INTERLEAVE) return EINVAL;
  if (size == 0) return 0;
  hetmem_heap_t *h = heap_for_call();
  if (pagesize == HBW_PAGESIZE_2MB && h) {
    const int pol = current_policy();
    hetmem_heap_t *_Atomic *slot = &huge[pol == HBW_POLICY_BIND || pol == HBW_POLICY_PREFERRED ? 0 : 1];
    hetmem_heap_t *hh = atomic_load_explicit(slot, memory_order_acquire);
    if (!hh) {
      pthread_mutex_lock(&create_lock);
      hh = atomic_load_explicit(slot, memory_order_relaxed);
      if (!hh) {
        hetmem_heap_options_t o;
        memset(&o, 0, sizeof o);
        o.huge_pages = HETMEM_THP_ALWAYS;
        o.when_full = pol == HBW_POLICY_PREFERRED ? HETMEM_ON_FULL_NEXT_TIER : HETMEM_ON_FULL_FAIL;
        o.interleave = pol == HBW_POLICY_INTERLEAVE;
        if (nodes() > 0)
          (void)hetmem_heap_create_nodes(hbw_nodes, hbw_count, &o, &hh);
        else if (pol == HBW_POLICY_PREFERRED)
          (void)hetmem_heap_create_rank(0, &o, &hh);
        atomic_store_explicit(slot, hh, memory_order_release);
      }
      pthread_mutex_unlock(&create_lock);
    }
    h = hh;
    if (alignment < (2u << 20)) alignment = 2u << 20;
  }
  if (!h) return ENOMEM;
  return hetmem_posix_memalign(h, memptr, alignment, size);
}

void hbw_free(void *ptr) { hetmem_free(ptr); }

size_t hbw_malloc_usable_size(void *ptr) { return hetmem_usable_size(ptr); }

int hbw_verify_memory_region(void *addr, size_t size, int flags) {
  if (!addr || size == 0 || (flags & ~HBW_TOUCH_PAGES) != 0) return EINVAL;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (flags & HBW_TOUCH_PAGES) {
    const uintptr_t first = (uintptr_t)addr & ~(page - 1);
    for (uintptr_t a = first; a < (uintptr_t)addr + size; a += page) {
      volatile char *c = (volatile char *)(a < (uintptr_t)addr ? (uintptr_t)addr : a);
      *c = *c; /* read and write the same value: faults the page in */
    }
  }
  size_t *per_node = calloc(MAX_NODES, sizeof *per_node);
  if (!per_node) return EFAULT;
  size_t not_present = 0;
  int rc = hetmem_where(addr, size, per_node, MAX_NODES, &not_present);
  if (rc != 0) {
    free(per_node);
    return EFAULT;
  }
  size_t on_hbw = 0, total = not_present;
  for (size_t n = 0; n < MAX_NODES; ++n) total += per_node[n];
  for (size_t i = 0; i < nodes(); ++i) on_hbw += per_node[hbw_nodes[i]];
  free(per_node);
  return total > 0 && on_hbw == total ? 0 : -1;
}
