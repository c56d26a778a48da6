#include "pager/read_ahead_ledger.h"

#include <algorithm>

namespace upager::internal {

uint64_t ReadAheadLedger::ReadAhead(PageIndex first, uint64_t count) {
  absl::MutexLock lock(&mu_);
  if (count == 0) return 0;
  const uint64_t lo = first.value(), hi = first.value() + count;
  if (lo <= end_ && hi >= begin_) {
    // The same stream: the window continues the range, or re-reads pages
    // of it that were evicted before the stream reached them (their first
    // read was waste). A window ending right at begin_ was claimed before
    // a concurrent fault reached past it.
    const uint64_t reread =
        std::min(hi, end_) > std::max(lo, begin_)
            ? std::min(hi, end_) - std::max(lo, begin_)
            : 0;
    end_ = std::max(end_, hi);
    return reread;
  }
  const uint64_t waste = end_ - begin_;
  begin_ = first.value();
  end_ = first.value() + count;
  return waste;
}

uint64_t ReadAheadLedger::Reached(
    PageIndex page, absl::FunctionRef<bool(PageIndex)> present) {
  absl::MutexLock lock(&mu_);
  const uint64_t p = page.value();
  if (p < begin_ || begin_ == end_) return 0;
  if (p > end_) {
    if (p - end_ > kMaxGap) return 0;
    for (uint64_t q = end_; q < p; ++q) {
      if (!present(PageIndex(q))) return 0;
    }
  }
  const uint64_t to = std::min(p + 1, end_);
  const uint64_t hits = to - begin_;
  begin_ = to;
  return hits;
}

uint64_t ReadAheadLedger::pending() const {
  absl::MutexLock lock(&mu_);
  return end_ - begin_;
}

}  // namespace upager::internal
