// The fault path under injected kernel outcomes, through the OS seam: every
// fault must end with the application's bytes right (checked against a
// shadow copy) or, for a hard error, with the faulting thread released by
// SIGBUS and the error visible in Stats and Runtime::status().
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/engine.h"
#include "tests/runtime/os/fake_uffd.h"
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
