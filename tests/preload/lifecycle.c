/* lifecycle.c — the malloc family under libhetmem-preload.so (or any allocator): every entry
 * point and its errors, pointers from glibc before the preload took over, threads with
 * cross-thread frees, free or realloc as a new thread's first call, fork with a thread running,
 * signal handlers that allocate (signals from raise() and pthread_kill(), after which POSIX
 * allows any function in the handler), dlopen/dlclose of a library that allocates, an
 * aligned-allocation stress. Prints one line per check; exit 1 if any failed.
 * Usage: lifecycle [DL_LIBRARY]
 *        lifecycle --exit-live   exit() while four threads allocate; exit status 0 expected
 *        lifecycle --forks       only the fork check (for runs beside the tiering thread)
 *        lifecycle --overread-glibc-block   reads 2 bytes past a glibc block: a memory checker
 *                                must say so (shows that its checks are on)
 * With LIFECYCLE_GLIBC_REPLACED set (under valgrind, whose own allocator stands in for
 * glibc's), the check that glibc reuses a chunk freed through the preload is skipped. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void *__libc_malloc(size_t);
void __libc_free(void *);

static int failures;
static const char *who_malloc = "?";
static void check(int ok, const char *what) {
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_random(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void basics(void) {
  char *p = malloc(0);
  check(p != NULL, "malloc(0) gives a unique pointer");
  free(p);
  free(NULL);
  errno = 0;
  void *huge = malloc(SIZE_MAX / 2);
  check(huge == NULL && errno == ENOMEM, "malloc(SIZE_MAX/2): NULL, ENOMEM");
  errno = 0;
  volatile size_t quarter = SIZE_MAX / 4, half = SIZE_MAX / 2; /* not constants: no compile-time warning */
  void *over = calloc(quarter, 8);
  check(over == NULL && errno == ENOMEM, "calloc overflow: NULL, ENOMEM");
  /* calloc zeroes even a block that was dirty before */
  unsigned char *d = malloc(4000);
  memset(d, 0xab, 4000);
  free(d);
  int zero = 1;
  for (int round = 0; round < 50; ++round) {
    unsigned char *c = calloc(1000, 4);
    for (int i = 0; i < 4000; ++i) zero &= c[i] == 0;
    memset(c, 0xcd, 4000);
    free(c);
  }
  check(zero, "calloc zeroes reused blocks");
  errno = 0;
  void *ra = reallocarray(NULL, half, 4);
  check(ra == NULL && errno == ENOMEM, "reallocarray overflow: NULL, ENOMEM");
  int *arr = reallocarray(NULL, 100, sizeof(int));
  check(arr != NULL && malloc_usable_size(arr) >= 400, "reallocarray allocates");
  free(arr);
  check(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) is 0");
  int usable_ok = 1;
  for (size_t n = 1; n < (1u << 22); n = n * 3 / 2 + 1) {
    char *q = malloc(n);
    usable_ok &= q != NULL && malloc_usable_size(q) >= n;
    memset(q, 1, malloc_usable_size(q)); /* the whole usable size is ours to write */
    free(q);
  }
  check(usable_ok, "malloc_usable_size >= the size asked for, 1 B to 4 MiB");
}

static void reallocs(void) {
  unsigned char *p = NULL;
  size_t n = 0;
  int ok = 1;
  for (size_t next = 1; next <= (16u << 20); next = next * 2 + 3) {
    unsigned char *q = realloc(p, next);
    if (!q) {
      ok = 0;
      break;
    }
    for (size_t i = 0; i < n; ++i) ok &= q[i] == (unsigned char)(i * 7);
    for (size_t i = n; i < next; ++i) q[i] = (unsigned char)(i * 7);
    p = q;
    n = next;
  }
  check(ok, "realloc growth 1 B to 16 MiB keeps the data");
  unsigned char *s = realloc(p, 100);
  for (size_t i = 0; i < 100 && s; ++i) ok &= s[i] == (unsigned char)(i * 7);
  check(s != NULL && ok, "realloc shrink keeps the data");
  errno = 0;
  check(realloc(s, SIZE_MAX / 2) == NULL && errno == ENOMEM, "realloc too large: NULL, ENOMEM, block kept");
  check(s[99] == (unsigned char)(99 * 7), "the block is intact after a failed realloc");
  check(realloc(s, 0) == NULL, "realloc(p, 0) frees (glibc's behaviour)");
}

static int aligned_to(void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void alignment(void) {
  void *p = NULL;
  check(posix_memalign(&p, 3, 10) == EINVAL, "posix_memalign(3): EINVAL");
  check(posix_memalign(&p, 0, 10) == EINVAL, "posix_memalign(0): EINVAL");
  check(posix_memalign(&p, 24, 10) == EINVAL, "posix_memalign(24): EINVAL");
  errno = 1234;
  check(posix_memalign(&p, 64, SIZE_MAX / 2) == ENOMEM && errno == 1234,
        "posix_memalign too large: ENOMEM, errno kept");
  int ok = 1;
  for (size_t a = sizeof(void *); a <= (4u << 20); a *= 2) {
    ok &= posix_memalign(&p, a, a + 17) == 0 && aligned_to(p, a);
    memset(p, 2, a + 17);
    free(p);
  }
  check(ok, "posix_memalign 8 B to 4 MiB");
  void *q = aligned_alloc(64, 100);
  check(q && aligned_to(q, 64), "aligned_alloc(64, 100)");
  free(q);
  if (strstr(who_malloc, "hetmem")) { /* glibc 2.36 accepts it (rounding up); C17 wants NULL */
    errno = 0;
    check(aligned_alloc(48, 100) == NULL && errno == EINVAL, "aligned_alloc(48): EINVAL");
  }
  q = memalign(48, 100); /* glibc: rounded up to 64 */
  check(q && aligned_to(q, 64), "memalign(48) rounds up to 64");
  free(q);
  long ps = sysconf(_SC_PAGESIZE);
  q = valloc(10);
  check(q && aligned_to(q, (size_t)ps), "valloc: page aligned");
  free(q);
  q = pvalloc(1);
  check(q && aligned_to(q, (size_t)ps) && malloc_usable_size(q) >= (size_t)ps, "pvalloc(1): a page");
  free(q);
  errno = 0;
  check(pvalloc(SIZE_MAX - 10) == NULL && errno == ENOMEM, "pvalloc overflow: NULL, ENOMEM");
}

/* An allocator stress in the style of rptest: random sizes and alignments through
 * memalign/aligned_alloc/posix_memalign, freed in random order, contents checked. */
static void aligned_stress(void) {
  enum { slots = 4096, rounds = 200000 };
  static unsigned char *ptr[slots];
  static size_t len[slots];
  int ok = 1;
  uint64_t s = rng;
  for (int i = 0; i < rounds; ++i) {
    unsigned k = (unsigned)(next_random(&s) % slots);
    if (ptr[k]) {
      for (size_t j = 0; j < len[k]; j += 61)
        if (ptr[k][j] != (unsigned char)(k + j)) {
          if (ok) printf("     block %u (%zu bytes at %p) changed at %zu\n", k, len[k], (void *)ptr[k], j);
          ok = 0;
        }
      free(ptr[k]);
      ptr[k] = NULL;
      continue;
    }
    size_t n = 1 + next_random(&s) % ((next_random(&s) % 8) ? 512 : 200000);
    size_t a = (size_t)16 << (next_random(&s) % 13); /* 16 B to 64 KiB */
    void *p = NULL;
    switch (next_random(&s) % 3) {
      case 0:
        p = memalign(a, n);
        break;
      case 1:
        p = aligned_alloc(a, n);
        break;
      default:
        if (posix_memalign(&p, a, n) != 0) p = NULL;
    }
    if (!p || !aligned_to(p, a)) {
      printf("     %s of %zu bytes at alignment %zu: %p\n", p ? "misaligned" : "failed", n, a, p);
      ok = 0;
      break;
    }
    ptr[k] = p;
    len[k] = n;
    for (size_t j = 0; j < n; j += 61) ptr[k][j] = (unsigned char)(k + j);
  }
  for (unsigned k = 0; k < slots; ++k) free(ptr[k]);
  check(ok, "aligned stress: memalign/aligned_alloc/posix_memalign, 200k operations, contents intact");
}

static void foreign(void) {
  /* A block from glibc itself (as before the preload took over): free, realloc and
   * malloc_usable_size must hand it to glibc. */
  char *g = __libc_malloc(100);
  strcpy(g, "from glibc");
  check(malloc_usable_size(g) >= 100, "malloc_usable_size of a glibc block");
  char *r = realloc(g, 1 << 20);
  check(r && strcmp(r, "from glibc") == 0, "realloc moves a glibc block, data intact");
  free(r);
  void *small = __libc_malloc(24);
  free(small); /* must reach glibc: its cache then hands the same chunk back */
  void *again = __libc_malloc(24);
  if (getenv("LIFECYCLE_GLIBC_REPLACED")) /* valgrind's glibc malloc holds freed blocks back */
    printf("skip free of a glibc block returns it to glibc (glibc's allocator is replaced)\n");
  else
    check(again == small, "free of a glibc block returns it to glibc");
  free(again);
}

/* Threads: producers hand blocks to consumers on other threads through a ring. */
#define RING 1024
static _Atomic(unsigned char *) ring[RING];
static atomic_int bad_blocks;
static void *producer(void *arg) {
  uint64_t s = (uintptr_t)arg * 2654435761u + 1;
  for (int i = 0; i < 200000; ++i) {
    size_t n = 16 + next_random(&s) % 2000;
    unsigned char *p = malloc(n);
    memcpy(p, &n, sizeof n); /* the size, and a mark at the end, checked by whoever frees it */
    p[n - 1] = (unsigned char)(n * 7);
    unsigned char *old = atomic_exchange(&ring[next_random(&s) % RING], p);
    if (old) {
      size_t m;
      memcpy(&m, old, sizeof m);
      if (m < 16 || m > 2016 || old[m - 1] != (unsigned char)(m * 7)) atomic_fetch_add(&bad_blocks, 1);
      free(old);
    }
    void *mine = malloc(n / 2 + 1);
    free(mine);
  }
  return NULL;
}
static void threads(void) {
  pthread_t t[8];
  for (uintptr_t i = 0; i < 8; ++i) pthread_create(&t[i], NULL, producer, (void *)(i + 1));
  for (int i = 0; i < 8; ++i) pthread_join(t[i], NULL);
  for (int i = 0; i < RING; ++i) free(atomic_exchange(&ring[i], NULL));
  check(atomic_load(&bad_blocks) == 0, "8 threads, 3.2M allocations, cross-thread frees");
}

/* A new thread's first call into the allocator is free() (or realloc()) of a block another
 * thread allocated: its thread state is made on that path. */
static void *first_free(void *arg) {
  void **blocks = arg;
  free(blocks[0]);
  blocks[1] = realloc(blocks[1], 5000);
  int ok = blocks[1] != NULL && ((unsigned char *)blocks[1])[99] == 0x42;
  free(blocks[1]);
  void *p = malloc(100);
  ok &= p != NULL;
  free(p);
  return ok ? arg : NULL;
}
static void first_calls(void) {
  int ok = 1;
  for (int i = 0; i < 50; ++i) {
    void *blocks[2] = {malloc(64 + (size_t)i), malloc(100)};
    memset(blocks[1], 0x42, 100);
    pthread_t t;
    void *ret = NULL;
    ok &= pthread_create(&t, NULL, first_free, blocks) == 0 && pthread_join(t, &ret) == 0 && ret == blocks;
  }
  check(ok, "x50 a new thread whose first calls are free() and realloc() of another thread's blocks");
}

/* Signal handlers that allocate. */
static atomic_int handled, handler_bad;
static void allocating_handler(int sig) {
  (void)sig;
  unsigned char *p = malloc(1000 + (size_t)atomic_load(&handled));
  if (!p) {
    atomic_fetch_add(&handler_bad, 1);
    return;
  }
  memset(p, 0x5a, 1000);
  char *q = strdup("allocated in a signal handler");
  if (!q || p[999] != 0x5a) atomic_fetch_add(&handler_bad, 1);
  free(q);
  free(p);
  atomic_fetch_add(&handled, 1);
}
static pthread_t signal_target;
static void *signaller(void *arg) {
  (void)arg;
  for (int i = 0; i < 100; ++i) {
    pthread_kill(signal_target, SIGUSR1);
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}
static void signals(void) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = allocating_handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, &old);
  for (int i = 0; i < 100; ++i) raise(SIGUSR1);
  /* From another thread, while this one sleeps (not inside the allocator). */
  signal_target = pthread_self();
  pthread_t t;
  pthread_create(&t, NULL, signaller, NULL);
  for (int i = 0; i < 400 && atomic_load(&handled) < 200; ++i) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  pthread_join(t, NULL);
  sigaction(SIGUSR1, &old, NULL);
  check(atomic_load(&handled) >= 150 && atomic_load(&handler_bad) == 0,
        "signal handlers allocate and free (raise x100, pthread_kill x100 while sleeping)");
}

/* exit() while threads allocate: the allocator's teardown must not pull memory from under them. */
static void *churn(void *arg) {
  uint64_t s = (uintptr_t)arg + 1;
  for (;;) {
    void *p[32];
    for (int i = 0; i < 32; ++i) p[i] = malloc(8 + next_random(&s) % 70000);
    for (int i = 0; i < 32; ++i) free(p[i]);
  }
  return NULL;
}
static int exit_live(void) {
  pthread_t t[4];
  for (uintptr_t i = 0; i < 4; ++i) pthread_create(&t[i], NULL, churn, (void *)i);
  struct timespec ts = {0, 20000000};
  nanosleep(&ts, NULL);
  exit(0);
}

static atomic_int stop;
static void *background(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    void *p[64];
    for (int i = 0; i < 64; ++i) p[i] = malloc(16 + (size_t)i * 100);
    for (int i = 0; i < 64; ++i) free(p[i]);
  }
  return NULL;
}
/* Descriptors of this process that are userfaultfds (the write-protect source of the
 * preload's tiering engine keeps one on the parent's memory: a child must not). */
static int userfaultfds_open(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    char path[40], target[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    const ssize_t got = readlink(path, target, sizeof target - 1);
    if (got <= 0) continue;
    target[got] = '\0';
    if (strstr(target, "userfaultfd")) ++n;
  }
  return n;
}
static void forks(void) {
  pthread_t bg;
  pthread_create(&bg, NULL, background, NULL);
  int ok = 1;
  for (int i = 0; i < 30; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      /* The child: the background thread is gone, its locks must not be. */
      void *p[1000];
      for (int k = 0; k < 1000; ++k) p[k] = malloc(16 + (size_t)k * 64);
      for (int k = 0; k < 1000; ++k) free(p[k]);
      void *big = malloc(8 << 20);
      memset(big, 1, 8 << 20);
      free(big);
      _exit(userfaultfds_open() == 0 ? 0 : 3);
    }
    int status = 0;
    ok &= pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  atomic_store(&stop, 1);
  pthread_join(bg, NULL);
  check(ok, "fork x30 while a thread allocates: every child allocates, keeps no userfaultfd and exits 0");
}

static void dl(const char *lib) {
  if (!lib) return;
  int ok = 1;
  for (int i = 0; i < 50 && ok; ++i) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      printf("     dlopen: %s\n", dlerror());
      ok = 0;
      break;
    }
    char *(*make)(size_t) = (char *(*)(size_t))dlsym(h, "hetmem_test_make");
    char *s = make ? make(1000) : NULL;
    ok &= s != NULL && s[999] == 'x';
    free(s);
    ok &= dlclose(h) == 0;
  }
  check(ok, "dlopen/dlclose x50 of a library that allocates in its constructor and frees in its destructor");
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--exit-live") == 0) return exit_live();
  if (argc > 1 && strcmp(argv[1], "--overread-glibc-block") == 0) {
    /* A deliberate bug, for checking that a memory checker watches glibc's blocks. */
    char *g = __libc_malloc(10);
    memset(g, 1, 10);
    volatile char c = g[12];
    __libc_free(g);
    return c == 42;
  }
  if (argc > 1 && strcmp(argv[1], "--forks") == 0) {
    forks();
    return failures ? 1 : 0;
  }
  Dl_info info;
  who_malloc = dladdr((void *)malloc, &info) && info.dli_fname ? info.dli_fname : "?";
  printf("     malloc from %s\n", who_malloc);
  basics();
  reallocs();
  alignment();
  aligned_stress();
  foreign();
  threads();
  first_calls();
  signals();
  forks();
  dl(argc > 1 ? argv[1] : NULL);
  printf("lifecycle: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}
