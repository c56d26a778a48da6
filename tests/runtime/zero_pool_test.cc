// The pre-zeroed page pool (runtime/zero_pool.h): the pool on its own
// (leases, refill, budget charge, disable, teardown), then write faults
// through a Runtime (pages moved in, bytes right across many faults and
// threads, exhaustion, budget, fork), then the fallbacks when UFFDIO_MOVE
// is missing or fails, forced through the OS seam. Every byte the
// application wrote or read is checked against a shadow copy.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "pager/frame_budget.h"
#include "runtime/engine.h"
#include "runtime/os/userfaultfd.h"
#include "runtime/zero_pool.h"
#include "tests/runtime/os/fake_uffd.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using internal::Engine;
using internal::FrameBudget;
using internal::ZeroPool;
using Outcome = internal::os::UffdOutcome;

bool KernelHasMove() {
  internal::os::UffdOpenOptions open;
  open.wanted_features = internal::os::uffd_feature::kMove;
  auto u = internal::os::OpenUffd(open);
  return u.ok() && (*u)->has(internal::os::uffd_feature::kMove);
}

#define SKIP_WITHOUT_MOVE()                                            \
  do {                                                                 \
    if (!KernelHasMove()) UPAGER_SKIP_MISSING_FEATURE("UFFDIO_MOVE");  \
  } while (0)

bool AllZero(const std::byte* p, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    if (p[i] != std::byte{0}) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// The pool alone. A test "moves a page out" the way UFFDIO_MOVE leaves the
// pool: a hole (MADV_DONTNEED).

std::unique_ptr<ZeroPool> MakePool(uint64_t pages, FrameBudget* budget = nullptr) {
  ZeroPool::Options o;
  o.pages = pages;
  o.page_size = kPage;
  o.budget = budget;
  // Normal priority, refill at once: these tests check the protocol
  // under concurrency, and ctest runs them beside others that keep every
  // CPU busy.
  o.idle_priority = false;
  o.quiet_ns = 0;
  auto p = ZeroPool::Create(o);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

bool WaitFull(const ZeroPool& pool) {
  return Eventually([&] {
    return pool.stats().ready_pages == pool.stats().capacity_pages;
  });
}

void MoveOut(const ZeroPool::Lease& l) {
  ASSERT_EQ(madvise(reinterpret_cast<void*>(l.addr), l.pages * kPage,
                    MADV_DONTNEED),
            0);
}

TEST(ZeroPoolTest, StartsEmptyAndFillsOnTheFirstTake) {
  auto pool = MakePool(256);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->pages(), 256u);
  EXPECT_EQ(pool->chunk_pages(), ZeroPool::kChunkPages);
  // Asleep: nothing populated until someone wants pages.
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(pool->stats().pages_populated, 0u);
  const ZeroPool::Lease none = pool->Take(16);
  EXPECT_EQ(none.pages, 0u);
  ASSERT_TRUE(WaitFull(*pool));
  EXPECT_EQ(pool->stats().pages_populated, 256u);
  // Every page is there and reads as zero.
  const ZeroPool::Lease l = pool->Take(1000);
  ASSERT_EQ(l.pages, 256u);  // the whole area, in one contiguous run
  EXPECT_EQ(PresentPages(reinterpret_cast<std::byte*>(l.addr), l.pages), 256u);
  EXPECT_TRUE(AllZero(reinterpret_cast<std::byte*>(l.addr), l.pages * kPage));
  EXPECT_EQ(pool->Take(1).pages, 0u);
  MoveOut(l);
  pool->Finish(l, l.pages);
  ASSERT_TRUE(WaitFull(*pool));
  EXPECT_EQ(pool->stats().pages_populated, 512u);
}

TEST(ZeroPoolTest, RefillsOnlyOnceTheTakesStop) {
  ZeroPool::Options o;
  o.pages = 256;
  o.page_size = kPage;
  o.idle_priority = false;
  o.quiet_ns = 20'000'000;  // 20 ms: a Take every 1 ms is a stream
  auto made = ZeroPool::Create(o);
  ASSERT_TRUE(made.ok()) << made.status();
  ZeroPool& pool = **made;
  (void)pool.Take(1);
  ASSERT_TRUE(WaitFull(pool));
  const uint64_t populated = pool.stats().pages_populated;
  // A stream that empties the pool: no refill while it lasts.
  uint64_t taken = 0;
  for (int i = 0; i < 100; ++i) {
    const ZeroPool::Lease l = pool.Take(16);
    if (l.pages > 0) {
      MoveOut(l);
      pool.Finish(l, l.pages);
      taken += l.pages;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(taken, 256u);
  EXPECT_EQ(pool.stats().pages_populated, populated);
  EXPECT_EQ(pool.stats().ready_pages, 0u);
  // Quiet: it refills.
  ASSERT_TRUE(WaitFull(pool));
  EXPECT_EQ(pool.stats().pages_populated, populated + 256);
}

TEST(ZeroPoolTest, SmallPoolsAreOneChunk) {
  auto pool = MakePool(5);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->pages(), 5u);
  EXPECT_EQ(pool->chunk_pages(), 5u);
  auto odd = MakePool(ZeroPool::kChunkPages * 3 + 7);
  ASSERT_NE(odd, nullptr);
  EXPECT_EQ(odd->pages(), ZeroPool::kChunkPages * 3);  // whole chunks only
}

TEST(ZeroPoolTest, LeasesNeverWrapAndNeverOverlapAcrossThreads) {
  constexpr uint64_t kPages = 1024;
  auto pool = MakePool(kPages);
  ASSERT_NE(pool, nullptr);
  (void)pool->Take(1);
  ASSERT_TRUE(WaitFull(*pool));
  const auto base = pool->Take(kPages);  // learn the area's address
  ASSERT_EQ(base.pages, kPages);
  pool->Finish(base, 0);  // all kept: nothing to repopulate
  const uintptr_t area = base.addr;
  // Which thread holds each slot now: a second claim would be a bug.
  std::vector<std::atomic<int>> owner(kPages);
  std::atomic<uint64_t> taken{0}, bad{0}, nonzero{0}, holes{0};
  std::vector<std::thread> threads;
  for (int t = 1; t <= 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3000; ++i) {
        const ZeroPool::Lease l = pool->Take(1 + (i * 7 + t) % 40);
        if (l.pages == 0) {
          absl::SleepFor(absl::Microseconds(50));
          continue;
        }
        const uint64_t first = (l.addr - area) / kPage;
        if (first + l.pages > kPages) ++bad;  // ran past the area's end
        for (uint64_t p = first; p < first + l.pages && p < kPages; ++p) {
          int none = 0;
          if (!owner[p].compare_exchange_strong(none, t)) ++bad;
        }
        const auto* bytes = reinterpret_cast<const std::byte*>(l.addr);
        if (PresentPages(bytes, l.pages) != l.pages) ++holes;
        if (!AllZero(bytes, l.pages * kPage)) ++nonzero;
        // Every third lease is "moved" only in part; the rest stays.
        const uint64_t moved = i % 3 == 0 ? l.pages / 2 : l.pages;
        if (moved > 0) {
          madvise(reinterpret_cast<void*>(l.addr), moved * kPage,
                  MADV_DONTNEED);
        }
        for (uint64_t p = first; p < first + l.pages && p < kPages; ++p) {
          owner[p].store(0);
        }
        pool->Finish(l, moved);
        taken += l.pages;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(holes.load(), 0u) << "a lease handed out a page not populated";
  EXPECT_EQ(nonzero.load(), 0u);
  EXPECT_GT(taken.load(), 2 * kPages) << "the refill never caught up";
  // Emptied, it must come back complete.
  for (;;) {
    const ZeroPool::Lease l = pool->Take(kPages);
    if (l.pages == 0) break;
    MoveOut(l);
    pool->Finish(l, l.pages);
  }
  ASSERT_TRUE(WaitFull(*pool));
  EXPECT_EQ(PresentPages(reinterpret_cast<std::byte*>(area), kPages), kPages);
}

TEST(ZeroPoolTest, KeptPagesAreNeitherPopulatedNorChargedTwice) {
  FrameBudget budget(10000, 95, 85);
  auto pool = MakePool(128, &budget);
  ASSERT_NE(pool, nullptr);
  (void)pool->Take(1);
  ASSERT_TRUE(WaitFull(*pool));
  EXPECT_EQ(budget.used(), 128u);
  const ZeroPool::Lease l = pool->Take(128);
  ASSERT_EQ(l.pages, 128u);
  // 10 pages moved out, 118 left in the area.
  madvise(reinterpret_cast<void*>(l.addr), 10 * kPage, MADV_DONTNEED);
  pool->Finish(l, 10);
  EXPECT_LE(budget.used(), 128u);
  ASSERT_TRUE(WaitFull(*pool));
  EXPECT_EQ(pool->stats().pages_populated, 128u + 10u);
  EXPECT_EQ(budget.used(), 128u);
  EXPECT_TRUE(AllZero(reinterpret_cast<std::byte*>(l.addr), 128 * kPage));
}

TEST(ZeroPoolTest, BudgetCapsThePoolAtItsLowWatermark) {
  // low watermark: 85% of 1000 = 850 frames. With 700 taken by "the
  // application", the pool may hold at most 150: two chunks of 64.
  FrameBudget budget(1000, 95, 85);
  ASSERT_EQ(budget.TryReserve(700), 700u);
  auto pool = MakePool(512, &budget);
  ASSERT_NE(pool, nullptr);
  (void)pool->Take(1);
  EXPECT_TRUE(Eventually([&] { return pool->stats().ready_pages == 128; }));
  absl::SleepFor(absl::Milliseconds(50));  // a few back-off rounds
  EXPECT_EQ(pool->stats().ready_pages, 128u);
  EXPECT_EQ(budget.used(), 828u);
  EXPECT_LE(budget.used(), budget.low());
  // The application frees memory: the pool takes up the room.
  budget.Release(700);
  EXPECT_TRUE(WaitFull(*pool));
  EXPECT_EQ(budget.used(), 512u);
  pool.reset();
  EXPECT_EQ(budget.used(), 0u) << "the pool kept frames after it was gone";
}

TEST(ZeroPoolTest, DisableDropsThePagesAndTheirFrames) {
  FrameBudget budget(10000, 95, 85);
  auto pool = MakePool(256, &budget);
  ASSERT_NE(pool, nullptr);
  (void)pool->Take(1);
  ASSERT_TRUE(WaitFull(*pool));
  const ZeroPool::Lease held = pool->Take(8);  // a consumer mid-move
  ASSERT_EQ(held.pages, 8u);
  pool->Disable(EINVAL);
  EXPECT_EQ(pool->Take(8).pages, 0u);
  EXPECT_TRUE(Eventually([&] { return budget.used() == 0; }));
  EXPECT_TRUE(Eventually([&] {
    return PresentPages(reinterpret_cast<std::byte*>(held.addr), 8) == 0;
  }));
  // The late consumer reports its pages; nothing goes below zero.
  pool->Finish(held, 8);
  EXPECT_EQ(budget.used(), 0u);
  const ZeroPool::Stats s = pool->stats();
  EXPECT_TRUE(s.disabled);
  EXPECT_EQ(s.disable_error, EINVAL);
  EXPECT_EQ(s.ready_pages, 0u);
}

TEST(ZeroPoolTest, DestroyedWhileRefilling) {
  // 256 MiB takes the refill thread ~100 ms: destruction lands in the
  // middle of it and must wait for one chunk at most.
  for (int round = 0; round < 5; ++round) {
    FrameBudget budget(1 << 20, 95, 85);
    auto pool = MakePool((256ull << 20) / kPage, &budget);
    ASSERT_NE(pool, nullptr);
    (void)pool->Take(1);
    absl::SleepFor(absl::Milliseconds(round * 3));
    const absl::Time start = absl::Now();
    pool.reset();
    // Not a timing assertion: a hung refill thread would never get here.
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
    EXPECT_EQ(budget.used(), 0u);
  }
}

// ---------------------------------------------------------------------------
// Through a Runtime.

RuntimeOptions PoolOptions(uint64_t pool_bytes) {
  RuntimeOptions o;
  o.zero_pool_bytes = pool_bytes;
  return o;
}

// Writes one page of a scratch region so the pool wakes (a window of 16
// pages: smaller ones never ask the pool), and waits until it is full.
// Returns the Stats after.
template <typename Rt>
Stats WarmPool(Rt& rt) {
  auto r = rt.Map({.size = 16 * kPage, .name = "warm", .fault_around_pages = 16});
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return rt.stats();
  (*r)->data()[0] = std::byte{1};
  // The refill thread runs at idle priority: on a machine whose CPUs are
  // all busy it may take a while.
  EXPECT_TRUE(Eventually(
      [&] {
        const Stats s = rt.stats();
        return s.zero_pool_pages != 0 &&
               s.zero_pool_ready_pages == s.zero_pool_pages;
      },
      absl::Seconds(60)))
      << rt.stats().ToString();
  EXPECT_TRUE(rt.Unmap(*r).ok());
  return SettledStats(rt);
}

void ExpectPoolAccounting(const Stats& s) {
  // Every private zeroed page came from at most one of the two (windows
  // under 16 pages are copied without asking the pool: neither).
  EXPECT_LE(s.zero_pool_hits + s.zero_pool_misses, s.pages_zero_filled)
      << s.ToString();
  EXPECT_EQ(s.errors, 0u) << s.first_error;
}

TEST(ZeroPoolRuntimeTest, DefaultsAndState) {
  SKIP_WITHOUT_MOVE();
  {
    auto rt = MakeRuntime();
    ASSERT_NE(rt, nullptr);
    const Stats s = rt->stats();
    EXPECT_EQ(s.zero_pool_state, "on");
    EXPECT_EQ(s.zero_pool_pages, RuntimeOptions::kDefaultZeroPoolBytes / kPage);
    EXPECT_EQ(s.zero_pool_pages_populated, 0u) << "filled before any fault";
    EXPECT_TRUE(absl::StrContains(s.ToString(), "zero pool: on"));
  }
  {
    RuntimeOptions o;
    o.resident_budget_bytes = 4 << 20;
    o.swap.store = MemoryStore(16 << 20);
    auto rt = MakeRuntime(o);
    ASSERT_NE(rt, nullptr);
    EXPECT_EQ(rt->stats().zero_pool_state,
              "off: the default with a resident budget");
    EXPECT_EQ(rt->stats().zero_pool_pages, 0u);
  }
  {
    auto rt = MakeRuntime(PoolOptions(0));
    ASSERT_NE(rt, nullptr);
    EXPECT_EQ(rt->stats().zero_pool_state,
              "off: RuntimeOptions.zero_pool_bytes = 0");
  }
}

TEST(ZeroPoolRuntimeTest, BadSizesAreRefusedNamingTheValue) {
  auto misaligned = Runtime::Create(PoolOptions(kPage + 1));
  ASSERT_FALSE(misaligned.ok());
  EXPECT_EQ(misaligned.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(misaligned.status().message(),
                                "zero_pool_bytes = 4097 is not a multiple"))
      << misaligned.status();
  auto huge = Runtime::Create(PoolOptions(RuntimeOptions::kMaxZeroPoolBytes + kPage));
  ASSERT_FALSE(huge.ok());
  EXPECT_TRUE(absl::StrContains(huge.status().message(), "kMaxZeroPoolBytes"))
      << huge.status();
  RuntimeOptions o = PoolOptions(8 << 20);
  o.resident_budget_bytes = 4 << 20;
  o.swap.store = MemoryStore(16 << 20);
  auto over = Runtime::Create(o);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(over.status().message(),
                                "zero_pool_bytes = 8388608 is larger than "
                                "resident_budget_bytes = 4194304"))
      << over.status();
}

TEST(ZeroPoolRuntimeTest, WriteFaultsMovePoolPagesIn) {
  SKIP_WITHOUT_MOVE();
  auto rt = MakeRuntime(PoolOptions(4 << 20));
  ASSERT_NE(rt, nullptr);
  const Stats warm = WarmPool(*rt);
  constexpr uint64_t kPages = 512;  // half the pool
  auto r = rt->Map({.size = kPages * kPage, .name = "hits"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* p = (*r)->data();
  // Even pages written (a fault each, fault-around fills the rest with
  // pool pages too), then everything read back.
  for (uint64_t page = 0; page < kPages; page += 2) FillPage(p + page * kPage, page, 1);
  for (uint64_t page = 0; page < kPages; ++page) {
    ASSERT_TRUE(PageIs(p + page * kPage, page, page % 2 == 0 ? 1 : 0));
  }
  // Written again over pages moved in earlier: plain memory now.
  for (uint64_t page = 1; page < kPages; page += 2) FillPage(p + page * kPage, page, 2);
  for (uint64_t page = 0; page < kPages; ++page) {
    ASSERT_TRUE(PageIs(p + page * kPage, page, page % 2 == 0 ? 1 : 2));
  }
  const Stats s = SettledStats(*rt);
  ExpectPoolAccounting(s);
  EXPECT_EQ(s.zero_pool_hits - warm.zero_pool_hits, kPages)
      << "a full pool should have served every page: " << s.ToString();
  EXPECT_EQ(s.zero_pool_misses, warm.zero_pool_misses);
  EXPECT_EQ(s.zero_pool_move_failures, 0u);
  EXPECT_EQ(s.resident_pages, kPages);
  EXPECT_TRUE(rt->Unmap(*r).ok());
}

// Drained by a stream several times its size, in each fault mode, the pool
// fills up again once the faults stop: every chunk handed out is handed
// back, whichever path (service thread or SIGBUS handler) took it. All but
// the chunk the stream ended in: its untaken pages stay ready, and it is
// refilled only once all of it was taken (kChunkPages, 64 pages).
TEST(ZeroPoolRuntimeTest, RefillsAfterAStreamDrainsIt) {
  SKIP_WITHOUT_MOVE();
  for (const FaultMode mode : {FaultMode::kThread, FaultMode::kSignal}) {
    RuntimeOptions o = PoolOptions(4 << 20);
    o.fault_mode = mode;
    auto rt = Runtime::Create(o);
    ASSERT_TRUE(rt.ok()) << rt.status();
    const Stats warm = WarmPool(**rt);
    constexpr uint64_t kPages = 4096 + 40;  // four pools' worth and a bit
    for (int round = 0; round < 2; ++round) {
      auto r = (*rt)->Map({.size = kPages * kPage, .name = "stream"});
      ASSERT_TRUE(r.ok()) << r.status();
      std::byte* p = (*r)->data();
      for (uint64_t page = 0; page < kPages; ++page) {
        FillPage(p + page * kPage, page, 1 + round);
      }
      for (uint64_t page = 0; page < kPages; page += 7) {
        ASSERT_TRUE(PageIs(p + page * kPage, page, 1 + round));
      }
      EXPECT_TRUE((*rt)->Unmap(*r).ok());
      EXPECT_TRUE(Eventually(
          [&] {
            const Stats s = (*rt)->stats();
            return s.zero_pool_ready_pages + 64 >= s.zero_pool_pages;
          },
          absl::Seconds(20)))
          << "mode " << static_cast<int>(mode) << " round " << round << ": "
          << (*rt)->stats().ToString();
    }
    const Stats s = SettledStats(**rt);
    EXPECT_GT(s.zero_pool_hits, warm.zero_pool_hits) << s.ToString();
    ExpectPoolAccounting(s);
  }
}

TEST(ZeroPoolRuntimeTest, WindowsUnderSixteenPagesAreCopied) {
  // A move's fixed cost outweighs a copy below 16 pages (missing_fault.cc).
  SKIP_WITHOUT_MOVE();
  // No growth past a region's own window: windows stay fixed.
  RuntimeOptions o = PoolOptions(1 << 20);
  o.fault_around_max_pages = 1;
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  const Stats warm = WarmPool(*rt);
  for (const uint32_t window : {1u, 8u, 15u}) {
    SCOPED_TRACE(window);
    auto r = rt->Map({.size = 128 * kPage,
                      .name = "small",
                      .fault_around_pages = window});
    ASSERT_TRUE(r.ok());
    for (uint64_t page = 0; page < 128; ++page) {
      FillPage((*r)->data() + page * kPage, page, 1);
    }
    for (uint64_t page = 0; page < 128; ++page) {
      ASSERT_TRUE(PageIs((*r)->data() + page * kPage, page, 1));
    }
    EXPECT_TRUE(rt->Unmap(*r).ok());
  }
  const Stats s = SettledStats(*rt);
  EXPECT_EQ(s.zero_pool_hits, warm.zero_pool_hits) << s.ToString();
  EXPECT_EQ(s.zero_pool_misses, warm.zero_pool_misses);
  EXPECT_EQ(s.pages_zero_filled - warm.pages_zero_filled, 3 * 128u);
  EXPECT_EQ(s.zero_pool_ready_pages, s.zero_pool_pages);
}

TEST(ZeroPoolRuntimeTest, ReadFaultsStillMapTheSharedZeroPage) {
  SKIP_WITHOUT_MOVE();
  auto rt = MakeRuntime(PoolOptions(1 << 20));
  ASSERT_NE(rt, nullptr);
  const Stats warm = WarmPool(*rt);
  auto r = rt->Map({.size = 64 * kPage, .name = "reads"});
  ASSERT_TRUE(r.ok());
  for (uint64_t page = 0; page < 64; ++page) {
    ASSERT_TRUE(PageIs((*r)->data() + page * kPage, page, 0));
  }
  const Stats s = SettledStats(*rt);
  EXPECT_EQ(s.zero_pool_hits, warm.zero_pool_hits);
  EXPECT_EQ(s.zero_mapped_pages, 64u);
  EXPECT_EQ(s.resident_pages, 0u);
  EXPECT_TRUE(rt->Unmap(*r).ok());
}

TEST(ZeroPoolRuntimeTest, ManyThreadsWriteAndReadBack) {
  SKIP_WITHOUT_MOVE();
  RuntimeOptions o = PoolOptions(8 << 20);
  o.service_threads = 2;
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  (void)WarmPool(*rt);
  constexpr int kThreads = 4;
  constexpr uint64_t kPages = (64ull << 20) / kPage;  // 8x the pool
  auto r = rt->Map({.size = kPages * kPage, .name = "threads"});
  ASSERT_TRUE(r.ok());
  std::byte* p = (*r)->data();
  // Thread t owns pages with page % kThreads == t: every window of
  // fault-around is shared by all threads, so their faults race for it.
  // Two passes: first writes, then rewrites of what the first left zero.
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t page = t; page < kPages; page += kThreads) {
        if (page % 3 != 0) FillPage(p + page * kPage, page, 1);
      }
      for (uint64_t page = t; page < kPages; page += kThreads) {
        if (page % 3 == 0) FillPage(p + page * kPage, page, 2);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (uint64_t page = 0; page < kPages; ++page) {
    ASSERT_TRUE(PageIs(p + page * kPage, page, page % 3 == 0 ? 2 : 1));
  }
  const Stats s = SettledStats(*rt);
  ExpectPoolAccounting(s);
  EXPECT_GT(s.zero_pool_hits, 0u) << s.ToString();
  EXPECT_EQ(s.resident_pages, kPages);
  EXPECT_TRUE(rt->Unmap(*r).ok());
}

TEST(ZeroPoolRuntimeTest, TinyPoolRunsOutAndFallsBackToCopy) {
  SKIP_WITHOUT_MOVE();
  auto rt = MakeRuntime(PoolOptions(8 * kPage));
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->stats().zero_pool_pages, 8u);
  constexpr uint64_t kPages = 4096;
  auto r = rt->Map({.size = kPages * kPage, .name = "tiny"});
  ASSERT_TRUE(r.ok());
  std::byte* p = (*r)->data();
  for (uint64_t page = 0; page < kPages; ++page) FillPage(p + page * kPage, page, 1);
  for (uint64_t page = 0; page < kPages; ++page) {
    ASSERT_TRUE(PageIs(p + page * kPage, page, 1));
  }
  const Stats s = SettledStats(*rt);
  ExpectPoolAccounting(s);
  EXPECT_GT(s.zero_pool_misses, kPages / 2) << s.ToString();
  EXPECT_EQ(s.pages_zero_filled, kPages);
  EXPECT_EQ(s.zero_pool_move_failures, 0u);
  EXPECT_TRUE(rt->Unmap(*r).ok());
}

TEST(ZeroPoolRuntimeTest, PoolPagesCountAgainstTheBudget) {
  SKIP_WITHOUT_MOVE();
  constexpr uint64_t kBudgetPages = 512;  // 2 MiB
  RuntimeOptions o = PoolOptions(256 * kPage);
  o.resident_budget_bytes = kBudgetPages * kPage;
  o.swap.store = MemoryStore(64 << 20);
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  const Stats warm = WarmPool(*rt);
  EXPECT_EQ(warm.zero_pool_ready_pages, 256u);
  EXPECT_EQ(warm.budget_used_pages, 256u) << warm.ToString();
  constexpr uint64_t kPages = 4 * kBudgetPages;
  auto r = rt->Map({.size = kPages * kPage, .name = "budget"});
  ASSERT_TRUE(r.ok());
  std::byte* p = (*r)->data();
  std::atomic<bool> done{false};
  std::atomic<uint64_t> worst{0};
  std::thread watcher([&] {
    while (!done.load()) {
      const Stats s = rt->stats();
      worst = std::max<uint64_t>(worst.load(), s.budget_used_pages);
      absl::SleepFor(absl::Milliseconds(1));
    }
  });
  for (int pass = 1; pass <= 2; ++pass) {
    for (uint64_t page = 0; page < kPages; ++page) {
      FillPage(p + page * kPage, page, pass);
    }
  }
  done = true;
  watcher.join();
  for (uint64_t page = 0; page < kPages; ++page) {
    ASSERT_TRUE(PageIs(p + page * kPage, page, 2));
  }
  // (Not SettledStats: swap-ins record no fill latency.)
  Stats s;
  EXPECT_TRUE(Eventually([&] {
    s = rt->stats();
    return s.zero_pool_hits + s.zero_pool_misses <= s.pages_zero_filled &&
           s.resident_pages <= s.budget_used_pages;
  }));
  ExpectPoolAccounting(s);
  EXPECT_GT(s.pages_swapped_out, 0u);
  EXPECT_EQ(s.over_budget_pages, 0u) << s.ToString();
  EXPECT_LE(worst.load(), kBudgetPages);
  // What the budget holds is the region's pages plus the pool's (once
  // the evictor's writes in flight have settled).
  EXPECT_TRUE(Eventually([&] {
    const Stats now = rt->stats();
    return now.budget_used_pages >= now.resident_pages &&
           now.budget_used_pages <= now.resident_pages + now.zero_pool_pages;
  })) << rt->stats().ToString();
  EXPECT_LE(rt->stats().budget_used_pages, kBudgetPages);
  EXPECT_TRUE(rt->Unmap(*r).ok());
  rt.reset();
}

TEST(ZeroPoolRuntimeTest, ForkChildLeavesThePoolMovable) {
  // MADV_WIPEONFORK: the child does not share the pool's pages, so the
  // parent can still move every one of them (a shared page gives EBUSY).
  SKIP_WITHOUT_MOVE();
  auto rt = MakeRuntime(PoolOptions(1 << 20));
  ASSERT_NE(rt, nullptr);
  (void)WarmPool(*rt);
  auto r = rt->Map({.size = 512 * kPage, .name = "fork"});
  ASSERT_TRUE(r.ok());
  std::byte* p = (*r)->data();
  for (uint64_t page = 0; page < 64; ++page) FillPage(p + page * kPage, page, 1);
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(5);
    // The child's copy of the region is plain memory: the pages written
    // before the fork, zero after them, and writable.
    for (uint64_t page = 0; page < 64; ++page) {
      if (!PageIs(p + page * kPage, page, 1)) _exit(2);
    }
    for (uint64_t page = 64; page < 128; ++page) {
      if (!PageIs(p + page * kPage, page, 0)) _exit(3);
      FillPage(p + page * kPage, page, 3);
      if (!PageIs(p + page * kPage, page, 3)) _exit(4);
    }
    _exit(0);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const Stats before = SettledStats(*rt);
  for (uint64_t page = 64; page < 512; ++page) FillPage(p + page * kPage, page, 2);
  for (uint64_t page = 0; page < 512; ++page) {
    ASSERT_TRUE(PageIs(p + page * kPage, page, page < 64 ? 1 : 2));
  }
  const Stats after = SettledStats(*rt);
  ExpectPoolAccounting(after);
  EXPECT_GT(after.zero_pool_hits, before.zero_pool_hits);
  EXPECT_EQ(after.zero_pool_move_failures, 0u) << after.ToString();
  EXPECT_TRUE(rt->Unmap(*r).ok());
}

TEST(ZeroPoolRuntimeTest, DestroyedWhileTheRefillThreadPopulates) {
  SKIP_WITHOUT_MOVE();
  for (int round = 0; round < 4; ++round) {
    auto rt = MakeRuntime(PoolOptions(256 << 20));
    ASSERT_NE(rt, nullptr);
    auto r = rt->Map({.size = 64 * kPage, .name = "short-lived"});
    ASSERT_TRUE(r.ok());
    FillPage((*r)->data(), 0, 1);  // wakes the refill thread
    ASSERT_TRUE(PageIs((*r)->data(), 0, 1));
    absl::SleepFor(absl::Milliseconds(round * 5));
    rt.reset();
  }
}

// ---------------------------------------------------------------------------
// Fallbacks, forced through the OS seam.

struct Harness {
  FakeUffd* fake = nullptr;
  std::unique_ptr<Engine> engine;
};

Harness Make(const RuntimeOptions& options,
             const std::function<void(FakeUffd*)>& before_create = nullptr) {
  internal::os::UffdOpenOptions open;
  open.wanted_features = Engine::WantedFeatures();
  auto real = internal::os::OpenUffd(open);
  EXPECT_TRUE(real.ok()) << real.status();
  auto fake = std::make_unique<FakeUffd>(std::move(*real));
  Harness h;
  h.fake = fake.get();
  if (before_create) before_create(h.fake);
  auto e = Engine::Create(options, std::move(fake));
  EXPECT_TRUE(e.ok()) << e.status();
  if (e.ok()) h.engine = std::move(*e);
  return h;
}

// Writes every page of a fresh region in order (the window grows, so the
// moves are large and small), reads all of it back, and returns the Stats.
Stats WriteRegionAndCheck(Engine& engine, uint64_t pages, uint64_t gen) {
  auto r = engine.Map({.size = pages * kPage, .name = "seam"});
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return engine.stats();
  std::byte* p = (*r)->data();
  for (uint64_t page = 0; page < pages; ++page) {
    if (page % 5 != 4) FillPage(p + page * kPage, page, gen);
  }
  for (uint64_t page = 0; page < pages; ++page) {
    EXPECT_TRUE(PageIs(p + page * kPage, page, page % 5 != 4 ? gen : 0));
  }
  const Stats s = SettledStats(engine);
  EXPECT_TRUE(engine.Unmap(*r).ok());
  return s;
}

TEST(ZeroPoolFallbackTest, WithoutMoveThePoolNeverStarts) {
  Harness h = Make(PoolOptions(1 << 20), [](FakeUffd* f) { f->HideMove(); });
  ASSERT_NE(h.engine, nullptr);
  Stats s = h.engine->stats();
  EXPECT_TRUE(absl::StartsWith(s.zero_pool_state, "off: this kernel lacks UFFDIO_MOVE"))
      << s.zero_pool_state;
  EXPECT_EQ(s.zero_pool_pages, 0u);
  s = WriteRegionAndCheck(*h.engine, 2048, 1);
  EXPECT_EQ(s.zero_pool_hits, 0u);
  EXPECT_EQ(s.zero_pool_misses, 0u);  // no pool: nothing to miss
  EXPECT_GT(s.pages_zero_filled, 0u);
  EXPECT_EQ(h.fake->moves(), 0);
  EXPECT_EQ(s.errors, 0u) << s.first_error;
}

TEST(ZeroPoolFallbackTest, MovesRefusedOutrightDisableThePool) {
  SKIP_WITHOUT_MOVE();
  for (const int err : {EINVAL, EOPNOTSUPP, EPERM}) {
    SCOPED_TRACE(err);
    // A fixed 16-page window: enough faults to reach the limit.
    RuntimeOptions o = PoolOptions(1 << 20);
    o.fault_around_max_pages = 16;
    Harness h = Make(o);
    ASSERT_NE(h.engine, nullptr);
    (void)WarmPool(*h.engine);
    h.fake->FailAllMoves(err);
    const Stats s = WriteRegionAndCheck(*h.engine, 4096, 1);
    ExpectPoolAccounting(s);
    EXPECT_TRUE(absl::StartsWith(s.zero_pool_state, "disabled: moves kept failing"))
        << s.zero_pool_state;
    EXPECT_EQ(s.zero_pool_move_failures, 16u);
    EXPECT_EQ(h.fake->moves_injected(), 16);
    EXPECT_EQ(s.zero_pool_ready_pages, 0u);
    // After the disable, faults do not even try.
    const int moves = h.fake->moves();
    const Stats again = WriteRegionAndCheck(*h.engine, 256, 2);
    EXPECT_EQ(h.fake->moves(), moves);
    ExpectPoolAccounting(again);
  }
}

TEST(ZeroPoolFallbackTest, TransientMoveFailuresFallBackAndTheHitsResume) {
  SKIP_WITHOUT_MOVE();
  struct Case {
    Outcome outcome;
    int err;
    uint64_t partial;
  };
  for (const Case c : {Case{Outcome::kFailed, EBUSY, 0},
                       Case{Outcome::kFailed, EBUSY, 3},
                       Case{Outcome::kGone, ENOENT, 0},
                       Case{Outcome::kGone, ENOENT, 5},
                       Case{Outcome::kFailed, EOPNOTSUPP, 0}}) {
    SCOPED_TRACE(::testing::Message() << "errno " << c.err << " after "
                                    << c.partial << " pages");
    // 2048 pages: the six failed leases (at most 752 pages) leave some,
    // so the hits resume without waiting for the refill thread (which may
    // not get a CPU on a busy machine).
    Harness h = Make(PoolOptions(8 << 20));
    ASSERT_NE(h.engine, nullptr);
    (void)WarmPool(*h.engine);
    h.fake->InjectMoveFailures(6, c.outcome, c.err, c.partial);
    const Stats s = WriteRegionAndCheck(*h.engine, 4096, 1);
    ExpectPoolAccounting(s);
    EXPECT_EQ(h.fake->moves_injected(), 6);
    EXPECT_EQ(s.zero_pool_move_failures, 6u);
    EXPECT_EQ(s.zero_pool_state, "on");
    EXPECT_GT(s.zero_pool_misses, 0u);
    EXPECT_GT(s.zero_pool_hits, 0u) << s.ToString();
  }
}

TEST(ZeroPoolFallbackTest, MoveExistsAndRetryAreHandledLikeACopy) {
  SKIP_WITHOUT_MOVE();
  for (const Outcome o : {Outcome::kExists, Outcome::kRetry}) {
    for (const uint64_t partial : {uint64_t{0}, uint64_t{4}}) {
      SCOPED_TRACE(::testing::Message() << internal::os::UffdOutcomeName(o)
                                      << " after " << partial << " pages");
      Harness h = Make(PoolOptions(2 << 20));
      ASSERT_NE(h.engine, nullptr);
      (void)WarmPool(*h.engine);
      h.fake->InjectMoveFailures(8, o, o == Outcome::kExists ? EEXIST : EAGAIN,
                                 partial);
      const Stats s = WriteRegionAndCheck(*h.engine, 2048, 1);
      ExpectPoolAccounting(s);
      EXPECT_EQ(h.fake->moves_injected(), 8);
      // Neither says anything about the pool: no failure counted.
      EXPECT_EQ(s.zero_pool_move_failures, 0u);
      EXPECT_EQ(s.zero_pool_state, "on");
    }
  }
}

}  // namespace
}  // namespace upager::testing
