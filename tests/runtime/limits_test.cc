// The limits of issue 7 item 6, each either working or failing with a
// clear Status: a 1 TiB region, regions past the page table and the
// address space, budgets of one page and of all RAM, thousands of
// snapshots of one region, and snapshots of thousands of regions. Every
// test checks the bytes it reads back against a shadow (PageIs).
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/runtime/snapshot_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;

// Reads one page of a snapshot and checks it against generation `gen`.
::testing::AssertionResult SnapshotPageIs(const Snapshot& s, uint64_t page,
                                          uint64_t gen) {
  std::vector<std::byte> buf(kPage);
  const absl::Status st = s.Read(page * kPage, absl::MakeSpan(buf));
  if (!st.ok()) return ::testing::AssertionFailure() << st;
  return PageIs(buf.data(), page, gen) << " (snapshot " << s.id() << ")";
}

// ---------------------------------------------------------------------------
// Region size.

TEST(LimitsTest, OneTebibyteRegion) {
  constexpr uint64_t kSize = uint64_t{1} << 40;
  constexpr uint64_t kPages = kSize / kPage;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = kSize, .name = "tib"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* const base = (*r)->data();
  EXPECT_EQ(rt->stats().reserved_bytes, kSize);

  // A few hundred pages all over the range (both ends included), written or
  // only read; the shadow is a generation per touched page.
  std::mt19937_64 rng(1);
  std::map<uint64_t, uint64_t> gens;
  std::vector<uint64_t> pages = {0, kPages - 1, kPages / 2};
  while (pages.size() < 400) pages.push_back(rng() % kPages);
  for (size_t i = 0; i < pages.size(); ++i) {
    const uint64_t p = pages[i];
    if (i % 3 == 2) {
      volatile std::byte b = base[p * kPage + (rng() % kPage)];
      (void)b;
      gens.emplace(p, 0);  // read only: zero (unless written below)
    } else {
      FillPage(base + p * kPage, p, 1 + i % 7);
      gens[p] = 1 + i % 7;
    }
  }
  for (const auto& [p, g] : gens) {
    ASSERT_TRUE(PageIs(base + p * kPage, p, g));
  }
  // A snapshot of the whole terabyte costs what is mapped, not its size.
  auto snap = (*r)->TakeSnapshot();
  if (snap.ok()) {
    std::map<uint64_t, uint64_t> now = gens;
    for (auto& [p, g] : now) {
      if (p % 2 == 0) {
        g += 10;
        FillPage(base + p * kPage, p, g);
      }
    }
    for (const auto& [p, g] : gens) {
      ASSERT_TRUE(SnapshotPageIs(**snap, p, g));
    }
    for (const auto& [p, g] : now) {
      ASSERT_TRUE(PageIs(base + p * kPage, p, g));
    }
    ASSERT_TRUE((*snap)->Release().ok());
  } else if (!absl::IsFailedPrecondition(snap.status()) ||
             RequireFeatures()) {
    // FailedPrecondition: the kernel lacks snapshots' features; the rest of
    // the test still runs (but CI's kernel has them all).
    ADD_FAILURE() << snap.status();
  }
  const Stats s = rt->stats();
  // Page tables grow with what is touched: a 4 KiB leaf per touched 2 MiB
  // and the interior nodes above it, not 8 bytes per reserved page (2 GiB).
  EXPECT_LT(s.metadata_bytes, uint64_t{8} << 20) << s.ToString();
  EXPECT_LE(s.resident_pages + s.zero_mapped_pages,
            pages.size() * RuntimeOptions{}.fault_around_pages);
  EXPECT_EQ(s.errors, 0u) << s.first_error;
  EXPECT_EQ(s.snapshot_bytes, 0u);
  ASSERT_TRUE(rt->Unmap(*r).ok());
  const Stats after = rt->stats();
  EXPECT_EQ(after.regions, 0u);
  EXPECT_EQ(after.reserved_bytes, 0u);
  EXPECT_EQ(after.metadata_bytes, 0u);
}

TEST(LimitsTest, RegionsPastThePageTableOrTheAddressSpaceAreClearErrors) {
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  // More pages than a page table indexes (2^36 pages, 256 TiB).
  const uint64_t too_many = ((uint64_t{1} << 36) + 1) * kPage;
  auto r = rt->Map({.size = too_many, .name = "huge"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr(absl::StrCat(too_many)));
  // Within the table's reach but past a 47-bit address space (128 TiB).
  const uint64_t past_va = uint64_t{200} << 40;
  r = rt->Map({.size = past_va, .name = "past-va"});
  if (r.ok()) {
    ASSERT_TRUE(rt->Unmap(*r).ok());  // a 57-bit address space
  } else {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted)
        << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("past-va"));
  }
  EXPECT_EQ(rt->stats().regions, 0u);
  // And the Runtime is fine afterwards.
  auto ok = rt->Map({.size = 4 * kPage, .name = "after"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  FillPage((*ok)->data(), 0, 3);
  EXPECT_TRUE(PageIs((*ok)->data(), 0, 3));
  EXPECT_TRUE(rt->Unmap(*ok).ok());
}

// ---------------------------------------------------------------------------
// Budgets.

// One frame: every fault evicts the page before. Slow (about 2 ms a page
// here) but exact, and the budget holds.
TEST(LimitsTest, BudgetOfOnePage) {
  constexpr uint64_t kPages = 512;  // 2 MiB through one frame
  RuntimeOptions o;
  o.resident_budget_bytes = kPage;
  o.swap.store = MemoryStore(2 * kPages * kPage);
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = kPages * kPage, .name = "one-frame"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* const base = (*r)->data();
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 1);
  for (uint64_t p = 0; p < kPages; ++p) {
    ASSERT_TRUE(PageIs(base + p * kPage, p, 1));
  }
  // Random order, reads and writes mixed.
  std::vector<uint64_t> gens(kPages, 1);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 600; ++i) {
    const uint64_t p = rng() % kPages;
    if (i % 2 == 0) {
      gens[p] = 2 + i % 5;
      FillPage(base + p * kPage, p, gens[p]);
    } else {
      ASSERT_TRUE(PageIs(base + p * kPage, p, gens[p]));
    }
  }
  for (uint64_t p = 0; p < kPages; ++p) {
    ASSERT_TRUE(PageIs(base + p * kPage, p, gens[p]));
  }
  const Stats s = rt->stats();
  EXPECT_EQ(s.budget_pages, 1u);
  EXPECT_GE(s.pages_swapped_out, kPages - 1) << s.ToString();
  EXPECT_EQ(s.over_budget_pages, 0u) << s.ToString();
  EXPECT_LE(s.budget_used_pages, 1u) << s.ToString();
  EXPECT_EQ(s.errors, 0u) << s.first_error;
  ASSERT_TRUE(rt->Unmap(*r).ok());
  EXPECT_EQ(rt->stats().store.used_slots, 0u);
}

TEST(LimitsTest, BudgetOfAllRam) {
  const long phys = sysconf(_SC_PHYS_PAGES);
  ASSERT_GT(phys, 0);
  const uint64_t ram = static_cast<uint64_t>(phys) * kPage;
  constexpr uint64_t kPages = 2048;
  for (const bool memory_store : {true, false}) {
    SCOPED_TRACE(memory_store ? "memory store" : "swap file");
    RuntimeOptions o;
    o.resident_budget_bytes = ram;
    // The default swap file is four times the budget, allocated up front:
    // with a budget of all RAM, name a capacity the disk has.
    if (memory_store) {
      o.swap.store = MemoryStore(kPages * kPage);
    } else {
      o.swap.capacity_bytes = kPages * kPage;
    }
    auto rt = MakeRuntime(o);
    ASSERT_NE(rt, nullptr);
    EXPECT_EQ(rt->stats().budget_pages, ram / kPage);
    auto r = rt->Map({.size = kPages * kPage, .name = "all-ram"});
    ASSERT_TRUE(r.ok()) << r.status();
    std::byte* const base = (*r)->data();
    for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 1);
    for (uint64_t p = 0; p < kPages; ++p) {
      ASSERT_TRUE(PageIs(base + p * kPage, p, 1));
    }
    const Stats s = SettledStats(*rt);
    EXPECT_EQ(s.pages_swapped_out, 0u);  // nothing near the budget
    EXPECT_EQ(s.budget_used_pages, kPages);
    EXPECT_EQ(s.errors, 0u) << s.first_error;
    ASSERT_TRUE(rt->Unmap(*r).ok());
  }
}

// ---------------------------------------------------------------------------
// Snapshots.

// 2,000 live snapshots of one region, one page written between each: every
// snapshot reads back its own bytes, and they go in scrambled order.
TEST(LimitsTest, TwoThousandSnapshotsOfOneRegion) {
  constexpr int kSnapshots = 2000;
  constexpr uint64_t kPages = 64;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = kPages * kPage, .name = "many-snaps"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* const base = (*r)->data();
  std::vector<uint64_t> gens(kPages);
  for (uint64_t p = 0; p < kPages; ++p) {
    gens[p] = 1;
    FillPage(base + p * kPage, p, 1);
  }
  const absl::Time start = absl::Now();
  std::vector<std::unique_ptr<Snapshot>> snaps;
  std::vector<std::vector<uint64_t>> shadows;
  for (int i = 0; i < kSnapshots; ++i) {
    if (i == 0) {
      TAKE_OR_SKIP(first, *r);
      snaps.push_back(std::move(first));
    } else {
      auto s = (*r)->TakeSnapshot();
      ASSERT_TRUE(s.ok()) << i << ": " << s.status();
      snaps.push_back(std::move(*s));
    }
    shadows.push_back(gens);
    const uint64_t p = (static_cast<uint64_t>(i) * 7) % kPages;
    gens[p] = 2 + i;
    FillPage(base + p * kPage, p, gens[p]);
  }
  const absl::Duration take = absl::Now() - start;
  Stats s = rt->stats();
  EXPECT_EQ(s.snapshots_live, static_cast<uint64_t>(kSnapshots));
  // Each snapshot marks every page (all present); each write copies once,
  // and every copy is still needed by the snapshot before it. (Signal
  // mode: a hand-off repeated after its wait timed out may copy a page a
  // second time, for the next snapshot, before that one is written.)
  EXPECT_EQ(s.pages_protected, kSnapshots * kPages);
  EXPECT_GE(s.snapshot_copies, static_cast<uint64_t>(kSnapshots));
  EXPECT_LE(s.snapshot_copies, static_cast<uint64_t>(kSnapshots + 20));
  EXPECT_EQ(s.snapshot_bytes, s.snapshot_copies * kPage);
  EXPECT_TRUE(RegionIs(base, gens));

  const absl::Time read_start = absl::Now();
  for (int i = 0; i < kSnapshots; ++i) {
    ASSERT_TRUE(SnapshotIs(*snaps[i], shadows[i])) << "snapshot " << i;
  }
  const absl::Duration read = absl::Now() - read_start;

  std::vector<int> order(kSnapshots);
  for (int i = 0; i < kSnapshots; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(3));
  const absl::Time release_start = absl::Now();
  for (int k = 0; k < kSnapshots; ++k) {
    ASSERT_TRUE(snaps[order[k]]->Release().ok()) << order[k];
    // Now and then, the survivors still read their own bytes.
    if (k % 500 == 250) {
      for (int j = k + 1; j < kSnapshots; j += 97) {
        ASSERT_TRUE(SnapshotIs(*snaps[order[j]], shadows[order[j]]))
            << "snapshot " << order[j] << " after " << k + 1 << " releases";
      }
    }
  }
  const absl::Duration release = absl::Now() - release_start;
  s = rt->stats();
  EXPECT_EQ(s.snapshots_live, 0u);
  EXPECT_EQ(s.snapshot_bytes, 0u);
  EXPECT_EQ(s.errors, 0u) << s.first_error;
  EXPECT_TRUE(RegionIs(base, gens));
  // Unprotected again: writes take no write-protect fault.
  const uint64_t wp = SettledStats(*rt).faults_write_protect;
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 9999);
  EXPECT_EQ(SettledStats(*rt).faults_write_protect, wp);
  std::printf("%d snapshots: take+write %s, read all %s, release %s\n",
              kSnapshots, absl::FormatDuration(take).c_str(),
              absl::FormatDuration(read).c_str(),
              absl::FormatDuration(release).c_str());
}

// 2,000 regions, each with its own bytes and a live snapshot, all at
// once. (10,000 regions are ManyRegionsTest's, in runtime_test.cc; here
// each Map and Unmap costs O(regions) in signal mode, see the README.)
TEST(LimitsTest, SnapshotsOfTwoThousandRegions) {
  constexpr int kRegions = 2000;
  constexpr uint64_t kPages = 4;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  std::vector<Region*> regions;
  for (int i = 0; i < kRegions; ++i) {
    auto r = rt->Map({.size = kPages * kPage, .name = absl::StrCat("r", i)});
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    regions.push_back(*r);
    // Page i % kPages of region i holds generation i + 1; the rest are
    // untouched.
    FillPage(regions[i]->data() + (i % kPages) * kPage, i % kPages, i + 1);
  }
  std::vector<std::unique_ptr<Snapshot>> snaps;
  for (int i = 0; i < kRegions; ++i) {
    if (i == 0) {
      TAKE_OR_SKIP(first, regions[0]);
      snaps.push_back(std::move(first));
    } else {
      auto s = regions[i]->TakeSnapshot();
      ASSERT_TRUE(s.ok()) << i << ": " << s.status();
      snaps.push_back(std::move(*s));
    }
  }
  // Every page of every region rewritten.
  for (int i = 0; i < kRegions; ++i) {
    for (uint64_t p = 0; p < kPages; ++p) {
      FillPage(regions[i]->data() + p * kPage, p, 50000 + i);
    }
  }
  Stats s = rt->stats();
  EXPECT_EQ(s.snapshots_live, static_cast<uint64_t>(kRegions));
  EXPECT_GE(s.snapshot_copies, static_cast<uint64_t>(kRegions));
  for (int i = 0; i < kRegions; ++i) {
    std::vector<uint64_t> then(kPages, 0);
    then[i % kPages] = i + 1;
    ASSERT_TRUE(SnapshotIs(*snaps[i], then)) << "region " << i;
    ASSERT_TRUE(RegionIs(regions[i]->data(),
                         std::vector<uint64_t>(kPages, 50000 + i)))
        << "region " << i;
  }
  // Half released, half go with their regions.
  for (int i = 0; i < kRegions; i += 2) ASSERT_TRUE(snaps[i]->Release().ok());
  for (int i = 0; i < kRegions; ++i) ASSERT_TRUE(rt->Unmap(regions[i]).ok());
  s = rt->stats();
  EXPECT_EQ(s.regions, 0u);
  EXPECT_EQ(s.snapshots_live, 0u);
  EXPECT_EQ(s.snapshot_bytes, 0u);
  EXPECT_EQ(s.errors, 0u) << s.first_error;
  for (int i = 1; i < kRegions; i += 2) {
    EXPECT_TRUE(snaps[i]->released()) << i;
  }
}

}  // namespace
}  // namespace upager::testing
