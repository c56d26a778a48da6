// Fault-around: how many pages one missing fault fills.
//
// Sequential first touch costs one userfaultfd round trip per fault, so a
// missing fault fills a window of pages starting at the faulting page: the
// next window-1 touches then find their pages present and never fault.
// Pure logic; thread-safety: a pure function.
#ifndef UPAGER_PAGER_FAULT_AROUND_H_
#define UPAGER_PAGER_FAULT_AROUND_H_

#include <atomic>
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

// Sizes a region's fault-around window from the stream of faults it sees:
// a fault at the page right after the previous fill continues a sequential
// stream and doubles the window, up to `max_pages`; any other fault resets
// it to `base_pages`. A sequential first touch of N pages then costs
// O(log) + N / max_pages round trips instead of N / base_pages, while a
// random toucher keeps the base window and so never gets memory it did not
// ask for beyond it. With base_pages == 1 (fault-around off) the window
// never grows.
//
// Thread-safety: lock-free and async-signal-safe. Concurrent faults on one
// region may race on the stream state; that only costs a smaller or larger
// window than ideal, never a wrong fill (the window is still clipped by
// FaultAroundWindow).
class FaultAroundSizer {
 public:
  // Preconditions: 1 <= base_pages <= max_pages.
  FaultAroundSizer(uint32_t base_pages, uint32_t max_pages)
      : base_(base_pages), max_(base_pages > 1 ? max_pages : base_pages),
        window_(base_pages) {}
  // A window that starts at one page and still grows on a stream (the
  // constructor above treats base 1 as "off"): copy-on-write copy-around,
  // where a random writer must not pay for neighbours it never writes.
  struct StartAtOne {};
  FaultAroundSizer(StartAtOne, uint32_t max_pages)
      : base_(1), max_(max_pages), window_(1) {}
  FaultAroundSizer(const FaultAroundSizer&) = delete;
  FaultAroundSizer& operator=(const FaultAroundSizer&) = delete;

  // Application hints (Runtime::Advise): kSequential always uses the
  // maximum window, kRandom never goes past one page, kAdaptive (default)
  // detects streams as described above.
  enum class Mode : uint8_t { kAdaptive, kSequential, kRandom };
  void set_mode(Mode m) { mode_.store(m, std::memory_order_relaxed); }
  Mode mode() const { return mode_.load(std::memory_order_relaxed); }

  // The window for a missing fault at `fault`.
  uint32_t WindowFor(PageIndex fault);
  // Records a fill of [first, first + count).
  void Filled(PageIndex first, uint64_t count) {
    next_.store(first.value() + count, std::memory_order_relaxed);
  }

  // Asynchronous read-ahead (swap-in). A window read for a stream holds
  // one page back as its marker (the kernel's PG_readahead): when the
  // application reaches it, the stream is still going, and the next window
  // is read before the application gets to the end of this one.
  // SetMarker arms `page` (replacing any earlier marker); TakeMarker
  // disarms it and returns true for exactly one caller at that page.
  // seq_cst: the completion that holds the marker page back and the fault
  // that takes it decide who serves it by the order of these operations
  // and of the page's entry (see runtime/paging.cc).
  void SetMarker(PageIndex page) { marker_.store(page.value()); }
  bool TakeMarker(PageIndex page) {
    uint64_t expected = page.value();
    return marker_.load() == expected &&
           marker_.compare_exchange_strong(expected, kNoStream);
  }
  bool IsMarker(PageIndex page) const { return marker_.load() == page.value(); }
  // The page right after the last fill (where the stream's next window
  // starts), and the window for it: doubled, up to max_pages (kSequential:
  // max_pages; kRandom: 1).
  PageIndex next() const {
    return PageIndex(next_.load(std::memory_order_relaxed));
  }
  uint32_t GrowWindow();

  uint32_t base_pages() const { return base_; }
  uint32_t max_pages() const { return max_; }

 private:
  static constexpr uint64_t kNoStream = ~uint64_t{0};
  const uint32_t base_;
  const uint32_t max_;
  std::atomic<uint64_t> next_{kNoStream};  // page right after the last fill
  std::atomic<uint64_t> marker_{kNoStream};  // armed read-ahead marker page
  std::atomic<uint32_t> window_;           // pages
  std::atomic<Mode> mode_{Mode::kAdaptive};
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_FAULT_AROUND_H_
