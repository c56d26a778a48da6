#include "tests/test_support.h"

#include <cstdlib>
#include <cstring>

#include "absl/time/clock.h"

namespace upager::testing {

bool RequireFeatures() {
  const char* v = std::getenv("UPAGER_REQUIRE_FEATURES");
  return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

bool Eventually(const std::function<bool()>& pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() > deadline) return pred();
    absl::SleepFor(absl::Microseconds(100));
  }
  return true;
}

}  // namespace upager::testing
