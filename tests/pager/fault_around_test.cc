#include "pager/fault_around.h"

#include <cstdint>
#include <set>
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "pager/page_index.h"

namespace upager::internal {
namespace {

// A claimable predicate over an explicit set of taken pages that records
// every page it is asked about.
struct Oracle {
  std::set<uint64_t> taken;
  std::vector<uint64_t> asked;
  bool operator()(PageIndex p) {
    asked.push_back(p.value());
    return !taken.contains(p.value());
  }
};

TEST(FaultAroundTest, FullWindowWhenEverythingIsClaimable) {
  Oracle o;
  const PageRange r = FaultAroundWindow(PageIndex(100), 1000, 16,
                                        [&](PageIndex p) { return o(p); });
  EXPECT_EQ(r.first, PageIndex(100));
  EXPECT_EQ(r.count, 16u);
  // Asked about exactly the 15 pages after the fault, in order.
  std::vector<uint64_t> want;
  for (uint64_t p = 101; p < 116; ++p) want.push_back(p);
  EXPECT_EQ(o.asked, want);
}

TEST(FaultAroundTest, WindowOfOneNeverAsks) {
  Oracle o;
  const PageRange r =
      FaultAroundWindow(PageIndex(7), 10, 1, [&](PageIndex p) { return o(p); });
  EXPECT_EQ(r.first, PageIndex(7));
  EXPECT_EQ(r.count, 1u);
  EXPECT_TRUE(o.asked.empty());
}

TEST(FaultAroundTest, ClippedToTheRegionEnd) {
  Oracle o;
  PageRange r = FaultAroundWindow(PageIndex(95), 100, 16,
                                  [&](PageIndex p) { return o(p); });
  EXPECT_EQ(r.count, 5u);  // pages 95..99
  EXPECT_EQ(o.asked, (std::vector<uint64_t>{96, 97, 98, 99}));

  // Faulting on the last page: only that page, nothing asked.
  o.asked.clear();
  r = FaultAroundWindow(PageIndex(99), 100, 16,
                        [&](PageIndex p) { return o(p); });
  EXPECT_EQ(r.first, PageIndex(99));
  EXPECT_EQ(r.count, 1u);
  EXPECT_TRUE(o.asked.empty());
}

TEST(FaultAroundTest, StopsBeforeTheFirstUnclaimablePage) {
  Oracle o;
  o.taken = {104, 106};
  const PageRange r = FaultAroundWindow(PageIndex(100), 1000, 16,
                                        [&](PageIndex p) { return o(p); });
  EXPECT_EQ(r.first, PageIndex(100));
  EXPECT_EQ(r.count, 4u);  // 100..103; 105 is claimable but not contiguous
  EXPECT_EQ(o.asked, (std::vector<uint64_t>{101, 102, 103, 104}));
}

TEST(FaultAroundTest, FaultingPageIncludedEvenIfTaken) {
  // The caller may already have claimed the faulting page; it is never
  // asked about, so its own claim cannot shrink the window to nothing.
  Oracle o;
  o.taken = {50, 51};
  const PageRange r = FaultAroundWindow(PageIndex(50), 100, 8,
                                        [&](PageIndex p) { return o(p); });
  EXPECT_EQ(r.first, PageIndex(50));
  EXPECT_EQ(r.count, 1u);
  EXPECT_EQ(o.asked, (std::vector<uint64_t>{51}));
}

TEST(FaultAroundTest, PredicateMayClaimAsItGoes) {
  // Simulates the runtime's CAS-to-kFilling claim: every page the predicate
  // approved must be inside the returned window.
  std::vector<bool> claimed(64, false);
  claimed[0] = true;   // the faulting page, claimed by the caller
  claimed[10] = true;  // another fill owns page 10
  const PageRange r = FaultAroundWindow(PageIndex(0), 64, 32, [&](PageIndex p) {
    if (claimed[p.value()]) return false;
    claimed[p.value()] = true;
    return true;
  });
  EXPECT_EQ(r.count, 10u);
  for (uint64_t p = 0; p < 64; ++p) {
    const bool ours = p < r.count;
    EXPECT_EQ(claimed[p], ours || p == 10) << p;
  }
}

TEST(FaultAroundTest, RandomAgainstReference) {
  uint64_t seed = 12345;
  auto next = [&] {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return seed >> 33;
  };
  for (int iter = 0; iter < 2000; ++iter) {
    const uint64_t pages = 1 + next() % 200;
    const uint64_t fault = next() % pages;
    const uint64_t window = 1 + next() % 40;
    std::vector<bool> taken(pages);
    for (uint64_t p = 0; p < pages; ++p) taken[p] = next() % 10 == 0;

    uint64_t want = 1;
    while (want < window && fault + want < pages && !taken[fault + want]) {
      ++want;
    }
    const PageRange r =
        FaultAroundWindow(PageIndex(fault), pages, window,
                          [&](PageIndex p) { return !taken[p.value()]; });
    ASSERT_EQ(r.first, PageIndex(fault));
    ASSERT_EQ(r.count, want)
        << "pages=" << pages << " fault=" << fault << " window=" << window;
  }
}

}  // namespace
}  // namespace upager::internal

namespace upager::internal {
namespace {

TEST(FaultAroundSizerTest, GrowsOnASequentialStreamAndResetsOnABreak) {
  FaultAroundSizer s(16, 256);
  uint64_t page = 100;
  std::vector<uint32_t> windows;
  for (int i = 0; i < 7; ++i) {
    const uint32_t w = s.WindowFor(PageIndex(page));
    windows.push_back(w);
    s.Filled(PageIndex(page), w);
    page += w;
  }
  EXPECT_EQ(windows, (std::vector<uint32_t>{16, 32, 64, 128, 256, 256, 256}));
  // A fault anywhere else is a new stream.
  EXPECT_EQ(s.WindowFor(PageIndex(5)), 16u);
  s.Filled(PageIndex(5), 16);
  EXPECT_EQ(s.WindowFor(PageIndex(21)), 32u);
  // A fill shorter than the window (clipped by a present page) still
  // continues the stream from where it ended.
  s.Filled(PageIndex(21), 3);
  EXPECT_EQ(s.WindowFor(PageIndex(24)), 64u);
  EXPECT_EQ(s.WindowFor(PageIndex(25)), 16u) << "a gap breaks the stream";
}

TEST(FaultAroundSizerTest, MarkerIsTakenOnceAndOnlyAtItsPage) {
  FaultAroundSizer s(16, 256);
  EXPECT_FALSE(s.TakeMarker(PageIndex(10))) << "none armed";
  s.SetMarker(PageIndex(10));
  EXPECT_TRUE(s.IsMarker(PageIndex(10)));
  EXPECT_FALSE(s.TakeMarker(PageIndex(11)));
  EXPECT_TRUE(s.TakeMarker(PageIndex(10)));
  EXPECT_FALSE(s.TakeMarker(PageIndex(10))) << "taken already";
  EXPECT_FALSE(s.IsMarker(PageIndex(10)));
  // A newer window's marker replaces the old one.
  s.SetMarker(PageIndex(20));
  s.SetMarker(PageIndex(30));
  EXPECT_FALSE(s.TakeMarker(PageIndex(20)));
  EXPECT_TRUE(s.TakeMarker(PageIndex(30)));
}

TEST(FaultAroundSizerTest, MarkerRaceHasOneWinner) {
  FaultAroundSizer s(16, 256);
  for (int round = 0; round < 200; ++round) {
    s.SetMarker(PageIndex(round));
    std::atomic<int> winners{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        if (s.TakeMarker(PageIndex(round))) ++winners;
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(winners.load(), 1) << "round " << round;
  }
}

TEST(FaultAroundSizerTest, GrowWindowDoublesUpToTheMaximum) {
  FaultAroundSizer s(16, 256);
  EXPECT_EQ(s.WindowFor(PageIndex(0)), 16u);
  s.Filled(PageIndex(0), 16);
  EXPECT_EQ(s.next(), PageIndex(16));
  std::vector<uint32_t> grown;
  for (int i = 0; i < 6; ++i) grown.push_back(s.GrowWindow());
  EXPECT_EQ(grown, (std::vector<uint32_t>{32, 64, 128, 256, 256, 256}));
  // A break in the stream starts over from the base.
  EXPECT_EQ(s.WindowFor(PageIndex(1000)), 16u);
  EXPECT_EQ(s.GrowWindow(), 32u);
  // Hints: Sequential always reads the maximum, Random one page.
  s.set_mode(FaultAroundSizer::Mode::kSequential);
  EXPECT_EQ(s.GrowWindow(), 256u);
  s.set_mode(FaultAroundSizer::Mode::kRandom);
  EXPECT_EQ(s.GrowWindow(), 1u);
}

TEST(FaultAroundSizerTest, OffStaysOff) {
  FaultAroundSizer s(1, 256);
  EXPECT_EQ(s.max_pages(), 1u);
  for (uint64_t p = 0; p < 10; ++p) {
    EXPECT_EQ(s.WindowFor(PageIndex(p)), 1u);
    s.Filled(PageIndex(p), 1);
  }
}

}  // namespace
}  // namespace upager::internal
