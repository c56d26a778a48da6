#include "pager/frame_budget.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace upager::internal {
namespace {

TEST(FrameBudgetTest, GrantsUpToTheBudgetThenNothing) {
  FrameBudget b(100, 90, 80);
  EXPECT_EQ(b.high(), 90u);
  EXPECT_EQ(b.low(), 80u);
  EXPECT_EQ(b.TryReserve(60), 60u);
  EXPECT_FALSE(b.AboveHigh());
  EXPECT_EQ(b.TryReserve(60), 40u) << "clipped to what is left";
  EXPECT_TRUE(b.AboveHigh());
  EXPECT_EQ(b.TryReserve(1), 0u);
  b.Release(25);
  EXPECT_EQ(b.used(), 75u);
  EXPECT_FALSE(b.AboveLow());
  EXPECT_EQ(b.over_budget_grants(), 0u);
}

TEST(FrameBudgetTest, BlockedGrantsOverBudgetAndCountsIt) {
  FrameBudget b(10, 100, 50);
  EXPECT_EQ(b.TryReserve(10), 10u);
  EXPECT_EQ(b.TryReserve(3), 0u);
  b.SetBlocked(true);
  EXPECT_EQ(b.TryReserve(3), 3u);
  EXPECT_EQ(b.over_budget_grants(), 3u);
  EXPECT_EQ(b.used(), 13u);
  b.SetBlocked(false);
  EXPECT_EQ(b.TryReserve(1), 0u);
}

TEST(FrameBudgetTest, UnlimitedNeverRefuses) {
  FrameBudget b(0, 95, 85);
  EXPECT_FALSE(b.limited());
  EXPECT_EQ(b.TryReserve(1u << 30), 1u << 30);
  EXPECT_FALSE(b.AboveHigh());
}

TEST(FrameBudgetTest, ConcurrentReservationsNeverExceedTheBudget) {
  FrameBudget b(10000, 100, 90);
  std::atomic<uint64_t> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) granted += b.TryReserve(1 + i % 3);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 10000u);
  EXPECT_EQ(b.used(), 10000u);
}

}  // namespace
}  // namespace upager::internal
