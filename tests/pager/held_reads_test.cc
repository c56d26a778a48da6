// The read-ahead marker buffers held by slot: taken once, pushed out
// oldest first when full, dropped with their slot.
#include "pager/held_reads.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace upager::internal {
namespace {

TEST(HeldReadsTest, TakeReturnsTheBufferOnceAndNothingForOtherSlots) {
  HeldReads h(4);
  EXPECT_EQ(h.Take(7), HeldReads::kNone) << "nothing held";
  EXPECT_EQ(h.Hold(7, 70), HeldReads::kNone);
  EXPECT_EQ(h.Hold(8, 80), HeldReads::kNone);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.Take(9), HeldReads::kNone);
  EXPECT_EQ(h.Take(7), 70);
  EXPECT_EQ(h.Take(7), HeldReads::kNone) << "taken already";
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.Take(8), 80);
  EXPECT_EQ(h.size(), 0u);
}

TEST(HeldReadsTest, FullPushesOutTheOldestStillHeld) {
  HeldReads h(3);
  EXPECT_EQ(h.Hold(1, 10), HeldReads::kNone);
  EXPECT_EQ(h.Hold(2, 20), HeldReads::kNone);
  EXPECT_EQ(h.Hold(3, 30), HeldReads::kNone);
  // Slot 1 was taken: the oldest still held is slot 2.
  EXPECT_EQ(h.Take(1), 10);
  EXPECT_EQ(h.Hold(4, 40), HeldReads::kNone) << "room after the take";
  EXPECT_EQ(h.Hold(5, 50), 20) << "the caller releases the pushed-out one";
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h.Take(2), HeldReads::kNone);
  EXPECT_EQ(h.Take(3), 30);
  EXPECT_EQ(h.Take(4), 40);
  EXPECT_EQ(h.Take(5), 50);
}

TEST(HeldReadsTest, HoldingASlotAgainReturnsTheEarlierBuffer) {
  HeldReads h(2);
  EXPECT_EQ(h.Hold(6, 60), HeldReads::kNone);
  EXPECT_EQ(h.Hold(6, 61), 60);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.Take(6), 61);
}

TEST(HeldReadsTest, TakeAllEmptiesIt) {
  HeldReads h(8);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(h.Hold(i, 100 + i), HeldReads::kNone);
  std::vector<int> all = h.TakeAll();
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, (std::vector<int>{100, 101, 102, 103, 104}));
  EXPECT_EQ(h.size(), 0u);
  EXPECT_EQ(h.Take(3), HeldReads::kNone);
}

TEST(HeldReadsTest, ManyHoldsAndTakesStayBounded) {
  // Takes between holds must never make a later push-out return a buffer
  // that is no longer held.
  HeldReads h(4);
  for (uint64_t s = 0; s < 10000; ++s) {
    const int out = h.Hold(s, static_cast<int>(s));
    if (s % 2 == 0) {
      EXPECT_EQ(h.Take(s), static_cast<int>(s));
    }
    if (out != HeldReads::kNone) {
      // Only odd slots stay held, so only they are ever pushed out.
      EXPECT_EQ(out % 2, 1) << "slot " << s;
    }
    ASSERT_LE(h.size(), 4u);
  }
}

TEST(HeldReadsTest, EveryBufferIsTakenByExactlyOneThread) {
  HeldReads h(1024);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(h.Hold(i, i), HeldReads::kNone);
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (h.Take(i) == i) ++taken;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(taken.load(), 1000);
  EXPECT_EQ(h.size(), 0u);
}

}  // namespace
}  // namespace upager::internal
