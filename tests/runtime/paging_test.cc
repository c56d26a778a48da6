// Paging beyond memory, end to end on the real kernel: regions several
// times the resident budget, written and read back byte for byte against a
// shadow copy, through the in-memory store and a real swap file, with
// injected store failures.
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
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "backing/forwarding_store.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;


// A store that forwards to a real one and can fail writes or reads.
class FaultyStore final : public ForwardingStore {
 public:
  explicit FaultyStore(std::unique_ptr<BackingStore> real)
      : ForwardingStore(std::move(real)) {}
  void FailWrites(int err) { write_error_ = err; }
  void FailReads(int err) { read_error_ = err; }

  absl::Status Submit(absl::Span<const Request> requests) override {
    std::vector<Request> pass;
    for (const Request& r : requests) {
      const int err = r.op == Request::Op::kWrite ? write_error_.load()
                                                  : read_error_.load();
      if (err != 0) {
        absl::MutexLock lock(&mu_);
        failed_.push_back({r.tag, err});
      } else {
        pass.push_back(r);
      }
    }
    return pass.empty() ? absl::OkStatus() : real().Submit(pass);
  }
  size_t Reap(absl::Span<Completion> out) override {
    size_t n = 0;
    {
      absl::MutexLock lock(&mu_);
      while (n < out.size() && !failed_.empty()) {
        out[n++] = failed_.back();
        failed_.pop_back();
      }
    }
    return n + real().Reap(out.subspan(n));
  }
  size_t Wait(absl::Span<Completion> out, absl::Duration timeout) override {
    const size_t n = Reap(out);
    return n > 0 ? n : real().Wait(out, timeout);
  }
  // No descriptor: the runtime reaps after each submit (failed requests
  // complete at once).
  int completion_fd() const override { return -1; }

 private:
  std::atomic<int> write_error_{0};
  std::atomic<int> read_error_{0};
  absl::Mutex mu_;
  std::vector<Completion> failed_ ABSL_GUARDED_BY(mu_);
};


enum class StoreKind { kMemory, kSwapFile };

class PagingTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  std::unique_ptr<Runtime> Make(uint64_t budget_pages, uint64_t swap_pages) {
    RuntimeOptions o;
    o.resident_budget_bytes = budget_pages * kPage;
    if (GetParam() == StoreKind::kMemory) {
      o.swap.store = MemoryStore(swap_pages * kPage);
    } else {
      o.swap.capacity_bytes = swap_pages * kPage;
    }
    return MakeRuntime(o);
  }
};

TEST_P(PagingTest, SequentialWriteThenReadFourTimesTheBudget) {
  constexpr uint64_t kBudget = 1024, kPages = 4096;
  auto rt = Make(kBudget, 2 * kPages);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "seq");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  ASSERT_TRUE(PagesAre(p, 0, kPages, 1));
  const Stats s = rt->stats();
  EXPECT_GT(s.pages_swapped_out, kPages - kBudget) << s.ToString();
  EXPECT_GT(s.pages_swapped_in, 0u) << s.ToString();
  EXPECT_LE(s.budget_used_pages, kBudget) << s.ToString();
  EXPECT_EQ(s.over_budget_pages, 0u) << s.ToString();
  EXPECT_EQ(s.errors, 0u) << s.ToString();
  ASSERT_TRUE(rt->Unmap(r).ok());
  EXPECT_EQ(rt->stats().store.used_slots, 0u) << "Unmap frees the slots";
}

TEST_P(PagingTest, RandomReadWriteFromThreadsMatchesTheShadow) {
  constexpr uint64_t kBudget = 512, kPages = 2048;  // 4x
  auto rt = Make(kBudget, 2 * kPages);
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = kPages * kPage, .name = "random"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* p = (*r)->data();
  constexpr int kThreads = 3;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  absl::Mutex first_mu;
  std::string first_failure;
  auto check = [&](uint64_t page, uint64_t gen, const char* when) {
    ::testing::AssertionResult r = PageIs(p + page * kPage, page, gen);
    if (!r) {
      ++failures;
      absl::MutexLock lock(&first_mu);
      if (first_failure.empty()) first_failure = std::string(when) + ": " + r.message();
    }
  };
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Thread t owns pages with page % kThreads == t; its shadow is the
      // generation last written to each.
      std::vector<uint64_t> gen(kPages, 0);
      std::mt19937_64 rng(1234 + t);
      for (int op = 0; op < 6000; ++op) {
        const uint64_t page = (rng() % (kPages / kThreads)) * kThreads + t;
        if (rng() % 3 == 0) {
          FillPage(p + page * kPage, page, ++gen[page]);
        } else {
          check(page, gen[page], "during");
        }
      }
      for (uint64_t page = t; page < kPages; page += kThreads) {
        check(page, gen[page], "final");
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0) << first_failure << "\n" << rt->stats().ToString();
  const Stats s = rt->stats();
  EXPECT_GT(s.pages_swapped_out, 0u) << s.ToString();
  EXPECT_GT(s.pages_swapped_in, 0u) << s.ToString();
  EXPECT_EQ(s.errors, 0u) << s.ToString();
}

TEST_P(PagingTest, DontNeedOfSwappedPagesReadsZeroAndFreesSlots) {
  constexpr uint64_t kBudget = 256, kPages = 1024;
  auto rt = Make(kBudget, 2 * kPages);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "dontneed");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  ASSERT_GT(rt->stats().swapped_pages, 0u);
  // Drop the first half, whatever state each page is in.
  ASSERT_EQ(madvise(p, kPages / 2 * kPage, MADV_DONTNEED), 0);
  for (uint64_t i = 0; i < kPages; ++i) {
    ASSERT_TRUE(PageIs(p + i * kPage, i, i < kPages / 2 ? 0 : 1));
  }
  EXPECT_EQ(rt->stats().errors, 0u);
}

TEST_P(PagingTest, RegionsLeftMappedGetEveryPageBack) {
  constexpr uint64_t kBudget = 256, kPages = 1024;
  std::byte* p = nullptr;
  {
    RuntimeOptions o;
    o.resident_budget_bytes = kBudget * kPage;
    o.unmap_regions_on_destroy = false;
    if (GetParam() == StoreKind::kMemory) o.swap.store = MemoryStore(4 * kPages * kPage);
    auto rt = MakeRuntime(o);
    ASSERT_NE(rt, nullptr);
    auto r = rt->Map({.size = kPages * kPage, .name = "kept"});
    ASSERT_TRUE(r.ok());
    p = (*r)->data();
    FillPages(p, 0, kPages, 1);
    ASSERT_GT(rt->stats().swapped_pages, 0u);
  }
  // The Runtime is gone; the memory is the application's and complete.
  ASSERT_TRUE(PagesAre(p, 0, kPages, 1));
  munmap(p, kPages * kPage);
}

TEST_P(PagingTest, SequentialSwapInReadsAheadWithoutWaiting) {
  constexpr uint64_t kBudget = 1024, kPages = 8192;  // 8x
  auto rt = Make(kBudget, 2 * kPages);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "stream");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  for (int pass = 0; pass < 2; ++pass) {
    const Stats before = rt->stats();
    ASSERT_TRUE(PagesAre(p, 0, kPages, 1)) << "pass " << pass;
    const Stats after = rt->stats();
    // Windows grow to 256 pages, and each after the first few is read when
    // the stream reaches the previous one's marker: ~30 per pass here.
    EXPECT_GE(after.read_ahead_async - before.read_ahead_async, 16u)
        << after.ToString();
    // A few faults per window (the marker, a page still in flight, a
    // retry while the small budget has no frame: ~300-600 here), not one
    // per page.
    EXPECT_LE(after.faults_missing_read - before.faults_missing_read,
              kPages / 8)
        << after.ToString();
    EXPECT_GE(after.pages_swapped_in - before.pages_swapped_in,
              kPages - 2 * kBudget)
        << after.ToString();
  }
  EXPECT_EQ(rt->stats().errors, 0u) << rt->stats().ToString();
  ASSERT_TRUE(rt->Unmap(r).ok());
  EXPECT_EQ(rt->stats().store.used_slots, 0u) << "Unmap frees the slots";
}

TEST_P(PagingTest, HeldMarkerBytesNeverOutliveTheirSlot) {
  // A marker's bytes are held by slot. Dropping the page (madvise) or the
  // region (Unmap) frees the slot; whatever reuses it must read its own
  // bytes, never the held ones.
  constexpr uint64_t kBudget = 512, kPages = 4096;
  auto rt = Make(kBudget, 2 * kPages);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "held");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  // Stop half way through a stream: its last window's marker stays held.
  ASSERT_TRUE(PagesAre(p, 0, kPages / 2, 1));
  ASSERT_GT(rt->stats().read_ahead_async, 0u) << rt->stats().ToString();
  ASSERT_EQ(madvise(p, kPages * kPage, MADV_DONTNEED), 0);
  FillPages(p, 0, kPages, 2);
  ASSERT_TRUE(PagesAre(p, 0, kPages, 2)) << "after madvise";
  // The same through Unmap: a new region takes the freed slots.
  ASSERT_TRUE(PagesAre(p, 0, kPages / 2, 2));
  ASSERT_TRUE(rt->Unmap(r).ok());
  EXPECT_EQ(rt->stats().store.used_slots, 0u);
  auto r2 = rt->Map({.size = kPages * kPage, .name = "held2"});
  ASSERT_TRUE(r2.ok()) << r2.status();
  std::byte* q = (*r2)->data();
  FillPages(q, 0, kPages, 3);
  ASSERT_TRUE(PagesAre(q, 0, kPages, 3)) << "after Unmap";
  EXPECT_EQ(rt->stats().errors, 0u) << rt->stats().ToString();
}

TEST_P(PagingTest, ConcurrentSequentialReadersMatchTheShadow) {
  // Three threads stream through one region from different starting
  // points: they share its read-ahead state (one marker, one window), so
  // markers are taken, replaced and held under every interleaving.
  constexpr uint64_t kBudget = 512, kPages = 4096;
  auto rt = Make(kBudget, 2 * kPages);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "streams");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  constexpr int kThreads = 3;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int pass = 0; pass < 2; ++pass) {
        const uint64_t start = (kPages / kThreads) * t + pass * 97;
        for (uint64_t k = 0; k < kPages; ++k) {
          const uint64_t i = (start + k) % kPages;
          if (!PageIs(p + i * kPage, i, 1)) ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const Stats s = rt->stats();
  EXPECT_EQ(failures.load(), 0) << s.ToString();
  EXPECT_GT(s.read_ahead_async, 0u) << s.ToString();
  EXPECT_EQ(s.errors, 0u) << s.ToString();
}

TEST_P(PagingTest, ReadAheadOfAStreamIsHitWhereTheStreamGoesOn) {
  // Budget 1/4 of the region: windows (up to 256 pages, two ahead) are
  // reached long before the evictor wants their frames.
  constexpr uint64_t kBudget = 2048, kPages = 8192;
  auto rt = Make(kBudget, 2 * kPages);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "hits");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  // The region's tail is resident: read the swapped-out head once through.
  const uint64_t head = kPages - kBudget;
  const Stats before = rt->stats();
  ASSERT_TRUE(PagesAre(p, 0, head, 1));
  const Stats after = rt->stats();
  const uint64_t ahead = after.pages_read_ahead - before.pages_read_ahead;
  const uint64_t hits = after.read_ahead_hits - before.read_ahead_hits;
  const uint64_t waste = after.read_ahead_waste - before.read_ahead_waste;
  ASSERT_GT(ahead, head / 2) << after.ToString();
  // Every page the stream passed is a hit; only the windows still ahead of
  // it when it stopped (the one it is in and two more, at most 256 pages
  // each) are neither yet. The
  // evictor may take a page read ahead before the stream gets to it (a
  // waste, read again): rarely, with this budget.
  EXPECT_LE(waste, ahead / 20) << after.ToString();
  EXPECT_LE(hits + waste, ahead) << after.ToString();
  EXPECT_GE(hits + waste + 3 * 256, ahead) << after.ToString();
  // A stream far behind (from a page evicted long ago) replaces this one:
  // what this one read ahead and never reached is waste now.
  uint64_t far = 0;
  while (far < head / 2 && PresentPages(p + far * kPage, 64) != 0) ++far;
  ASSERT_LT(far, head / 2) << "no early stretch was evicted";
  for (uint64_t i = far; i < far + 64; ++i) {
    ASSERT_TRUE(PageIs(p + i * kPage, i, 1));
  }
  const Stats end = rt->stats();
  ASSERT_GT(end.pages_read_ahead, after.pages_read_ahead) << end.ToString();
  // Unreached: read ahead, neither hit nor wasted before (a page re-read
  // after its eviction counts twice in pages_read_ahead: at most ~1%). The
  // new stream's own windows may re-read a few of their pages too.
  const uint64_t unreached = ahead - hits - waste;
  EXPECT_LE(end.read_ahead_waste - after.read_ahead_waste, unreached + 64)
      << end.ToString();
  EXPECT_GE(end.read_ahead_waste - after.read_ahead_waste + ahead / 100,
            unreached)
      << end.ToString();
  EXPECT_EQ(end.errors, 0u) << end.ToString();
}

TEST_P(PagingTest, ReadAheadForARandomReaderIsWaste) {
  constexpr uint64_t kBudget = 512, kPages = 8192;
  auto rt = Make(kBudget, 2 * kPages);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "waste");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  // Told the access is sequential, every fault reads a full window ahead,
  // and a random reader reaches none of it.
  ASSERT_TRUE(rt->Advise(r, 0, 0, Runtime::Advice::kSequential).ok());
  const Stats before = rt->stats();
  std::mt19937_64 rng(77);
  constexpr int kReads = 24;
  for (int k = 0; k < kReads; ++k) {
    const uint64_t i = rng() % (kPages - kBudget);
    ASSERT_TRUE(PageIs(p + i * kPage, i, 1)) << "read " << k;
  }
  const Stats after = rt->stats();
  const uint64_t ahead = after.pages_read_ahead - before.pages_read_ahead;
  const uint64_t hits = after.read_ahead_hits - before.read_ahead_hits;
  const uint64_t waste = after.read_ahead_waste - before.read_ahead_waste;
  ASSERT_GT(ahead, 0u) << after.ToString();
  // All but the last window (still pending) are waste; a read that lands in
  // an earlier window is resident and faults no more than a hit would.
  EXPECT_GE(waste + 256, ahead) << after.ToString();
  EXPECT_GT(waste, ahead / 2) << after.ToString();
  EXPECT_LE(hits, ahead / 8) << after.ToString();
  EXPECT_EQ(after.errors, 0u) << after.ToString();
  // Random again: nothing more is read ahead.
  ASSERT_TRUE(rt->Advise(r, 0, 0, Runtime::Advice::kRandom).ok());
  const Stats random_before = rt->stats();
  for (int k = 0; k < kReads; ++k) {
    const uint64_t i = rng() % (kPages - kBudget);
    ASSERT_TRUE(PageIs(p + i * kPage, i, 1)) << "random read " << k;
  }
  EXPECT_EQ(rt->stats().pages_read_ahead, random_before.pages_read_ahead)
      << rt->stats().ToString();
}

INSTANTIATE_TEST_SUITE_P(Stores, PagingTest,
                         ::testing::Values(StoreKind::kMemory,
                                           StoreKind::kSwapFile),
                         [](const auto& info) {
                           return info.param == StoreKind::kMemory
                                      ? "MemoryStore"
                                      : "SwapFile";
                         });

TEST(PagingFailureTest, FailedWritesKeepPagesResidentAndLoseNothing) {
  constexpr uint64_t kBudget = 128, kPages = 512;
  auto mem = NewMemoryStore(4 * kPages * kPage);
  ASSERT_TRUE(mem.ok());
  auto faulty = std::make_shared<FaultyStore>(std::move(*mem));
  faulty->FailWrites(EIO);
  RuntimeOptions o;
  o.resident_budget_bytes = kBudget * kPage;
  o.swap.store = faulty;
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "eio");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  ASSERT_TRUE(PagesAre(p, 0, kPages, 1));
  const Stats s = rt->stats();
  EXPECT_GT(s.swap_write_errors, 0u) << s.ToString();
  EXPECT_EQ(s.pages_swapped_out, 0u) << s.ToString();
  EXPECT_GT(s.over_budget_pages, 0u) << s.ToString();
  EXPECT_THAT(s.first_error, HasSubstr("swap write"));
  EXPECT_FALSE(rt->status().ok());
}

// Runs in the death-test child: evicts page 0, then fails its read.
void TouchAPageWhoseReadFails() {
  constexpr uint64_t kBudget = 64;
  constexpr uint64_t kPages = 256;
  auto mem = NewMemoryStore(4 * kPages * kPage);
  if (!mem.ok()) _exit(3);
  auto faulty = std::make_shared<FaultyStore>(std::move(*mem));
  RuntimeOptions o;
  o.resident_budget_bytes = kBudget * kPage;
  o.swap.store = faulty;
  auto rt = CreateForTest(o);
  if (!rt.ok()) _exit(4);
  auto r = (*rt)->Map({.size = kPages * kPage, .name = "eio-read"});
  if (!r.ok()) _exit(5);
  std::byte* p = (*r)->data();
  FillPages(p, 0, kPages, 1);
  faulty->FailReads(EIO);
  // Page 0 was evicted long ago: its read fails, and the access must not
  // see zeros.
  volatile std::byte b = p[0];
  (void)b;
  _exit(0);
}

TEST(PagingFailureDeathTest, FailedReadReleasesTheThreadWithSigbus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(TouchAPageWhoseReadFails(), ::testing::KilledBySignal(SIGBUS),
              "");
}

TEST(PagingOptionsTest, BadPagingOptionsAreClearErrors) {
  RuntimeOptions tiny;
  tiny.resident_budget_bytes = 100;
  auto a = CreateForTest(tiny);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("resident_budget_bytes = 100"));

  RuntimeOptions marks;
  marks.resident_budget_bytes = 1 << 20;
  marks.low_watermark_percent = 90;
  marks.high_watermark_percent = 80;
  EXPECT_EQ(CreateForTest(marks).status().code(),
            absl::StatusCode::kInvalidArgument);

  RuntimeOptions capacity;
  capacity.resident_budget_bytes = 1 << 20;
  capacity.swap.capacity_bytes = 12345;
  auto c = CreateForTest(capacity);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("12345"));

  // Past the policy's 2^31 - 1 pages: refused before any swap file exists.
  RuntimeOptions huge;
  huge.resident_budget_bytes = uint64_t{1} << 62;
  auto h = CreateForTest(huge);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(h.status().message(),
              HasSubstr(absl::StrCat("resident_budget_bytes = ",
                                     uint64_t{1} << 62)));

  RuntimeOptions path;
  path.resident_budget_bytes = 1 << 20;
  path.swap.path = "/nonexistent/upager/dir/app.swap";
  auto d = CreateForTest(path);
  EXPECT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("/nonexistent/upager/dir"));
}

}  // namespace
}  // namespace upager::testing

namespace upager::testing {
namespace {


TEST(AdviseTest, RandomAndSequentialSetTheWindow) {
  auto rt = MakeRuntime({.fault_around_pages = 16});
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = 1024 * kPage, .name = "advice"});
  ASSERT_TRUE(r.ok());
  std::byte* p = (*r)->data();
  ASSERT_TRUE(rt->Advise(*r, 0, 0, Runtime::Advice::kRandom).ok());
  for (uint64_t i = 0; i < 64; ++i) p[i * kPage] = std::byte{1};
  EXPECT_EQ(SettledStats(*rt).faults_missing_write, 64u) << "one page per fault";
  ASSERT_TRUE(rt->Advise(*r, 0, 0, Runtime::Advice::kSequential).ok());
  p[512 * kPage] = std::byte{2};  // a lone fault fills the maximum window
  EXPECT_EQ(PresentPages(p + 512 * kPage, 256), 256u);
  EXPECT_EQ(static_cast<int>(p[600 * kPage]), 0);
  EXPECT_EQ(static_cast<int>(p[512 * kPage]), 2);
}

TEST(AdviseTest, WillNeedReadsBackAndDontNeedDrops) {
  constexpr uint64_t kBudget = 256, kPages = 1024;
  RuntimeOptions o;
  o.resident_budget_bytes = kBudget * kPage;
  o.swap.store = MemoryStore(4 * kPages * kPage);
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "willneed");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  // The first 64 pages were evicted long ago. Drop the upper half first so
  // the prefetched pages fit under the low watermark: otherwise the evictor
  // may rightly take some of them back before the check below.
  ASSERT_LT(PresentPages(p, 64), 64u);
  ASSERT_TRUE(rt->Advise(r, kPages / 2 * kPage, kPages / 2 * kPage,
                         Runtime::Advice::kDontNeed).ok());
  // WillNeed is best effort (pages in transit are skipped), so an
  // application that needs them all asks again until they are in; none of
  // them may be touched meanwhile.
  EXPECT_TRUE(Eventually([&] {
    EXPECT_TRUE(
        rt->Advise(r, 0, 64 * kPage, Runtime::Advice::kWillNeed).ok());
    return PresentPages(p, 64) == 64;
  }))
      << "prefetched without a touch; " << PresentPages(p, 64) << " present\n"
      << rt->stats().ToString();
  for (uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(PageIs(p + i * kPage, i, 1));

  ASSERT_TRUE(rt->Advise(r, 64 * kPage, 64 * kPage,
                         Runtime::Advice::kDontNeed).ok());
  for (uint64_t i = 64; i < 128; ++i) ASSERT_TRUE(PageIs(p + i * kPage, i, 0));
  for (uint64_t i = 128; i < kPages; i += 31) {
    ASSERT_TRUE(PageIs(p + i * kPage, i, i < kPages / 2 ? 1 : 0));
  }

  auto bad = rt->Advise(r, 100, kPage, Runtime::Advice::kWillNeed);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("offset=100"));
  EXPECT_EQ(rt->Advise(r, 0, (kPages + 1) * kPage, Runtime::Advice::kNormal)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace upager::testing

namespace upager::testing {
namespace {

TEST(CleanDropTest, PagesSwappedInAndNotWrittenAreDroppedWithoutIo) {
  constexpr uint64_t kBudget = 256, kPages = 1024;
  RuntimeOptions o;
  o.resident_budget_bytes = kBudget * kPage;
  o.swap.store = MemoryStore(4 * kPages * kPage);
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  Region* r = MapFilled(*rt, kPages, "clean");
  ASSERT_NE(r, nullptr);
  std::byte* p = r->data();
  // Pass 1 swaps every page in at least once; pass 2 only re-reads.
  for (uint64_t i = 0; i < kPages; ++i) ASSERT_TRUE(PageIs(p + i * kPage, i, 1));
  const Stats before = rt->stats();
  for (uint64_t i = 0; i < kPages; ++i) ASSERT_TRUE(PageIs(p + i * kPage, i, 1));
  const Stats after = rt->stats();
  // The only pages a read-only pass may write are those resident (and
  // dirty) since before pass 1, which the policy kept: at most the budget.
  // Everything else it evicts was swapped in and never written since.
  EXPECT_LE(after.store.writes - before.store.writes, kBudget)
      << after.ToString();
  EXPECT_GE(after.clean_drops - before.clean_drops, kPages - 2 * kBudget)
      << after.ToString();
  EXPECT_GT(after.pages_swapped_in, before.pages_swapped_in);

  // Writing a clean page makes it dirty: its next eviction writes it.
  FillPages(p, 0, kPages, 2);
  for (uint64_t i = 0; i < kPages; ++i) ASSERT_TRUE(PageIs(p + i * kPage, i, 2));
  const Stats last = rt->stats();
  EXPECT_GT(last.pages_dirtied, 0u) << last.ToString();
  EXPECT_GT(last.store.writes, after.store.writes);
  EXPECT_EQ(last.errors, 0u) << last.ToString();
  ASSERT_TRUE(rt->Unmap(r).ok());
  EXPECT_EQ(rt->stats().store.used_slots, 0u) << "clean pages' slots freed too";
}

}  // namespace
}  // namespace upager::testing
