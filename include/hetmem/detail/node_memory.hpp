// hetmem/detail/node_memory.hpp — how full a node is, read from sysfs without allocating (the allocator's
// extent hooks call this under jemalloc's locks), and the thread's last-error message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace hetmem::detail {

struct node_memory {
  std::uint64_t total = 0;      // MemTotal
  std::uint64_t free = 0;       // MemFree
  std::uint64_t available = 0;  // MemFree + Inactive(file) + SReclaimable: what can be had without swapping
};

// Reads the file at `path` into buf (at most len - 1 bytes, NUL-terminated, EINTR retried)
// without allocating; the number of bytes read, 0 (errno set) when it cannot be opened or a
// read fails (nothing of it is kept). Opens and reads go through the sysfs reader's fault
// injector (hetmem/sysfs/fault_injection.hpp).
std::size_t read_text(const char *path, char *buf, std::size_t len) noexcept;

// Reads <root>/sys/devices/system/node/node<N>/meminfo; root "" is "/". False (errno set) when
// the file is missing or unreadable.
bool read_node_memory(const char *root, unsigned node, node_memory *out) noexcept;

// The sysfs root now: $HETMEM_SYSFS_ROOT (secure_getenv), or "" for "/"; "" too when it does
// not fit in `len`.
void copy_sysfs_root(char *buf, std::size_t len) noexcept;

// Whether the character device numbered `major`:`minor` is a devdax device: its
// <root>/sys/dev/char/MAJOR:MINOR/subsystem link ends in "dax". Writes the subsystem's name
// into `subsystem` ("" when the link cannot be read) for the message that refuses it. A file
// tier maps its device and writes through the mapping: /dev/zero, a tty or any other device
// would kill the program with SIGBUS or worse, so only devdax is taken.
bool is_devdax_device(const char *root, unsigned major, unsigned minor, char *subsystem, std::size_t len) noexcept;

// The calling thread's message about its last failed allocation ("" if none).
const char *thread_error() noexcept;
// printf-style; truncates to the buffer (256 bytes).
void set_thread_error(const char *fmt, ...) noexcept __attribute__((format(printf, 1, 2)));

// One piece of join_text: a string, or an unsigned number written in decimal.
struct text_piece {
  text_piece(std::string_view t) noexcept : text(t) {}  // NOLINT(google-explicit-constructor)
  text_piece(const char *t) noexcept : text(t) {}       // NOLINT(google-explicit-constructor)
  text_piece(unsigned v) noexcept;                      // NOLINT(google-explicit-constructor)
  std::string_view text;
  char digits[12] = {};
};
// The pieces one after the other into buf (NUL-terminated); false (buf holds "") when they do
// not fit in `len`. snprintf's "%s...%u" for paths, without stdio: the preload's start-up and
// the extent hooks build paths with it, and printf's code would otherwise cost every process
// two more 64 KiB windows of libc's pages.
bool join_text(char *buf, std::size_t len, std::initializer_list<text_piece> pieces) noexcept;

// "12.0 MiB" into buf.
const char *format_size(char *buf, std::size_t len, std::uint64_t bytes) noexcept;

}  // namespace hetmem::detail
