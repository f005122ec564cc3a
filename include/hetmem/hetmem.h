/* hetmem/hetmem.h — hetmem's C API (also for Fortran through ISO_C_BINDING): heaps on memory
 * tiers, reservations, where memory is, and what the tiers hold.
 *
 * Contract:
 * - Control functions return 0 on success or a negative errno value (-ENOENT: no such tier on
 *   this machine, -EINVAL: bad argument, -ENOMEM: out of memory or the tier is full, ...);
 *   hetmem_last_error() then returns a message naming the cause (thread-local, valid until the
 *   thread's next failing hetmem call).
 * - Allocation functions return NULL on failure with errno set (ENOMEM, EINVAL), like malloc.
 * - hetmem_free() takes any pointer from any hetmem heap or reservation, from any thread.
 * - The topology is read once, on first use ($HETMEM_SYSFS_ROOT moves the sysfs root,
 *   $HETMEM_NODE_KINDS overrides kinds, as for the CLI).
 * - Link with -lhetmem (pkg-config hetmem-c). Thread-safe.
 */
#ifndef HETMEM_HETMEM_H
#define HETMEM_HETMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hetmem_heap hetmem_heap_t;
typedef struct hetmem_reservation hetmem_reservation_t;

typedef enum {
  HETMEM_KIND_UNKNOWN = 0,
  HETMEM_KIND_DDR = 1,
  HETMEM_KIND_HBM = 2,
  HETMEM_KIND_PMEM = 3,
  HETMEM_KIND_CXL = 4,
  HETMEM_KIND_DEVICE = 5
} hetmem_kind_t;

typedef enum {
  HETMEM_ON_FULL_FAIL = 0,     /* strict: NULL / -ENOMEM, naming the exhausted tier */
  HETMEM_ON_FULL_NEXT_TIER = 1 /* preferred: the next tier by rank for the initiator */
} hetmem_on_full_t;

typedef enum { HETMEM_THP_DEFAULT = 0, HETMEM_THP_NEVER = 1, HETMEM_THP_ALWAYS = 2 } hetmem_thp_t;

/* Zero-initialise, then set what you need: {0} is strict, no watermark, bind. */
typedef struct {
  hetmem_on_full_t when_full;  /* default HETMEM_ON_FULL_FAIL */
  unsigned fill_limit_percent; /* watermark 1-100; 0 means 100 */
  int interleave;              /* nonzero: pages round-robin over the tier's nodes (strict) */
  hetmem_thp_t huge_pages;     /* transparent huge pages: system default, never, always */
  unsigned reserved[4];        /* zero */
} hetmem_heap_options_t;

/* Heaps. `options` may be NULL (strict, no watermark). Tiers are ranked for the calling
 * thread's initiator. */
int hetmem_heap_create_kind(hetmem_kind_t kind, const hetmem_heap_options_t *options, hetmem_heap_t **out);
int hetmem_heap_create_rank(unsigned rank, const hetmem_heap_options_t *options, hetmem_heap_t **out);
int hetmem_heap_create_largest(const hetmem_heap_options_t *options, hetmem_heap_t **out);
int hetmem_heap_create_nodes(const unsigned *nodes, size_t count, const hetmem_heap_options_t *options,
                             hetmem_heap_t **out);
/* Persistent memory that is not a NUMA node: a devdax device (/dev/daxX.Y) or a directory on
 * a DAX file system, used as volatile memory, at most max_bytes. */
int hetmem_heap_create_file(const char *path, uint64_t max_bytes, const hetmem_heap_options_t *options,
                            hetmem_heap_t **out);
/* Frees the handle; memory allocated from it stays valid (hetmem_free still takes it). */
void hetmem_heap_destroy(hetmem_heap_t *heap);
/* The tier's name ("HBM (nodes 2)") and kind. */
const char *hetmem_heap_name(const hetmem_heap_t *heap);
hetmem_kind_t hetmem_heap_kind(const hetmem_heap_t *heap);

void *hetmem_malloc(hetmem_heap_t *heap, size_t size);
void *hetmem_calloc(hetmem_heap_t *heap, size_t count, size_t size);                       /* overflow-checked */
void *hetmem_realloc(hetmem_heap_t *heap, void *ptr, size_t size);                         /* NULL ptr: malloc */
int hetmem_posix_memalign(hetmem_heap_t *heap, void **out, size_t alignment, size_t size); /* 0/errno */
void hetmem_free(void *ptr);
size_t hetmem_usable_size(const void *ptr);

/* The tier hetmem allocated `ptr` on: 0, or -ENOENT when hetmem did not allocate it. `kind`
 * and `name` (NUL-terminated, truncated to name_len) may be NULL. */
int hetmem_tier_of(const void *ptr, hetmem_kind_t *kind, char *name, size_t name_len);
/* Pages of [ptr, ptr+len) per node, as the kernel reports them: pages_per_node[n] for n <
 * max_nodes (pages on higher nodes are not counted there), *not_present for pages not faulted
 * in. Returns 0 or -errno. */
int hetmem_where(const void *ptr, size_t len, size_t *pages_per_node, size_t max_nodes, size_t *not_present);

typedef struct {
  char tier[96];
  unsigned fill_limit_percent;
  uint64_t allocated_bytes, cached_bytes, mapped_bytes, resident_bytes, refused_extents;
  uint64_t capacity_bytes, free_bytes, available_bytes;
} hetmem_tier_stats_t;
/* Statistics of each tier of the heap's chain, best first; *count gets how many there are
 * (up to max written). */
int hetmem_heap_stats(const hetmem_heap_t *heap, hetmem_tier_stats_t *out, size_t max, size_t *count);
uint64_t hetmem_heap_fallbacks(const hetmem_heap_t *heap);

/* Reservations: `bytes` set aside on the tier of `heap` (faulted in now) for allocations that
 * must not fail. Destroying one returns its memory; its blocks must have been freed. */
int hetmem_reservation_create(const hetmem_heap_t *heap, size_t bytes, hetmem_reservation_t **out);
void *hetmem_reservation_malloc(hetmem_reservation_t *r, size_t size);
void hetmem_reservation_destroy(hetmem_reservation_t *r);

/* Page migration (hetmem/migrate.hpp): the pages of [ptr, ptr+len) of process `pid` (0: the
 * caller) move to the nodes of tier `kind`, or to `nodes`; with from_nodes (from_count > 0) only
 * pages now on those nodes move. move_pages in batches; every count is the kernel's word.
 * Returns 0 when the kernel ran the moves (the report says, page by page, what happened), or
 * -errno: -ESRCH no such process, -EPERM not allowed (another user's pages need CAP_SYS_NICE),
 * -EINVAL a tier or node this process cannot use; hetmem_last_error() says which. */
typedef struct {
  uint64_t pages;         /* pages in the range */
  uint64_t not_present;   /* not faulted in, or unmapped */
  uint64_t already_there; /* on a target node before */
  uint64_t not_selected;  /* on a node outside from_nodes */
  uint64_t moved;         /* on a target node afterwards */
  uint64_t busy;          /* -EBUSY: pinned, locked or under I/O */
  uint64_t no_memory;     /* -ENOMEM: the target nodes are full */
  uint64_t shared;        /* -EACCES: mapped by other processes too */
  uint64_t other_failed;  /* other per-page errors (first_error) */
  int first_error;
  double seconds;
} hetmem_migration_report_t;
int hetmem_migrate_kind(int pid, const void *ptr, size_t len, hetmem_kind_t kind, const unsigned *from_nodes,
                        size_t from_count, hetmem_migration_report_t *report);
int hetmem_migrate_nodes(int pid, const void *ptr, size_t len, const unsigned *nodes, size_t count,
                         const unsigned *from_nodes, size_t from_count, hetmem_migration_report_t *report);

/* The memory nodes of `kind` (all of them, any initiator), ascending: up to max written,
 * *count gets how many there are. 0 or -errno. */
int hetmem_nodes_of_kind(hetmem_kind_t kind, unsigned *nodes, size_t max, size_t *count);

const char *hetmem_last_error(void);
/* "DDR", "HBM", ... */
const char *hetmem_kind_name(hetmem_kind_t kind);

#ifdef __cplusplus
}
#endif
#endif /* HETMEM_HETMEM_H */
