// hetmem/detail/os.hpp — the operating-system calls of the placement layer, as a table that
// tests can replace to inject failures (mimalloc-style primitive layer).
//
// Contract: each entry has the signature and errno convention of the Linux call it stands for
// (return -1 and set errno on failure). set_os_calls() swaps the whole table atomically and
// returns the previous one; it is meant for tests, which restore the previous table.
#pragma once

#include <cstddef>

namespace hetmem::detail {

struct os_calls {
  void *(*mmap)(void *addr, std::size_t len, int prot, int flags, int fd, long off);
  int (*munmap)(void *addr, std::size_t len);
  long (*mbind)(void *addr, unsigned long len, int mode, const unsigned long *nodemask, unsigned long maxnode,
                unsigned flags);
  long (*get_mempolicy)(int *mode, unsigned long *nodemask, unsigned long maxnode, void *addr, unsigned long flags);
  long (*move_pages)(int pid, unsigned long count, void **pages, const int *nodes, int *status, int flags);
  int (*madvise)(void *addr, std::size_t len, int advice);
};

// The real system calls.
[[nodiscard]] const os_calls &system_os_calls() noexcept;
// The table in use.
[[nodiscard]] const os_calls &os() noexcept;
// Installs `calls` (which must outlive its use) and returns the previous table.
const os_calls *set_os_calls(const os_calls *calls) noexcept;

// Restores the previous table when it goes out of scope.
class scoped_os_calls {
 public:
  explicit scoped_os_calls(const os_calls *calls) noexcept : previous_(set_os_calls(calls)) {}
  ~scoped_os_calls() { set_os_calls(previous_); }
  scoped_os_calls(const scoped_os_calls &) = delete;
  scoped_os_calls &operator=(const scoped_os_calls &) = delete;

 private:
  const os_calls *previous_;
};

}  // namespace hetmem::detail
