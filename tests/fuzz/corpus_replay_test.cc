// Replays every committed seed of one fuzz target (the directory
// UPAGER_FUZZ_CORPUS, tests/fuzz/corpus/<name>/ for <name>_fuzzer) through
// its LLVMFuzzerTestOneInput once, without libFuzzer, so the main suite
// (gcc) and the sanitizer trees keep the corpus and the targets' contract
// checks honest. A contract violation aborts with its message, after the
// line naming the seed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace upager::testing {
namespace {

TEST(FuzzCorpus, EverySeedPasses) {
  namespace fs = std::filesystem;
  std::vector<fs::path> seeds;
  for (const fs::directory_entry& e : fs::directory_iterator(UPAGER_FUZZ_CORPUS)) {
    if (e.is_regular_file()) seeds.push_back(e.path());
  }
  std::sort(seeds.begin(), seeds.end());
  ASSERT_FALSE(seeds.empty()) << "no seeds in " << UPAGER_FUZZ_CORPUS;
  for (const fs::path& seed : seeds) {
    std::fprintf(stderr, "replaying %s\n", seed.c_str());
    std::ifstream in(seed, std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    EXPECT_EQ(LLVMFuzzerTestOneInput(bytes.data(), bytes.size()), 0) << seed;
  }
}

}  // namespace
}  // namespace upager::testing
