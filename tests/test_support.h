// Helpers shared by the test suite.
#ifndef UPAGER_TESTS_TEST_SUPPORT_H_
#define UPAGER_TESTS_TEST_SUPPORT_H_

#include <functional>
#include <string>

#include "absl/time/time.h"

#include "gtest/gtest.h"

namespace upager::testing {

// True when UPAGER_REQUIRE_FEATURES=1: a missing kernel feature must fail the
// test instead of skipping it (CI runs on kernels that have every feature).
bool RequireFeatures();

// Polls `pred` until it holds or `timeout` passes; returns its last value.
// For state a service thread publishes just after waking the application
// (Stats trail a fill by microseconds), never for timing.
bool Eventually(const std::function<bool()>& pred,
                absl::Duration timeout = absl::Seconds(5));

}  // namespace upager::testing

// Skips the current test with `why`, or fails it when UPAGER_REQUIRE_FEATURES
// is set. Use only for a kernel feature the machine lacks.
#define UPAGER_SKIP_MISSING_FEATURE(why)                                    \
  do {                                                                      \
    if (::upager::testing::RequireFeatures()) {                             \
      FAIL() << "UPAGER_REQUIRE_FEATURES=1 but a kernel feature is missing: " \
             << (why);                                                      \
    }                                                                       \
    GTEST_SKIP() << "kernel feature missing: " << (why);                    \
  } while (0)

#endif  // UPAGER_TESTS_TEST_SUPPORT_H_
