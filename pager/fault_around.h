// Fault-around: how many pages one missing fault fills.
//
// Sequential first touch costs one userfaultfd round trip per fault, so a
// missing fault fills a window of pages starting at the faulting page: the
// next window-1 touches then find their pages present and never fault.
// Pure logic; thread-safety: a pure function.
#ifndef UPAGER_PAGER_FAULT_AROUND_H_
#define UPAGER_PAGER_FAULT_AROUND_H_

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "pager/page_index.h"

namespace upager::internal {

struct PageRange {
  PageIndex first;
  uint64_t count = 0;  // pages
};

// Returns the window [fault, fault + n) to fill for a missing fault at
// `fault`, where 1 <= n <= window_pages. The window is clipped to the region
// (page_count) and stops before the first following page for which
// `is_claimable(page)` is false (a page already present or owned by another
// fill). The faulting page itself is always included (count >= 1) and is
// never passed to is_claimable. is_claimable is called for fault+1,
// fault+2, ... in order, at most once per page, and never past the first
// false or the end of the window, so it may claim the page it approves
// (e.g. CAS it to kFilling) and every claimed page ends up in the window.
// Preconditions: fault < page_count, window_pages >= 1.
PageRange FaultAroundWindow(PageIndex fault, uint64_t page_count,
                            uint64_t window_pages,
                            absl::FunctionRef<bool(PageIndex)> is_claimable);

}  // namespace upager::internal

#endif  // UPAGER_PAGER_FAULT_AROUND_H_
