// Scan resistance end to end: a hot set read at random must stay resident
// while a sequential scan of swapped-out data eight times its size flows
// through a budget twice its size. Runs serially (see
// tests/runtime/CMakeLists.txt): it measures the eviction policy, and the
// residency it checks depends on fault timing a loaded machine perturbs.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;




TEST(ScanResistanceTest, HotSetSurvivesASequentialScanEightTimesItsSize) {
  // The case scaled by 1/16: a hot set of 8 MiB read at random,
  // interleaved 1:1 with a sequential scan of 64 MiB of cold (swapped-out)
  // data, under a 16 MiB budget: at least 90% of the hot set must stay
  // resident.
  constexpr uint64_t kHot = 2048, kCold = 16384, kBudget = 4096;
  RuntimeOptions o;
  o.resident_budget_bytes = kBudget * kPage;
  o.swap.store = MemoryStore(2 * (kHot + kCold) * kPage);
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  auto hot = rt->Map({.size = kHot * kPage, .name = "hot"});
  auto cold = rt->Map({.size = kCold * kPage, .name = "cold"});
  ASSERT_TRUE(hot.ok() && cold.ok());
  std::byte* h = (*hot)->data();
  std::byte* c = (*cold)->data();
  for (uint64_t i = 0; i < kCold; ++i) FillPage(c + i * kPage, i, 1);
  for (uint64_t i = 0; i < kHot; ++i) FillPage(h + i * kPage, i, 1);
  std::mt19937_64 rng(7);
  auto touch_hot = [&] {
    const uint64_t i = rng() % kHot;
    return static_cast<unsigned char>(h[i * kPage]) == Byte(i, 0, 1);
  };
  // Warm the hot set, then scan the cold data twice.
  uint64_t bad = 0;
  for (uint64_t k = 0; k < 4 * kHot; ++k) bad += !touch_hot();
  for (int pass = 0; pass < 2; ++pass) {
    for (uint64_t i = 0; i < kCold; ++i) {
      bad += static_cast<unsigned char>(c[i * kPage]) != Byte(i, 0, 1);
      bad += !touch_hot();
    }
  }
  EXPECT_EQ(bad, 0u);
  const uint64_t resident = PresentPages(h, kHot);
  const Stats s = rt->stats();
  RecordProperty("hot_resident_permille", static_cast<int>(resident * 1000 / kHot));
  EXPECT_GE(resident * 10, kHot * 9)
      << resident << " of " << kHot << " hot pages resident\n"
      << s.ToString() << s.policy;
  EXPECT_GT(s.pages_read_ahead, 0u) << "the scan was read ahead";
  // Everything is still right, hot and cold.
  for (uint64_t i = 0; i < kHot; ++i) ASSERT_TRUE(PageIs(h + i * kPage, i, 1));
  for (uint64_t i = 0; i < kCold; i += 97) ASSERT_TRUE(PageIs(c + i * kPage, i, 1));
}

}  // namespace
}  // namespace upager::testing

namespace upager::testing {
namespace {

}  // namespace
}  // namespace upager::testing
