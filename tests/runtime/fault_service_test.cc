// Service-thread placement: idle-priority pinned threads and the guard that
// keeps faults from starving when every CPU is busy.
#include <sched.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "runtime/fault_service.h"
#include "runtime/os/userfaultfd.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

namespace os = internal::os;

std::vector<int> Cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ASSERT_EQ(sched_setaffinity(0, sizeof(set), &set), 0);
}

TEST(FaultServiceTest, FaultsCompleteWhenEveryCpuIsBusy) {
  auto rt = Runtime::Create(
      {.service_idle_priority = true, .fault_around_pages = 1});
  ASSERT_TRUE(rt.ok()) << rt.status();
  ASSERT_TRUE((*rt)->stats().service_guard);
  const size_t ps = (*rt)->page_size();
  constexpr size_t kPages = 200;
  auto region = (*rt)->Map({.size = kPages * ps, .name = "starved"});
  ASSERT_TRUE(region.ok()) << region.status();

  // A normal-priority spinner on every CPU: the SCHED_IDLE service threads
  // get (almost) no CPU while they run.
  const std::vector<int> cpus = Cpus();
  std::atomic<bool> stop{false};
  std::atomic<size_t> spinning{0};
  std::vector<std::thread> spinners;
  for (int c : cpus) {
    spinners.emplace_back([&stop, &spinning, c] {
      PinTo(c);
      spinning.fetch_add(1);
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  }
  ASSERT_TRUE(Eventually([&] { return spinning.load() == cpus.size(); }));
  std::byte* p = (*region)->data();
  for (size_t i = 0; i < kPages; ++i) {
    std::memset(p + i * ps, static_cast<int>(i % 250 + 1), ps);
  }
  stop = true;
  for (auto& t : spinners) t.join();

  for (size_t i = 0; i < kPages; ++i) {
    for (size_t b = 0; b < ps; b += 512) {
      ASSERT_EQ(static_cast<int>(p[i * ps + b]), static_cast<int>(i % 250 + 1))
          << "page " << i;
    }
  }
  // Who served them (the idle-priority threads at scheduler ticks, or the
  // guard after 1 ms) depends on the scheduler; that the guard alone
  // suffices is tested deterministically in fault_injection_test.
  const Stats s = (*rt)->stats();
  EXPECT_EQ(s.faults_missing_write, kPages) << s.ToString();
  EXPECT_EQ(s.errors, 0u) << s.ToString();
}

TEST(FaultServiceTest, IdlePriorityIsOnePinnedThreadPerCpuPlusGuard) {
  auto rt = Runtime::Create({.service_idle_priority = true});
  ASSERT_TRUE(rt.ok()) << rt.status();
  const Stats s = (*rt)->stats();
  const size_t n = std::min<size_t>(Cpus().size(),
                                    RuntimeOptions::kAutoServiceThreads);
  EXPECT_TRUE(s.service_guard);
  EXPECT_EQ(s.service_threads, static_cast<int>(n));
  EXPECT_EQ(s.service_cpus.size(), n);
  EXPECT_NE(s.ToString().find("guard"), std::string::npos);
}

TEST(FaultServiceTest, DefaultNormalPriorityHasNoGuard) {
  auto rt = Runtime::Create({.service_threads = 2});
  ASSERT_TRUE(rt.ok()) << rt.status();
  const Stats s = (*rt)->stats();
  EXPECT_FALSE(s.service_guard);
  EXPECT_EQ(s.service_threads, 2);
  auto region = (*rt)->Map({.size = 64 * 4096, .name = "plain"});
  ASSERT_TRUE(region.ok());
  std::memset((*region)->data(), 7, 64 * 4096);
  for (size_t i = 0; i < 64 * 4096; i += 4096) {
    ASSERT_EQ(static_cast<int>((*region)->data()[i]), 7);
  }
}

// A handler with no faults to serve: a kick runs an empty batch, after
// which it reports (once) that an awaited read was submitted; the test
// says whether that read is still in flight and counts how often the loop
// asks.
class AwaitedReadHandler : public internal::FaultService::Handler {
 public:
  void ApplyEvents(absl::Span<const os::UffdEvent>) override {}
  void Serve(absl::Span<const os::UffdEvent>, uint64_t,
             std::vector<os::UffdEvent>*) override {}
  void OnServiceError(absl::Status) override {}
  bool TakeAwaitedReadSubmitted() override {
    return submitted.exchange(false);
  }
  bool ReadsAwaited() const override {
    asks.fetch_add(1);
    return awaited.load();
  }
  std::atomic<bool> submitted{false};
  std::atomic<bool> awaited{false};
  mutable std::atomic<uint64_t> asks{0};
};

// Asks counted over `d`, once the loop had `settle` to reach its state.
uint64_t AsksDuring(const AwaitedReadHandler& h, absl::Duration settle,
                    absl::Duration d) {
  absl::SleepFor(settle);
  const uint64_t before = h.asks.load();
  absl::SleepFor(d);
  return h.asks.load() - before;
}

// One service thread over a fresh userfaultfd and an AwaitedReadHandler.
class ReadSpinTest : public ::testing::Test {
 protected:
  void Start(uint32_t read_spin_ns) {
    auto uffd = os::OpenUffd({});
    ASSERT_TRUE(uffd.ok()) << uffd.status();
    uffd_ = std::move(*uffd);
    internal::FaultService::Config config;
    config.threads = 1;
    config.read_spin_ns = read_spin_ns;
    auto service = internal::FaultService::Start(uffd_.get(), &h_, config);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = std::move(*service);
  }
  // A batch (the kick's) after which the handler reports a read submitted
  // that is still in flight.
  void SubmitAwaitedRead() {
    h_.awaited = true;
    h_.submitted = true;
    service_->Kick();
  }
  void TearDown() override {
    if (service_ != nullptr) service_->Stop();
  }

  AwaitedReadHandler h_;
  std::unique_ptr<os::Uffd> uffd_;
  std::unique_ptr<internal::FaultService> service_;
};

TEST_F(ReadSpinTest, PollsWhileAnAwaitedReadIsInFlightThenSleeps) {
  // A long spin, so that the test sees it however slowly it runs.
  ASSERT_NO_FATAL_FAILURE(Start(1'000'000'000));
  // Asleep: nothing is asked.
  EXPECT_EQ(AsksDuring(h_, absl::Milliseconds(20), absl::Milliseconds(50)),
            0u);
  // A read submitted and in flight: the loop polls, asking each time.
  SubmitAwaitedRead();
  ASSERT_TRUE(Eventually([&] { return !h_.submitted.load(); }));
  EXPECT_GT(AsksDuring(h_, absl::Milliseconds(5), absl::Milliseconds(50)),
            10u);
  // Completed: the loop goes back to sleep at once.
  h_.awaited = false;
  EXPECT_EQ(AsksDuring(h_, absl::Milliseconds(20), absl::Milliseconds(50)),
            0u);
}

TEST_F(ReadSpinTest, StopsPollingForAReadAfterReadSpinNs) {
  ASSERT_NO_FATAL_FAILURE(Start(2'000'000));  // 2 ms
  // The read never completes: after 2 ms the loop sleeps regardless.
  SubmitAwaitedRead();
  ASSERT_TRUE(Eventually([&] { return !h_.submitted.load(); }));
  EXPECT_EQ(AsksDuring(h_, absl::Milliseconds(100), absl::Milliseconds(50)),
            0u);
}

TEST_F(ReadSpinTest, NoReadSpinWhenOff) {
  ASSERT_NO_FATAL_FAILURE(Start(0));
  SubmitAwaitedRead();
  // With the spin off the loop never asks whether one was submitted.
  EXPECT_EQ(AsksDuring(h_, absl::Milliseconds(20), absl::Milliseconds(50)),
            0u);
  EXPECT_TRUE(h_.submitted.load());
}

}  // namespace
}  // namespace upager::testing
