#include "pager/page_table.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <latch>
#include <map>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace upager::internal {

// Readable failure messages; found by ADL, so it lives in PageEntry's
// namespace rather than the anonymous one.
void PrintTo(const PageEntry& e, std::ostream* os) {
  *os << "PageEntry{" << PageStateName(e.state()) << ", raw=0x" << std::hex
      << e.raw() << std::dec << "}";
}

namespace {

using ::testing::HasSubstr;

constexpr uint64_t kNodeBytes = 4096;  // a leaf or an interior node
constexpr uint64_t kTiBOfPages = uint64_t{1} << 28;  // 1 TiB / 4 KiB

// The levels and root bytes the header promises for `page_count`.
int ExpectedLevels(uint64_t page_count) {
  int levels = 1;
  uint64_t span = 512;
  while (span < page_count) {
    span *= 512;
    ++levels;
  }
  return levels;
}

uint64_t RootBytes(uint64_t page_count) {
  const int levels = ExpectedLevels(page_count);
  if (levels == 1) return kNodeBytes;
  const uint64_t child_span = uint64_t{1} << (9 * (levels - 1));
  return (page_count + child_span - 1) / child_span * sizeof(void*);
}

// Exact metadata after non-zero writes to `written`: the root plus one node
// per distinct prefix at every depth below it.
uint64_t ExpectedMetadata(uint64_t page_count,
                          const std::set<uint64_t>& written) {
  const int levels = ExpectedLevels(page_count);
  uint64_t bytes = RootBytes(page_count);
  for (int depth = 1; depth < levels; ++depth) {
    const int shift = 9 * (levels - depth);
    std::set<uint64_t> prefixes;
    for (uint64_t p : written) prefixes.insert(p >> shift);
    bytes += prefixes.size() * kNodeBytes;
  }
  return bytes;
}

// A random entry that CheckInvariants accepts (no kFilling, no reserved
// bits); one in eight is raw 0.
PageEntry RandomEntry(std::mt19937_64& rng) {
  if (rng() % 8 == 0) return PageEntry();
  PageEntry e = PageEntry::Of(static_cast<PageState>(rng() % 4));
  for (uint64_t bit : {PageEntry::kDirtyBit, PageEntry::kWriteProtectedBit,
                       PageEntry::kCapturedBit, PageEntry::kAccessedBit,
                       PageEntry::kCleanBit}) {
    e = e.with_flag(bit, rng() % 2 == 0);
  }
  return e.with_slot(rng() & PageEntry::kMaxSlot);
}

TEST(PageTableTest, ValidateRejectsZeroAndTooManyPagesNamingTheValue) {
  absl::Status zero = PageTable::Validate(0);
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(zero.message()), HasSubstr("page_count 0"));

  absl::Status big = PageTable::Validate(PageTable::kMaxPages + 1);
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(big.message()), HasSubstr("68719476737"));

  EXPECT_TRUE(PageTable::Validate(1).ok());
  EXPECT_TRUE(PageTable::Validate(PageTable::kMaxPages).ok());
}

TEST(PageTableTest, LevelsAndRootSizeAtBoundaries) {
  const std::vector<std::pair<uint64_t, int>> cases = {
      {1, 1},
      {512, 1},
      {513, 2},
      {512 * 512, 2},
      {512 * 512 + 1, 3},
      {uint64_t{512} * 512 * 512, 3},
      {uint64_t{512} * 512 * 512 + 1, 4},
      {kTiBOfPages, 4},
      {PageTable::kMaxPages, 4},
  };
  for (const auto& [pages, levels] : cases) {
    PageTable t(pages);
    EXPECT_EQ(t.page_count(), pages);
    EXPECT_EQ(t.levels(), levels) << pages;
    EXPECT_EQ(t.MetadataBytes(), RootBytes(pages)) << pages;
    EXPECT_TRUE(t.CheckInvariants().ok()) << pages;
  }
  // Spot-check the root arithmetic itself rather than only the helper.
  EXPECT_EQ(PageTable(513).MetadataBytes(), 2 * sizeof(void*));
  EXPECT_EQ(PageTable(PageTable::kMaxPages).MetadataBytes(),
            512 * sizeof(void*));
}

TEST(PageTableTest, UntouchedTebibyteRegionCostsAlmostNothing) {
  PageTable t(kTiBOfPages);
  EXPECT_LT(t.MetadataBytes(), 1u << 20);
  EXPECT_LE(t.MetadataBytes(), 8u << 10);
  // Reads never allocate.
  for (uint64_t p = 0; p < kTiBOfPages; p += kTiBOfPages / 1024 + 7) {
    EXPECT_EQ(t.Get(PageIndex(p)), PageEntry());
  }
  EXPECT_EQ(t.Get(PageIndex(kTiBOfPages - 1)), PageEntry());
  EXPECT_EQ(t.MetadataBytes(), RootBytes(kTiBOfPages));
  // One write costs exactly one node per level below the root.
  ASSERT_TRUE(
      t.Set(PageIndex(kTiBOfPages - 1), PageEntry::Of(PageState::kResident)));
  EXPECT_EQ(t.MetadataBytes(), RootBytes(kTiBOfPages) + 3 * kNodeBytes);
  EXPECT_TRUE(t.CheckInvariants().ok());
}

class PageTableShadowTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(PageTableShadowTest, RandomSetGetMatchesShadow) {
  const uint64_t pages = GetParam();
  PageTable t(pages);
  std::mt19937_64 rng(pages);
  std::unordered_map<uint64_t, PageEntry> shadow;
  std::set<uint64_t> written;  // pages that got a non-zero Set

  // Half the writes cluster in a few hot spots so leaves get reused; the
  // rest land anywhere, and the boundary pages are always hit.
  std::vector<uint64_t> hot;
  for (int i = 0; i < 4; ++i) hot.push_back(rng() % pages);
  auto pick = [&]() -> uint64_t {
    switch (rng() % 4) {
      case 0:
        return rng() % pages;
      case 1: {
        const uint64_t edges[] = {0, 511, 512, pages - 1, pages / 2};
        return std::min(edges[rng() % 5], pages - 1);
      }
      default:
        return std::min(hot[rng() % hot.size()] + rng() % 2048, pages - 1);
    }
  };
  const int ops = pages >= kTiBOfPages ? 3000 : 20000;
  for (int i = 0; i < ops; ++i) {
    const uint64_t p = pick();
    if (rng() % 3 == 0) {
      ASSERT_EQ(t.Get(PageIndex(p)), shadow[p]) << "page " << p;
      continue;
    }
    const PageEntry e = RandomEntry(rng);
    ASSERT_TRUE(t.Set(PageIndex(p), e));
    shadow[p] = e;
    if (e.raw() != 0) written.insert(p);
  }

  for (const auto& [p, e] : shadow) {
    ASSERT_EQ(t.Get(PageIndex(p)), e) << "page " << p;
  }
  for (int i = 0; i < 2000; ++i) {
    const uint64_t p = rng() % pages;
    auto it = shadow.find(p);
    ASSERT_EQ(t.Get(PageIndex(p)),
              it == shadow.end() ? PageEntry() : it->second);
  }

  // ForEachNonAbsent: page order, exactly the non-zero shadow entries.
  std::map<uint64_t, PageEntry> want;
  for (const auto& [p, e] : shadow) {
    if (e.raw() != 0) want[p] = e;
  }
  std::vector<std::pair<uint64_t, PageEntry>> got;
  t.ForEachNonAbsent([&](PageIndex p, PageEntry e) {
    // Reading from inside the callback is allowed.
    EXPECT_EQ(t.Get(p), e);
    got.emplace_back(p.value(), e);
  });
  const std::vector<std::pair<uint64_t, PageEntry>> want_list(want.begin(),
                                                              want.end());
  EXPECT_EQ(got, want_list);

  EXPECT_EQ(t.MetadataBytes(), ExpectedMetadata(pages, written));
  EXPECT_TRUE(t.CheckInvariants().ok()) << t.CheckInvariants();
}

INSTANTIATE_TEST_SUITE_P(BoundaryPageCounts, PageTableShadowTest,
                         ::testing::Values(1, 512, 513, 512 * 512,
                                           512 * 512 + 1, kTiBOfPages,
                                           PageTable::kMaxPages));

TEST(PageTableTest, WritingZeroToAMissingLeafAllocatesNothing) {
  PageTable t(kTiBOfPages);
  const size_t before = t.MetadataBytes();
  ASSERT_TRUE(t.Set(PageIndex(12345), PageEntry()));
  EXPECT_EQ(t.MetadataBytes(), before);
  EXPECT_EQ(t.Get(PageIndex(12345)), PageEntry());
}

TEST(PageTableTest, CompareExchangeSemantics) {
  PageTable t(512 * 512 + 1);  // 3 levels
  const PageIndex p(200000);
  const PageEntry resident = PageEntry::Of(PageState::kResident).with_slot(7);
  const PageEntry swapped = PageEntry::Of(PageState::kSwapped).with_slot(9);
  const size_t root = t.MetadataBytes();

  // Missing leaf, expected non-zero: fails, reports absent, allocates
  // nothing.
  PageEntry expected = resident;
  bool alloc_failed = true;
  EXPECT_FALSE(t.CompareExchange(p, &expected, swapped, &alloc_failed));
  EXPECT_FALSE(alloc_failed);
  EXPECT_EQ(expected, PageEntry());
  EXPECT_EQ(t.MetadataBytes(), root);

  // Missing leaf, 0 -> 0: succeeds without allocating.
  expected = PageEntry();
  EXPECT_TRUE(t.CompareExchange(p, &expected, PageEntry()));
  EXPECT_EQ(t.MetadataBytes(), root);

  // Absent -> resident: succeeds, allocates the path.
  expected = PageEntry();
  EXPECT_TRUE(t.CompareExchange(p, &expected, resident, &alloc_failed));
  EXPECT_FALSE(alloc_failed);
  EXPECT_EQ(expected, PageEntry());  // untouched on success
  EXPECT_EQ(t.Get(p), resident);
  EXPECT_EQ(t.MetadataBytes(), root + 2 * kNodeBytes);

  // Stale expectation: fails and loads the current entry.
  expected = PageEntry();
  EXPECT_FALSE(t.CompareExchange(p, &expected, swapped, &alloc_failed));
  EXPECT_FALSE(alloc_failed);
  EXPECT_EQ(expected, resident);
  EXPECT_EQ(t.Get(p), resident);

  // Retrying with the loaded value succeeds.
  EXPECT_TRUE(t.CompareExchange(p, &expected, swapped));
  EXPECT_EQ(t.Get(p), swapped);

  // A neighbour in the same leaf is unaffected and needs no new node.
  expected = PageEntry();
  EXPECT_TRUE(t.CompareExchange(p + 1, &expected, resident));
  EXPECT_EQ(t.MetadataBytes(), root + 2 * kNodeBytes);
  EXPECT_EQ(t.Get(p), swapped);
  EXPECT_TRUE(t.CheckInvariants().ok());
}

TEST(PageTableTest, ConcurrentClaimsSucceedExactlyOncePerPage) {
  constexpr int kThreads = 8;
  // Pages spread over many leaves and interior nodes so that threads also
  // race to publish nodes.
  constexpr uint64_t kClaims = 20000;
  constexpr uint64_t kStride = 4099;
  PageTable t(kTiBOfPages);
  std::latch start(kThreads);
  std::vector<uint64_t> wins(kThreads, 0);
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      start.arrive_and_wait();
      for (uint64_t i = 0; i < kClaims; ++i) {
        // Odd threads walk backwards so claims meet from both ends.
        const uint64_t k = id % 2 == 0 ? i : kClaims - 1 - i;
        PageEntry expected;
        const PageEntry mine =
            PageEntry::Of(PageState::kResident).with_slot(id + 1);
        if (t.CompareExchange(PageIndex(k * kStride), &expected, mine)) {
          ++wins[id];
        } else {
          EXPECT_EQ(expected.state(), PageState::kResident);
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  uint64_t total = 0;
  for (uint64_t w : wins) total += w;
  EXPECT_EQ(total, kClaims);
  // The entry names its winner; every thread's count matches its pages.
  std::vector<uint64_t> owned(kThreads, 0);
  std::set<uint64_t> written;
  for (uint64_t i = 0; i < kClaims; ++i) {
    const PageEntry e = t.Get(PageIndex(i * kStride));
    ASSERT_EQ(e.state(), PageState::kResident);
    ASSERT_GE(e.slot(), 1u);
    ASSERT_LE(e.slot(), uint64_t{kThreads});
    ++owned[e.slot() - 1];
    written.insert(i * kStride);
  }
  EXPECT_EQ(owned, wins);
  // Losing node publications were freed, not counted.
  EXPECT_EQ(t.MetadataBytes(), ExpectedMetadata(kTiBOfPages, written));
  EXPECT_TRUE(t.CheckInvariants().ok()) << t.CheckInvariants();
}

TEST(PageTableTest, ReadersSeeOldOrNewEntryWhileWritersAllocate) {
  constexpr int kWriters = 4;
  constexpr int kReaders = 4;
  constexpr uint64_t kPages = uint64_t{1} << 22;  // 3 levels
  constexpr uint64_t kPerWriter = 30000;
  PageTable t(kPages);
  // Each page has one possible non-zero value, so a torn or misplaced read
  // shows up as anything else.
  auto value_of = [](uint64_t p) {
    return PageEntry::Of(PageState::kSwapped).with_slot(p * 3 + 1);
  };
  std::atomic<bool> done{false};
  std::atomic<uint64_t> bad{0};
  std::atomic<uint64_t> seen_set{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937_64 rng(r);
      while (!done.load(std::memory_order_acquire)) {
        const uint64_t p = rng() % kPages;
        const PageEntry e = t.Get(PageIndex(p));
        if (e.raw() == 0) continue;
        if (e == value_of(p)) {
          seen_set.fetch_add(1, std::memory_order_relaxed);
        } else {
          bad.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937_64 rng(100 + w);
      for (uint64_t i = 0; i < kPerWriter; ++i) {
        const uint64_t p = rng() % kPages;
        ASSERT_TRUE(t.Set(PageIndex(p), value_of(p)));
      }
    });
  }
  for (auto& th : writers) th.join();
  done.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0u);

  // Every write landed.
  std::set<uint64_t> written;
  for (int w = 0; w < kWriters; ++w) {
    std::mt19937_64 rng(100 + w);
    for (uint64_t i = 0; i < kPerWriter; ++i) written.insert(rng() % kPages);
  }
  for (uint64_t p : written) ASSERT_EQ(t.Get(PageIndex(p)), value_of(p));
  uint64_t visited = 0;
  t.ForEachNonAbsent([&](PageIndex, PageEntry) { ++visited; });
  EXPECT_EQ(visited, written.size());
  EXPECT_EQ(t.MetadataBytes(), ExpectedMetadata(kPages, written));
  EXPECT_TRUE(t.CheckInvariants().ok()) << t.CheckInvariants();
}

TEST(PageTableTest, SetRangeAbsentSkipsMissingSubtrees) {
  PageTable t(kTiBOfPages);
  const size_t root = t.MetadataBytes();
  ASSERT_TRUE(t.SetRange(PageIndex(0), kTiBOfPages, PageEntry()));
  EXPECT_EQ(t.MetadataBytes(), root);

  // Populate a few scattered pages, then clear a range covering some of
  // them: only existing leaves are touched, nothing new is allocated.
  const PageEntry r = PageEntry::Of(PageState::kResident);
  const std::vector<uint64_t> pages = {5, 513, 1 << 20, (1 << 27) + 3,
                                       kTiBOfPages - 1};
  for (uint64_t p : pages) ASSERT_TRUE(t.Set(PageIndex(p), r));
  const size_t populated = t.MetadataBytes();
  ASSERT_TRUE(t.SetRange(PageIndex(6), kTiBOfPages - 7, PageEntry()));
  EXPECT_EQ(t.MetadataBytes(), populated);
  EXPECT_EQ(t.Get(PageIndex(5)), r);                // before the range
  EXPECT_EQ(t.Get(PageIndex(kTiBOfPages - 1)), r);  // after the range
  for (uint64_t p : {513ull, 1ull << 20, (1ull << 27) + 3}) {
    EXPECT_EQ(t.Get(PageIndex(p)), PageEntry()) << p;
  }
  EXPECT_TRUE(t.CheckInvariants().ok());
}

TEST(PageTableTest, SetRangeAcrossLeavesSetsExactlyTheRange) {
  PageTable t(512 * 512 + 1);  // 3 levels: crosses leaves and a root slot
  const PageEntry w =
      PageEntry::Of(PageState::kZero).with_flag(PageEntry::kAccessedBit, true);
  const uint64_t first = 512 * 512 - 700;
  const uint64_t count = 701;  // up to and including the last page
  ASSERT_TRUE(t.SetRange(PageIndex(first), count, w));
  for (uint64_t p = first - 600; p < 512 * 512 + 1; ++p) {
    const bool in = p >= first && p < first + count;
    ASSERT_EQ(t.Get(PageIndex(p)), in ? w : PageEntry()) << p;
  }
  uint64_t visited = 0;
  t.ForEachNonAbsent([&](PageIndex p, PageEntry e) {
    EXPECT_EQ(p.value(), first + visited);
    EXPECT_EQ(e, w);
    ++visited;
  });
  EXPECT_EQ(visited, count);

  // A zero-length range changes nothing.
  const size_t bytes = t.MetadataBytes();
  ASSERT_TRUE(t.SetRange(PageIndex(0), 0, w));
  EXPECT_EQ(t.Get(PageIndex(0)), PageEntry());
  EXPECT_EQ(t.MetadataBytes(), bytes);
  EXPECT_TRUE(t.CheckInvariants().ok());
}

TEST(PageTableTest, CheckInvariantsReportsLeakedFillAndReservedBits) {
  PageTable t(1000);
  ASSERT_TRUE(t.Set(PageIndex(700), PageEntry::Of(PageState::kFilling)));
  absl::Status s = t.CheckInvariants();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("700"));
  ASSERT_TRUE(t.Set(PageIndex(700), PageEntry::Of(PageState::kResident)));
  EXPECT_TRUE(t.CheckInvariants().ok());

  ASSERT_TRUE(t.Set(PageIndex(3), PageEntry(uint64_t{1} << 11)));
  s = t.CheckInvariants();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("reserved"));
  ASSERT_TRUE(t.Set(PageIndex(3), PageEntry()));

  ASSERT_TRUE(t.Set(PageIndex(4), PageEntry(13)));  // no such state
  EXPECT_FALSE(t.CheckInvariants().ok());
}

}  // namespace
}  // namespace upager::internal

namespace upager::internal {
namespace {

// A 3-level table with entries scattered over several leaves and
// subtrees, each resident with its page number as its slot.
class PageTableRangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (uint64_t p : {0ull, 1ull, 511ull, 512ull, 70000ull, 262143ull,
                       262144ull, 600000ull, 1048575ull}) {
      ASSERT_TRUE(t.Set(PageIndex(p), PageEntry::Of(PageState::kResident)
                                          .with_slot(p)));
      shadow[p] = p;
    }
  }
  // The shadow's pages in [first, first + count), in order.
  std::vector<uint64_t> InRange(uint64_t first, uint64_t count) const {
    std::vector<uint64_t> want;
    for (auto [p, v] : shadow) {
      if (p >= first && p < first + count) want.push_back(p);
    }
    return want;
  }

  PageTable t{512 * 512 * 4};
  std::map<uint64_t, uint64_t> shadow;
};

TEST_F(PageTableRangeTest, ForEachNonAbsentInRangeVisitsExactlyTheRange) {
  for (auto [first, count] : std::vector<std::pair<uint64_t, uint64_t>>{
           {0, 1}, {1, 511}, {0, 1ull << 20}, {512, 262000}, {262143, 2},
           {300000, 300000}, {1048575, 100}, {5, 0}}) {
    std::vector<uint64_t> seen;
    t.ForEachNonAbsentInRange(PageIndex(first), count,
                              [&](PageIndex p, PageEntry e) {
                                EXPECT_EQ(e.slot(), p.value());
                                seen.push_back(p.value());
                              });
    EXPECT_EQ(seen, InRange(first, count))
        << "range [" << first << ", +" << count << ")";
  }
}

TEST_F(PageTableRangeTest, InlineWalkVisitsTheSameEntriesAndUpdatesInPlace) {
  for (auto [first, count] : std::vector<std::pair<uint64_t, uint64_t>>{
           {0, 1}, {1, 511}, {0, 1ull << 20}, {512, 262000}, {262143, 2},
           {300000, 300000}, {1048575, 100}, {5, 0}, {1ull << 21, 10}}) {
    std::vector<uint64_t> seen;
    t.ForEachNonAbsentInRangeInline(
        PageIndex(first), count,
        [&](PageIndex p, PageEntry e, PageTable::EntryRef) {
          EXPECT_EQ(e.slot(), p.value());
          seen.push_back(p.value());
        });
    EXPECT_EQ(seen, InRange(first, count))
        << "range [" << first << ", +" << count << ")";
  }
  // Updates through the EntryRef: a CAS from a stale value fails and
  // reports the entry as it is; one from the current value lands.
  t.ForEachNonAbsentInRangeInline(
      PageIndex(0), 1ull << 20,
      [&](PageIndex p, PageEntry e, PageTable::EntryRef ref) {
        PageEntry stale = e.with_flag(PageEntry::kDirtyBit, true);
        EXPECT_FALSE(ref.CompareExchange(
            &stale, e.with_flag(PageEntry::kCapturedBit, true)));
        EXPECT_EQ(stale, e) << p.value();
        EXPECT_TRUE(ref.CompareExchange(
            &stale, e.with_flag(PageEntry::kCapturedBit, true)));
      });
  for (auto [p, v] : shadow) {
    EXPECT_EQ(t.Get(PageIndex(p)),
              PageEntry::Of(PageState::kResident)
                  .with_slot(p)
                  .with_flag(PageEntry::kCapturedBit, true))
        << p;
  }
  EXPECT_TRUE(t.CheckInvariants().ok());
}

}  // namespace
}  // namespace upager::internal

namespace upager::internal {
namespace {

TEST(PageTableNoAllocTest, CompareExchangeNoAllocNeedsAnExistingLeaf) {
  PageTable t(4 * PageTable::kFanout);
  PageEntry expected;
  // No leaf: refused, nothing allocated, *expected untouched.
  EXPECT_FALSE(t.CompareExchangeNoAlloc(PageIndex(3), &expected,
                                        PageEntry::Of(PageState::kFilling)));
  EXPECT_EQ(expected.raw(), 0u);
  const size_t before = t.MetadataBytes();
  EXPECT_EQ(t.Get(PageIndex(3)).raw(), 0u);
  // Reserve the first two leaves: CAS now works there, not beyond.
  ASSERT_TRUE(t.Reserve(PageIndex(0), 2 * PageTable::kFanout));
  EXPECT_GT(t.MetadataBytes(), before);
  EXPECT_TRUE(t.CompareExchangeNoAlloc(PageIndex(3), &expected,
                                       PageEntry::Of(PageState::kFilling)));
  EXPECT_EQ(t.Get(PageIndex(3)).state(), PageState::kFilling);
  PageEntry stale;  // absent, but the entry is kFilling now
  EXPECT_FALSE(t.CompareExchangeNoAlloc(PageIndex(3), &stale,
                                        PageEntry::Of(PageState::kZero)));
  EXPECT_EQ(stale.state(), PageState::kFilling);
  PageEntry absent;
  EXPECT_TRUE(t.CompareExchangeNoAlloc(
      PageIndex(2 * PageTable::kFanout - 1), &absent,
      PageEntry::Of(PageState::kZero)));
  EXPECT_FALSE(t.CompareExchangeNoAlloc(PageIndex(2 * PageTable::kFanout),
                                        &absent,
                                        PageEntry::Of(PageState::kZero)));
  ASSERT_TRUE(t.Set(PageIndex(3), PageEntry()));  // settle the claim
  EXPECT_TRUE(t.CheckInvariants().ok()) << t.CheckInvariants();
}

}  // namespace
}  // namespace upager::internal
