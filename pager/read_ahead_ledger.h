// Read-ahead accounting for one region: of the pages read ahead for its
// sequential stream, which the application went on to reach (hits) and
// which it never did (waste).
//
// Why an inference: a page read ahead is mapped as soon as it arrives, and
// reads of a mapped page are invisible to user space (PAGEMAP_SCAN reports
// written pages, not accessed ones; idle page tracking needs PFNs, i.e.
// CAP_SYS_ADMIN). What upager does see is where the stream faults: at a
// window's marker page, at a page still being read, or at the page after
// the last window. A sequential reader that faults at page p has read
// every page of the stream before p, so the pages read ahead below p (and
// p itself, if read ahead) are hits. So is a fault a little past the range
// when every page between is present: the stream read through pages that
// were resident already (a window stops at the first page not swapped).
// When a window is read ahead that does not continue the stream's range
// (the stream broke off and another began, or a random access under
// Advise(kSequential)), the old range's pages beyond where its stream
// stopped are waste; so are pages read again because they were evicted
// before the stream reached them. Pages still ahead of a live stream are
// neither yet.
//
// Limits, documented in upager/stats.h: a stream that stops and whose
// remaining pages the application later reads anyway (without faulting)
// still counts them as waste once another stream replaces it; several
// streams through one region replace each other's ranges, so there waste
// is an upper bound.
//
// Thread-safety: every method may be called from any thread (not from a
// signal handler: swap-ins run on service threads).
#ifndef UPAGER_PAGER_READ_AHEAD_LEDGER_H_
#define UPAGER_PAGER_READ_AHEAD_LEDGER_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "pager/page_index.h"

namespace upager::internal {

class ReadAheadLedger {
 public:
  ReadAheadLedger() = default;
  ReadAheadLedger(const ReadAheadLedger&) = delete;
  ReadAheadLedger& operator=(const ReadAheadLedger&) = delete;

  // Pages [first, first + count) were read ahead for the stream. Returns
  // the pages now counted as waste. A window that overlaps or adjoins the
  // range is the same stream: the range grows to cover it, and the pages
  // it reads again (read ahead before, evicted before the stream reached
  // them) are waste. Any other window starts a new range, and the
  // unreached rest of the old one is waste.
  uint64_t ReadAhead(PageIndex first, uint64_t count);
  // The stream faulted at `page`. Returns the pages counted as hits: those
  // read ahead below `page` not counted before, and `page` itself if it
  // was read ahead. A page past the range's end counts the whole range if
  // it is at most kMaxGap pages past and `present` holds for every page
  // between (called for each, in order, under the ledger's lock; it must
  // not call back into the ledger). Any other page outside the range (or
  // below what was reached already) counts nothing.
  uint64_t Reached(PageIndex page,
                   absl::FunctionRef<bool(PageIndex)> present);
  static constexpr uint64_t kMaxGap = 512;
  // Read ahead and not yet counted either way.
  uint64_t pending() const;

 private:
  mutable absl::Mutex mu_;
  // [begin_, end_): read ahead, not reached yet.
  uint64_t begin_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t end_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_READ_AHEAD_LEDGER_H_
