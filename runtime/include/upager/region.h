// A Region: a range of the application's address space whose faults upager
// serves. Obtained from Runtime::Map; owned by the Runtime.
//
// Memory semantics: like private anonymous memory. Every byte reads as zero
// until written; the first touch of a page gives it memory (lazy zero-fill).
// The application may munmap, mremap or madvise(MADV_DONTNEED) parts of a
// region as it would plain memory; upager follows (see README, "Application
// events").
//
// Lifetime: a Region is valid from Runtime::Map (or MapSnapshot) until
// Runtime::Unmap(region) starts or ~Runtime begins; every method here is
// undefined behaviour after that. Not copyable, not deletable by the
// application.
//
// Thread-safety: the accessors are immutable and safe from any thread. The
// memory itself may be used by any number of threads. TakeSnapshot and
// Restore may be called from any application thread (never from a signal
// handler), concurrently with each other and with the memory's users.
#ifndef UPAGER_REGION_H_
#define UPAGER_REGION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "upager/snapshot.h"

namespace upager {

namespace internal {
class RegionCore;
class Engine;
}  // namespace internal

class Region {
 public:
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // The address the region was mapped at. If the application mremaps the
  // region, upager serves it at the new address, but data() still returns
  // the original one (Runtime::FindRegion finds it from the new one).
  std::byte* data() const { return data_; }
  // In bytes, as mapped; munmap or mremap by the application does not change
  // it (offsets in Restore, Advise and snapshots stay those of the
  // original layout).
  size_t size() const { return size_; }
  // RegionOptions::name as given ("" if none; a MapSnapshot region defaults
  // to the file's path).
  const std::string& name() const { return name_; }
  size_t page_count() const { return size_ / page_size_; }
  size_t page_size() const { return page_size_; }
  // Whether `p` lies in [data(), data() + size()): the original range, not
  // where an mremap moved it.
  bool Contains(const void* p) const {
    auto a = reinterpret_cast<uintptr_t>(p);
    auto b = reinterpret_cast<uintptr_t>(data_);
    return a >= b && a - b < size_;
  }

  // Pages upager filled with private memory that are still in place (not
  // evicted, dropped or unmapped). A relaxed read of a counter the service
  // threads update just after waking the faulting thread, so it may trail
  // the latest touches by the fills in flight.
  uint64_t resident_pages() const;
  // Pages mapped to the kernel's shared zero page by a read fault (they cost
  // no memory). The same caveat; and a zero-mapped page the application
  // later writes is copied by the kernel without telling upager, so it
  // stays counted here.
  uint64_t zero_mapped_pages() const;

  // A copy-on-write point-in-time view of the region (see upager/snapshot.h
  // for the consistency contract). Returns once the region's present pages
  // are write-protected; copies happen later, on first writes. Any number
  // may be live at once; each has a larger id() than the previous one.
  // FailedPrecondition naming what is missing when the kernel lacks
  // userfaultfd write-protect or UFFDIO_MOVE (Linux 6.8+), or in a fork()
  // child; the ioctl's error if write-protecting fails (also recorded in
  // Runtime::status()); nothing is taken on error.
  absl::StatusOr<std::unique_ptr<Snapshot>> TakeSnapshot();

  // Rolls the region back, in place, to `snapshot` (taken of this region
  // and not released): rewrites only the pages that changed since it,
  // swapped-out ones included; the region stays usable throughout. Pause
  // the region's writers for the call: a concurrent write may survive it.
  // Newer snapshots keep their own view (the rewrites are writes like any
  // other). InvalidArgument for a snapshot of another region, size or
  // Runtime, FailedPrecondition for a released one or in a fork() child;
  // the region is then untouched. If a needed page cannot be read, that
  // error (as for Snapshot::Read, e.g. DataLoss naming the page); the pages
  // before it are then already restored. Pages the application unmapped
  // are skipped.
  absl::Status Restore(const Snapshot& snapshot);

 private:
  friend class internal::Engine;
  Region(std::byte* data, size_t size, size_t page_size, std::string name,
         internal::RegionCore* core)
      : data_(data), size_(size), page_size_(page_size),
        name_(std::move(name)), core_(core) {}
  ~Region() = default;

  std::byte* const data_;
  const size_t size_;
  const size_t page_size_;
  const std::string name_;
  internal::RegionCore* const core_;  // owned by the Engine
};

}  // namespace upager

#endif  // UPAGER_REGION_H_
