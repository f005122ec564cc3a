// Replays the fuzz corpus (seeds and regression inputs) through the fuzz entry point.
#include <catch2/catch_test_macros.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size);

TEST_CASE("fuzz corpus replays without crashing", "[fuzz]") {
  std::size_t n = 0;
  for (const auto &entry : std::filesystem::directory_iterator(HETMEM_FUZZ_CORPUS)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t *>(bytes.data()), bytes.size()) == 0);
    ++n;
  }
  CHECK(n >= 12);
}
