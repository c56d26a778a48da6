// The fault path under injected kernel outcomes, through the OS seam: every
// fault must end with the application's bytes right (checked against a
// shadow copy) or, for a hard error, with the faulting thread released by
// SIGBUS and the error visible in Stats and Runtime::status().
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/engine.h"
#include "tests/runtime/delayed_store.h"
#include "tests/runtime/os/fake_uffd.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/test_support.h"

namespace upager::testing {
namespace {

using internal::Engine;
using Outcome = internal::os::UffdOutcome;

struct Harness {
  FakeUffd* fake = nullptr;
  std::unique_ptr<Engine> engine;
};

Harness Make(RuntimeOptions options = {}) {
  internal::os::UffdOpenOptions open;
  open.wanted_features = Engine::WantedFeatures();
  auto real = internal::os::OpenUffd(open);
  EXPECT_TRUE(real.ok()) << real.status();
  auto fake = std::make_unique<FakeUffd>(std::move(*real));
  // These tests inject failures into copies; the zero-page pool would
  // serve some write faults with moves instead, racing with its refill
  // (tests/runtime/zero_pool_test.cc injects into moves).
  if (!options.zero_pool_bytes.has_value()) options.zero_pool_bytes = 0;
  Harness h;
  h.fake = fake.get();
  auto e = Engine::Create(options, std::move(fake));
  EXPECT_TRUE(e.ok()) << e.status();
  h.engine = std::move(*e);
  return h;
}

// Writes a distinct byte pattern over `pages` pages one page at a time and
// checks every byte against the shadow.
void WriteAndVerify(Region* r, size_t pages) {
  const size_t ps = r->page_size();
  std::vector<unsigned char> shadow(pages * ps);
  for (size_t i = 0; i < shadow.size(); ++i) {
    shadow[i] = static_cast<unsigned char>((i / ps) * 13 + i % 251);
  }
  for (size_t p = 0; p < pages; ++p) {
    std::memcpy(r->data() + p * ps, shadow.data() + p * ps, ps);
  }
  ASSERT_EQ(std::memcmp(r->data(), shadow.data(), shadow.size()), 0);
  for (size_t p = pages; p < r->page_count(); ++p) {
    ASSERT_EQ(static_cast<unsigned char>(r->data()[p * ps]), 0) << p;
  }
}

TEST(FaultInjectionTest, EagainStormIsRetriedUntilServed) {
  Harness h = Make();
  auto r = h.engine->Map({.size = 64 * 4096, .name = "eagain"});
  ASSERT_TRUE(r.ok()) << r.status();
  h.fake->InjectFillFailures(200, Outcome::kRetry, EAGAIN);
  WriteAndVerify(*r, 48);
  const Stats s = h.engine->stats();
  EXPECT_EQ(h.fake->injected(), 200);
  EXPECT_GE(s.fill_retries, 200u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_TRUE(h.engine->status().ok());
  ASSERT_TRUE(h.engine->Unmap(*r).ok());
}

TEST(FaultInjectionTest, SpuriousExistsIsWokenAndRepairedOnRefault) {
  // EEXIST without a page: the runtime marks it present and wakes; the
  // thread faults again, and the "present but missing" path refills it.
  Harness h = Make();
  auto r = h.engine->Map({.size = 32 * 4096, .name = "exists"});
  ASSERT_TRUE(r.ok());
  h.fake->InjectFillFailures(5, Outcome::kExists, EEXIST);
  WriteAndVerify(*r, 32);
  EXPECT_TRUE(Eventually([&] { return h.engine->stats().resident_pages == 32; }))
      << h.engine->stats().ToString();
  const Stats s = h.engine->stats();
  EXPECT_GE(s.fill_exists, 5u);
  EXPECT_EQ(s.errors, 0u);
}

TEST(FaultInjectionTest, GoneIsWokenAndRefaulted) {
  Harness h = Make();
  auto r = h.engine->Map({.size = 32 * 4096, .name = "gone"});
  ASSERT_TRUE(r.ok());
  h.fake->InjectFillFailures(3, Outcome::kGone, ENOENT);
  WriteAndVerify(*r, 20);
  EXPECT_GE(h.engine->stats().fill_gone, 3u);
}

TEST(FaultInjectionTest, ShortFillKeepsTheFilledPagesAndRetriesTheRest) {
  Harness h = Make({.fault_around_pages = 16});
  auto r = h.engine->Map({.size = 64 * 4096, .name = "short"});
  ASSERT_TRUE(r.ok());
  // 5 pages really filled, then EAGAIN for the rest of the window.
  h.fake->InjectFillFailures(4, Outcome::kRetry, EAGAIN, /*partial_pages=*/5);
  WriteAndVerify(*r, 64);
  EXPECT_TRUE(Eventually([&] { return h.engine->stats().resident_pages == 64; }))
      << h.engine->stats().ToString();
  EXPECT_EQ(h.engine->stats().errors, 0u);
}

TEST(FaultInjectionTest, HardErrorWithoutPoisonWakesAndSurfacesTheError) {
  Harness h = Make();
  h.fake->HidePoison();
  auto r = h.engine->Map({.size = 16 * 4096, .name = "eio"});
  ASSERT_TRUE(r.ok());
  // The thread is woken after each failure and faults again; the fourth
  // attempt succeeds.
  h.fake->InjectFillFailures(3, Outcome::kFailed, EIO);
  WriteAndVerify(*r, 16);
  const Stats s = h.engine->stats();
  EXPECT_EQ(s.errors, 3u);
  EXPECT_EQ(s.threads_poisoned, 0u);
  EXPECT_EQ(h.fake->poisons(), 0);
  EXPECT_THAT(s.first_error, ::testing::HasSubstr("UFFDIO_COPY"));
  EXPECT_THAT(s.first_error, ::testing::HasSubstr("'eio'"));
  EXPECT_EQ(h.engine->status().code(), absl::StatusCode::kInternal);
}

TEST(FaultInjectionTest, GuardServesWhenServiceThreadsAreStarved) {
  Harness h = Make({.service_idle_priority = true, .fault_around_pages = 1});
  ASSERT_TRUE(h.engine->stats().service_guard);
  h.fake->StarveServiceThreads();
  auto r = h.engine->Map({.size = 40 * 4096, .name = "starved"});
  ASSERT_TRUE(r.ok());
  WriteAndVerify(*r, 30);
  const Stats s = h.engine->stats();
  EXPECT_GE(s.guard_batches, 30u) << "every fault was read by the guard";
  EXPECT_EQ(s.errors, 0u);
}

// The application drops a page (madvise MADV_DONTNEED, from another thread)
// while the runtime puts its old bytes back (a swap-in, a cancelled
// eviction, a copy-on-write put-back). The kernel zaps the page as soon as
// a service thread has read the REMOVE event, before the event is applied;
// here the madvise starts inside the runtime's fill of that page, after its
// discard check. Without the fill fence (swap-ins) or the event reads held
// off (writable fills) the fill landed after the zap: the page read its old
// bytes again, for good.
class DropDuringFillTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kBudget = 64;
  static constexpr uint64_t kPages = 512;

  // Writes pages [0, filled) with generation 1.
  void Start(RuntimeOptions o, uint64_t filled = kPages) {
    o.resident_budget_bytes = kBudget * kPage;
    if (o.swap.store == nullptr) o.swap.store = MemoryStore(2 * kPages * kPage);
    // One thread reads the REMOVE while the other is held in the fill.
    o.service_threads = 2;
    h_ = Make(o);
    ASSERT_NE(h_.engine, nullptr);
    auto r = h_.engine->Map({.size = kPages * kPage, .name = "dropped"});
    ASSERT_TRUE(r.ok()) << r.status();
    region_ = *r;
    p_ = region_->data();
    FillPages(p_, 0, filled, 1);
  }
  void TearDown() override {
    JoinApp();
    if (region_ != nullptr) {
      EXPECT_TRUE(h_.engine->Unmap(region_).ok());
    }
  }
  // The application's madvise of `page`, run to completion inside the
  // first fill that covers it (whose length goes to fill_len_).
  void DropDuringFillOf(uint64_t page) {
    h_.fake->BeforeFillAt(
        reinterpret_cast<uint64_t>(p_ + page * kPage),
        [this, page](uint64_t len) {
          fill_len_.store(len);
          std::thread app([&] {
            EXPECT_EQ(madvise(p_ + page * kPage, kPage, MADV_DONTNEED), 0);
          });
          app.join();
          dropped_.store(true);
        });
  }
  // The application's madvise of `page`, started inside the first fill
  // that covers it, which goes on 50 ms later: a fill that holds event
  // reads off finishes before the madvise can return.
  void StartDropDuringFillOf(uint64_t page) {
    h_.fake->BeforeFillAt(
        reinterpret_cast<uint64_t>(p_ + page * kPage), [this, page](uint64_t) {
          std::thread app([this, page] {
            EXPECT_EQ(madvise(p_ + page * kPage, kPage, MADV_DONTNEED), 0);
            dropped_.store(true);
          });
          absl::MutexLock lock(&app_mu_);
          app_ = std::move(app);
          absl::SleepFor(absl::Milliseconds(50));
          returned_in_fill_.store(dropped_.load());
        });
  }
  // After StartDropDuringFillOf: the madvise returned only after the fill,
  // which nothing took back.
  void FinishDrop() {
    JoinApp();
    EXPECT_TRUE(dropped_.load());
    EXPECT_FALSE(returned_in_fill_.load())
        << "the madvise returned while the fill held event reads off";
    EXPECT_EQ(h_.engine->stats().fills_revoked, 0u);
  }
  // Once the fill was taken back, the page reads as zero (what the
  // madvise promised) and every other page its bytes.
  void ExpectDroppedAlone(uint64_t page) {
    EXPECT_TRUE(dropped_.load());
    EXPECT_TRUE(
        Eventually([&] { return h_.engine->stats().fills_revoked == 1; }))
        << h_.engine->stats().ToString();
    EXPECT_TRUE(PageIs(p_ + page * kPage, page, 0));
    EXPECT_TRUE(PagesAre(p_, 0, page, 1));
    EXPECT_TRUE(PagesAre(p_, page + 1, kPages - page - 1, 1));
    const Stats s = h_.engine->stats();
    EXPECT_EQ(s.fills_revoked, 1u) << s.ToString();
    EXPECT_EQ(s.errors, 0u) << s.ToString();
  }

  // Copy-on-write: the write of 0x5a to byte 0 of `page` (of `filled`)
  // raced the madvise (either order is right: byte 0 is 0 or 0x5a), and
  // the rest of the page reads as zero; `snap` still has the page's bytes
  // as they were.
  void ExpectDroppedAroundTheWrite(uint64_t page, uint64_t filled,
                                   Snapshot& snap) {
    FinishDrop();
    const std::byte* got = p_ + page * kPage;
    EXPECT_TRUE(got[0] == std::byte{0} || got[0] == std::byte{0x5a})
        << static_cast<int>(got[0]);
    std::vector<std::byte> zero(kPage - 1);
    EXPECT_EQ(std::memcmp(got + 1, zero.data(), kPage - 1), 0)
        << "byte 64 reads " << static_cast<int>(got[64]);
    EXPECT_TRUE(PagesAre(p_, 0, page, 1));
    EXPECT_TRUE(PagesAre(p_, page + 1, filled - page - 1, 1));
    std::vector<std::byte> then(kPage);
    ASSERT_TRUE(snap.Read(page * kPage, absl::MakeSpan(then)).ok());
    EXPECT_TRUE(PageIs(then.data(), page, 1));
    EXPECT_TRUE(snap.Release().ok());
    EXPECT_EQ(h_.engine->stats().errors, 0u);
  }

  // Joins StartDropDuringFillOf's madvise thread, if it ran. (Under a
  // mutex: the fill that started it and this thread are ordered by the
  // kernel's fault handling alone, which TSan cannot see.)
  void JoinApp() {
    std::thread app;
    {
      absl::MutexLock lock(&app_mu_);
      app.swap(app_);
    }
    if (app.joinable()) app.join();
  }

  Harness h_;
  Region* region_ = nullptr;
  std::byte* p_ = nullptr;
  absl::Mutex app_mu_;
  std::thread app_ ABSL_GUARDED_BY(app_mu_);
  std::atomic<bool> dropped_{false};
  std::atomic<bool> returned_in_fill_{false};
  std::atomic<uint64_t> fill_len_{0};  // of the fill DropDuringFillOf ran in
};

TEST_F(DropDuringFillTest, SingleSwapInIsTakenBack) {
  // One page per fault, no read-ahead.
  Start({.fault_around_pages = 1, .fault_around_max_pages = 1});
  constexpr uint64_t kVictim = 3;
  ASSERT_TRUE(Eventually(
      [&] { return PresentPages(p_ + kVictim * kPage, 1) == 0; }));
  DropDuringFillOf(kVictim);
  // The fault that brings it in races the madvise: either content is
  // right for this one read.
  (void)*static_cast<volatile std::byte*>(p_ + kVictim * kPage);
  ExpectDroppedAlone(kVictim);
}

TEST_F(DropDuringFillTest, PageOfAReadRunIsTakenBackAlone) {
  Start({});
  constexpr uint64_t kFirst = 96, kCount = 16, kVictim = 100;
  ASSERT_TRUE(Eventually(
      [&] { return PresentPages(p_ + kFirst * kPage, kCount) == 0; }));
  DropDuringFillOf(kVictim);
  // Read back together (one merged read, one copy), nobody faulting.
  ASSERT_TRUE(h_.engine
                  ->Advise(region_, kFirst * kPage, kCount * kPage,
                           Runtime::Advice::kWillNeed)
                  .ok());
  ASSERT_TRUE(Eventually([&] { return dropped_.load(); }));
  EXPECT_GT(fill_len_.load(), kPage) << "the victim came in alone";
  ExpectDroppedAlone(kVictim);
}

TEST_F(DropDuringFillTest, CancelledEvictionIsNotOvertakenByTheDrop) {
  // Writes that take long enough to fault on a page while it is written.
  auto store = std::make_shared<DelayedStore>(
      *NewMemoryStore(2 * kPages * kPage), absl::ZeroDuration());
  constexpr uint64_t kFilled = 256, kFresh = 32;
  Start({.swap = {.store = store}}, kFilled);
  // Settled: everything written so far is in the store or resident.
  ASSERT_TRUE(Eventually([&] {
    return store->unreaped() == 0 &&
           h_.engine->stats().budget_used_pages <= kBudget;
  }));
  std::vector<unsigned char> was(kFilled);
  ASSERT_EQ(mincore(p_, kFilled * kPage, was.data()), 0);
  store->set_delay(absl::Milliseconds(500));
  // Fresh pages push resident ones out, their writes now taking 0.5 s;
  // the writer waits for frames meanwhile. The first page seen leaving is
  // the victim: its write is still in flight.
  std::thread writer([&] { FillPages(p_, kFilled, kFresh, 1); });
  uint64_t victim = kFilled;
  ASSERT_TRUE(Eventually([&] {
    std::vector<unsigned char> now(kFilled);
    if (mincore(p_, kFilled * kPage, now.data()) != 0) return false;
    for (uint64_t i = 0; i < kFilled; ++i) {
      if ((was[i] & 1) && !(now[i] & 1)) {
        victim = i;
        return true;
      }
    }
    return false;
  }));
  StartDropDuringFillOf(victim);
  // Its fault waits for the write, then the bytes move back: the hook
  // starts the drop just before.
  (void)*static_cast<volatile std::byte*>(p_ + victim * kPage);
  writer.join();
  store->set_delay(absl::ZeroDuration());
  FinishDrop();
  EXPECT_GE(h_.fake->moves(), 1) << "the victim was not moved back";
  EXPECT_TRUE(PageIs(p_ + victim * kPage, victim, 0));
  EXPECT_TRUE(PagesAre(p_, 0, victim, 1));
  EXPECT_TRUE(PagesAre(p_, victim + 1, kFilled + kFresh - victim - 1, 1));
  EXPECT_TRUE(PagesAre(p_, kFilled + kFresh, kPages - kFilled - kFresh, 0));
  EXPECT_EQ(h_.engine->stats().errors, 0u);
}

TEST_F(DropDuringFillTest, CopyOnWritePutBackIsNotOvertakenByTheDrop) {
  constexpr uint64_t kFilled = 32, kVictim = 5;  // under the budget
  Start({}, kFilled);
  auto snap = region_->TakeSnapshot();
  ASSERT_TRUE(snap.ok()) << snap.status();
  // The write below copies the page aside and moves it back (the hook
  // starts the drop just before).
  StartDropDuringFillOf(kVictim);
  p_[kVictim * kPage] = std::byte{0x5a};
  ExpectDroppedAroundTheWrite(kVictim, kFilled, **snap);
}

TEST_F(DropDuringFillTest, DeferredCopyOnWritePutBackIsNotOvertakenByTheDrop) {
  constexpr uint64_t kFilled = 32, kVictim = 5;
  Start({}, kFilled);
  auto snap = region_->TakeSnapshot();
  ASSERT_TRUE(snap.ok()) << snap.status();
  // The first put-back fails with EAGAIN: the bytes wait aside and go in
  // later by copy (RetryPendingFills), which the hook then races.
  h_.fake->BeforeFillAt(reinterpret_cast<uint64_t>(p_ + kVictim * kPage),
                        [&](uint64_t) {
                          h_.fake->InjectMoveFailures(1, Outcome::kRetry,
                                                      EAGAIN);
                          StartDropDuringFillOf(kVictim);
                        });
  p_[kVictim * kPage] = std::byte{0x5a};
  EXPECT_EQ(h_.fake->moves_injected(), 1);
  ExpectDroppedAroundTheWrite(kVictim, kFilled, **snap);
}

TEST(FaultInjectionDeathTest, HardErrorReleasesTheThreadWithSigbus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        Harness h = Make();
        if (!h.fake->has(internal::os::uffd_feature::kPoison)) _exit(3);
        auto r = h.engine->Map({.size = 16 * 4096, .name = "eio"});
        if (!r.ok()) _exit(4);
        h.fake->InjectFillFailures(1, Outcome::kFailed, EIO);
        (*r)->data()[0] = std::byte{1};  // never returns: SIGBUS
        _exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace upager::testing
