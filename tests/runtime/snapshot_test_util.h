// Helpers shared by the snapshot tests: take-or-skip, and whole-region and
// whole-snapshot checks against a per-page generation shadow (PageIs).
#ifndef UPAGER_TESTS_RUNTIME_SNAPSHOT_TEST_UTIL_H_
#define UPAGER_TESTS_RUNTIME_SNAPSHOT_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

// Skips (or fails under UPAGER_REQUIRE_FEATURES) when the kernel cannot
// take snapshots; otherwise declares `var`, the snapshot.
#define TAKE_OR_SKIP(var, region)                                         \
  auto var##_or = (region)->TakeSnapshot();                               \
  if (absl::IsFailedPrecondition(var##_or.status())) {                    \
    UPAGER_SKIP_MISSING_FEATURE(var##_or.status().ToString());            \
  }                                                                       \
  ASSERT_TRUE(var##_or.ok()) << var##_or.status();                        \
  std::unique_ptr<Snapshot> var = std::move(*var##_or)

namespace upager::testing {

// Reads the whole snapshot and checks page i against gens[i] (PageIs).
inline ::testing::AssertionResult SnapshotIs(const Snapshot& s,
                                             const std::vector<uint64_t>& gens) {
  std::vector<std::byte> buf(s.size());
  absl::Status st = s.Read(0, absl::MakeSpan(buf));
  if (!st.ok()) return ::testing::AssertionFailure() << st;
  for (uint64_t p = 0; p < gens.size(); ++p) {
    auto r = PageIs(buf.data() + p * kPage, p, gens[p]);
    if (!r) return r << " (snapshot " << s.id() << ")";
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult RegionIs(const std::byte* base,
                                           const std::vector<uint64_t>& gens) {
  for (uint64_t p = 0; p < gens.size(); ++p) {
    auto r = PageIs(base + p * kPage, p, gens[p]);
    if (!r) return r << " (live region)";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace upager::testing

#endif  // UPAGER_TESTS_RUNTIME_SNAPSHOT_TEST_UTIL_H_
