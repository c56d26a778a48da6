#include "runtime/os/pagemap_scan.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_format.h"
#include "runtime/os/errno_status.h"

// Debian 12's headers are Linux 6.1; PAGEMAP_SCAN arrived in 6.7. Values
// from the upstream UAPI <linux/fs.h>.
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)
struct page_region {
  __u64 start;
  __u64 end;
  __u64 categories;
};
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct pm_scan_arg {
  __u64 size;
  __u64 flags;
  __u64 start;
  __u64 end;
  __u64 walk_end;
  __u64 vec;
  __u64 vec_len;
  __u64 max_pages;
  __u64 category_inverted;
  __u64 category_mask;
  __u64 category_anyof_mask;
  __u64 return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

namespace upager::internal::os {
namespace {

static_assert(page_is::kWpAllowed == PAGE_IS_WPALLOWED);
static_assert(page_is::kWritten == PAGE_IS_WRITTEN);
static_assert(page_is::kFile == PAGE_IS_FILE);
static_assert(page_is::kPresent == PAGE_IS_PRESENT);
static_assert(page_is::kSwapped == PAGE_IS_SWAPPED);
static_assert(page_is::kPfnZero == PAGE_IS_PFNZERO);
static_assert(page_is::kHuge == PAGE_IS_HUGE);
static_assert(page_is::kSoftDirty == PAGE_IS_SOFT_DIRTY);
static_assert(sizeof(PageRun) == sizeof(page_region));

}  // namespace

absl::StatusOr<std::unique_ptr<PagemapScanner>> PagemapScanner::Open() {
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "open(/proc/self/pagemap)");
  std::unique_ptr<PagemapScanner> s(new PagemapScanner(fd));
  // An empty range is a cheap probe: old kernels answer ENOTTY/EINVAL.
  PageRun run;
  const ScanResult r = s->Scan(0, 0, ScanQuery{}, absl::MakeSpan(&run, 1));
  if (r.error == ENOTTY || r.error == EINVAL || r.error == ENOSYS) {
    return absl::UnimplementedError(
        "PAGEMAP_SCAN is not supported by this kernel (Linux 6.7+)");
  }
  return s;
}

PagemapScanner::~PagemapScanner() { close(fd_); }

ScanResult PagemapScanner::Scan(uint64_t start, uint64_t end,
                                const ScanQuery& q,
                                absl::Span<PageRun> out) const {
  pm_scan_arg arg = {};
  arg.size = sizeof(arg);
  arg.flags = (q.write_protect_matched ? PM_SCAN_WP_MATCHING : 0) |
              (q.check_wp_async ? PM_SCAN_CHECK_WPASYNC : 0);
  arg.start = start;
  arg.end = end;
  arg.vec = reinterpret_cast<uint64_t>(out.data());
  arg.vec_len = out.size();
  arg.max_pages = q.max_pages;
  arg.category_inverted = q.inverted;
  arg.category_mask = q.required;
  arg.category_anyof_mask = q.anyof;
  arg.return_mask = q.report;
  const int rc = ioctl(fd_, PAGEMAP_SCAN, &arg);
  if (rc < 0) return {0, arg.walk_end, errno};
  return {static_cast<size_t>(rc), arg.walk_end, 0};
}

absl::Status PagemapScanner::ScanAll(
    uint64_t start, uint64_t end, const ScanQuery& q,
    absl::FunctionRef<void(const PageRun&)> fn) const {
  constexpr size_t kBatch = 256;
  PageRun runs[kBatch];
  uint64_t at = start;
  while (at < end) {
    const ScanResult r = Scan(at, end, q, absl::MakeSpan(runs, kBatch));
    if (r.error != 0) {
      return ErrnoToStatus(
          r.error, absl::StrFormat("ioctl(PAGEMAP_SCAN, [%#x, %#x))", at, end));
    }
    for (size_t i = 0; i < r.count; ++i) fn(runs[i]);
    // Fewer runs than the buffer holds: the walk reached the end, whatever
    // walk_end says (it can be stale). A full buffer means the walk stopped
    // for room; continue where it stopped, or after the last run if
    // walk_end did not move forward.
    if (r.count < kBatch) break;
    const uint64_t next = r.walk_end > at ? r.walk_end : runs[kBatch - 1].end;
    if (next <= at) break;
    at = next;
  }
  return absl::OkStatus();
}

}  // namespace upager::internal::os
