// hetmem/result.hpp — the error and result types every control-plane function returns.
//
// Contract: an `error` carries an errno value (`code`, always > 0) and a message that names the
// cause (which file, which token, which node). A `result<T>` holds either a T or an error; it
// never throws on construction. Accessing value() on an error, or error() on a value, is a
// programming bug and aborts (no exceptions on this path: the preload library uses it).
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace hetmem {

struct error {
  int code = EINVAL;    // errno value naming the class of failure (ENOENT, EINVAL, ENOMEM, ...)
  std::string message;  // human-readable, names the cause; never empty for a real error
};

namespace detail {
[[noreturn]] inline void result_misuse(const char *what) noexcept {
  (void)std::fputs(what, stderr);
  (void)std::fputc(0x0a, stderr);
  std::abort();
}
}  // namespace detail

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : state_(std::in_place_index<0>, std::move(value)) {}          // NOLINT(google-explicit-constructor)
  result(hetmem::error err) : state_(std::in_place_index<1>, std::move(err)) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T &value() & {
    if (!ok()) detail::result_misuse("hetmem::result::value() called on an error");
    return *std::get_if<0>(&state_);
  }
  const T &value() const & {
    if (!ok()) detail::result_misuse("hetmem::result::value() called on an error");
    return *std::get_if<0>(&state_);
  }
  T &&value() && {
    if (!ok()) detail::result_misuse("hetmem::result::value() called on an error");
    return std::move(*std::get_if<0>(&state_));
  }
  const hetmem::error &error() const & {
    if (ok()) detail::result_misuse("hetmem::result::error() called on a value");
    return *std::get_if<1>(&state_);
  }
  T *operator->() { return &value(); }
  const T *operator->() const { return &value(); }
  T &operator*() & { return value(); }
  const T &operator*() const & { return value(); }

 private:
  std::variant<T, hetmem::error> state_;
};

// result<void>: success or an error.
template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(hetmem::error err) : err_(std::move(err)), failed_(true) {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] bool ok() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return ok(); }
  const hetmem::error &error() const & {
    if (!failed_) detail::result_misuse("hetmem::result::error() called on a value");
    return err_;
  }

 private:
  hetmem::error err_{};
  bool failed_ = false;
};

}  // namespace hetmem
