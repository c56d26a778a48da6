// upager's entry point: a Runtime owns one userfaultfd, its fault-service
// threads, and the regions mapped through it.
//
//   upager::RuntimeOptions o;
//   auto rt = upager::Runtime::Create(o);          // StatusOr<unique_ptr>
//   auto region = (*rt)->Map({.size = 1ull << 30, .name = "heap"});
//   std::byte* p = (*region)->data();              // lazily zero-filled
//   upager::Stats s = (*rt)->stats();
//
// Thread-safety: every method may be called from any application thread
// concurrently (not from a signal handler), except that a Region must not
// be used after Unmap(region) starts, and nothing may be used after
// ~Runtime begins. A Runtime must be used only in the process that created
// it: in a fork() child, methods that fail return FailedPrecondition, and
// ~Runtime only closes descriptors and unmaps the child's copies (see
// README, "Application events").
//
// Errors: every absl::Status message names the offending value, region or
// file. Errors the fault service meets with no caller to report to (a swap
// read that fails, a corrupt saved page) release the faulting thread with
// SIGBUS and are kept in status() and Stats.
#ifndef UPAGER_RUNTIME_H_
#define UPAGER_RUNTIME_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "upager/options.h"
#include "upager/region.h"
#include "upager/stats.h"

namespace upager {

namespace internal {
class Engine;
}

class Runtime {
 public:
  // Opens the userfaultfd, negotiates its features, and starts the service
  // threads (and, with a budget, the swap store and the evictor). Fails
  // with InvalidArgument naming a bad option (see upager/options.h);
  // PermissionDenied when no userfaultfd can be opened (the message says
  // what to change); FailedPrecondition when the kernel lacks a feature the
  // options need (UFFD_FEATURE_SIGBUS for FaultMode::kSignal, UFFDIO_MOVE
  // for a resident budget); or the error of the failed system call, e.g.
  // creating the swap file.
  static absl::StatusOr<std::unique_ptr<Runtime>> Create(
      const RuntimeOptions& options);

  // Stops the service threads, releases any thread blocked in a fault, and
  // unmaps the remaining regions (see RuntimeOptions::unmap_regions_on_destroy).
  // Snapshots still held end (see upager/snapshot.h, "Lifetime"). With the
  // regions kept, they hold every byte written before and during the call:
  // swapped-out pages are read back and copy-on-write in flight is
  // completed first. Swap I/O in flight is waited for (the store may use
  // its buffers until it completes), so a store that never completes a
  // request makes this wait forever.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Reserves address space and registers it; no memory is allocated until
  // pages are touched. The Region is owned by the Runtime and valid until
  // Unmap(region) or ~Runtime. On failure returns non-OK and maps nothing:
  // InvalidArgument for a zero, unaligned or too large size, an unaligned
  // address or a bad fault_around_pages or source_offset; AlreadyExists
  // when fixed_address overlaps a mapping; ResourceExhausted when the
  // address space or the kernel's map count runs out; the open error of
  // source_path (see RegionOptions); FailedPrecondition in a fork() child.
  absl::StatusOr<Region*> Map(const RegionOptions& options);

  // Unregisters and unmaps `region` (whatever of it the application has not
  // already munmapped) and destroys it. Waits for the service threads to
  // finish any fault they were serving on it, and for swap I/O and
  // snapshot reads in flight on it; frees its swap slots and frames. Its
  // live snapshots end with it (see upager/snapshot.h, "Lifetime"). NotFound
  // if `region` is not a live region of this Runtime, FailedPrecondition in
  // a fork() child: the region is then untouched. Otherwise `region` is
  // destroyed even if unregistering or munmap fails (that error is
  // returned). Touching the range afterwards is a use-after-free.
  absl::Status Unmap(Region* region);

  // Maps a snapshot saved with Snapshot::SaveTo (a full file, or the newest
  // delta of a chain: its bases are found next to it, as recorded) into a
  // new region, in this process or another. Pages fill lazily on first
  // touch from the file (page cache, no copy of the whole image), each
  // checked against its checksum first: a corrupt page is never served,
  // the touching thread gets SIGBUS and status() names the page. Writes stay
  // in memory (the files are never modified; keep them unchanged while the
  // region is mapped). The region is an ordinary Region: it can be
  // snapshotted, saved, paged and unmapped. Errors: NotFound for a missing
  // file or base; DataLoss for a truncated or corrupt header or metadata;
  // InvalidArgument for a file that is not a snapshot, another format
  // version or page size, a chain with a cycle or too many bases, or bad
  // options (see MapSnapshotOptions); FailedPrecondition for a base that is
  // not the one the delta was saved against (another id, page size or page
  // count); any error of Map. Nothing is mapped on error. Only the
  // metadata is read here; a corrupt page is found when it is touched (or
  // by `upager snapshot verify`).
  absl::StatusOr<Region*> MapSnapshot(const std::string& path,
                                      const MapSnapshotOptions& options = {});

  // Access-pattern hints for a region, like madvise(2).
  enum class Advice {
    kNormal,      // adaptive fault-around and read-ahead (default)
    kSequential,  // always fill / read ahead the maximum window
    kRandom,      // one page per fault: no fault-around, no read-ahead
    kWillNeed,    // start reading the range's paged-out pages back now
                  // (best effort, like madvise: a page in transit, or one
                  // no frame or buffer is free for, is skipped)
    kDontNeed,    // drop the range: it reads as zero again (its memory and
                  // swap slots are freed), as madvise(MADV_DONTNEED)
  };
  // kNormal, kSequential and kRandom apply to the whole region (offset and
  // length are checked but otherwise ignored); kWillNeed and kDontNeed to
  // [offset, offset + length). InvalidArgument naming the values if the
  // range is not page-aligned or not inside the region; NotFound if
  // `region` is not live; FailedPrecondition in a fork() child. kWillNeed
  // returns once the reads are submitted. kDontNeed first copies aside the
  // pages live snapshots still need (so, unlike a raw madvise, it never
  // costs a snapshot its bytes): Unavailable if that cannot make progress
  // (no frame free), or the madvise error; pages before the failure may
  // already be dropped.
  absl::Status Advise(Region* region, size_t offset, size_t length,
                      Advice advice);

  // The live region serving `addr` (where the application has it mapped
  // now, which after an mremap is not data()), or nullptr. Reflects every
  // munmap/mremap that returned before the call. O(log regions).
  Region* FindRegion(const void* addr) const;

  // A copy of the counters (see upager/stats.h); never fails. Applies the
  // address-space events already queued first, so it may wait briefly for
  // a service thread.
  Stats stats() const;

  // OK, or the first unexpected error the fault service met: a failed
  // ioctl, a swap read error, a corrupt saved page. Sticky (never reset),
  // so an application can poll it; Stats::errors counts every one.
  absl::Status status() const;

  // The kernel's base page size, the unit of every size and offset here.
  size_t page_size() const;

 private:
  explicit Runtime(std::unique_ptr<internal::Engine> engine);
  friend class internal::Engine;
  std::unique_ptr<internal::Engine> engine_;
};

}  // namespace upager

#endif  // UPAGER_RUNTIME_H_
