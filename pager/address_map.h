// Address map: which region (and which of its pages) an address belongs to.
//
// A region starts as one interval [start, end) mapping to its pages
// [0, n). The application can munmap part of it (the interval splits or
// shrinks) or mremap part of it elsewhere (an interval moves to a new address
// but keeps its first page), so one region may own several intervals; each
// interval records the region page its first byte holds.
//
// Lookup is O(log n) in the number of intervals (an absl::btree_map keyed by
// start). Pure logic; thread-safety: NOT thread-safe: the runtime guards it
// with its map mutex (see runtime/runtime_impl.h).
#ifndef UPAGER_PAGER_ADDRESS_MAP_H_
#define UPAGER_PAGER_ADDRESS_MAP_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "pager/page_index.h"

namespace upager::internal {

// Owner is a cheap-to-copy handle (e.g. a shared_ptr to the region).
template <typename Owner>
class AddressMap {
 public:
  struct Interval {
    uintptr_t start = 0;  // bytes, page-aligned
    uintptr_t end = 0;    // bytes, exclusive, page-aligned
    PageIndex first_page;  // region page held at `start`
    Owner owner;
  };

  explicit AddressMap(uint64_t page_size) : page_size_(page_size) {}

  // Adds [start, end) -> owner, first_page. Fails with AlreadyExists naming
  // both ranges if it overlaps an existing interval; InvalidArgument if
  // empty or misaligned.
  absl::Status Insert(uintptr_t start, uintptr_t end, PageIndex first_page,
                      Owner owner);

  // The interval containing addr, if any.
  std::optional<Interval> Find(uintptr_t addr) const;

  // The lowest interval overlapping [start, end), if any.
  std::optional<Interval> FirstOverlap(uintptr_t start, uintptr_t end) const;

  // Removes [start, end) from whatever intervals it overlaps (splitting
  // them); returns the pieces removed, in address order, each with the
  // region page its own first byte holds. Empty if start >= end.
  // Precondition: start and end page-aligned (round munmap's length up).
  std::vector<Interval> Erase(uintptr_t start, uintptr_t end);

  // Removes every interval whose owner == owner; returns them.
  std::vector<Interval> EraseOwner(const Owner& owner);

  // mremap: the bytes [from, from + len) now live at [to, to + len). Each
  // removed piece is re-inserted at its new address keeping its region page.
  // Anything already at [to, to + len) is erased first (MREMAP_FIXED
  // replaces the destination) and not returned: a caller that must release
  // those pages calls Erase(to, to + len) itself before Move. Returns the
  // pieces at their new addresses, in address order.
  // Precondition: from, to and len page-aligned.
  std::vector<Interval> Move(uintptr_t from, uintptr_t to, uint64_t len);

  // Intervals of one owner, in address order.
  std::vector<Interval> IntervalsOf(const Owner& owner) const;
  // Every interval, in address order.
  std::vector<Interval> Intervals() const;

  size_t size() const { return map_.size(); }

  // Intervals are disjoint, non-empty, page-aligned, keyed by their start.
  absl::Status CheckInvariants() const;

 private:
  uint64_t page_size_;
  absl::btree_map<uintptr_t, Interval> map_;
};

}  // namespace upager::internal

#include "pager/address_map_inl.h"  // IWYU pragma: export

#endif  // UPAGER_PAGER_ADDRESS_MAP_H_
