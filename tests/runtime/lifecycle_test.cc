// A Runtime's life around the application: fork() children (which get a
// private copy of every region and must not disturb the parent, whatever
// they do with the Runtime), and ~Runtime while application threads are
// still touching fresh pages or regions are still mapped. Bytes are checked
// against shadow copies throughout.
#include <signal.h>
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
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

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
    auto r = rt_->Map({.size = kPages * ps_, .name = "forked"});
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
  auto a = rt->Map({.size = 64 * ps, .name = "written"});
  auto b = rt->Map({.size = 64 * ps, .name = "untouched"});
  auto c = rt->Map({.size = 64 * ps, .name = "moved"});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  std::byte* const pa = (*a)->data();
  std::byte* const pb = (*b)->data();
  std::vector<unsigned char> shadow(64 * ps);
  for (size_t i = 0; i < shadow.size(); ++i) shadow[i] = Pattern(5, i);
  std::memcpy(pa, shadow.data(), shadow.size());
  ASSERT_EQ(std::memcmp(pa, shadow.data(), shadow.size()), 0);
  // The third region is moved by the application first: ~Runtime must find
  // it at its new address.
  void* dst = mmap(nullptr, 64 * ps, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
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

}  // namespace
}  // namespace upager::testing
