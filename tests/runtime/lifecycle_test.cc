// A Runtime's life around the application: fork() children (which get a
// private copy of every region and must not disturb the parent, whatever
// they do with the Runtime), ~Runtime while application threads are still
// touching fresh pages or regions are still mapped, and Unmap / ~Runtime
// with snapshots alive, copy-on-write faults in flight and swap I/O in
// flight (issue 7 item 5). Bytes are checked against shadow copies
// throughout.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/runtime/delayed_store.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/runtime/snapshot_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;

unsigned char Pattern(uint64_t seed, uint64_t i) {
  return static_cast<unsigned char>((seed * 97 + i * 13 + (i >> 12)) % 251 + 1);
}

// Runs `child` in a fork() child (which must end with _exit) and returns
// its wait status. The child gets an alarm so that a hang ends as SIGALRM
// instead of hanging the test.
int RunChild(const std::function<void()>& child, unsigned alarm_seconds = 5) {
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(alarm_seconds);
    child();
    _exit(99);  // the child forgot to _exit
  }
  EXPECT_GT(pid, 0) << std::strerror(errno);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status),
                        WTERMSIG(status) == SIGALRM ? " (SIGALRM: hung)" : "");
  }
  return absl::StrCat("status ", status);
}

// ---------------------------------------------------------------------------
// fork().

class ForkTest : public ::testing::Test {
 protected:
  static constexpr size_t kPages = 64;
  void SetUp() override {
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    ps_ = rt_->page_size();
    // Far from other mappings: the child checks the range left unmapped
    // (FarFreeRange).
    auto r = rt_->Map({.size = kPages * ps_, .name = "forked",
                       .fixed_address = FarFreeRange(kPages * ps_)});
    ASSERT_TRUE(r.ok()) << r.status();
    region_ = *r;
    p_ = region_->data();
    // Pages 0-15 written, 32-47 read (the zero page), the rest untouched.
    shadow_.assign(kPages * ps_, 0);
    for (size_t i = 0; i < 16 * ps_; ++i) shadow_[i] = Pattern(1, i);
    std::memcpy(p_, shadow_.data(), 16 * ps_);
    EXPECT_EQ(p_[32 * ps_], std::byte{0});
  }
  void TearDown() override {
    if (rt_ != nullptr && region_ != nullptr) {
      EXPECT_TRUE(rt_->Unmap(region_).ok());
    }
  }
  // In the parent after the child: the region is exactly as before, and
  // untouched pages are still served by upager (checked first: reading
  // them would map them).
  void ExpectParentUnchangedAndServed() {
    const Stats before = SettledStats(*rt_);
    for (size_t page = 16; page < 32; ++page) {
      for (size_t i = 0; i < ps_; ++i) {
        shadow_[page * ps_ + i] = Pattern(2, page * ps_ + i);
      }
    }
    std::memcpy(p_ + 16 * ps_, shadow_.data() + 16 * ps_, 16 * ps_);
    EXPECT_EQ(p_[48 * ps_], std::byte{0});
    EXPECT_EQ(std::memcmp(p_, shadow_.data(), shadow_.size()), 0);
    const Stats after = SettledStats(*rt_);
    EXPECT_EQ(after.faults_missing_write, before.faults_missing_write + 1)
        << "the parent's region is no longer served by upager";
    EXPECT_EQ(after.faults_missing_read, before.faults_missing_read + 1);
    EXPECT_EQ(after.errors, 0u) << after.first_error;
    EXPECT_TRUE(rt_->status().ok());
  }

  std::unique_ptr<Runtime> rt_;
  size_t ps_ = 0;
  Region* region_ = nullptr;
  std::byte* p_ = nullptr;
  std::vector<unsigned char> shadow_;
};

TEST_F(ForkTest, ChildGetsAPrivateCopyAndCannotUseTheRuntime) {
  const int status = RunChild([&] {
    // No gtest in the child: each failure has its own exit code.
    if (std::memcmp(p_, shadow_.data(), shadow_.size()) != 0) _exit(2);
    // Untouched pages are ordinary memory here: writable, private.
    std::vector<unsigned char> mine = shadow_;
    for (size_t i = 16 * ps_; i < kPages * ps_; ++i) mine[i] = Pattern(3, i);
    std::memcpy(p_ + 16 * ps_, mine.data() + 16 * ps_, (kPages - 16) * ps_);
    if (std::memcmp(p_, mine.data(), mine.size()) != 0) _exit(3);
    auto m = rt_->Map({.size = 4 * ps_, .name = "in-child"});
    if (m.ok() || m.status().code() != absl::StatusCode::kFailedPrecondition) {
      _exit(4);
    }
    if (rt_->Unmap(region_).code() != absl::StatusCode::kFailedPrecondition) {
      _exit(5);
    }
    _exit(0);
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << DescribeStatus(status);
  ExpectParentUnchangedAndServed();
}

TEST_F(ForkTest, ChildDestroyingTheRuntimeLeavesTheParentAlone) {
  const int status = RunChild([&] {
    if (std::memcmp(p_, shadow_.data(), shadow_.size()) != 0) _exit(2);
    p_[50 * ps_] = std::byte{7};
    rt_.reset();
    // The child's copy of the region is gone with the Runtime.
    if (!IsUnmapped(p_, kPages * ps_)) _exit(3);
    _exit(0);
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << DescribeStatus(status);
  ExpectParentUnchangedAndServed();
  // And the parent can still map and use new regions.
  auto r = rt_->Map({.size = 16 * ps_, .name = "after-child"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<unsigned char> shadow(16 * ps_);
  for (size_t i = 0; i < shadow.size(); ++i) shadow[i] = Pattern(4, i);
  std::memcpy((*r)->data(), shadow.data(), shadow.size());
  EXPECT_EQ(std::memcmp((*r)->data(), shadow.data(), shadow.size()), 0);
  EXPECT_TRUE(rt_->Unmap(*r).ok());
}

TEST_F(ForkTest, ChildDestroyingTheRuntimeWhileTheServiceIsBusy) {
  // fork() while a service thread is in the middle of an event (here the
  // REMOVE of a 1 TiB madvise, which walks the page table under the map
  // lock): the child has no service threads, so whatever they held at
  // fork() stays held in the child. ~Runtime in the child must still end.
  const uint64_t big_size = 1ull << 40;
  auto big = rt_->Map({.size = big_size, .name = "big"});
  if (!big.ok()) {
    GTEST_SKIP() << "cannot reserve 1 TiB here: " << big.status();
  }
  (*big)->data()[0] = std::byte{1};
  ASSERT_EQ(madvise((*big)->data(), big_size, MADV_DONTNEED), 0);
  // The REMOVE was read (madvise returned); its handling (about 0.6 s here)
  // has just begun. If the machine is so slow that it is over before the
  // fork, the test passes without testing anything.
  absl::SleepFor(absl::Milliseconds(20));
  const int status = RunChild(
      [&] {
        if (std::memcmp(p_, shadow_.data(), shadow_.size()) != 0) _exit(2);
        rt_.reset();
        _exit(0);
      },
      /*alarm_seconds=*/3);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << DescribeStatus(status);
  ExpectParentUnchangedAndServed();
  EXPECT_EQ((*big)->data()[0], std::byte{0});
  EXPECT_TRUE(rt_->Unmap(*big).ok());
}

// Snapshots in a fork() child: whatever the child does with the parent's
// Snapshot objects (read, release, destroy the Runtime), the parent's
// snapshot stays exact and its region keeps copying on write.
TEST_F(ForkTest, ChildDestroyingTheRuntimeWithSnapshotsLeavesTheParentsAlone) {
  TAKE_OR_SKIP(snap, region_);
  const std::vector<unsigned char> at_snapshot = shadow_;
  const int status = RunChild([&] {
    std::vector<std::byte> buf(kPages * ps_);
    const absl::Status read = snap->Read(0, absl::MakeSpan(buf));
    if (read.code() != absl::StatusCode::kFailedPrecondition) _exit(2);
    if (!snap->Release().ok()) _exit(3);  // the last one: would unprotect
    snap.reset();
    rt_.reset();
    _exit(0);
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << DescribeStatus(status);
  // The parent's pages are still protected: this write is copied first.
  const Stats before = SettledStats(*rt_);
  for (size_t i = 0; i < 16 * ps_; ++i) shadow_[i] = Pattern(9, i);
  std::memcpy(p_, shadow_.data(), 16 * ps_);
  std::vector<std::byte> got(kPages * ps_);
  ASSERT_TRUE(snap->Read(0, absl::MakeSpan(got)).ok());
  EXPECT_EQ(std::memcmp(got.data(), at_snapshot.data(), got.size()), 0)
      << "the parent's snapshot changed";
  EXPECT_GT(SettledStats(*rt_).faults_write_protect,
            before.faults_write_protect);
  EXPECT_EQ(std::memcmp(p_, shadow_.data(), shadow_.size()), 0);
  ASSERT_TRUE(snap->Release().ok());
}

// ---------------------------------------------------------------------------
// ~Runtime.

TEST(TeardownTest, DestroyWhileThreadsTouchFreshPages) {
  RuntimeOptions o;
  o.unmap_regions_on_destroy = false;
  o.fault_around_pages = 1;  // one fault per page: the most faults in flight
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  const size_t ps = rt->page_size();
  const size_t size = 1ull << 30;
  const size_t pages = size / ps;
  auto r = rt->Map({.size = size, .name = "teardown"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* const base = (*r)->data();

  constexpr int kThreads = 3;
  constexpr uint64_t kBefore = 2000;  // pages per thread before ~Runtime
  constexpr uint64_t kAfter = 2000;   // and after
  std::atomic<uint64_t> progress[kThreads] = {};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad_pages{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Thread t owns pages t, t + kThreads, ...; its shadow of a page is
      // `tmpl` with the page number stamped at the front.
      std::vector<unsigned char> tmpl(ps);
      for (size_t i = 0; i < ps; ++i) tmpl[i] = Pattern(10 + t, i);
      auto shadow_of = [&](uint64_t page) {
        std::vector<unsigned char> s = tmpl;
        std::memcpy(s.data(), &page, sizeof(page));
        return s;
      };
      uint64_t n = 0;
      for (uint64_t page = t; page < pages && !stop.load(); page += kThreads) {
        const std::vector<unsigned char> s = shadow_of(page);
        std::memcpy(base + page * ps, s.data(), ps);
        progress[t].store(++n);
      }
      for (uint64_t i = 0, page = t; i < n; ++i, page += kThreads) {
        const std::vector<unsigned char> s = shadow_of(page);
        if (std::memcmp(base + page * ps, s.data(), ps) != 0) ++bad_pages;
      }
    });
  }
  auto wait_all = [&](uint64_t target) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    for (int t = 0; t < kThreads; ++t) {
      while (progress[t].load() < target && absl::Now() < deadline) {
        absl::SleepFor(absl::Microseconds(200));
      }
    }
    return absl::Now() < deadline;
  };
  const bool started = wait_all(kBefore);
  uint64_t at_destroy[kThreads];
  for (int t = 0; t < kThreads; ++t) at_destroy[t] = progress[t].load();
  const Stats last = rt->stats();
  rt.reset();  // threads are faulting right now
  uint64_t target = 0;
  for (int t = 0; t < kThreads; ++t) {
    target = std::max(target, at_destroy[t] + kAfter);
  }
  const bool continued = wait_all(target);
  stop.store(true);
  for (auto& th : threads) th.join();
  ASSERT_TRUE(started);
  ASSERT_TRUE(continued) << "application threads stopped making progress "
                            "after ~Runtime";
  EXPECT_GT(last.faults_missing_write, 0u);
  EXPECT_EQ(bad_pages.load(), 0u);
  // Pages nobody wrote read as zero (plain anonymous memory now).
  uint64_t high = 0;
  for (int t = 0; t < kThreads; ++t) high = std::max(high, progress[t].load());
  for (uint64_t page = high * kThreads + kThreads; page < pages;
       page += pages / 17) {
    for (size_t i = 0; i < ps; ++i) {
      ASSERT_EQ(base[page * ps + i], std::byte{0}) << page;
    }
  }
  EXPECT_EQ(munmap(base, size), 0);
}

TEST(TeardownTest, DestroyUnmapsRemainingRegions) {
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  const size_t ps = rt->page_size();
  // Far from other mappings: the ranges are checked unmapped at the end
  // (FarFreeRange).
  auto a = rt->Map({.size = 64 * ps, .name = "written",
                    .fixed_address = FarFreeRange(64 * ps)});
  auto b = rt->Map({.size = 64 * ps, .name = "untouched",
                    .fixed_address = FarFreeRange(64 * ps)});
  auto c = rt->Map({.size = 64 * ps, .name = "moved",
                    .fixed_address = FarFreeRange(64 * ps)});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  std::byte* const pa = (*a)->data();
  std::byte* const pb = (*b)->data();
  std::vector<unsigned char> shadow(64 * ps);
  for (size_t i = 0; i < shadow.size(); ++i) shadow[i] = Pattern(5, i);
  std::memcpy(pa, shadow.data(), shadow.size());
  ASSERT_EQ(std::memcmp(pa, shadow.data(), shadow.size()), 0);
  // The third region is moved by the application first: ~Runtime must find
  // it at its new address.
  void* dst = FarReserve(64 * ps);
  ASSERT_NE(dst, MAP_FAILED);
  std::memcpy((*c)->data(), shadow.data(), ps);
  ASSERT_EQ(mremap((*c)->data(), 64 * ps, 64 * ps,
                   MREMAP_MAYMOVE | MREMAP_FIXED, dst),
            dst);
  ASSERT_EQ(std::memcmp(dst, shadow.data(), ps), 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (rt->FindRegion(dst) != *c && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(rt->FindRegion(dst), *c);

  rt.reset();
  EXPECT_TRUE(IsUnmapped(pa, 64 * ps));
  EXPECT_TRUE(IsUnmapped(pb, 64 * ps));
  EXPECT_TRUE(IsUnmapped(dst, 64 * ps));
  // The address range is free for anyone again.
  void* again = mmap(pa, 64 * ps, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  EXPECT_EQ(again, pa) << std::strerror(errno);
  if (again != MAP_FAILED) {
    EXPECT_EQ(static_cast<std::byte*>(again)[0], std::byte{0});
    munmap(again, 64 * ps);
  }
}

TEST(TeardownTest, DestroyKeepsRegionsWhenAskedTo) {
  RuntimeOptions o;
  o.unmap_regions_on_destroy = false;
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  const size_t ps = rt->page_size();
  auto r = rt->Map({.size = 64 * ps, .name = "kept"});
  ASSERT_TRUE(r.ok());
  std::byte* const p = (*r)->data();
  std::vector<unsigned char> shadow(64 * ps, 0);
  for (size_t i = 0; i < 20 * ps; ++i) shadow[i] = Pattern(6, i);
  std::memcpy(p, shadow.data(), 20 * ps);
  rt.reset();
  // Plain anonymous memory now: the data is there, the rest zero-fills.
  EXPECT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);
  for (size_t i = 40 * ps; i < 64 * ps; ++i) {
    shadow[i] = Pattern(7, i);
    p[i] = static_cast<std::byte>(shadow[i]);
  }
  EXPECT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);
  EXPECT_EQ(munmap(p, 64 * ps), 0);
}

// ---------------------------------------------------------------------------
// Unmap and ~Runtime with snapshots alive.

// A scratch directory, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/upager-lifecycle-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const {
    return path_ + "/" + name;
  }

 private:
  std::string path_;
};

// What every method of a snapshot whose region or Runtime is gone does:
// Read, ForEachPage, ForEachChangedSince and SaveTo fail with
// FailedPrecondition naming why (and SaveTo leaves no file); released() is
// true and Release() is an OK no-op.
void ExpectGone(Snapshot& s, const Snapshot* older, const std::string& why,
                const std::string& save_path) {
  std::vector<std::byte> buf(2 * kPage);
  absl::Status st = s.Read(0, absl::MakeSpan(buf));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(why));
  int calls = 0;
  st = s.ForEachPage([&](uint64_t, const std::byte*) {
    ++calls;
    return absl::OkStatus();
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(why));
  EXPECT_EQ(calls, 0);
  if (older != nullptr) {
    st = s.ForEachChangedSince(*older, [&](uint64_t) { ++calls; });
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
    EXPECT_EQ(calls, 0);
  }
  st = s.SaveTo(save_path);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_FALSE(std::filesystem::exists(save_path)) << save_path;
  EXPECT_TRUE(s.released());
  EXPECT_TRUE(s.Release().ok());
  EXPECT_TRUE(s.Release().ok());
}

// Unmap(region) while three snapshots of it are alive and a thread is
// reading one: Unmap returns OK, the reader's last read fails cleanly
// (every read before it was exact), and the snapshots are released with the
// region: every method then fails with FailedPrecondition ("unmapped"),
// Release() is a no-op, and Stats hold nothing for them. With a budget and
// a slow store, copies are being spilled (writes in flight) at Unmap.
class SnapshotUnmapTest : public ::testing::TestWithParam<bool> {};

TEST_P(SnapshotUnmapTest, UnmapEndsLiveSnapshotsCleanly) {
  const bool paging = GetParam();
  constexpr uint64_t kPages = 512;
  RuntimeOptions o;
  std::shared_ptr<DelayedStore> store;
  if (paging) {
    // Copies count against the budget and go to the store first; each
    // transfer takes 200 us, so some are in flight at any time.
    store = std::make_shared<DelayedStore>(*NewMemoryStore(8 * kPages * kPage),
                                           absl::Microseconds(200));
    o.resident_budget_bytes = 128 * kPage;
    o.swap.store = store;
  }
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = kPages * kPage, .name = "snapped"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* const base = (*r)->data();
  std::vector<uint64_t> gens(kPages, 1);
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 1);
  std::vector<std::unique_ptr<Snapshot>> snaps;
  std::vector<std::vector<uint64_t>> shadows;
  for (int i = 0; i < 3; ++i) {
    TAKE_OR_SKIP(s, *r);
    snaps.push_back(std::move(s));
    shadows.push_back(gens);
    for (uint64_t p = i * kPages / 4; p < kPages; p += 1 + i) {
      gens[p] = 2 + i;
      FillPage(base + p * kPage, p, gens[p]);
    }
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(SnapshotIs(*snaps[i], shadows[i])) << "snapshot " << i;
  }
  Stats s = rt->stats();
  EXPECT_EQ(s.snapshots_live, 3u);
  EXPECT_GT(s.snapshot_copies, 0u);

  // The newest snapshot: most of its pages are read from the live region
  // (unchanged since), the rest from copies.
  std::atomic<int> reads{0};
  absl::Status last;
  std::thread reader([&] {
    std::vector<std::byte> buf(8 * kPage);
    for (uint64_t first = 0;; first = (first + 8) % kPages) {
      const absl::Status st = snaps[2]->Read(first * kPage, absl::MakeSpan(buf));
      if (!st.ok()) {
        last = st;
        return;
      }
      for (uint64_t p = 0; p < 8; ++p) {
        ASSERT_TRUE(PageIs(buf.data() + p * kPage, first + p,
                           shadows[2][first + p]))
            << "read " << reads.load();
      }
      reads.fetch_add(1);
    }
  });
  ASSERT_TRUE(Eventually([&] { return reads.load() >= int{2 * kPages / 8}; }));
  if (paging) {
    // And swap-ins in flight (20 ms each) as Unmap starts.
    store->set_delay(absl::Milliseconds(20));
    ASSERT_TRUE(rt->Advise(*r, 0, kPages * kPage, Runtime::Advice::kWillNeed)
                    .ok());
    EXPECT_GT(store->pending(), 0u);
  }
  ASSERT_TRUE(rt->Unmap(*r).ok());
  reader.join();
  EXPECT_EQ(last.code(), absl::StatusCode::kFailedPrecondition) << last;
  EXPECT_THAT(std::string(last.message()), HasSubstr("unmapped"));

  ScratchDir dir;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(absl::StrCat("snapshot ", i));
    ExpectGone(*snaps[i], i > 0 ? snaps[0].get() : nullptr, "unmapped",
               dir.File(absl::StrCat("snap", i)));
  }
  s = rt->stats();
  EXPECT_EQ(s.regions, 0u);
  EXPECT_EQ(s.snapshots_live, 0u);
  EXPECT_EQ(s.snapshot_bytes, 0u);
  EXPECT_EQ(s.resident_pages, 0u);
  EXPECT_EQ(s.errors, 0u) << s.first_error;
  if (paging) {
    EXPECT_EQ(s.budget_used_pages, 0u) << s.ToString();
    EXPECT_EQ(s.store.used_slots, 0u) << s.ToString();
    EXPECT_EQ(store->unreaped(), 0u);
  }
  // A new region, maybe at the same address, is not the old snapshots'.
  auto again = rt->Map({.size = kPages * kPage, .name = "again"});
  ASSERT_TRUE(again.ok()) << again.status();
  FillPage((*again)->data(), 0, 7);
  std::vector<std::byte> buf(kPage);
  EXPECT_EQ(snaps[2]->Read(0, absl::MakeSpan(buf)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(PageIs((*again)->data(), 0, 7));
  rt.reset();
  ExpectGone(*snaps[1], snaps[0].get(), "destroyed", dir.File("after"));
}

INSTANTIATE_TEST_SUITE_P(Budget, SnapshotUnmapTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "SlowStoreUnderABudget"
                                             : "NoBudget";
                         });

// Snapshot reads racing with Unmap, many times over: each read either
// returns the snapshot's exact bytes or fails with FailedPrecondition.
// (Unmap used to take the region out of the address map before waiting for
// reads in progress, which then read its unchanged pages as unmapped: OK,
// with zeros.)
TEST(SnapshotTeardownTest, ReadsRacingWithUnmapAreExactOrFail) {
  constexpr uint64_t kPages = 16;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  std::mt19937_64 rng(5);
  constexpr int kRounds = 100;
  int failed_reads = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    auto r = rt->Map({.size = kPages * kPage, .name = "raced"});
    ASSERT_TRUE(r.ok()) << r.status();
    std::byte* const base = (*r)->data();
    for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 1);
    TAKE_OR_SKIP(snap, *r);
    // Half the pages change (the snapshot keeps copies), half are read
    // from the live region.
    for (uint64_t p = 0; p < kPages; p += 2) FillPage(base + p * kPage, p, 2);
    std::atomic<uint64_t> reads{0};
    absl::Status last;
    std::thread reader([&] {
      std::vector<std::byte> buf(kPage);
      for (uint64_t p = 0;; p = (p + 1) % kPages) {
        const absl::Status st = snap->Read(p * kPage, absl::MakeSpan(buf));
        if (!st.ok()) {
          last = st;
          return;
        }
        ASSERT_TRUE(PageIs(buf.data(), p, 1)) << "read " << reads.load();
        reads.fetch_add(1);
      }
    });
    ASSERT_TRUE(Eventually([&] { return reads.load() > 0; }));
    absl::SleepFor(absl::Microseconds(rng() % 300));
    ASSERT_TRUE(rt->Unmap(*r).ok());
    reader.join();
    EXPECT_EQ(last.code(), absl::StatusCode::kFailedPrecondition) << last;
    failed_reads += !last.ok();
  }
  EXPECT_EQ(failed_reads, kRounds);
  EXPECT_EQ(rt->stats().snapshots_live, 0u);
}

// ~Runtime (regions kept) while three threads write to a region with live
// snapshots, so copy-on-write faults are in flight, and a fourth keeps
// another region's pages coming and going (madvise), so put-backs meet
// EAGAIN and wait their turn. Every byte written must be in the region
// afterwards, and the snapshots outliving the Runtime fail cleanly.
//
// Each write sets one byte of a page (one of its 64 slots, one every 64
// bytes) and leaves the others: a page whose old bytes were lost in
// flight would lose its other slots, where a whole-page rewrite would
// hide the loss.
TEST(SnapshotTeardownTest, DestroyWhileWritersCopyOnWrite) {
  constexpr uint64_t kPages = 1024;
  constexpr uint64_t kSlots = kPage / 64;
  constexpr int kWriters = 3;
  RuntimeOptions o;
  o.unmap_regions_on_destroy = false;
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = kPages * kPage, .name = "cow"});
  auto scratch = rt->Map({.size = 64 * kPage, .name = "scratch"});
  ASSERT_TRUE(r.ok() && scratch.ok());
  std::byte* const base = (*r)->data();
  std::byte* const sbase = (*scratch)->data();
  // shadow[p * kSlots + k]: byte k * 64 of page p (the rest stay zero).
  // Written by the page's owner thread only, read after the joins.
  std::vector<unsigned char> shadow(kPages * kSlots);
  for (uint64_t p = 0; p < kPages; ++p) {
    FillPage(base + p * kPage, p, 1);
    for (uint64_t k = 0; k < kSlots; ++k) {
      shadow[p * kSlots + k] = Byte(p, k * 64, 1);
    }
  }
  std::vector<std::unique_ptr<Snapshot>> snaps;
  {
    TAKE_OR_SKIP(first, *r);
    snaps.push_back(std::move(first));
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes[kWriters] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      // Page p belongs to thread p % kWriters.
      std::mt19937_64 rng(40 + t);
      while (!stop.load()) {
        const uint64_t p = (rng() % (kPages / kWriters)) * kWriters + t;
        const uint64_t k = rng() % kSlots;
        const auto v = static_cast<unsigned char>(rng() % 255 + 1);
        base[p * kPage + k * 64] = std::byte{v};
        shadow[p * kSlots + k] = v;
        writes[t].fetch_add(1);
      }
    });
  }
  std::atomic<uint64_t> drops{0};
  threads.emplace_back([&] {
    while (!stop.load()) {
      FillPage(sbase, 0, 1);
      (void)madvise(sbase, 64 * kPage, MADV_DONTNEED);
      drops.fetch_add(1);
    }
  });
  auto wait_writes = [&](uint64_t each) {
    for (int t = 0; t < kWriters; ++t) {
      if (!Eventually([&] { return writes[t].load() >= each; },
                      absl::Seconds(20))) {
        return false;
      }
    }
    return true;
  };
  // More snapshots while the writers run (each is a fresh round of
  // copy-on-write faults).
  bool progressed = true;
  for (int i = 1; i < 6 && progressed; ++i) {
    progressed = wait_writes(500 * i);
    auto snap = (*r)->TakeSnapshot();
    ASSERT_TRUE(snap.ok()) << snap.status();
    snaps.push_back(std::move(*snap));
  }
  const Stats before = rt->stats();
  uint64_t at_destroy[kWriters];
  for (int t = 0; t < kWriters; ++t) at_destroy[t] = writes[t].load();
  rt.reset();  // copy-on-write faults in flight right now
  // The writers go on over plain memory.
  for (int t = 0; t < kWriters && progressed; ++t) {
    progressed = Eventually(
        [&] { return writes[t].load() >= at_destroy[t] + 1000; },
        absl::Seconds(20));
  }
  stop.store(true);
  for (auto& th : threads) th.join();
  ASSERT_TRUE(progressed) << "writers stopped making progress";
  EXPECT_GT(before.faults_write_protect, 0u);
  EXPECT_GT(before.snapshot_copies, 0u);
  EXPECT_GT(drops.load(), 0u);
  for (uint64_t p = 0; p < kPages; ++p) {
    for (uint64_t i = 0; i < kPage; ++i) {
      const unsigned char want = i % 64 == 0 ? shadow[p * kSlots + i / 64] : 0;
      ASSERT_EQ(static_cast<unsigned char>(base[p * kPage + i]), want)
          << "page " << p << " byte " << i;
    }
  }
  ScratchDir dir;
  for (size_t i = 0; i < snaps.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("snapshot ", i));
    ExpectGone(*snaps[i], i > 0 ? snaps[0].get() : nullptr, "destroyed",
               dir.File(absl::StrCat("s", i)));
  }
  EXPECT_EQ(munmap(base, kPages * kPage), 0);
  EXPECT_EQ(munmap(sbase, 64 * kPage), 0);
}

// ---------------------------------------------------------------------------
// Unmap and ~Runtime with swap I/O in flight.

// A Runtime paging through a DelayedStore: every transfer happens 1 ms
// after it was submitted (or later: set_delay), so evictions, swap-ins and
// read-ahead are in flight whenever the application pages.
struct SlowPaging {
  static constexpr uint64_t kBudget = 128;
  explicit SlowPaging(bool keep_regions) {
    store = std::make_shared<DelayedStore>(*NewMemoryStore(8192 * kPage),
                                           absl::Milliseconds(1));
    RuntimeOptions o;
    o.resident_budget_bytes = kBudget * kPage;
    o.swap.store = store;
    o.unmap_regions_on_destroy = !keep_regions;
    rt = MakeRuntime(o);
  }
  // Slows the store to 50 ms a transfer, drops the first `drop` pages of
  // `r` (frames for what follows) and asks for pages [first, first + 32)
  // back (swap-ins submitted, nobody waiting for them). Returns the
  // transfers in flight.
  uint64_t PutReadsInFlight(Region* r, uint64_t drop, uint64_t first) {
    store->set_delay(absl::Milliseconds(50));
    EXPECT_TRUE(rt->Advise(r, 0, drop * kPage, Runtime::Advice::kDontNeed).ok());
    EXPECT_TRUE(
        rt->Advise(r, first * kPage, 32 * kPage, Runtime::Advice::kWillNeed)
            .ok());
    return store->pending();
  }
  std::shared_ptr<DelayedStore> store;
  std::unique_ptr<Runtime> rt;
};

// Writes every page of [base, base + pages) (generation `gen`), then reads
// back the first `read_pages` in order: evictions and a sequential swap-in
// stream (read-ahead) go through the store.
void PageThrough(std::byte* base, uint64_t pages, uint64_t gen,
                 uint64_t read_pages) {
  for (uint64_t p = 0; p < pages; ++p) FillPage(base + p * kPage, p, gen);
  for (uint64_t p = 0; p < read_pages; ++p) {
    ASSERT_TRUE(PageIs(base + p * kPage, p, gen));
  }
}

// A thread that keeps writing and checking random pages of a region, each
// against its own generation (the thread owns them all).
class Churner {
 public:
  Churner(std::byte* base, uint64_t pages)
      : base_(base), gens_(pages, 0), thread_([this] { Run(); }) {}
  ~Churner() { Stop(); }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  uint64_t ops() const { return ops_.load(); }
  uint64_t bad() const { return bad_.load(); }
  // After Stop: the whole region against the generations.
  ::testing::AssertionResult RegionMatches() const {
    for (uint64_t p = 0; p < gens_.size(); ++p) {
      auto r = PageIs(base_ + p * kPage, p, gens_[p]);
      if (!r) return r;
    }
    return ::testing::AssertionSuccess();
  }

 private:
  void Run() {
    std::mt19937_64 rng(9);
    while (!stop_.load()) {
      const uint64_t p = rng() % gens_.size();
      if (rng() % 2 == 0) {
        gens_[p] = gens_[p] % 200 + 1;
        FillPage(base_ + p * kPage, p, gens_[p]);
      } else if (!PageIs(base_ + p * kPage, p, gens_[p])) {
        bad_.fetch_add(1);
      }
      ops_.fetch_add(1);
    }
  }

  std::byte* const base_;
  std::vector<uint64_t> gens_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ops_{0};
  std::atomic<uint64_t> bad_{0};
  std::thread thread_;
};

// Unmap of a region whose evictions and swap-ins are in flight (another
// region keeps paging meanwhile): Unmap waits for them, frees their slots
// and frames, and the other region loses nothing.
TEST(PagingTeardownTest, UnmapWithSwapIoInFlight) {
  constexpr uint64_t kPages = 512;  // each region 4x the budget
  SlowPaging sp(/*keep_regions=*/false);
  ASSERT_NE(sp.rt, nullptr);
  Runtime& rt = *sp.rt;
  auto a = rt.Map({.size = kPages * kPage, .name = "kept"});
  ASSERT_TRUE(a.ok()) << a.status();
  Churner churn((*a)->data(), kPages);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    // Checked unmapped after Unmap (FarFreeRange).
    auto b = rt.Map({.size = kPages * kPage, .name = "unmapped",
                     .fixed_address = FarFreeRange(kPages * kPage)});
    ASSERT_TRUE(b.ok()) << b.status();
    std::byte* const pb = (*b)->data();
    PageThrough(pb, kPages, 10 + round, kPages / 4);
    EXPECT_GT(sp.PutReadsInFlight(*b, kPages / 4, kPages / 2), 0u);
    ASSERT_TRUE(rt.Unmap(*b).ok());
    EXPECT_TRUE(IsUnmapped(pb, kPages * kPage));
    sp.store->set_delay(absl::Milliseconds(1));
  }
  ASSERT_TRUE(Eventually([&] { return churn.ops() > 2000; },
                         absl::Seconds(30)));
  churn.Stop();
  EXPECT_EQ(churn.bad(), 0u);
  EXPECT_TRUE(churn.RegionMatches());
  Stats s = rt.stats();
  EXPECT_GT(s.pages_swapped_out, 0u);
  EXPECT_GT(s.pages_swapped_in, 0u);
  EXPECT_EQ(s.errors, 0u) << s.first_error;
  ASSERT_TRUE(rt.Unmap(*a).ok());
  s = rt.stats();
  EXPECT_EQ(s.regions, 0u);
  EXPECT_EQ(s.budget_used_pages, 0u) << s.ToString();
  EXPECT_EQ(s.store.used_slots, 0u) << s.ToString();
  EXPECT_EQ(sp.store->unreaped(), 0u);
}

// ~Runtime with swap I/O in flight. Regions kept: a thread still pages one
// of them while the Runtime goes, and afterwards both regions hold every
// byte (what was swapped out is read back first). Either way no transfer
// may be left in the store when ~Runtime returns: its buffers are gone
// (the store outlives the Runtime here, as an application's may).
class PagingDestroyTest : public ::testing::TestWithParam<bool> {};

TEST_P(PagingDestroyTest, DestroyWithSwapIoInFlight) {
  const bool keep = GetParam();
  constexpr uint64_t kPages = 512;
  constexpr uint64_t kDropped = kPages / 4;  // pages of b dropped: zero
  SlowPaging sp(keep);
  ASSERT_NE(sp.rt, nullptr);
  // Checked unmapped after ~Runtime (FarFreeRange).
  auto a = sp.rt->Map({.size = kPages * kPage, .name = "a",
                       .fixed_address = FarFreeRange(kPages * kPage)});
  auto b = sp.rt->Map({.size = kPages * kPage, .name = "b",
                       .fixed_address = FarFreeRange(kPages * kPage)});
  ASSERT_TRUE(a.ok() && b.ok());
  std::byte* const pa = (*a)->data();
  std::byte* const pb = (*b)->data();
  PageThrough(pb, kPages, 3, kPages / 4);
  std::unique_ptr<Churner> churn;
  if (keep) {
    churn = std::make_unique<Churner>(pa, kPages);
    ASSERT_TRUE(Eventually([&] { return churn->ops() > 1000; },
                           absl::Seconds(30)));
  } else {
    PageThrough(pa, kPages, 4, kPages / 4);
  }
  const Stats s = sp.rt->stats();
  EXPECT_GT(s.pages_swapped_out, 0u);
  EXPECT_EQ(s.errors, 0u) << s.first_error;
  const uint64_t in_flight = sp.PutReadsInFlight(*b, kDropped, kPages / 2);
  EXPECT_GT(in_flight, 0u);
  const absl::Time start = absl::Now();
  sp.rt.reset();
  std::printf("~Runtime with %lu transfers in flight: %s\n",
              static_cast<unsigned long>(in_flight),
              absl::FormatDuration(absl::Now() - start).c_str());
  // Nothing left for the store to do with the Runtime's buffers.
  EXPECT_EQ(sp.store->pending(), 0u);
  EXPECT_EQ(sp.store->unreaped(), 0u);
  if (keep) {
    const uint64_t ops = churn->ops();
    ASSERT_TRUE(Eventually([&] { return churn->ops() > ops + 1000; }));
    churn->Stop();
    EXPECT_EQ(churn->bad(), 0u);
    EXPECT_TRUE(churn->RegionMatches());
    for (uint64_t p = 0; p < kPages; ++p) {
      ASSERT_TRUE(PageIs(pb + p * kPage, p, p < kDropped ? 0 : 3));
    }
    EXPECT_EQ(munmap(pa, kPages * kPage), 0);
    EXPECT_EQ(munmap(pb, kPages * kPage), 0);
  } else {
    EXPECT_TRUE(IsUnmapped(pa, kPages * kPage));
    EXPECT_TRUE(IsUnmapped(pb, kPages * kPage));
  }
}

INSTANTIATE_TEST_SUITE_P(Regions, PagingDestroyTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "Kept" : "Unmapped";
                         });

}  // namespace
}  // namespace upager::testing
