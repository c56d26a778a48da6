#include "pager/read_ahead_ledger.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace upager::internal {
namespace {

bool kNonePresent(PageIndex) { return false; }

TEST(ReadAheadLedgerTest, AStreamThatGoesOnHitsEveryPageItPasses) {
  ReadAheadLedger l;
  // A demand fault at 10 read 11..17 ahead; the stream faults at its
  // marker 11, then windows 18..33 and 34..65 are read ahead of it.
  EXPECT_EQ(l.ReadAhead(PageIndex(11), 7), 0u);
  EXPECT_EQ(l.Reached(PageIndex(11), kNonePresent), 1u);  // the marker itself
  EXPECT_EQ(l.ReadAhead(PageIndex(18), 16), 0u);
  EXPECT_EQ(l.ReadAhead(PageIndex(34), 32), 0u);
  EXPECT_EQ(l.pending(), 6u + 16 + 32);
  // The next marker, 34: 12..33 passed, and 34.
  EXPECT_EQ(l.Reached(PageIndex(34), kNonePresent), 23u);
  // The stream runs past the end of what was read: everything is a hit.
  EXPECT_EQ(l.Reached(PageIndex(66), kNonePresent), 31u);
  EXPECT_EQ(l.pending(), 0u);
}

TEST(ReadAheadLedgerTest, ABrokenStreamWastesWhatItNeverReached) {
  ReadAheadLedger l;
  EXPECT_EQ(l.ReadAhead(PageIndex(101), 63), 0u);  // 101..163
  EXPECT_EQ(l.Reached(PageIndex(120), kNonePresent), 20u);       // 101..120
  // A window elsewhere: the old stream stopped at 120; 121..163 are waste.
  EXPECT_EQ(l.ReadAhead(PageIndex(5001), 15), 43u);
  EXPECT_EQ(l.pending(), 15u);
  // A fault back in the old range counts nothing.
  EXPECT_EQ(l.Reached(PageIndex(130), kNonePresent), 0u);
  EXPECT_EQ(l.pending(), 15u);
}

TEST(ReadAheadLedgerTest, PagesAreCountedOnce) {
  ReadAheadLedger l;
  EXPECT_EQ(l.ReadAhead(PageIndex(0), 10), 0u);
  EXPECT_EQ(l.Reached(PageIndex(4), kNonePresent), 5u);
  EXPECT_EQ(l.Reached(PageIndex(4), kNonePresent), 0u);  // again
  EXPECT_EQ(l.Reached(PageIndex(2), kNonePresent), 0u);  // below what was reached
  EXPECT_EQ(l.Reached(PageIndex(11), kNonePresent), 0u);  // beyond the range's end + 1
  EXPECT_EQ(l.ReadAhead(PageIndex(50), 3), 5u);  // 5..9 never reached
  EXPECT_EQ(l.ReadAhead(PageIndex(60), 0), 0u);  // nothing read: no change
  EXPECT_EQ(l.pending(), 3u);
}

TEST(ReadAheadLedgerTest, AFaultPastPresentPagesReachesTheWholeRange) {
  ReadAheadLedger l;
  EXPECT_EQ(l.ReadAhead(PageIndex(1), 9), 0u);  // 1..9; 10..19 resident
  auto resident = [](PageIndex p) { return p.value() >= 10 && p.value() < 20; };
  std::vector<uint64_t> asked;
  auto record = [&](PageIndex p) {
    asked.push_back(p.value());
    return resident(p);
  };
  // Past a page that is not present: not this stream.
  EXPECT_EQ(l.Reached(PageIndex(21), record), 0u);
  EXPECT_EQ(asked, (std::vector<uint64_t>{10, 11, 12, 13, 14, 15, 16, 17, 18,
                                          19, 20}));
  // Right after the resident stretch: the stream read through it.
  EXPECT_EQ(l.Reached(PageIndex(20), resident), 9u);
  EXPECT_EQ(l.pending(), 0u);
  // Beyond kMaxGap the pages are not even looked at.
  EXPECT_EQ(l.ReadAhead(PageIndex(1000), 4), 0u);
  asked.clear();
  EXPECT_EQ(l.Reached(PageIndex(1004 + ReadAheadLedger::kMaxGap + 1), record),
            0u);
  EXPECT_TRUE(asked.empty());
  EXPECT_EQ(l.Reached(PageIndex(1004 + ReadAheadLedger::kMaxGap),
                      [](PageIndex) { return true; }),
            4u);
}

TEST(ReadAheadLedgerTest, ReReadingPagesOfTheRangeWastesTheirFirstRead) {
  ReadAheadLedger l;
  EXPECT_EQ(l.ReadAhead(PageIndex(10), 40), 0u);  // 10..49
  EXPECT_EQ(l.Reached(PageIndex(19), kNonePresent), 10u);
  // 30..49 were evicted before the stream got there and are read again,
  // with 50..59: twenty reads wasted, the range now ends at 60.
  EXPECT_EQ(l.ReadAhead(PageIndex(30), 30), 20u);
  EXPECT_EQ(l.pending(), 40u);  // 20..59
  // A window claimed just before a concurrent fault reached past it
  // (ending at the range's start) is the same stream too.
  EXPECT_EQ(l.ReadAhead(PageIndex(18), 2), 0u);
  EXPECT_EQ(l.Reached(PageIndex(59), kNonePresent), 40u);
  EXPECT_EQ(l.pending(), 0u);
}

TEST(ReadAheadLedgerTest, RandomWindowsWasteAllButTheirFaults) {
  // Advise(kSequential) on a random reader: each fault reads 15 pages
  // ahead that nobody reaches.
  ReadAheadLedger l;
  uint64_t waste = 0, hits = 0;
  for (uint64_t f : {900, 10, 5000, 77, 3000}) {
    hits += l.Reached(PageIndex(f), kNonePresent);
    waste += l.ReadAhead(PageIndex(f + 1), 15);
  }
  EXPECT_EQ(hits, 0u);
  EXPECT_EQ(waste, 4u * 15);
  EXPECT_EQ(l.pending(), 15u);
}

TEST(ReadAheadLedgerTest, ConcurrentReachesCountEachPageOnce) {
  ReadAheadLedger l;
  ASSERT_EQ(l.ReadAhead(PageIndex(0), 4000), 0u);
  std::atomic<uint64_t> hits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t p = t; p < 4000; p += 4) hits += l.Reached(PageIndex(p), kNonePresent);
    });
  }
  for (auto& th : threads) th.join();
  // Every page up to the highest reached (3999) is counted, once.
  EXPECT_EQ(hits.load(), 4000u);
  EXPECT_EQ(l.pending(), 0u);
}

}  // namespace
}  // namespace upager::internal
