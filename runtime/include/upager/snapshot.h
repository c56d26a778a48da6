// A copy-on-write, point-in-time view of a Region, from Region::TakeSnapshot.
//
//   auto snap = region->TakeSnapshot();      // StatusOr<unique_ptr<Snapshot>>
//   ... the application keeps writing ...
//   (*snap)->Read(offset, buffer);           // the bytes as they were
//   region->Restore(**snap);                 // roll the region back
//   (*snap)->Release();                      // or let it go out of scope
//
// Consistency contract. TakeSnapshot write-protects the region's present
// pages (a sweep proportional to what is mapped, not to the region's size)
// and returns once the sweep is done. A write that happened before the call
// is in the snapshot; a write after it returns is not. A write concurrent
// with the call lands on one side or the other, page by page, so for a
// consistent multi-page view pause the region's writers for the call (its
// pause is Stats::snapshot_pause). After that, the application runs at full
// speed: the first write to each protected page copies its old bytes aside
// (one copy shared by every snapshot that needs that version) and lets the
// write through.
//
// What a snapshot promises: Read returns exactly the point-in-time bytes
// while the region keeps changing, until Release. Pages never touched read
// as zero without costing memory; pages never written since come from the
// live region (or its swap slot). Copies count against the resident budget.
//
// Not covered: bytes the application discards itself while a snapshot
// needs them (madvise(MADV_DONTNEED) or munmap on the raw memory) cannot be
// copied first (the kernel drops them before upager hears of it); reading
// such a page returns DataLoss naming it. Runtime::Advise(kDontNeed) copies
// them aside first. A page the process shares with a fork() child is copied
// while still mapped.
//
// Lifetime: a Snapshot may outlive its region and its Runtime. Unmapping the
// region (Runtime::Unmap) or destroying the Runtime ends it, and frees what
// it held: from then on released() is true, Release() returns OK and does
// nothing, and Read, ForEachPage, ForEachChangedSince and SaveTo return
// FailedPrecondition (the message says "unmapped" or "destroyed"; SaveTo
// writes no file). A call running when Unmap or ~Runtime starts finishes
// first (Unmap and ~Runtime wait for it), with its normal result. In a
// fork() child the snapshot is the parent's: those methods return
// FailedPrecondition there, and Release() does nothing (the parent's
// snapshot stays intact).
//
// Thread-safety: every method may be called from any application thread
// (never from inside a fault handler of the same Runtime). Read, ForEachPage
// and Restore may run concurrently; Release waits for them.
#ifndef UPAGER_SNAPSHOT_H_
#define UPAGER_SNAPSHOT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace upager {

class Region;
namespace internal {
class Engine;
struct EngineLink;
}  // namespace internal

class Snapshot {
 public:
  ~Snapshot();  // Release()s, ignoring errors
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  // Increasing per region: a later snapshot has a larger id. Not unique
  // across regions, and not the id stored in a saved file.
  uint64_t id() const { return epoch_; }
  // The region's size and page size when the snapshot was taken.
  size_t size() const { return size_; }
  size_t page_size() const { return page_size_; }
  size_t page_count() const { return size_ / page_size_; }
  // True once Release() ran or the snapshot ended with its region or
  // Runtime (see "Lifetime"); the other methods then fail.
  bool released() const;

  // Copies the snapshot's bytes [offset, offset + out.size()) into `out`;
  // any offset and length (not only whole pages). Pages swapped out are
  // read back from the store into a buffer, not into the region.
  // InvalidArgument if the range is outside the snapshot; FailedPrecondition
  // if it was released, its region unmapped or its Runtime destroyed, or in
  // a fork() child; DataLoss naming the page if the application discarded a
  // needed page (see above), or the swap store failed to read it back;
  // Unavailable if no swap-in buffer came free for 10 s. On error `out`
  // may hold part of the bytes.
  absl::Status Read(size_t offset, absl::Span<std::byte> out) const;

  // Calls fn(page_index, bytes) for every page of the snapshot in order;
  // `bytes` is page_size() bytes, or nullptr for a page that is zero
  // (never touched, or known zero: no copy is made). `bytes` is valid only
  // during the call. fn runs on the calling thread and must not call this
  // Snapshot's Release or its region's Unmap (they wait for this call).
  // Stops at, and returns, the first non-OK status fn returns. Errors as
  // for Read.
  absl::Status ForEachPage(
      const std::function<absl::Status(uint64_t page, const std::byte* bytes)>&
          fn) const;

  // Pages whose bytes in this snapshot may differ from those in `base`, an
  // older live snapshot of the same region (written, dropped or first
  // touched in between), in increasing order. May include pages whose
  // bytes were rewritten to the same value (a superset, never missing a
  // change): it is what SaveTo(path, &base) stores. InvalidArgument if
  // `base` is not older or of another region; FailedPrecondition if either
  // was released, or the region unmapped or the Runtime destroyed.
  absl::Status ForEachChangedSince(
      const Snapshot& base, const std::function<void(uint64_t page)>& fn) const;

  // Saves the snapshot to `path` in upager's versioned snapshot format
  // (per-page CRC32C checksums; see README, "Saved snapshots"), readable by
  // Runtime::MapSnapshot and `upager snapshot inspect|verify` in any
  // process. With `base` (an older live snapshot of the same region,
  // already saved by its own SaveTo), writes only the pages changed since
  // it: a delta that records the base's id and path (relative to the
  // delta's directory when the base lies in or below it, so the pair can
  // be moved together; absolute otherwise), where MapSnapshot looks for it.
  // Writes through io_uring while the application keeps running. The file
  // appears (fsynced, then
  // atomically renamed) only when complete; on any error nothing is left at
  // `path` that looks like a snapshot, and an existing file there is
  // untouched. InvalidArgument if `base` is not an older snapshot of the
  // same region; FailedPrecondition if `base` was never saved; errors as
  // for Read otherwise, or the file system's naming the path.
  absl::Status SaveTo(const std::string& path,
                      const Snapshot* base = nullptr) const;
  // Where the last successful SaveTo wrote this snapshot ("" if never): the
  // file a later delta against this snapshot will name as its base.
  std::string saved_path() const;

  // Frees the copies only this snapshot needed; saved files are not
  // touched. Idempotent; OK and a no-op once the region is unmapped or the
  // Runtime destroyed (which released it), and in a fork() child. When the
  // region's last snapshot goes, its pages are un-protected again, so
  // writes stop faulting. Waits for reads of this snapshot's copies in
  // progress (Read, ForEachPage, SaveTo) before freeing them.
  absl::Status Release();

 private:
  friend class internal::Engine;
  friend class Region;
  Snapshot(std::shared_ptr<internal::EngineLink> link, uint32_t region_id,
           uint64_t epoch, size_t size, size_t page_size);

  const std::shared_ptr<internal::EngineLink> link_;
  mutable absl::Mutex save_mu_;
  mutable std::string saved_path_ ABSL_GUARDED_BY(save_mu_);
  const uint32_t region_id_;
  const uint64_t epoch_;
  const size_t size_;
  const size_t page_size_;
};

}  // namespace upager

#endif  // UPAGER_SNAPSHOT_H_
