// Which slots of a backing store hold a page: a fixed-capacity allocator
// that always hands out the lowest free slot.
//
// Lowest-first keeps the used part of a swap file dense at its start (short
// seeks, and a file that could be shrunk), and reuses freed slots at once.
// The state is a bitmap with summary levels: level 0 has one bit per slot
// (1 = allocated); a bit at level k+1 is set when the 64-bit word below it
// at level k is full. Allocation walks down from the single top word and
// freeing walks up, so both cost O(levels), at most 6 for 2^36 slots: O(1)
// for any capacity a file can have. Memory: ~1 bit per slot (a 1 TiB swap
// file of 4 KiB pages costs 33 MiB).
//
// Thread-safety: every method is thread-safe (one internal mutex).
#ifndef UPAGER_BACKING_SLOT_ALLOCATOR_H_
#define UPAGER_BACKING_SLOT_ALLOCATOR_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace upager::internal {

class SlotAllocator {
 public:
  // Precondition: capacity >= 1 (stores reject 0 before getting here).
  explicit SlotAllocator(uint64_t capacity);
  SlotAllocator(const SlotAllocator&) = delete;
  SlotAllocator& operator=(const SlotAllocator&) = delete;

  uint64_t capacity() const { return capacity_; }

  // The lowest free slot, or nullopt when every slot is allocated.
  std::optional<uint64_t> Allocate();

  // Returns `slot` to the free set. A slot that is out of range or not
  // allocated (a double free) is left alone and returns false; debug
  // builds abort there instead, with the slot in the message, because a
  // double free means two owners think they hold the slot's bytes.
  bool Free(uint64_t slot);

  // Whether `slot` is allocated (false when out of range).
  bool IsAllocated(uint64_t slot) const;
  uint64_t used() const;

  // Checks that every summary bit agrees with the word below it, that the
  // padding past the capacity reads as allocated, and that used() equals
  // the number of allocated slots. Returns Internal describing the first
  // mismatch. O(capacity): for tests.
  absl::Status CheckInvariants() const;

 private:
  static constexpr uint64_t kFull = ~uint64_t{0};

  const uint64_t capacity_;
  // Bits each level holds that stand for something (slots at level 0, words
  // of the level below above it); the rest of its last word is padding,
  // set so that it never looks free. Fixed at construction.
  std::vector<uint64_t> level_bits_;

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  // levels_[0] is the per-slot bitmap; levels_.back() is one word.
  std::vector<std::vector<uint64_t>> levels_ ABSL_GUARDED_BY(mu_);
  uint64_t used_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace upager::internal

#endif  // UPAGER_BACKING_SLOT_ALLOCATOR_H_
