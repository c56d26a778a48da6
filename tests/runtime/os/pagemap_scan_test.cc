// PAGEMAP_SCAN against the real kernel: categories of plain anonymous
// memory, and the WP_ASYNC dirty tracking that incremental snapshots and
// clean-page drops build on.
#include "runtime/os/pagemap_scan.h"

#include <cstring>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/os/memory.h"
#include "runtime/os/userfaultfd.h"
#include "tests/test_support.h"

namespace upager::internal::os {
namespace {

constexpr uint64_t kPage = 4096;

std::unique_ptr<PagemapScanner> OpenScanner() {
  auto s = PagemapScanner::Open();
  if (!s.ok() && absl::IsUnimplemented(s.status())) return nullptr;
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

using Runs = std::vector<std::tuple<uint64_t, uint64_t, uint64_t>>;

Runs Collect(const PagemapScanner& s, uint64_t base, uint64_t pages,
             const ScanQuery& q) {
  Runs runs;
  EXPECT_TRUE(s.ScanAll(base, base + pages * kPage, q, [&](const PageRun& r) {
                 runs.emplace_back((r.start - base) / kPage,
                                   (r.end - base) / kPage, r.categories);
               }).ok());
  return runs;
}

TEST(PagemapScanTest, ReportsPresentAndZeroPageRuns) {
  auto scanner = OpenScanner();
  if (scanner == nullptr) UPAGER_SKIP_MISSING_FEATURE("PAGEMAP_SCAN (6.7+)");
  auto m = MapAnonymous(64 * kPage, Protection::kReadWrite);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(AdviseNoHugePage(*m, 64 * kPage).ok());
  auto* p = static_cast<volatile unsigned char*>(*m);
  for (int i = 0; i < 10; ++i) p[i * kPage] = 1;          // private pages
  for (int i = 20; i < 30; ++i) (void)p[i * kPage];       // zero page
  const auto base = reinterpret_cast<uint64_t>(*m);

  ScanQuery present;
  present.required = page_is::kPresent;
  present.report = page_is::kPresent | page_is::kPfnZero;
  EXPECT_EQ(Collect(*scanner, base, 64, present),
            (Runs{{0, 10, page_is::kPresent},
                  {20, 30, page_is::kPresent | page_is::kPfnZero}}));

  // Inverted: the pages that are NOT present.
  ScanQuery absent;
  absent.required = page_is::kPresent;
  absent.inverted = page_is::kPresent;
  absent.report = page_is::kPresent;
  EXPECT_EQ(Collect(*scanner, base, 64, absent),
            (Runs{{10, 20, 0}, {30, 64, 0}}));
  (void)Unmap(*m, 64 * kPage);
}

TEST(PagemapScanTest, AsyncWriteProtectTracksWrittenPages) {
  auto scanner = OpenScanner();
  if (scanner == nullptr) UPAGER_SKIP_MISSING_FEATURE("PAGEMAP_SCAN (6.7+)");
  UffdOpenOptions o;
  o.required_features = uffd_feature::kWpAsync | uffd_feature::kWpUnpopulated |
                        uffd_feature::kPagefaultFlagWp;
  auto u = OpenUffd(o);
  if (!u.ok() && absl::IsFailedPrecondition(u.status())) {
    UPAGER_SKIP_MISSING_FEATURE(u.status().message());
  }
  ASSERT_TRUE(u.ok()) << u.status();
  constexpr uint64_t kPages = 32;
  auto m = MapAnonymous(kPages * kPage, Protection::kReadWrite);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(AdviseNoHugePage(*m, kPages * kPage).ok());
  const auto base = reinterpret_cast<uint64_t>(*m);
  ASSERT_TRUE((*u)->Register(base, kPages * kPage, kRegisterWriteProtect).ok());
  // With WP_UNPOPULATED even never-touched pages are protected.
  ASSERT_TRUE((*u)->WriteProtect(base, kPages * kPage, true, false).ok());

  auto* p = static_cast<unsigned char*>(*m);
  // WP_ASYNC: the kernel resolves these faults itself and marks the pages
  // written; no message reaches the userfaultfd.
  p[3 * kPage] = 3;
  p[7 * kPage] = 7;
  p[8 * kPage + 100] = 8;
  ScanQuery written;
  written.required = page_is::kWritten;
  written.report = page_is::kWritten;
  EXPECT_EQ(Collect(*scanner, base, kPages, written),
            (Runs{{3, 4, page_is::kWritten}, {7, 9, page_is::kWritten}}));

  // Harvest and re-protect in one pass; then nothing is written...
  ScanQuery harvest = written;
  harvest.write_protect_matched = true;
  EXPECT_EQ(Collect(*scanner, base, kPages, harvest).size(), 2u);
  EXPECT_TRUE(Collect(*scanner, base, kPages, written).empty());
  // ...until the next write, and the bytes are intact throughout.
  p[8 * kPage] = 9;
  EXPECT_EQ(Collect(*scanner, base, kPages, written),
            (Runs{{8, 9, page_is::kWritten}}));
  EXPECT_EQ(p[3 * kPage], 3);
  EXPECT_EQ(p[7 * kPage], 7);
  EXPECT_EQ(p[8 * kPage], 9);
  EXPECT_EQ(p[8 * kPage + 100], 8);
  EXPECT_EQ((*u)->ReadEvents(absl::Span<UffdEvent>()).count, 0u);
  (void)Unmap(*m, kPages * kPage);
}

TEST(PagemapScanTest, ScanAllCrossesManyOutputBatches) {
  auto scanner = OpenScanner();
  if (scanner == nullptr) UPAGER_SKIP_MISSING_FEATURE("PAGEMAP_SCAN (6.7+)");
  constexpr uint64_t kPages = 2048;
  auto m = MapAnonymous(kPages * kPage, Protection::kReadWrite);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(AdviseNoHugePage(*m, kPages * kPage).ok());
  auto* p = static_cast<volatile unsigned char*>(*m);
  // Every other page written: 1024 separate runs, 4+ output batches.
  for (uint64_t i = 0; i < kPages; i += 2) p[i * kPage] = 1;
  ScanQuery present;
  present.required = page_is::kPresent;
  present.report = page_is::kPresent;
  const Runs runs =
      Collect(*scanner, reinterpret_cast<uint64_t>(*m), kPages, present);
  ASSERT_EQ(runs.size(), kPages / 2);
  for (uint64_t i = 0; i < runs.size(); ++i) {
    EXPECT_EQ(std::get<0>(runs[i]), 2 * i);
    EXPECT_EQ(std::get<1>(runs[i]), 2 * i + 1);
  }
  (void)Unmap(*m, kPages * kPage);
}

}  // namespace
}  // namespace upager::internal::os
