// The resident-memory budget: how many private pages the runtime may hold,
// counted in frames, with the watermarks that drive background eviction.
//
// Frames are reserved before a fill (so two concurrent faults cannot both
// take the last frame) and released when a page leaves memory. Eviction
// starts above the high watermark and stops at the low one, so that the
// fault path rarely finds the budget exhausted; when it does, TryReserve
// grants fewer frames (or none: the fault waits for the evictor). When
// eviction cannot make progress (the store is full or failing), the
// runtime marks the budget blocked: reservations then succeed over budget,
// counted, rather than leaving faulting threads waiting forever.
//
// Thread-safety: lock-free; every method may be called from any thread.
#ifndef UPAGER_PAGER_FRAME_BUDGET_H_
#define UPAGER_PAGER_FRAME_BUDGET_H_

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace upager::internal {

class FrameBudget {
 public:
  // budget_pages == 0: unlimited (never evict). Watermarks in percent of
  // the budget, 0 < low <= high <= 100.
  FrameBudget(uint64_t budget_pages, uint32_t high_percent,
              uint32_t low_percent)
      : budget_(budget_pages),
        high_(std::max<uint64_t>(1, budget_pages * high_percent / 100)),
        low_(std::max<uint64_t>(1, budget_pages * low_percent / 100)) {}

  bool limited() const { return budget_ != 0; }
  uint64_t budget() const { return budget_; }
  uint64_t high() const { return high_; }
  uint64_t low() const { return low_; }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }

  // Reserves up to `want` frames; returns how many (0 when the budget is
  // exhausted and not blocked). Frames granted over budget while blocked
  // are counted in over_budget_grants().
  uint64_t TryReserve(uint64_t want) {
    if (!limited()) {
      used_.fetch_add(want, std::memory_order_relaxed);
      return want;
    }
    uint64_t cur = used_.load(std::memory_order_relaxed);
    for (;;) {
      uint64_t grant = cur >= budget_ ? 0 : std::min(want, budget_ - cur);
      if (grant == 0 && blocked_.load(std::memory_order_relaxed)) {
        grant = want;
      }
      if (grant == 0) return 0;
      if (used_.compare_exchange_weak(cur, cur + grant,
                                      std::memory_order_relaxed)) {
        if (cur + grant > budget_) {
          over_budget_.fetch_add(cur + grant - std::max(cur, budget_),
                                 std::memory_order_relaxed);
        }
        return grant;
      }
    }
  }
  // Takes `n` frames even past the budget (counted as over budget): memory
  // that exists already and cannot wait, e.g. a copy-on-write copy made on
  // a path that must not block.
  void Charge(uint64_t n) {
    const uint64_t cur = used_.fetch_add(n, std::memory_order_relaxed);
    if (limited() && cur + n > budget_) {
      over_budget_.fetch_add(cur + n - std::max(cur, budget_),
                             std::memory_order_relaxed);
    }
  }
  // Frames that were never used after TryReserve, or that left memory.
  void Release(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }

  // Eviction should run (above the high watermark) / may stop (at or
  // below the low watermark).
  bool AboveHigh() const { return limited() && used() > high_; }
  bool AboveLow() const { return limited() && used() > low_; }

  void SetBlocked(bool blocked) {
    blocked_.store(blocked, std::memory_order_relaxed);
  }
  bool blocked() const { return blocked_.load(std::memory_order_relaxed); }
  uint64_t over_budget_grants() const {
    return over_budget_.load(std::memory_order_relaxed);
  }

 private:
  const uint64_t budget_;  // pages; 0 = unlimited
  const uint64_t high_;    // pages
  const uint64_t low_;     // pages
  std::atomic<uint64_t> used_{0};
  std::atomic<bool> blocked_{false};
  std::atomic<uint64_t> over_budget_{0};
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_FRAME_BUDGET_H_
