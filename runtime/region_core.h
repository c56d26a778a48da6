// The runtime's per-region state, shared by the application-facing Region
// and the fault-service threads.
//
// Invariant: `table` covers pages [0, pages); resident + zero_mapped equal
// the number of table entries in kResident / kZero (up to updates in
// flight). Thread-safety: the constant fields are immutable after
// construction; counters are atomics; the table is lock-free (see
// pager/page_table.h). Lifetime: see the SYNCHRONIZATION block in
// runtime/engine.h.
#ifndef UPAGER_RUNTIME_REGION_CORE_H_
#define UPAGER_RUNTIME_REGION_CORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "pager/fault_around.h"
#include "pager/page_table.h"
#include "pager/read_ahead_ledger.h"
#include "pager/snapshot_book.h"
#include "runtime/snapshot_source.h"

namespace upager {
class Region;
}

namespace upager::internal {

class Engine;

class RegionCore {
 public:
  RegionCore(uintptr_t base, uint64_t size, uint64_t page_size,
             uint32_t fault_around_pages, uint32_t fault_around_max_pages)
      : base(base),
        size(size),
        pages(size / page_size),
        fault_around(fault_around_pages, fault_around_max_pages),
        copy_around(FaultAroundSizer::StartAtOne{}, kMaxCopyAroundPages),
        table(size / page_size) {}
  RegionCore(const RegionCore&) = delete;
  RegionCore& operator=(const RegionCore&) = delete;

  const uintptr_t base;  // bytes: where Map placed it
  const uint64_t size;   // bytes
  const uint64_t pages;
  // Pages copied aside per copy-on-write fault (runtime/snapshot_engine.cc).
  static constexpr uint32_t kMaxCopyAroundPages = 256;

  FaultAroundSizer fault_around;  // base 1 = off
  FaultAroundSizer copy_around;   // copy-on-write: grows on a stream
  ReadAheadLedger read_ahead;     // swap-in read-ahead's hits and waste
  PageTable table;

  // Snapshots (runtime/snapshot_engine.cc). Lock order: snap_mu, then the
  // Engine's map_mu_, then book_mu; nobody takes snap_mu holding map_mu_. snap_mu orders write protection: TakeSnapshot holds it
  // exclusively while it marks pages captured and write-protects them;
  // every path that lifts protection or publishes a claimed page holds it
  // shared, so no un-protect can land between a mark and its protection.
  // Nobody holding it touches region memory or waits for a service thread.
  mutable absl::Mutex snap_mu;
  absl::Mutex book_mu ABSL_ACQUIRED_AFTER(snap_mu);
  SnapshotBook book ABSL_GUARDED_BY(book_mu);
  // Snapshot reads in progress: a released snapshot's copies are freed
  // only once this drops to zero (reads hold no lock while they copy).
  std::atomic<int64_t> snap_readers{0};
  // File-backed regions: a read-only private mapping of the source file
  // whose byte 0 is the region's byte 0; fills copy from it. nullptr for
  // zero-filled regions. Owned: unmapped with the region.
  const std::byte* source = nullptr;
  // Regions mapped from a saved snapshot: set once by MapSnapshot before
  // the region is handed out; owned, unmapped with the region.
  std::unique_ptr<SnapshotSource> snapshot_source;

  // Signal mode: a SIGBUS handler cannot take snap_mu, so its fills count
  // themselves here and stand aside (hand the fault to a service thread)
  // while `sweeping` is set; TakeSnapshot sets it under snap_mu and waits
  // for signal_fills to drain (SignalFillFence), so a sweep never sees a
  // handler's claim half done.
  std::atomic<uint32_t> signal_fills{0};
  std::atomic<bool> sweeping{false};

  uint32_t id = 0;  // for the eviction policy; set once by Map
  std::atomic<int64_t> resident{0};     // pages in kResident or kEvicting
  std::atomic<int64_t> zero_mapped{0};  // pages in kZero
  std::atomic<int64_t> swapped{0};      // pages in kSwapped
  std::atomic<int64_t> io_inflight{0};  // store I/Os naming this region
  // Moves `delta` pages into (or out of) the counter of present state `s`
  // (resident or zero_mapped; other states are not counted here).
  void CountPresent(PageState s, int64_t delta) {
    if (s == PageState::kResident) {
      resident.fetch_add(delta, std::memory_order_relaxed);
    } else if (s == PageState::kZero) {
      zero_mapped.fetch_add(delta, std::memory_order_relaxed);
    }
  }
  Region* region = nullptr;             // the public handle; set once by Map
  Engine* engine = nullptr;             // set once by Map
};

// Keeps SIGBUS-handler fills out of a region for its lifetime (see
// RegionCore::sweeping). Hold snap_mu exclusively around it.
class SignalFillFence {
 public:
  explicit SignalFillFence(RegionCore* core) : core_(core) {
    core_->sweeping.store(true, std::memory_order_seq_cst);
    // Handler fills last microseconds and never wait for anything.
    while (core_->signal_fills.load(std::memory_order_seq_cst) != 0) {
      std::this_thread::yield();
    }
  }
  ~SignalFillFence() {
    core_->sweeping.store(false, std::memory_order_release);
  }
  SignalFillFence(const SignalFillFence&) = delete;
  SignalFillFence& operator=(const SignalFillFence&) = delete;

 private:
  RegionCore* const core_;
};

// Pins snapshot readers of a region (see RegionCore::snap_readers).
class ReaderPin {
 public:
  explicit ReaderPin(RegionCore* core) : core_(core) { ++core_->snap_readers; }
  ~ReaderPin() { --core_->snap_readers; }
  ReaderPin(const ReaderPin&) = delete;
  ReaderPin& operator=(const ReaderPin&) = delete;

 private:
  RegionCore* const core_;
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_REGION_CORE_H_
