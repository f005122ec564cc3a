// hetmem/format.hpp — human-readable quantities, shared by reasons, the CLI and examples.
#pragma once

#include <cstdint>
#include <string>

namespace hetmem {

// 1536 -> "1.5 KiB"; 103079215104 -> "96 GiB"; 0 -> "0 B". Binary units, at most 3 significant digits.
[[nodiscard]] std::string format_bytes(std::uint64_t bytes);
// MB/s as the kernel reports them: 131072 -> "131 GB/s"; 1000 -> "1.0 GB/s"; 100 -> "100 MB/s".
[[nodiscard]] std::string format_bandwidth_mbps(std::uint64_t mbps);
// A ratio with one decimal: 4.04 -> "4.0x".
[[nodiscard]] std::string format_ratio(double r);

}  // namespace hetmem
