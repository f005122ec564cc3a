// text.hpp — the small /proc and /sys files tiering reads and writes (one value each), over the
// engine's non-allocating reader. Private to src/tiering.
#pragma once

#include <cstdint>
#include <string>

#include "hetmem/result.hpp"

namespace hetmem::tiering_detail {

// The file's text (at most 4 KiB), trailing newlines and blanks removed; false when it cannot be
// opened.
bool read_text(const std::string &path, std::string &out);
// A decimal number at the start of the file; false when absent or not a number.
bool read_u64(const std::string &path, std::uint64_t &v);
// Writes `value`; the error names the file and the value.
result<void> write_file(const std::string &path, const std::string &value);

}  // namespace hetmem::tiering_detail
