// The Engine behind upager::Runtime: owns the userfaultfd, the regions, the
// address map, and the fault service, and resolves every event.
//
// SYNCHRONIZATION (every other runtime file points here)
// - map_mu_ guards the address map and the region list. Service threads
//   take it shared to turn a fault address into (region, page); Map, Unmap
//   and the UNMAP/REMAP event handlers take it exclusively. Nobody makes a
//   system call that can wait on a service thread while holding it (munmap
//   of a registered range waits for its UNMAP event to be read): Unmap
//   unregisters the range first, and munmaps outside the lock.
// - Page-table entries change only by CAS (pager/page_table.h). A fill first
//   claims its pages by moving them to PageState::kFilling; the claimant
//   alone moves them out of kFilling, so two service threads never fill the
//   same page, and event handlers leave kFilling pages to their claimant.
// - RegionCore lifetime: service threads use a RegionCore* they looked up
//   under map_mu_ only until the end of their current batch. Unmap removes
//   the region from the map, unregisters it (later fills get ENOENT), waits
//   for FaultService quiescence, and only then unmaps and deletes it, so no
//   fill can land in memory that a new mapping reuses.
// - Address-space events (REMOVE, UNMAP, REMAP) are applied in the order
//   they were read, before any fault read after them is served (see
//   FaultService, "Event order"). Map and Unmap call SyncEvents() first, so
//   an application munmap that returned is reflected in the map.
// - fork(): an atfork handler holds map_mu_ and error_mu_ of every live
//   Engine across fork(), so the child never inherits them locked.
// - Deferred faults (EAGAIN) keep only the raw event and look the region up
//   again on retry.
// - Counters are relaxed atomics; the sticky error is guarded by error_mu_.
// - The service threads never touch registered memory: fills use
//   UFFDIO_COPY from zero_source_, which is not registered.
#ifndef UPAGER_RUNTIME_ENGINE_H_
#define UPAGER_RUNTIME_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "pager/address_map.h"
#include "runtime/counters.h"
#include "runtime/fault_service.h"
#include "runtime/os/userfaultfd.h"
#include "runtime/region_core.h"
#include "upager/options.h"
#include "upager/region.h"
#include "upager/stats.h"

namespace upager::internal {

class Engine final : public FaultService::Handler {
 public:
  // Opens a userfaultfd per options.uffd_open unless `uffd` is given
  // (tests pass a fake wrapping a real one).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const RuntimeOptions& options, std::unique_ptr<os::Uffd> uffd = nullptr);
  ~Engine() override;

  absl::StatusOr<Region*> Map(const RegionOptions& options);
  absl::Status Unmap(Region* region);
  Region* FindRegion(const void* addr) const;
  Stats stats() const;
  absl::Status status() const;
  size_t page_size() const { return page_size_; }

  // FaultService::Handler.
  void ApplyEvents(absl::Span<const os::UffdEvent> fresh) override;
  void Serve(absl::Span<const os::UffdEvent> fresh, uint64_t read_ns,
             std::vector<os::UffdEvent>* deferred) override;
  void OnServiceError(absl::Status status) override;

  static uint64_t WantedFeatures();
  static absl::Status ValidateOptions(const RuntimeOptions& options);

 private:
  // Where a fault address lands: the region and the page, plus the
  // contiguous run of pages the same interval maps after it.
  struct Target {
    RegionCore* core = nullptr;
    PageIndex page;
    uint64_t page_limit = 0;  // first page past the interval
    uintptr_t page_addr = 0;  // address of `page`
  };
  enum class Served { kDone, kRetryLater };

  Engine(const RuntimeOptions& options, std::unique_ptr<os::Uffd> uffd,
         void* zero_source);

  bool Resolve(uintptr_t addr, Target* t) const;
  // missing_fault.cc
  Served HandlePageFault(const os::UffdEvent& e, uint64_t read_ns);
  Served HandleMissing(const os::UffdEvent& e, uintptr_t addr);
  Served ServeForeign(uintptr_t addr, bool write);
  void ReleaseWithFailure(uintptr_t addr);
  // app_events.cc
  void HandleRemove(uintptr_t start, uintptr_t end);
  void HandleUnmap(uintptr_t start, uintptr_t end);
  void HandleRemap(uintptr_t from, uintptr_t to, uint64_t len);
  // Sets every present page of [first, first + count) to absent and fixes
  // the counters; leaves kFilling pages to their claimant.
  void DropPages(RegionCore* core, PageIndex first, uint64_t count);

  friend struct ForkGuard;
  void RecordError(const absl::Status& s);
  // "region 'x' at [a, b)" or "an existing mapping", for error messages.
  std::string DescribeOccupant(uintptr_t start, uint64_t size) const;
  bool InForkChild() const;

  const RuntimeOptions options_;
  const size_t page_size_;
  const int owner_pid_;
  std::unique_ptr<os::Uffd> uffd_;
  void* const zero_source_;  // kMaxFaultAroundPages read-only zero pages
  Counters counters_;
  std::unique_ptr<FaultService> service_;

  // State below is protected by map_mu_.
  mutable absl::Mutex map_mu_;
  AddressMap<RegionCore*> map_ ABSL_GUARDED_BY(map_mu_);
  absl::flat_hash_map<Region*, std::unique_ptr<RegionCore>> regions_
      ABSL_GUARDED_BY(map_mu_);

  mutable absl::Mutex error_mu_;
  absl::Status first_error_ ABSL_GUARDED_BY(error_mu_);
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_ENGINE_H_
