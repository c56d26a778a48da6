// The option checks on their own (no userfaultfd): each rejection's whole
// message, which the Engine's callers see unchanged, and the edges of what
// is accepted. tests/fuzz/options_fuzzer.cc checks the same functions on
// arbitrary values.
#include "runtime/option_checks.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "backing/memory_store.h"
#include "gtest/gtest.h"
#include "pager/eviction_policy.h"

namespace upager::testing {
namespace {

using internal::CheckMapSnapshotOptions;
using internal::CheckRegionOptions;
using internal::CheckRuntimeOptions;
using internal::SnapshotRegionOptions;

constexpr size_t kPage = 4096;

template <typename Options>
struct Case {
  std::function<void(Options&)> set;
  std::string message;  // empty: accepted
};

template <typename Options, typename Check>
void ExpectVerdicts(const std::vector<Case<Options>>& cases, Check check) {
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("case ", i, ": ", cases[i].message));
    Options o;
    cases[i].set(o);
    const absl::Status s = check(o);
    if (cases[i].message.empty()) {
      EXPECT_TRUE(s.ok()) << s;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
      EXPECT_EQ(s.message(), cases[i].message);
    }
  }
}

TEST(OptionChecksTest, RuntimeOptions) {
  using O = RuntimeOptions;
  const std::vector<Case<O>> cases = {
      {[](O&) {}, ""},
      {[](O& o) { o.service_threads = 64; }, ""},
      {[](O& o) { o.service_threads = -1; },
       "RuntimeOptions.service_threads = -1 is outside [0, 64] (0 = one per "
       "CPU)"},
      {[](O& o) { o.fault_around_pages = 0; },
       "RuntimeOptions.fault_around_pages = 0 is outside [1, 512] (1 turns "
       "fault-around off)"},
      {[](O& o) { o.fault_around_max_pages = 513; },
       "RuntimeOptions.fault_around_max_pages = 513 is outside [1, 512]"},
      {[](O& o) { o.uffd_open = static_cast<UffdOpenMode>(4); },
       "RuntimeOptions.uffd_open = 4 is not a UffdOpenMode"},
      {[](O& o) { o.fault_mode = static_cast<FaultMode>(-1); },
       "RuntimeOptions.fault_mode = -1 is not a FaultMode (kThread = 0, "
       "kSignal = 1)"},
      {[](O& o) { o.service_spin_ns = 1'000'001; },
       "RuntimeOptions.service_spin_ns = 1000001 is above 1000000"},
      {[](O& o) { o.swap_in_spin_ns = 1'000'001; },
       "RuntimeOptions.swap_in_spin_ns = 1000001 is above 1000000"},
      {[](O& o) { o.swap_in_spin_ns = 1'000'000; }, ""},
      {[](O& o) { o.swap_in_spin_ns = 0; }, ""},
      {[](O& o) { o.max_events_per_read = 65; },
       "RuntimeOptions.max_events_per_read = 65 is outside [1, 64]"},
      {[](O& o) { o.zero_pool_bytes = 0; }, ""},
      {[](O& o) { o.zero_pool_bytes = 4097; },
       "RuntimeOptions.zero_pool_bytes = 4097 is not a multiple of the page "
       "size 4096"},
      {[](O& o) { o.zero_pool_bytes = O::kMaxZeroPoolBytes + kPage; },
       "RuntimeOptions.zero_pool_bytes = 17179873280 is larger than "
       "RuntimeOptions::kMaxZeroPoolBytes = 17179869184"},
      {[](O& o) {
         o.resident_budget_bytes = kPage;
         o.zero_pool_bytes = 2 * kPage;
       },
       "RuntimeOptions.zero_pool_bytes = 8192 is larger than "
       "resident_budget_bytes = 4096 (pool pages count against the budget)"},
      {[](O& o) { o.resident_budget_bytes = kPage; }, ""},
      {[](O& o) { o.resident_budget_bytes = kPage - 1; },
       "RuntimeOptions.resident_budget_bytes = 4095 is smaller than one page "
       "(4096 bytes)"},
      {[](O& o) { o.resident_budget_bytes = uint64_t{1} << 62; },
       absl::StrCat(
           "RuntimeOptions.resident_budget_bytes = ", uint64_t{1} << 62,
           " is above the largest budget, ",
           internal::EvictionPolicy::kMaxBudgetPages, " pages of 4096 bytes")},
      // Without a budget, the watermarks and the swap are not looked at.
      {[](O& o) {
         o.low_watermark_percent = 0;
         o.swap.capacity_bytes = 1;
       },
       ""},
      {[](O& o) {
         o.resident_budget_bytes = kPage;
         o.low_watermark_percent = 96;
       },
       "RuntimeOptions watermarks low = 96%, high = 95% must satisfy 1 <= "
       "low <= high <= 100"},
      {[](O& o) {
         o.resident_budget_bytes = kPage;
         o.high_watermark_percent = 101;
       },
       "RuntimeOptions watermarks low = 85%, high = 101% must satisfy 1 <= "
       "low <= high <= 100"},
      {[](O& o) {
         o.resident_budget_bytes = kPage;
         o.swap.capacity_bytes = 12345;
       },
       "SwapOptions.capacity_bytes = 12345 is not a multiple of the page size "
       "4096"},
  };
  ExpectVerdicts(cases,
                 [](const O& o) { return CheckRuntimeOptions(o, kPage); });
}

TEST(OptionChecksTest, AnApplicationStoreHasNoCapacityToCheck) {
  auto store = internal::MemoryStore::Create(kPage);
  ASSERT_TRUE(store.ok()) << store.status();
  RuntimeOptions o;
  o.resident_budget_bytes = kPage;
  o.swap.capacity_bytes = 12345;
  o.swap.store = std::move(*store);
  EXPECT_TRUE(CheckRuntimeOptions(o, kPage).ok());
}

TEST(OptionChecksTest, RegionOptions) {
  using O = RegionOptions;
  const std::vector<Case<O>> cases = {
      {[](O& o) { o.size = kPage; }, ""},
      {[](O& o) {
         o.size = kPage << 36;  // PageTable::kMaxPages
         o.fixed_address = reinterpret_cast<void*>(kPage);
         o.fault_around_pages = 512;
         o.source_offset = 7 * kPage;
       },
       ""},
      {[](O& o) { o.name = "heap"; },
       "RegionOptions.size = 0 for region 'heap' is not a non-zero multiple "
       "of the page size 4096"},
      {[](O& o) { o.size = kPage + 1; },
       "RegionOptions.size = 4097 for region '' is not a non-zero multiple of "
       "the page size 4096"},
      {[](O& o) { o.size = (kPage << 36) + kPage; },
       "RegionOptions.size = 281474976714752 for region '': page table: "
       "page_count 68719476737 is outside [1, 68719476736]"},
      {[](O& o) {
         o.size = kPage;
         o.fixed_address = reinterpret_cast<void*>(0x1234);
       },
       "RegionOptions.fixed_address = 0x1234 for region '' is not aligned to "
       "the page size 4096"},
      {[](O& o) {
         o.size = kPage;
         o.fault_around_pages = 0;
       },
       "RegionOptions.fault_around_pages = 0 for region '' is outside [1, "
       "512]"},
      {[](O& o) {
         o.size = kPage;
         o.source_offset = 100;
       },
       "RegionOptions.source_offset = 100 for region '' is not a multiple of "
       "the page size 4096"},
  };
  ExpectVerdicts(cases, [](const O& o) {
    return CheckRegionOptions(o, kPage, 16).status();
  });
}

TEST(OptionChecksTest, RegionShapeTakesTheRuntimesWindowUnlessOverridden) {
  RegionOptions o;
  o.size = 3 * kPage;
  auto shape = CheckRegionOptions(o, kPage, 16);
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_EQ(shape->pages, 3u);
  EXPECT_EQ(shape->fault_around_pages, 16u);
  o.fault_around_pages = 1;
  shape = CheckRegionOptions(o, kPage, 16);
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_EQ(shape->fault_around_pages, 1u);
  // An invalid runtime default is the region's window too.
  o.fault_around_pages.reset();
  EXPECT_EQ(CheckRegionOptions(o, kPage, 0).status().message(),
            "RegionOptions.fault_around_pages = 0 for region '' is outside "
            "[1, 512]");
}

TEST(OptionChecksTest, MapSnapshotOptions) {
  MapSnapshotOptions o;
  EXPECT_TRUE(CheckMapSnapshotOptions(o).ok());
  o.region.source_path = "/data/file";
  const absl::Status s = CheckMapSnapshotOptions(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "Runtime::MapSnapshot: RegionOptions.source_path = '/data/file' "
            "must be empty (the snapshot is the source)");
}

TEST(OptionChecksTest, SnapshotRegionOptions) {
  MapSnapshotOptions o;
  o.region.fault_around_pages = 4;
  auto ro = SnapshotRegionOptions(o, "a.snap", kPage, 10, kPage);
  ASSERT_TRUE(ro.ok()) << ro.status();
  EXPECT_EQ(ro->size, 10 * kPage);
  EXPECT_EQ(ro->name, "a.snap");
  EXPECT_EQ(ro->fault_around_pages, 4u);

  o.region.size = 10 * kPage;
  o.region.name = "restored";
  ro = SnapshotRegionOptions(o, "a.snap", kPage, 10, kPage);
  ASSERT_TRUE(ro.ok()) << ro.status();
  EXPECT_EQ(ro->name, "restored");

  o.region.size = 9 * kPage;
  ro = SnapshotRegionOptions(o, "a.snap", kPage, 10, kPage);
  EXPECT_EQ(ro.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ro.status().message(),
            "Runtime::MapSnapshot: RegionOptions.size = 36864, but 'a.snap' "
            "holds a region of 40960 bytes (0 takes the snapshot's size)");

  ro = SnapshotRegionOptions(o, "a.snap", 2 * kPage, 10, kPage);
  EXPECT_EQ(ro.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ro.status().message(),
            "Runtime::MapSnapshot: 'a.snap' has 8192-byte pages, this runtime "
            "4096");
}

}  // namespace
}  // namespace upager::testing
