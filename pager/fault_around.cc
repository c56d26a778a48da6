#include "pager/fault_around.h"

#include <algorithm>
#include <cassert>

namespace upager::internal {

PageRange FaultAroundWindow(PageIndex fault, uint64_t page_count,
                            uint64_t window_pages,
                            absl::FunctionRef<bool(PageIndex)> is_claimable) {
  assert(fault.value() < page_count);
  assert(window_pages >= 1);
  // The faulting page is included without asking: the kernel reported it
  // missing, so it must be filled whatever its neighbours are, and the
  // caller may already have claimed it (asking would then see that claim).
  const uint64_t limit =
      std::min(std::max<uint64_t>(window_pages, 1), page_count - fault.value());
  uint64_t count = 1;
  // Stop at the first unclaimable page rather than skipping it: the window
  // must stay one contiguous range so it can be filled with one UFFDIO_COPY.
  while (count < limit && is_claimable(fault + count)) ++count;
  return PageRange{fault, count};
}

uint32_t FaultAroundSizer::WindowFor(PageIndex fault) {
  // A hint ignores the stream; without one, a fault that continues the
  // stream grows the window and any other starts over.
  if (mode() != Mode::kAdaptive ||
      fault.value() == next_.load(std::memory_order_relaxed)) {
    return GrowWindow();
  }
  window_.store(base_, std::memory_order_relaxed);
  return base_;
}

uint32_t FaultAroundSizer::GrowWindow() {
  switch (mode()) {
    case Mode::kSequential:
      return max_;
    case Mode::kRandom:
      return 1;
    case Mode::kAdaptive:
      break;
  }
  const uint32_t w =
      std::min<uint32_t>(max_, window_.load(std::memory_order_relaxed) * 2);
  window_.store(w, std::memory_order_relaxed);
  return w;
}

}  // namespace upager::internal
