#include "tests/test_support.h"

#include <cstdlib>
#include <cstring>

namespace upager::testing {

bool RequireFeatures() {
  const char* v = std::getenv("UPAGER_REQUIRE_FEATURES");
  return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

}  // namespace upager::testing
