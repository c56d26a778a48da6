// Signal mode (FaultMode::kSignal) on its own: faults resolved on the
// faulting thread, hand-offs, chaining to the application's SIGBUS handler,
// and the documented EFAULT for kernel-mode accesses. (The paging, snapshot
// and first-touch suites also run whole in signal mode: see
// upager_test_both_modes in tests/CMakeLists.txt.)
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

constexpr size_t kPage = 4096;

RuntimeOptions SignalOptions() {
  RuntimeOptions o;
  o.fault_mode = FaultMode::kSignal;
  return o;
}

std::unique_ptr<Runtime> MakeSignalRuntime(RuntimeOptions o = SignalOptions()) {
  o.fault_mode = FaultMode::kSignal;
  auto rt = Runtime::Create(o);
  EXPECT_TRUE(rt.ok()) << rt.status();
  return rt.ok() ? std::move(*rt) : nullptr;
}

uint8_t Pattern(uint64_t page, uint64_t i) {
  return static_cast<uint8_t>(page * 131 + i * 7 + 1);
}

TEST(SignalModeTest, FirstTouchIsResolvedOnTheFaultingThread) {
  auto rt = MakeSignalRuntime();
  ASSERT_NE(rt, nullptr);
  constexpr size_t kPages = 4096;
  auto region = rt->Map({.size = kPages * kPage, .name = "sig"});
  ASSERT_TRUE(region.ok()) << region.status();
  auto* p = reinterpret_cast<uint8_t*>((*region)->data());
  std::vector<uint8_t> shadow(kPages * kPage, 0);
  // Reads of untouched pages see zeros; every other page is written.
  for (size_t page = 0; page < kPages; ++page) {
    if (page % 3 == 0) {
      ASSERT_EQ(p[page * kPage + 5], 0) << page;
      continue;
    }
    for (size_t i = 0; i < kPage; i += 512) {
      p[page * kPage + i] = shadow[page * kPage + i] = Pattern(page, i);
    }
  }
  ASSERT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);
  const Stats s = rt->stats();
  EXPECT_EQ(s.fault_mode, "signal");
  EXPECT_GT(s.faults_on_thread, 0u) << s.ToString();
  // Nothing here needs a service thread: no budget, no snapshot.
  EXPECT_EQ(s.faults_handed_off, 0u) << s.ToString();
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

TEST(SignalModeTest, ManyThreadsTouchingTheSamePages) {
  auto rt = MakeSignalRuntime();
  ASSERT_NE(rt, nullptr);
  constexpr size_t kPages = 8192;
  auto region = rt->Map({.size = kPages * kPage, .name = "sig-mt"});
  ASSERT_TRUE(region.ok()) << region.status();
  auto* p = reinterpret_cast<uint8_t*>((*region)->data());
  // Thread t writes byte t of every page, in its own random order, so the
  // threads race on every page's first touch.
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([p, t] {
      std::vector<size_t> order(kPages);
      for (size_t i = 0; i < kPages; ++i) order[i] = i;
      std::shuffle(order.begin(), order.end(), std::mt19937(t + 1));
      for (size_t page : order) p[page * kPage + t] = Pattern(page, t);
    });
  }
  for (auto& th : threads) th.join();
  for (size_t page = 0; page < kPages; ++page) {
    for (int t = 0; t < kThreads; ++t) {
      ASSERT_EQ(p[page * kPage + t], Pattern(page, t)) << page << " " << t;
    }
    ASSERT_EQ(p[page * kPage + kThreads], 0) << page;
  }
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

TEST(SignalModeTest, LargeRegionGrowsItsTableThroughHandOffs) {
  // Above Engine::kSignalReserveBytes the page table is not preallocated:
  // the first touch of each 2 MiB goes to a service thread, which allocates
  // the node; later touches there stay on the faulting thread.
  auto rt = MakeSignalRuntime();
  ASSERT_NE(rt, nullptr);
  const size_t size = size_t{64} << 30;
  auto region = rt->Map({.size = size, .name = "sig-large"});
  ASSERT_TRUE(region.ok()) << region.status();
  auto* p = reinterpret_cast<uint8_t*>((*region)->data());
  std::mt19937_64 rng(7);
  std::vector<size_t> pages;
  for (int i = 0; i < 300; ++i) pages.push_back(rng() % (size / kPage));
  for (size_t page : pages) p[page * kPage] = Pattern(page, 0);
  for (size_t page : pages) p[page * kPage + 1] = Pattern(page, 1);
  for (size_t page : pages) {
    ASSERT_EQ(p[page * kPage], Pattern(page, 0));
    ASSERT_EQ(p[page * kPage + 1], Pattern(page, 1));
  }
  const Stats s = rt->stats();
  EXPECT_GT(s.faults_handed_off, 0u) << s.ToString();
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

TEST(SignalModeTest, BudgetedWritesAreHandedOffAndKeepTheirBytes) {
  RuntimeOptions o = SignalOptions();
  o.resident_budget_bytes = 4 << 20;
  auto rt = MakeSignalRuntime(o);
  ASSERT_NE(rt, nullptr);
  constexpr size_t kPages = 4096;  // 16 MiB through a 4 MiB budget
  auto region = rt->Map({.size = kPages * kPage, .name = "sig-paged"});
  ASSERT_TRUE(region.ok()) << region.status();
  auto* p = reinterpret_cast<uint8_t*>((*region)->data());
  for (size_t page = 0; page < kPages; ++page) {
    std::memset(p + page * kPage, Pattern(page, 0), kPage);
  }
  for (size_t page = 0; page < kPages; ++page) {
    for (size_t i = 0; i < kPage; i += 1024) {
      ASSERT_EQ(p[page * kPage + i], Pattern(page, 0)) << page;
    }
  }
  const Stats s = rt->stats();
  EXPECT_GT(s.faults_handed_off, 0u) << s.ToString();
  EXPECT_GT(s.pages_swapped_in, 0u) << s.ToString();
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

// A handed-off fault's thread sleeps until the service is done with that
// hand-off, whatever else wakes it: other threads' fills notify all the
// time here. Woken early, it used to retry its write and hand the fault
// over a second time; the duplicate was served after the thread had moved
// on (even after a later snapshot), so it must not exist.
TEST(SignalModeTest, EachHandedOffFaultIsHandedOffOnce) {
  auto rt = MakeSignalRuntime();
  ASSERT_NE(rt, nullptr);
  constexpr size_t kPages = 2048;
  auto region = rt->Map({.size = kPages * kPage, .name = "sig-once"});
  ASSERT_TRUE(region.ok()) << region.status();
  auto* p = reinterpret_cast<uint8_t*>((*region)->data());
  std::memset(p, 0x11, kPages * kPage);
  auto snap = (*region)->TakeSnapshot();
  ASSERT_TRUE(snap.ok()) << snap.status();
  const uint64_t before = rt->stats().faults_handed_off;

  // Noise: first touches of another region, each fill notifying waiters.
  std::atomic<bool> stop{false};
  std::thread noise([&] {
    while (!stop.load()) {
      auto other = rt->Map({.size = 1024 * kPage, .name = "sig-noise"});
      if (!other.ok()) return;
      auto* q = reinterpret_cast<volatile uint8_t*>((*other)->data());
      // Strided reads: one handler fill (and notify) each.
      for (size_t page = 0; page < 1024 && !stop.load(); page += 17) {
        (void)q[page * kPage];
      }
      (void)rt->Unmap(*other);
    }
  });
  // In descending order, so no copy-aside window (which grows only along
  // an ascending stream, and stops at a page already copied) covers a page
  // written later: one write-protect fault, so one hand-off, per page.
  for (size_t page = kPages; page-- > 0;) {
    p[page * kPage + 9] = Pattern(page, 9);
  }
  stop.store(true);
  noise.join();

  const Stats s = rt->stats();
  EXPECT_EQ(s.faults_handed_off - before, kPages) << s.ToString();
  for (size_t page = 0; page < kPages; ++page) {
    ASSERT_EQ(p[page * kPage + 9], Pattern(page, 9)) << page;
    ASSERT_EQ(p[page * kPage + 10], 0x11) << page;
  }
  std::vector<std::byte> old(kPage);
  for (size_t page = 0; page < kPages; page += 97) {
    ASSERT_TRUE((*snap)->Read(page * kPage, absl::MakeSpan(old)).ok());
    ASSERT_EQ(static_cast<uint8_t>(old[9]), 0x11) << page;
  }
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

TEST(SignalModeTest, KernelModeAccessFailsWithEfault) {
  // Documented trade-off: read(2) into an untouched page of a signal-mode
  // region is not served (the kernel cannot raise SIGBUS on its own
  // access). Touching the page first makes it work.
  auto rt = MakeSignalRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = 4 * kPage, .name = "sig-efault"});
  ASSERT_TRUE(region.ok()) << region.status();
  auto* p = reinterpret_cast<char*>((*region)->data());
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "abcd", 4), 4);
  errno = 0;
  EXPECT_EQ(read(fds[0], p, 4), -1);
  EXPECT_EQ(errno, EFAULT);
  p[0] = 'x';  // first touch from user space
  EXPECT_EQ(read(fds[0], p, 4), 4);
  EXPECT_EQ(std::string(p, 4), "abcd");
  close(fds[0]);
  close(fds[1]);
}

// --- Chaining. These run in death-test children (fork + exec), so the
// handler installed first in the child is the application's.

sigjmp_buf g_jump;
std::atomic<int> g_app_sigbus{0};
void AppHandler(int, siginfo_t*, void*) {
  g_app_sigbus.fetch_add(1);
  siglongjmp(g_jump, 1);
}

// A SIGBUS that is no region's: a shared file mapping touched past EOF.
char* PastEndOfFile() {
  char path[] = "/tmp/upager-sigbus-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return nullptr;
  unlink(path);
  if (ftruncate(fd, 1) != 0) return nullptr;
  void* m = mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return m == MAP_FAILED ? nullptr : static_cast<char*>(m) + kPage;
}

void ChainToApplicationHandler() {
  struct sigaction sa {};
  sa.sa_sigaction = &AppHandler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, nullptr) != 0) _exit(10);
  auto rt = Runtime::Create(SignalOptions());
  if (!rt.ok()) _exit(11);
  auto region = (*rt)->Map({.size = 16 * kPage, .name = "chain"});
  if (!region.ok()) _exit(12);
  auto* p = reinterpret_cast<volatile char*>((*region)->data());
  p[0] = 1;  // ours: served, the application's handler never sees it
  if (g_app_sigbus.load() != 0) _exit(13);
  volatile char* foreign = PastEndOfFile();
  if (foreign == nullptr) _exit(14);
  if (sigsetjmp(g_jump, 1) == 0) {
    foreign[0] = 1;  // not ours: goes to AppHandler, which jumps back
    _exit(15);
  }
  if (g_app_sigbus.load() != 1) _exit(16);
  p[kPage * 5] = 2;  // ours again after the chained one
  if (p[0] != 1 || p[kPage * 5] != 2 || g_app_sigbus.load() != 1) _exit(17);
  _exit(0);
}

void ForeignSigbusWithoutApplicationHandler() {
  auto rt = Runtime::Create(SignalOptions());
  if (!rt.ok()) _exit(11);
  auto region = (*rt)->Map({.size = 16 * kPage, .name = "foreign"});
  if (!region.ok()) _exit(12);
  reinterpret_cast<volatile char*>((*region)->data())[0] = 1;
  volatile char* foreign = PastEndOfFile();
  if (foreign == nullptr) _exit(14);
  foreign[0] = 1;  // the default action: killed by SIGBUS
  _exit(0);
}

TEST(SignalModeDeathTest, ChainsToThePreviousHandler) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(ChainToApplicationHandler(), ::testing::ExitedWithCode(0), "");
}

TEST(SignalModeDeathTest, ForeignSigbusIsNotSwallowed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(ForeignSigbusWithoutApplicationHandler(),
              ::testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace upager::testing
