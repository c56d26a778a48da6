// Read buffers held back by asynchronous read-ahead: a read-ahead window's
// marker page is read with the window but not mapped, so that the
// application's touch of it faults and starts the next window (see
// FaultAroundSizer::SetMarker). Its page goes back to swapped, its slot
// still valid, and its bytes wait here, keyed by slot, until a swap-in of
// that slot takes them (no second read) or they are pushed out.
//
// Losing an entry loses nothing: the slot still holds the same bytes. So
// the set is small and bounded, pushing out its oldest entry when full, and
// a slot freed (its page dropped, rewritten, unmapped) must be dropped from
// it (Take), since a later owner of the slot would have other bytes. A
// stream holds one marker at a time, so the set holds a few entries and a
// linear search is all it needs.
//
// Thread-safety: every method may be called from any thread.
#ifndef UPAGER_PAGER_HELD_READS_H_
#define UPAGER_PAGER_HELD_READS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace upager::internal {

class HeldReads {
 public:
  static constexpr int kNone = -1;

  // Precondition: capacity >= 1.
  explicit HeldReads(size_t capacity) : capacity_(capacity) {}
  HeldReads(const HeldReads&) = delete;
  HeldReads& operator=(const HeldReads&) = delete;

  // Holds `buffer` as the bytes of `slot`. Returns the buffer the caller
  // must now release: the oldest one, pushed out to make room, or an
  // earlier buffer held for the same slot; kNone if neither.
  int Hold(uint64_t slot, int buffer);
  // The buffer held for `slot`, which the caller now owns, or kNone.
  // Cheap when nothing is held (the common case for every freed slot).
  int Take(uint64_t slot);
  size_t size() const { return count_.load(std::memory_order_relaxed); }
  // Every held buffer, which the caller now owns; none are held after.
  std::vector<int> TakeAll();

 private:
  const size_t capacity_;
  std::atomic<size_t> count_{0};  // held_.size(), readable without mu_
  mutable absl::Mutex mu_;
  // (slot, buffer), oldest first.
  std::vector<std::pair<uint64_t, int>> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_HELD_READS_H_
