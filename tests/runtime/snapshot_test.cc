// Copy-on-write snapshots end to end on the real kernel: every test reads
// bytes back and compares them with a shadow copy taken at snapshot time.
#include "upager/snapshot.h"

#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/engine.h"
#include "runtime/os/userfaultfd.h"
#include "tests/runtime/os/forwarding_uffd.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/runtime/snapshot_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;


TEST(SnapshotTest, PointInTimeWhileTheRegionChanges) {
  constexpr uint64_t kPages = 2048;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "snap"});
  ASSERT_TRUE(region.ok()) << region.status();
  std::byte* base = (*region)->data();
  std::vector<uint64_t> gens(kPages, 0);
  // Three quarters written, one eighth read-faulted (zero page), the rest
  // never touched.
  for (uint64_t p = 0; p < kPages * 3 / 4; ++p) {
    FillPage(base + p * kPage, p, 1);
    gens[p] = 1;
  }
  volatile std::byte sink{};
  for (uint64_t p = kPages * 3 / 4; p < kPages * 7 / 8; ++p) {
    sink = base[p * kPage];
  }
  (void)sink;
  TAKE_OR_SKIP(snap, *region);
  const std::vector<uint64_t> at_snapshot = gens;
  // Rewrite everything, touched or not.
  for (uint64_t p = 0; p < kPages; ++p) {
    FillPage(base + p * kPage, p, 2);
    gens[p] = 2;
  }
  EXPECT_TRUE(SnapshotIs(*snap, at_snapshot));
  EXPECT_TRUE(RegionIs(base, gens));
  const Stats s = rt->stats();
  EXPECT_EQ(s.snapshots_taken, 1u);
  EXPECT_EQ(s.snapshots_live, 1u);
  // Written pages were copied; zero-mapped ones recorded as zero, untouched
  // ones cost nothing at all.
  EXPECT_EQ(s.snapshot_copies, kPages * 3 / 4);
  // (Fault-around may have zero-mapped some never-touched pages too.)
  EXPECT_GE(s.snapshot_zero_copies, kPages / 8);
  EXPECT_LE(s.snapshot_zero_copies, kPages / 4);
  EXPECT_EQ(s.snapshot_bytes, kPages * 3 / 4 * kPage);
  // A partial, unaligned read.
  std::vector<std::byte> part(kPage + 100);
  ASSERT_TRUE(snap->Read(5 * kPage + 7, absl::MakeSpan(part)).ok());
  for (size_t i = 0; i < part.size(); ++i) {
    const uint64_t at = 5 * kPage + 7 + i;
    const uint64_t page = at / kPage;
    const uint64_t off = at % kPage;
    const unsigned char want = off % 64 == 0 ? Byte(page, off, 1) : 0;
    ASSERT_EQ(static_cast<unsigned char>(part[i]), want) << i;
  }
  ASSERT_TRUE(snap->Release().ok());
  EXPECT_TRUE(snap->released());
  EXPECT_EQ(rt->stats().snapshot_bytes, 0u);
  // After the last release the region is unprotected: writes fault no more.
  const uint64_t wp_before = SettledStats(*rt).faults_write_protect;
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 3);
  EXPECT_EQ(SettledStats(*rt).faults_write_protect, wp_before);
}

TEST(SnapshotTest, ConcurrentWritersAndReaders) {
  constexpr uint64_t kPages = 4096;
  constexpr int kThreads = 4;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "busy"});
  ASSERT_TRUE(region.ok());
  std::byte* base = (*region)->data();
  std::vector<uint64_t> gens(kPages, 0);
  for (uint64_t p = 0; p < kPages; p += 2) {
    FillPage(base + p * kPage, p, 1);
    gens[p] = 1;
  }
  TAKE_OR_SKIP(snap, *region);
  // Writers rewrite random pages (each thread its own stripe, so the final
  // content is known); a reader checks the snapshot all along.
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  std::vector<std::vector<uint64_t>> final_gen(kThreads,
                                               std::vector<uint64_t>(kPages));
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      for (int i = 0; i < 20000; ++i) {
        const uint64_t p = (rng() % (kPages / kThreads)) * kThreads + t;
        const uint64_t gen = 2 + i % 5;
        FillPage(base + p * kPage, p, gen);
        final_gen[t][p] = gen;
      }
    });
  }
  int checks = 0;
  std::thread reader([&] {
    while (!stop.load()) {
      EXPECT_TRUE(SnapshotIs(*snap, gens));
      ++checks;
    }
  });
  for (auto& w : writers) w.join();
  stop.store(true);
  reader.join();
  EXPECT_GT(checks, 0);
  EXPECT_TRUE(SnapshotIs(*snap, gens));
  std::vector<uint64_t> now = gens;
  for (int t = 0; t < kThreads; ++t) {
    for (uint64_t p = t; p < kPages; p += kThreads) {
      if (final_gen[t][p] != 0) now[p] = final_gen[t][p];
    }
  }
  EXPECT_TRUE(RegionIs(base, now));
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

// The contract's recipe for a consistent multi-page view: writers pause
// for the TakeSnapshot call only, and run flat out between snapshots (and
// while older snapshots are read).
TEST(SnapshotTest, SnapshotsTakenBetweenPausesOfRunningWriters) {
  constexpr uint64_t kPages = 2048;
  constexpr int kThreads = 3;
  constexpr int kSnapshots = 6;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "pauses"});
  ASSERT_TRUE(region.ok());
  std::byte* base = (*region)->data();
  // gen[p] is written by the one thread owning page p (p % kThreads).
  std::vector<std::atomic<uint64_t>> gen(kPages);
  std::atomic<bool> pause{false}, stop{false};
  std::atomic<int> paused{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      uint64_t g = 1;
      while (!stop.load()) {
        if (pause.load()) {
          paused.fetch_add(1);
          while (pause.load() && !stop.load()) std::this_thread::yield();
          paused.fetch_sub(1);
          continue;
        }
        const uint64_t p = (rng() % (kPages / kThreads)) * kThreads + t;
        g = g % 200 + 1;
        FillPage(base + p * kPage, p, g);
        gen[p].store(g);
      }
    });
  }
  std::vector<std::unique_ptr<Snapshot>> snaps;
  std::vector<std::vector<uint64_t>> shadows;
  for (int i = 0; i < kSnapshots; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    pause.store(true);
    while (paused.load() != kThreads) std::this_thread::yield();
    std::vector<uint64_t> shadow(kPages);
    for (uint64_t p = 0; p < kPages; ++p) shadow[p] = gen[p].load();
    auto s = (*region)->TakeSnapshot();
    pause.store(false);
    if (absl::IsFailedPrecondition(s.status())) {
      stop.store(true);
      for (auto& w : writers) w.join();
      UPAGER_SKIP_MISSING_FEATURE(s.status().ToString());
    }
    ASSERT_TRUE(s.ok()) << s.status();
    snaps.push_back(std::move(*s));
    shadows.push_back(std::move(shadow));
    // Older snapshots read right while the writers run.
    EXPECT_TRUE(SnapshotIs(*snaps[i / 2], shadows[i / 2]));
  }
  stop.store(true);
  for (auto& w : writers) w.join();
  for (int i = 0; i < kSnapshots; ++i) {
    EXPECT_TRUE(SnapshotIs(*snaps[i], shadows[i])) << "snapshot " << i;
  }
  // Release in a scrambled order; the rest stay exact.
  for (int i : {3, 0, 5}) ASSERT_TRUE(snaps[i]->Release().ok());
  for (int i : {1, 2, 4}) EXPECT_TRUE(SnapshotIs(*snaps[i], shadows[i]));
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

TEST(SnapshotTest, OverlappingSnapshotsShareCopiesAndRestore) {
  constexpr uint64_t kPages = 512;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "multi"});
  ASSERT_TRUE(region.ok());
  std::byte* base = (*region)->data();
  std::vector<uint64_t> g1(kPages, 0);
  for (uint64_t p = 0; p < kPages / 2; ++p) {
    FillPage(base + p * kPage, p, 1);
    g1[p] = 1;
  }
  TAKE_OR_SKIP(s1, *region);
  TAKE_OR_SKIP(s2, *region);  // same content as s1
  std::vector<uint64_t> g3 = g1;
  for (uint64_t p = 0; p < kPages; p += 3) {
    FillPage(base + p * kPage, p, 2);
    g3[p] = 2;
  }
  // Pages written once after two snapshots were copied once.
  uint64_t written_present = 0;
  for (uint64_t p = 0; p < kPages / 2; p += 3) ++written_present;
  EXPECT_EQ(rt->stats().snapshot_copies, written_present);
  TAKE_OR_SKIP(s3, *region);
  std::vector<uint64_t> g4 = g3;
  for (uint64_t p = 1; p < kPages; p += 4) {
    FillPage(base + p * kPage, p, 3);
    g4[p] = 3;
  }
  EXPECT_TRUE(SnapshotIs(*s1, g1));
  EXPECT_TRUE(SnapshotIs(*s2, g1));
  EXPECT_TRUE(SnapshotIs(*s3, g3));
  EXPECT_TRUE(RegionIs(base, g4));

  // Changed between s1 and s3: exactly the pages rewritten in between.
  std::vector<uint64_t> changed;
  ASSERT_TRUE(s3->ForEachChangedSince(*s1, [&](uint64_t p) {
                  changed.push_back(p);
                }).ok());
  // Every rewritten page is reported; anything else reported is a page
  // first mapped in between (fault-around) that reads zero in both.
  std::vector<bool> reported(kPages, false);
  for (uint64_t p : changed) reported[p] = true;
  for (uint64_t p = 0; p < kPages; ++p) {
    if (p % 3 == 0) {
      EXPECT_TRUE(reported[p]) << p;
    } else if (reported[p]) {
      EXPECT_EQ(g1[p], 0u) << p;
      EXPECT_EQ(g3[p], 0u) << p;
    }
  }
  EXPECT_EQ(s1->ForEachChangedSince(*s3, [](uint64_t) {}).code(),
            absl::StatusCode::kInvalidArgument);

  // Releasing the middle one keeps the others whole.
  ASSERT_TRUE(s2->Release().ok());
  EXPECT_TRUE(SnapshotIs(*s1, g1));
  EXPECT_TRUE(SnapshotIs(*s3, g3));

  // Roll back to s1: only changed pages are rewritten; s3 keeps its view.
  ASSERT_TRUE((*region)->Restore(*s1).ok());
  EXPECT_TRUE(RegionIs(base, g1));
  EXPECT_TRUE(SnapshotIs(*s3, g3));
  EXPECT_TRUE(SnapshotIs(*s1, g1));
  EXPECT_GT(rt->stats().restore_pages, 0u);
  EXPECT_LE(rt->stats().restore_pages, kPages);
  // And forward again to s3.
  ASSERT_TRUE((*region)->Restore(*s3).ok());
  EXPECT_TRUE(RegionIs(base, g3));

  ASSERT_TRUE(s1->Release().ok());
  ASSERT_TRUE(s3->Release().ok());
  EXPECT_EQ(rt->stats().snapshot_bytes, 0u);
  EXPECT_EQ(rt->stats().snapshots_live, 0u);
}

TEST(SnapshotTest, SwappedOutPagesUnderABudget) {
  constexpr uint64_t kPages = 4096;  // 16 MiB through a 4 MiB budget
  RuntimeOptions o;
  o.resident_budget_bytes = 1024 * kPage;
  o.swap.store = MemoryStore(3 * kPages * kPage);
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "paged"});
  ASSERT_TRUE(region.ok());
  std::byte* base = (*region)->data();
  std::vector<uint64_t> g1(kPages);
  for (uint64_t p = 0; p < kPages; ++p) {
    FillPage(base + p * kPage, p, 1);
    g1[p] = 1;
  }
  ASSERT_GT(rt->stats().pages_swapped_out, 0u);
  TAKE_OR_SKIP(snap, *region);
  std::vector<uint64_t> g2 = g1;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 6000; ++i) {
    const uint64_t p = rng() % kPages;
    g2[p] = 2 + i % 3;
    FillPage(base + p * kPage, p, g2[p]);
  }
  EXPECT_TRUE(SnapshotIs(*snap, g1));
  EXPECT_TRUE(RegionIs(base, g2));
  const Stats s = rt->stats();
  EXPECT_GT(s.snapshot_slot_copies + s.snapshot_copies, 0u);
  // Roll back with much of the region swapped out.
  ASSERT_TRUE((*region)->Restore(*snap).ok());
  EXPECT_TRUE(RegionIs(base, g1));
  ASSERT_TRUE(snap->Release().ok());
  EXPECT_TRUE(RegionIs(base, g1));
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

TEST(SnapshotTest, CopiesCountAgainstTheBudgetAndSpillToTheStore) {
  constexpr uint64_t kPages = 4096;   // 16 MiB
  constexpr uint64_t kBudget = 1024;  // 4 MiB: the copies alone need 16
  RuntimeOptions o;
  o.resident_budget_bytes = kBudget * kPage;
  o.swap.store = MemoryStore(4 * kPages * kPage);
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "spill"});
  ASSERT_TRUE(region.ok());
  std::byte* base = (*region)->data();
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 1);
  TAKE_OR_SKIP(snap, *region);
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 2);
  const Stats s = rt->stats();
  EXPECT_GT(s.snapshot_spilled_copies, 0u);
  EXPECT_LE(s.snapshot_bytes, kBudget * kPage);
  EXPECT_EQ(s.over_budget_pages, 0u);
  EXPECT_TRUE(SnapshotIs(*snap, std::vector<uint64_t>(kPages, 1)));
  EXPECT_TRUE(RegionIs(base, std::vector<uint64_t>(kPages, 2)));
  ASSERT_TRUE(snap->Release().ok());
  EXPECT_TRUE(RegionIs(base, std::vector<uint64_t>(kPages, 2)));
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

// A drop racing with paging I/O: pages in flight (a swap-in, a write-back)
// when the application drops them must read as zero in a later snapshot,
// not as the bytes the I/O carried. (Found by `upager tour` under load.)
TEST(SnapshotTest, PagesDroppedWhileInFlightAreAbsentFromLaterSnapshots) {
  constexpr uint64_t kPages = 4096;
  for (int trial = 0; trial < 6; ++trial) {
    RuntimeOptions o;
    o.resident_budget_bytes = 1024 * kPage;
    o.swap.store = MemoryStore(4 * kPages * kPage);
    auto rt = MakeRuntime(o);
    ASSERT_NE(rt, nullptr);
    auto region = rt->Map({.size = kPages * kPage, .name = "inflight"});
    ASSERT_TRUE(region.ok());
    std::byte* base = (*region)->data();
    std::vector<uint64_t> g(kPages, 1);
    for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 1);
    TAKE_OR_SKIP(s1, *region);
    std::mt19937_64 rng(trial);
    for (int i = 0; i < 1500; ++i) {
      const uint64_t p = rng() % kPages;
      FillPage(base + p * kPage, p, 5);
      g[p] = 5;
    }
    for (uint64_t p = 0; p < kPages; p += 16) {
      FillPage(base + p * kPage, p, 2);
      g[p] = 2;
    }
    ASSERT_TRUE(rt->Advise(*region, 2048 * kPage, 64 * kPage,
                           Runtime::Advice::kDontNeed).ok());
    for (uint64_t p = 2048; p < 2048 + 64; ++p) g[p] = 0;
    TAKE_OR_SKIP(s2, *region);
    EXPECT_TRUE(SnapshotIs(*s2, g)) << "trial " << trial;
    EXPECT_TRUE(RegionIs(base, g)) << "trial " << trial;
  }
}

TEST(SnapshotTest, ForEachPageReportsZeroPagesWithoutCopies) {
  constexpr uint64_t kPages = 64;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "iter"});
  ASSERT_TRUE(region.ok());
  std::byte* base = (*region)->data();
  for (uint64_t p = 0; p < kPages; p += 4) FillPage(base + p * kPage, p, 1);
  TAKE_OR_SKIP(snap, *region);
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 9);
  uint64_t seen = 0;
  ASSERT_TRUE(snap->ForEachPage([&](uint64_t p, const std::byte* bytes)
                                    -> absl::Status {
                    EXPECT_EQ(p, seen++);
                    if (p % 4 == 0) {
                      EXPECT_NE(bytes, nullptr) << p;
                      if (bytes != nullptr) {
                        EXPECT_TRUE(PageIs(bytes, p, 1));
                      }
                    } else {
                      EXPECT_EQ(bytes, nullptr) << p;
                    }
                    return absl::OkStatus();
                  }).ok());
  EXPECT_EQ(seen, kPages);
  // A callback error stops the walk and comes back.
  EXPECT_EQ(snap->ForEachPage([](uint64_t p, const std::byte*) {
                  return p == 3 ? absl::CancelledError("stop") : absl::OkStatus();
                }).code(),
            absl::StatusCode::kCancelled);
}

TEST(SnapshotTest, RawDiscardIsReportedAndAdviseDiscardIsCopiedFirst) {
  constexpr uint64_t kPages = 32;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "discard"});
  ASSERT_TRUE(region.ok());
  std::byte* base = (*region)->data();
  std::vector<uint64_t> g(kPages);
  for (uint64_t p = 0; p < kPages; ++p) {
    FillPage(base + p * kPage, p, 1);
    g[p] = 1;
  }
  TAKE_OR_SKIP(snap, *region);
  // Through upager: the bytes are copied aside before they go.
  ASSERT_TRUE(rt->Advise(*region, 0, 4 * kPage, Runtime::Advice::kDontNeed).ok());
  EXPECT_TRUE(SnapshotIs(*snap, g));
  for (uint64_t p = 0; p < 4; ++p) EXPECT_TRUE(PageIs(base + p * kPage, p, 0));
  // Raw madvise: the kernel drops them before upager hears of it.
  ASSERT_EQ(madvise(base + 8 * kPage, kPage, MADV_DONTNEED), 0);
  (void)rt->stats();  // applies the event
  std::vector<std::byte> buf(kPage);
  absl::Status lost = snap->Read(8 * kPage, absl::MakeSpan(buf));
  EXPECT_EQ(lost.code(), absl::StatusCode::kDataLoss) << lost;
  EXPECT_THAT(std::string(lost.message()), HasSubstr("page 8"));
  EXPECT_EQ(rt->stats().snapshot_lost_pages, 1u);
  // Every other page still reads right.
  ASSERT_TRUE(snap->Read(9 * kPage, absl::MakeSpan(buf)).ok());
  EXPECT_TRUE(PageIs(buf.data(), 9, 1));
}

TEST(SnapshotTest, BadInputGetsAClearStatusAndLeavesTheRegionAlone) {
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto a = rt->Map({.size = 16 * kPage, .name = "a"});
  auto b = rt->Map({.size = 16 * kPage, .name = "b"});
  auto c = rt->Map({.size = 32 * kPage, .name = "c"});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  FillPage((*a)->data(), 0, 1);
  FillPage((*b)->data(), 0, 4);
  TAKE_OR_SKIP(snap, *a);
  absl::Status s = (*c)->Restore(*snap);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("'c'"));
  s = (*b)->Restore(*snap);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(PageIs((*b)->data(), 0, 4));
  std::vector<std::byte> buf(2 * kPage);
  s = snap->Read(15 * kPage, absl::MakeSpan(buf));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("61440"));
  FillPage((*a)->data(), 0, 2);
  ASSERT_TRUE(snap->Release().ok());
  ASSERT_TRUE(snap->Release().ok());  // idempotent
  s = (*a)->Restore(*snap);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("released"));
  EXPECT_TRUE(PageIs((*a)->data(), 0, 2));
  s = snap->Read(0, absl::MakeSpan(buf));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;

  // Unmapped region, destroyed runtime: FailedPrecondition, no crash.
  TAKE_OR_SKIP(of_b, *b);
  ASSERT_TRUE(rt->Unmap(*b).ok());
  EXPECT_EQ(of_b->Read(0, absl::MakeSpan(buf)).code(),
            absl::StatusCode::kFailedPrecondition);
  TAKE_OR_SKIP(of_a, *a);
  rt.reset();
  EXPECT_EQ(of_a->Read(0, absl::MakeSpan(buf)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(of_a->released());
  EXPECT_TRUE(of_a->Release().ok());
}

TEST(SnapshotTest, SequentialWritesCopyInRuns) {
  constexpr uint64_t kPages = 8192;  // 32 MiB
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "seq"});
  ASSERT_TRUE(region.ok());
  std::byte* base = (*region)->data();
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 1);
  TAKE_OR_SKIP(snap, *region);
  const uint64_t wp_before = SettledStats(*rt).faults_write_protect;
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 2);
  const Stats s = SettledStats(*rt);
  // Copy-around: far fewer faults than pages.
  EXPECT_LT(s.faults_write_protect - wp_before, kPages / 16);
  EXPECT_EQ(s.snapshot_copies, kPages);
  std::vector<uint64_t> g1(kPages, 1);
  EXPECT_TRUE(SnapshotIs(*snap, g1));
}

// A region of several sweep chunks (32 MiB each): the sweep's second thread
// takes part, the first snapshot's long runs are protected by whichever
// thread built them, and the second snapshot's short ones are left to the
// calling thread, except for the chunk rewritten whole.
TEST(SnapshotTest, LargeRegionSweptInChunks) {
  constexpr uint64_t kChunk = 8192;
  constexpr uint64_t kPages = 3 * kChunk;  // 96 MiB
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "large"});
  ASSERT_TRUE(region.ok()) << region.status();
  std::byte* base = (*region)->data();
  std::vector<uint64_t> g1(kPages, 1);
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 1);
  TAKE_OR_SKIP(s1, *region);
  std::vector<uint64_t> g2 = g1;
  std::vector<bool> rewritten(kPages, false);
  for (uint64_t p = 0; p < kPages; ++p) {
    if ((p >= kChunk && p < 2 * kChunk) || p % 97 == 0) {
      FillPage(base + p * kPage, p, 2);
      g2[p] = 2;
      rewritten[p] = true;
    }
  }
  TAKE_OR_SKIP(s2, *region);
  std::vector<uint64_t> g3(kPages, 3);
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 3);
  EXPECT_TRUE(SnapshotIs(*s1, g1));
  EXPECT_TRUE(SnapshotIs(*s2, g2));
  EXPECT_TRUE(RegionIs(base, g3));
  std::vector<bool> changed(kPages, false);
  ASSERT_TRUE(s2->ForEachChangedSince(*s1, [&](uint64_t p) {
                  if (p < kPages) changed[p] = true;
                }).ok());
  // Every rewritten page is reported (copy-around may add a few pages past
  // the end of the rewritten chunk: copied aside, so reported, unchanged).
  for (uint64_t p = 0; p < kPages; ++p) {
    if (rewritten[p]) {
      EXPECT_TRUE(changed[p]) << "page " << p;
    }
  }
  const Stats s = rt->stats();
  EXPECT_EQ(s.pages_protected, 2 * kPages);  // both sweeps marked them all
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

// A reserved tebibyte with three pages written: the sweep's chunks grow
// with the region (a quarter of what is left each: 38 of them), and it
// marks and protects only what the region holds.
TEST(SnapshotTest, SparseTebibyteRegion) {
  constexpr uint64_t kSize = uint64_t{1} << 40;
  constexpr uint64_t kPages = kSize / kPage;
  // No fault-around: the region holds exactly the pages written.
  auto rt = MakeRuntime({.fault_around_pages = 1, .fault_around_max_pages = 1});
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kSize, .name = "tebibyte"});
  if (!region.ok()) {
    GTEST_SKIP() << "cannot reserve 1 TiB here: " << region.status();
  }
  std::byte* base = (*region)->data();
  const uint64_t pages[] = {0, kPages / 2 + 12345, kPages - 1};
  for (uint64_t p : pages) FillPage(base + p * kPage, p, 1);
  TAKE_OR_SKIP(snap, *region);
  EXPECT_EQ(rt->stats().pages_protected, std::size(pages));
  for (uint64_t p : pages) FillPage(base + p * kPage, p, 2);
  std::vector<std::byte> buf(kPage);
  for (uint64_t p : pages) {
    ASSERT_TRUE(snap->Read(p * kPage, absl::MakeSpan(buf)).ok());
    EXPECT_TRUE(PageIs(buf.data(), p, 1));
    EXPECT_TRUE(PageIs(base + p * kPage, p, 2));
  }
  ASSERT_TRUE(snap->Read((kPages / 4) * kPage, absl::MakeSpan(buf)).ok());
  EXPECT_TRUE(PageIs(buf.data(), kPages / 4, 0));
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

// --- The sweep's write-protect ranges, driven through internal::Engine
// with a userfaultfd wrapper that counts UFFDIO_WRITEPROTECT calls.

namespace os = internal::os;
using internal::Engine;

class CountingUffd final : public ForwardingUffd {
 public:
  using ForwardingUffd::ForwardingUffd;
  Result WriteProtect(uint64_t a, uint64_t l, bool p, bool w) override {
    if (p) {
      const uint64_t n = protect_calls_.fetch_add(1) + 1;
      // EAGAIN, as the kernel answers while an address-space event is
      // pending; nothing was protected.
      if (n == eagain_at_.load()) {
        return {os::UffdOutcome::kRetry, 0, EAGAIN};
      }
    }
    return ForwardingUffd::WriteProtect(a, l, p, w);
  }
  uint64_t protect_calls() const { return protect_calls_.load(); }
  // The protect call numbered protect_calls() + k fails with EAGAIN.
  void EagainIn(uint64_t k) { eagain_at_.store(protect_calls_.load() + k); }

 private:
  std::atomic<uint64_t> protect_calls_{0};
  std::atomic<uint64_t> eagain_at_{0};
};

struct CountedEngine {
  CountingUffd* uffd = nullptr;  // owned by engine
  std::unique_ptr<Engine> engine;
};

// An Engine on a descriptor with the Runtime's features plus `extra`;
// engine is null (and the test skipped) when the kernel lacks one.
CountedEngine MakeCountedEngine(uint64_t extra) {
  os::UffdOpenOptions open;
  open.wanted_features = Engine::WantedFeatures() | extra;
  auto real = os::OpenUffd(open);
  EXPECT_TRUE(real.ok()) << real.status();
  if (!real.ok() || ((*real)->features() & extra) != extra) return {};
  auto wrapper = std::make_unique<CountingUffd>(std::move(*real));
  CountedEngine c;
  c.uffd = wrapper.get();
  // No fault-around: the pages between the touched ones stay absent.
  RuntimeOptions o;
  o.fault_around_pages = 1;
  o.fault_around_max_pages = 1;
  auto e = Engine::Create(o, std::move(wrapper));
  EXPECT_TRUE(e.ok()) << e.status();
  if (e.ok()) c.engine = std::move(*e);
  return c;
}

// Runs `touch` (which faults on region memory) on its own thread for at
// most `limit`. A thread caught in a fault loop cannot be stopped, so on a
// timeout `release` runs first (unregistering the range makes the kernel
// serve the fault as ordinary memory): the test fails instead of hanging.
bool FinishesWithin(absl::Duration limit, const std::function<void()>& touch,
                    const std::function<void()>& release) {
  absl::Notification done;
  std::thread t([&] {
    touch();
    done.Notify();
  });
  const bool finished = done.WaitForNotificationWithTimeout(limit);
  if (!finished) release();
  t.join();
  return finished;
}

// A sparse region: one page in four present (written, or read-mapped to
// the zero page), the rest never touched. After the snapshot every page is
// read, the untouched ones written too, the captured ones rewritten.
// `bridged`: the sweep protects the region with one call spanning the
// untouched pages, else with one call per present page.
void SparseRegionUnderASnapshot(const CountedEngine& c, bool bridged) {
  constexpr uint64_t kPages = 512;
  Engine& engine = *c.engine;
  auto r = engine.Map({.size = kPages * kPage, .name = "sparse"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* base = (*r)->data();
  std::vector<uint64_t> g(kPages, 0);
  volatile std::byte sink{};
  for (uint64_t p = 0; p < kPages; p += 4) {
    if (p % 8 == 0) {
      FillPage(base + p * kPage, p, 1);
      g[p] = 1;
    } else {
      sink = base[p * kPage];
    }
  }
  (void)sink;
  const uint64_t calls_before = c.uffd->protect_calls();
  auto snap = (*r)->TakeSnapshot();
  if (absl::IsFailedPrecondition(snap.status())) {
    UPAGER_SKIP_MISSING_FEATURE(snap.status().ToString());
  }
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(c.uffd->protect_calls() - calls_before, bridged ? 1 : kPages / 4);

  std::vector<uint64_t> now = g;
  ::testing::AssertionResult read = ::testing::AssertionSuccess();
  const bool finished = FinishesWithin(
      absl::Seconds(30),
      [&] {
        read = RegionIs(base, g);  // the untouched pages: read faults
        for (uint64_t p = 0; p < kPages; ++p) {
          if (p % 4 != 0 || p % 8 == 0) {  // untouched or written
            FillPage(base + p * kPage, p, 2);
            now[p] = 2;
          }
        }
      },
      [&] {
        (void)c.uffd->Unregister(reinterpret_cast<uint64_t>(base),
                                 kPages * kPage);
      });
  ASSERT_TRUE(finished) << "a touch of the region after the snapshot never "
                           "returned: the thread is caught in a fault loop";
  EXPECT_TRUE(read);
  EXPECT_TRUE(RegionIs(base, now));
  EXPECT_TRUE(SnapshotIs(**snap, g));
  // Denser now: a second snapshot over it, and its view.
  auto snap2 = (*r)->TakeSnapshot();
  ASSERT_TRUE(snap2.ok()) << snap2.status();
  EXPECT_TRUE(SnapshotIs(**snap2, now));
  EXPECT_TRUE(SnapshotIs(**snap, g));
  EXPECT_TRUE(engine.status().ok()) << engine.status();
}

// The Runtime's descriptor: the kernel skips the untouched pages, so one
// call covers the whole run.
TEST(SnapshotSweepTest, OneCallSpansUntouchedPages) {
  CountedEngine c = MakeCountedEngine(0);
  ASSERT_NE(c.engine, nullptr);
  SparseRegionUnderASnapshot(c, /*bridged=*/true);
}

// A descriptor with UFFD_FEATURE_WP_UNPOPULATED (Engine::Create accepts
// any): write-protecting an untouched page would put a uffd-wp marker in
// it, a touch of a marker is a missing fault, and a read's UFFDIO_ZEROPAGE
// refuses to replace a marker (EEXIST), so the reader would fault forever.
// A trial of spanning calls with this feature hung
// OverlappingSnapshotsShareCopiesAndRestore; the sweep must not span them.
TEST(SnapshotSweepTest, NoCallSpansUntouchedPagesWhenTheKernelWouldMarkThem) {
  CountedEngine c = MakeCountedEngine(os::uffd_feature::kWpUnpopulated);
  if (c.engine == nullptr) {
    UPAGER_SKIP_MISSING_FEATURE("UFFD_FEATURE_WP_UNPOPULATED (Linux 6.4+)");
  }
  SparseRegionUnderASnapshot(c, /*bridged=*/false);
}

// A sweep whose write-protect call gets EAGAIN (an address-space event
// pending) starts over once the service threads have read the event. The
// pages it had already marked protected in the table by then must still be
// protected by the second attempt, or writes to them would not be copied
// aside (the first attempt stopped before their ioctl).
TEST(SnapshotSweepTest, ASweepRetriedAfterEagainProtectsEveryPage) {
  CountedEngine c = MakeCountedEngine(0);
  ASSERT_NE(c.engine, nullptr);
  constexpr uint64_t kPages = 256;
  auto r = c.engine->Map({.size = kPages * kPage, .name = "retry"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* base = (*r)->data();
  // Every other page written: one protect call per page once a snapshot
  // has protected them all and every page is written again.
  std::vector<uint64_t> g(kPages, 0);
  for (uint64_t p = 0; p < kPages; p += 2) {
    FillPage(base + p * kPage, p, 1);
    g[p] = 1;
  }
  auto s1 = (*r)->TakeSnapshot();
  if (absl::IsFailedPrecondition(s1.status())) {
    UPAGER_SKIP_MISSING_FEATURE(s1.status().ToString());
  }
  ASSERT_TRUE(s1.ok()) << s1.status();
  // Rewrite each other written page: separate runs for the next sweep.
  for (uint64_t p = 0; p < kPages; p += 4) {
    FillPage(base + p * kPage, p, 2);
    g[p] = 2;
  }
  c.uffd->EagainIn(3);  // the third run of the next sweep
  auto s2 = (*r)->TakeSnapshot();
  ASSERT_TRUE(s2.ok()) << s2.status();
  std::vector<uint64_t> now = g;
  for (uint64_t p = 0; p < kPages; p += 2) {
    FillPage(base + p * kPage, p, 3);
    now[p] = 3;
  }
  EXPECT_TRUE(SnapshotIs(**s2, g));
  EXPECT_TRUE(RegionIs(base, now));
  EXPECT_TRUE(c.engine->status().ok()) << c.engine->status();
}

}  // namespace
}  // namespace upager::testing
