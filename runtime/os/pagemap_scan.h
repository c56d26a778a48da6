// PAGEMAP_SCAN (Linux 6.7+): ask the kernel which pages of a range are
// present, written, mapped to the zero page, ... in one ioctl, and
// optionally write-protect the written ones in the same pass (the cheap
// dirty tracking of UFFD_FEATURE_WP_ASYNC regions).
//
// Contract: addresses page-aligned; calls return a ScanResult (count and
// errno) on the hot path, absl::Status at setup. The kernel quirk measured
// here: when a scan returns fewer regions than the output holds, the walk
// covered the whole range even if walk_end says otherwise; ScanAll treats
// it as complete.
//
// Thread-safety: a PagemapScanner may be used from several threads at once
// (each call is one ioctl on a shared descriptor).
#ifndef UPAGER_RUNTIME_OS_PAGEMAP_SCAN_H_
#define UPAGER_RUNTIME_OS_PAGEMAP_SCAN_H_

#include <cstdint>
#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace upager::internal::os {

// Page categories, equal to the kernel's PAGE_IS_* (checked in the .cc).
namespace page_is {
inline constexpr uint64_t kWpAllowed = 1ull << 0;  // uffd-wp can be armed
inline constexpr uint64_t kWritten = 1ull << 1;    // written since last WP
inline constexpr uint64_t kFile = 1ull << 2;
inline constexpr uint64_t kPresent = 1ull << 3;
inline constexpr uint64_t kSwapped = 1ull << 4;
inline constexpr uint64_t kPfnZero = 1ull << 5;    // the shared zero page
inline constexpr uint64_t kHuge = 1ull << 6;
inline constexpr uint64_t kSoftDirty = 1ull << 7;
}  // namespace page_is

// A run of pages [start, end) sharing `categories` (masked by return_mask).
struct PageRun {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t categories = 0;
};

// Which pages to report: a page matches when
//   (cats ^ inverted) & required == required, and
//   anyof == 0 || (cats ^ inverted) & anyof != 0.
struct ScanQuery {
  uint64_t required = 0;  // category_mask
  uint64_t anyof = 0;     // category_anyof_mask
  uint64_t inverted = 0;  // category_inverted
  uint64_t report = 0;    // return_mask: categories reported per run
  // PM_SCAN_WP_MATCHING: write-protect the matched pages in the same walk
  // (needs a uffd with WP_ASYNC on the range).
  bool write_protect_matched = false;
  // PM_SCAN_CHECK_WPASYNC: fail with EPERM-like error if a page is not in
  // an async-WP range.
  bool check_wp_async = false;
  uint64_t max_pages = 0;  // 0 = no limit
};

struct ScanResult {
  size_t count = 0;       // runs written to the output
  uint64_t walk_end = 0;  // where the walk stopped (see the quirk above)
  int error = 0;          // 0 or an errno
};

class PagemapScanner {
 public:
  // Opens /proc/self/pagemap and probes the ioctl: Unimplemented when the
  // kernel lacks PAGEMAP_SCAN (before 6.7).
  static absl::StatusOr<std::unique_ptr<PagemapScanner>> Open();
  ~PagemapScanner();
  PagemapScanner(const PagemapScanner&) = delete;
  PagemapScanner& operator=(const PagemapScanner&) = delete;

  // One ioctl over [start, end).
  ScanResult Scan(uint64_t start, uint64_t end, const ScanQuery& q,
                  absl::Span<PageRun> out) const;

  // Every matching run of [start, end), in address order, through `fn`;
  // loops over as many ioctls as the output buffer needs.
  absl::Status ScanAll(uint64_t start, uint64_t end, const ScanQuery& q,
                       absl::FunctionRef<void(const PageRun&)> fn) const;

 private:
  explicit PagemapScanner(int fd) : fd_(fd) {}
  const int fd_;
};

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_PAGEMAP_SCAN_H_
