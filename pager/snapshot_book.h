// Snapshot bookkeeping for one region: which snapshots are live, which pages
// each saw present, and the copies ("versions") of pages written since.
//
// Model. A snapshot is an epoch e (increasing per region) plus the set of
// pages that were present (not absent) when it was taken; an absent page
// reads as zero in it. A live page's content is shared by every snapshot
// taken since its last change, so nothing is copied at snapshot time. When
// the content is about to change (first write after a snapshot, a drop by
// the application, a restore), the runtime calls Capture with a reference
// to the old bytes; one version then serves every live snapshot that saw
// the page present and had no version of it yet: the epochs [lo, hi] of
// that version. So a page written once after three snapshots is copied
// once, not three times.
//
// Why present sets and not zero versions for absent pages: the runtime
// serves every first touch of an absent page itself (a missing fault), so
// "absent at e" is known from the page table at take time, and the fill
// path pays nothing for live snapshots.
//
// Invariant: versions of a page have disjoint, increasing [lo, hi]; every
// version's interval holds at least one live epoch (Release frees the
// others).
//
// Thread-safety: none; the runtime guards each region's book with a mutex.
// Pure logic: no system calls.
#ifndef UPAGER_PAGER_SNAPSHOT_BOOK_H_
#define UPAGER_PAGER_SNAPSHOT_BOOK_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"

namespace upager::internal {

// Where a version's bytes are.
struct CopyRef {
  enum class Kind : uint8_t {
    kZero,    // all zero: nothing stored
    kMemory,  // a page of the runtime's copy pool; handle = its index
    kSlot,    // a backing-store slot; handle = the slot
    kLost,    // the application discarded the page before it could be
              // copied (raw madvise/munmap); reads report data loss
  };
  Kind kind = Kind::kZero;
  uint64_t handle = 0;
  bool operator==(const CopyRef&) const = default;
};

// A run of pages [first, first + count).
struct PageRun {
  uint64_t first = 0;
  uint64_t count = 0;
  bool operator==(const PageRun&) const = default;
};

class SnapshotBook {
 public:
  using Epoch = uint64_t;

  // Starts a snapshot whose present pages are `present` (sorted, disjoint,
  // non-empty runs). Returns its epoch (>= 1).
  Epoch Begin(std::vector<PageRun> present);
  // Two-step form for a snapshot whose present set is known only after a
  // sweep: until SetPresent, the snapshot counts every page as present, so
  // a change captured during the sweep is never missed (a version of a
  // page that turns out absent is harmless; Find checks presence first).
  Epoch BeginPending();
  void SetPresent(Epoch e, std::vector<PageRun> present);
  bool live(Epoch e) const { return snapshots_.count(e) != 0; }
  bool any_live() const { return !snapshots_.empty(); }
  size_t live_count() const { return snapshots_.size(); }
  Epoch latest() const { return next_epoch_ - 1; }

  // True when some live snapshot saw `page` present and has no version of
  // it: the page's current content must be captured before it changes.
  bool Needs(uint64_t page) const;
  // The page's content is about to change and `ref` holds the current
  // bytes. Records one version for every snapshot that Needs it and
  // returns true (the book then owns `ref`); returns false, owning
  // nothing, when no snapshot needs it.
  bool Capture(uint64_t page, CopyRef ref);

  struct Found {
    enum class Where : uint8_t {
      kAbsent,  // not present at e: zero
      kLive,    // unchanged since e: the live page (or its swap slot)
      kCopy,    // changed since e: `ref`
    };
    Where where = Where::kAbsent;
    CopyRef ref;
  };
  // Precondition: live(e).
  Found Find(Epoch e, uint64_t page) const;
  bool Present(Epoch e, uint64_t page) const;

  // Ends snapshot e; appends to *freed every ref no live snapshot needs any
  // more (the caller frees the memory or slot). No-op if e is not live.
  void Release(Epoch e, std::vector<CopyRef>* freed);
  // Ends every snapshot (region unmapped).
  void ReleaseAll(std::vector<CopyRef>* freed);

  // Re-points the version of `page` that holds `from` (a copy spilled from
  // memory to a slot). False if no version holds it any more.
  bool Replace(uint64_t page, CopyRef from, CopyRef to);
  // Whether some version of `page` holds `ref`.
  bool Holds(uint64_t page, CopyRef ref) const;

  // Calls fn(page) for every page whose content at `to` may differ from its
  // content at `from` (from < to, both live): written or dropped between
  // them, or absent at `from` and present at `to`. Pages in increasing
  // order, each once.
  void ForEachChanged(Epoch from, Epoch to,
                      absl::FunctionRef<void(uint64_t)> fn) const;
  // Calls fn for every version (page, [lo, hi], ref), in no order.
  void ForEachVersion(
      absl::FunctionRef<void(uint64_t, Epoch, Epoch, CopyRef)> fn) const;

  const std::vector<PageRun>& present(Epoch e) const;
  uint64_t present_pages(Epoch e) const;
  // Versions by kind (for Stats): index = CopyRef::Kind.
  uint64_t versions(CopyRef::Kind k) const {
    return version_counts_[static_cast<int>(k)];
  }

 private:
  struct Version {
    Epoch lo = 0;
    Epoch hi = 0;
    CopyRef ref;
  };
  struct Snapshot {
    std::vector<PageRun> present;
    uint64_t present_pages = 0;
    bool pending = false;  // between BeginPending and SetPresent
  };
  static bool InRuns(const std::vector<PageRun>& runs, uint64_t page);
  static bool Has(const Snapshot& s, uint64_t page) {
    return s.pending || InRuns(s.present, page);
  }
  // Epoch of the newest version of `page`, or 0.
  Epoch LastCaptured(uint64_t page) const;
  void Count(CopyRef::Kind k, int64_t delta) {
    version_counts_[static_cast<int>(k)] += delta;
  }

  Epoch next_epoch_ = 1;
  std::map<Epoch, Snapshot> snapshots_;  // live ones
  absl::flat_hash_map<uint64_t, absl::InlinedVector<Version, 1>> versions_;
  uint64_t version_counts_[4] = {0, 0, 0, 0};
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_SNAPSHOT_BOOK_H_
