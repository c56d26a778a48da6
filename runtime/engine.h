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
//   under map_mu_ only until the end of their current batch. Unmap first
//   drops the region from regions_by_id_ (nothing new pins it) and waits
//   for its pins (io_inflight: snapshot reads, store I/O, deferred
//   put-backs) while it is still in the address map, which they use; then
//   removes it from the map, unregisters it (later fills get ENOENT),
//   waits for FaultService quiescence and for pins again, and only then
//   unmaps and deletes it, so no fill can land in memory that a new
//   mapping reuses.
// - Address-space events (REMOVE, UNMAP, REMAP) are applied in the order
//   they were read, before any fault read after them is served (see
//   FaultService, "Event order"). Map and Unmap call SyncEvents() first, so
//   an application munmap that returned is reflected in the map.
// - fork(): an atfork handler holds map_mu_ and error_mu_ of every live
//   Engine across fork(), so the child never inherits them locked.
// - Deferred faults (EAGAIN, or no frame under the budget) keep only the
//   raw event and look the region up again on retry.
// - Paging (runtime/paging.cc): the evictor claims a victim by CAS
//   kResident -> kEvicting, moves its bytes out of the region
//   (UFFDIO_MOVE into a staging page, so a writer now faults and waits)
//   and writes them to the store; only the completion of that write turns
//   the entry into kSwapped and frees the staging page. A fault on a
//   kEvicting page sets kWantedBit and waits; the completion then moves the
//   bytes back instead. A swap-in claims kSwapped -> kFilling and submits a
//   read; its completion fills and wakes. Store completions are reaped by
//   whichever thread sees them (service threads poll the store's
//   completion fd); each in-flight I/O holds RegionCore::io_inflight, and
//   Unmap waits for it to drain after quiescence.
// - Counters are relaxed atomics; the sticky error is guarded by error_mu_.
// - The service threads never touch registered memory: fills use
//   UFFDIO_COPY from zero_source_, or UFFDIO_MOVE from the zero-page
//   pool, neither of which is registered.
// - The zero-page pool (runtime/zero_pool.h) takes no lock: its header
//   states its protocol. Its pages are touched by no thread at all, only
//   by MADV_POPULATE_WRITE and UFFDIO_MOVE. A write fault moves pool pages
//   in only after claiming the window (kFilling), like any other fill.
// - Snapshots (runtime/snapshot_engine.cc): kCapturedBit marks a page whose
//   current bytes a live snapshot still needs. Every path that would change
//   such a page, or lift its write protection, first records a version in
//   the region's SnapshotBook (book_mu) and then publishes the page, all
//   under RegionCore::snap_mu held shared; TakeSnapshot holds it
//   exclusively while it marks and protects, so the two never interleave.
//   In-flight states (kEvicting, a swap-in's kFilling) carry the bit to
//   whoever completes them. Lock order: snap_mu, map_mu_, book_mu.
// - Signal mode (runtime/signal_fault.cc): a SIGBUS handler on the faulting
//   thread claims and fills pages with the same CAS protocol, but takes no
//   lock: it finds its region through SignalRegistry (republished under
//   map_mu_ whenever the map changes; Unmap and ~Engine wait out its grace
//   period before a RegionCore goes), stands aside while TakeSnapshot
//   sweeps (RegionCore::sweeping / signal_fills instead of snap_mu), and
//   hands everything else to the service threads (HandoffQueue).
#ifndef UPAGER_RUNTIME_ENGINE_H_
#define UPAGER_RUNTIME_ENGINE_H_

#include <cstdint>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "pager/address_map.h"
#include "pager/eviction_policy.h"
#include "pager/frame_budget.h"
#include "pager/held_reads.h"
#include "pager/snapshot_book.h"
#include "runtime/copy_pool.h"
#include "runtime/counters.h"
#include "runtime/fault_service.h"
#include "runtime/handoff_queue.h"
#include "runtime/os/signals.h"
#include "runtime/os/userfaultfd.h"
#include "runtime/os/wakeup.h"
#include "runtime/page_arena.h"
#include "runtime/region_core.h"
#include "runtime/signal_registry.h"
#include "runtime/snapshot_source.h"
#include "runtime/zero_pool.h"
#include "upager/backing_store.h"
#include "upager/options.h"
#include "upager/region.h"
#include "upager/runtime.h"
#include "upager/snapshot.h"
#include "upager/stats.h"

namespace upager::internal {

// What a Snapshot holds on to: the Engine until ~Engine clears it, so a
// Snapshot outliving its Runtime fails cleanly instead of dangling.
struct EngineLink {
  absl::Mutex mu;
  Engine* engine ABSL_GUARDED_BY(mu) = nullptr;
};

class Engine final : public FaultService::Handler {
 public:
  // Opens a userfaultfd per options.uffd_open unless `uffd` is given
  // (tests pass a fake wrapping a real one).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const RuntimeOptions& options, std::unique_ptr<os::Uffd> uffd = nullptr);
  ~Engine() override;

  // `snapshot_source`: the region fills from a saved snapshot
  // (MapSnapshot).
  absl::StatusOr<Region*> Map(
      const RegionOptions& options,
      std::unique_ptr<SnapshotSource> snapshot_source = nullptr);
  absl::StatusOr<Region*> MapSnapshot(const std::string& path,
                                      const MapSnapshotOptions& options);
  absl::Status Unmap(Region* region);
  Region* FindRegion(const void* addr) const;
  absl::Status Advise(Region* region, size_t offset, size_t length,
                      Runtime::Advice advice);
  Stats stats() const;
  absl::Status status() const;
  size_t page_size() const { return page_size_; }

  // FaultService::Handler.
  void ApplyEvents(absl::Span<const os::UffdEvent> fresh) override;
  void Serve(absl::Span<const os::UffdEvent> fresh, uint64_t read_ns,
             std::vector<os::UffdEvent>* deferred) override;
  void OnServiceError(absl::Status status) override;
  int ExtraFd() const override;
  void OnExtraReady() override;

  // Signal mode: what the SIGBUS handler does with a fault on `entry`'s
  // region (runtime/signal_fault.cc). Async-signal-safe.
  enum class SignalOutcome {
    kDone,   // resolved (or no longer ours): retry the access
    kRetry,  // transient (an address-space event is pending): yield, retry
    kWait,   // a service thread or another fill owns it: wait, then retry
    kHandedOff,  // handed to a service thread: wait until it was served
                 // (the thread's completion word), then retry
    kPassOn,  // the fault failed (ReleaseWithFailure): the SIGBUS is the
              // application's, as the kernel's own would be
  };
  // Emplaces *waiter (registers) before it decides to wait.
  SignalOutcome ResolveSignalFault(const SignalRegistry::Entry& entry,
                                   const os::SigbusFault& fault,
                                   std::optional<SignalWaiters::Waiter>* waiter);
  bool signal_mode() const {
    return options_.fault_mode == FaultMode::kSignal;
  }
  // In a fork() child of the process that created this Engine: its
  // userfaultfd is the parent's, so nothing here may issue an ioctl.
  bool InForkChild() const;
  int HandoffFd() const override;
  void TakeHandoffs(std::vector<os::UffdEvent>* out) override;
  void EventsBegin() override;
  void EventsEnd() override;
  void AfterBatch() override;
  bool TakeAwaitedReadSubmitted() override;
  bool ReadsAwaited() const override;
  void Abandon(absl::Span<const os::UffdEvent> deferred) override;

  static uint64_t WantedFeatures();

  // Snapshots (runtime/snapshot_engine.cc); see upager/snapshot.h.
  absl::StatusOr<std::unique_ptr<Snapshot>> TakeSnapshot(Region* region);
  absl::Status Restore(Region* region, const Snapshot& snapshot);
  absl::Status ReadSnapshot(uint32_t region_id, uint64_t epoch, size_t offset,
                            absl::Span<std::byte> out);
  absl::Status ForEachSnapshotPage(
      uint32_t region_id, uint64_t epoch,
      const std::function<absl::Status(uint64_t, const std::byte*)>& fn);
  absl::Status ForEachChanged(uint32_t region_id, uint64_t base,
                              uint64_t epoch,
                              const std::function<void(uint64_t)>& fn);
  absl::Status ReleaseSnapshot(uint32_t region_id, uint64_t epoch);
  // Writes snapshot `epoch` to `path`: full, or (base_path non-empty) the
  // pages changed since snapshot `base_epoch`, saved at base_path.
  absl::Status SaveSnapshot(uint32_t region_id, uint64_t epoch,
                            const std::string& path, uint64_t base_epoch,
                            const std::string& base_path);
  bool SnapshotLive(uint32_t region_id, uint64_t epoch);

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

  // One I/O in flight, indexed by its buffer: writes by staging page,
  // reads by swap-in buffer (see IoTag).
  struct IoOp {
    RegionCore* core = nullptr;
    PageIndex page;
    uint64_t slot = 0;
    uint64_t submit_ns = 0;
    int error = 0;        // writes: the completion's errno
    bool wanted = false;  // writes: a fault waited for the page
    bool clean = false;       // writes: a clean drop, nothing was written
    bool readahead = false;   // reads: no fault waits for this page
    bool sequential = false;  // reads: part of a detected stream
    // reads: the window's read-ahead marker, held back when it completes
    // (pager/held_reads.h) so that touching it starts the next window.
    bool marker = false;
    bool from_held = false;  // reads: served from a held marker, no I/O
    // reads: a fault waits for this I/O; counted in Paging::awaited_reads
    // until its completion arrives.
    bool awaited = false;
    // reads: a synchronous slot read (Engine::ReadSlot) waits on this for
    // the completion's errno; no page is filled.
    std::atomic<int>* sync_result = nullptr;
  };
  // Store request tags: reads carry this bit over their buffer index,
  // spills of snapshot copies this one over their SpillOp index.
  static constexpr uint64_t kReadTagBit = 1ull << 62;
  static constexpr uint64_t kSpillTagBit = 1ull << 60;
  // Everything paging needs; null when the Runtime has no budget.
  struct Paging {
    Paging(uint64_t budget_pages, uint32_t high, uint32_t low)
        : budget(budget_pages, high, low) {}
    FrameBudget budget;
    // The application's store or the swap file, behind a wrapper that
    // counts the requests it holds in store_requests.
    std::shared_ptr<BackingStore> store;
    std::atomic<int64_t> store_requests{0};
    std::unique_ptr<EvictionPolicy> policy;
    // A second userfaultfd, without events, that only the staging arena is
    // registered with: UFFDIO_MOVE needs its destination registered, and
    // dropping staging pages must not raise REMOVE events on the main one.
    std::unique_ptr<os::Uffd> staging_uffd;
    std::unique_ptr<PageArena> staging;  // eviction: victims' bytes
    std::unique_ptr<PageArena> buffers;  // swap-in: read targets
    // One page, registered like staging: where RevokeFill moves a page it
    // takes back before dropping it.
    std::unique_ptr<PageArena> scrap;
    absl::Mutex scrap_mu;  // held across the move and the drop
    // Read-ahead markers' buffers, by slot, until a swap-in takes them.
    std::unique_ptr<HeldReads> held;
    std::atomic<bool> hold_markers{true};  // false once everything comes in
    // Reads a fault waits for, submitted and not completed (the service
    // threads poll while there are any: FaultService::Config::read_spin_ns).
    std::atomic<int64_t> awaited_reads{0};
    absl::Mutex zap_mu;
    std::vector<int> zap ABSL_GUARDED_BY(zap_mu);  // staging pages to drop
    std::vector<IoOp> writes;            // by staging index
    std::vector<IoOp> reads;             // by buffer index
    // Read completions whose fill hit EAGAIN (an event pending): retried
    // by the service threads after their next read.
    absl::Mutex retry_mu;
    std::vector<uint64_t> retry_tags ABSL_GUARDED_BY(retry_mu);
    std::atomic<bool> retry_pending{false};
    // The evictor thread and what wakes it.
    std::unique_ptr<os::EventFd> evictor_wake;
    std::atomic<bool> stopping{false};
    std::atomic<bool> evicting{false};       // the evictor is in a round
    std::atomic<bool> frames_wanted{false};  // a fault found no frame
    // A fault got no frame at all (not just fewer than it wanted): the
    // evictor frees one even at or below the low watermark. Cleared when a
    // frame is released.
    std::atomic<bool> fault_starved{false};
    std::thread evictor;
    LatencyHistogram swap_in_latency;
    LatencyHistogram swap_out_latency;
  };

  Engine(const RuntimeOptions& options, std::unique_ptr<os::Uffd> uffd,
         void* zero_source);

  bool Resolve(uintptr_t addr, Target* t) const;
  // missing_fault.cc
  Served HandlePageFault(const os::UffdEvent& e, uint64_t read_ns);
  Served HandleMissing(const os::UffdEvent& e, uintptr_t addr);
  Served HandleWriteProtect(uintptr_t addr);
  Served ServeForeign(uintptr_t addr, bool write);
  // Gives [addr, addr + n pages) private zeroed pages and wakes its
  // waiters if `wake`: moved in from the zero-page pool while it has them,
  // the rest (or all, without a pool) copied from zero_source_. Same
  // contract as Uffd::Copy: `bytes` is the prefix filled, the outcome why
  // the rest was not. The range must be claimed (kFilling) by the caller.
  os::UffdResult FillZeroPages(uintptr_t addr, uint64_t n, bool wake);
  // Starts the zero-page pool if the options and the kernel allow it;
  // records why not otherwise (a pool that cannot start is not an error).
  void StartZeroPool();
  void ReleaseWithFailure(uintptr_t addr);
  // paging.cc
  absl::Status StartPaging();
  void StopPaging();
  // Waits until the store holds no request (~Engine, once the evictor and
  // the service threads are stopped): their buffers are about to be freed.
  void WaitForStoreRequests();
  void EvictorLoop();
  // Whether the evictor has work: above the low watermark, or a fault
  // starved of frames.
  bool MustEvict() const;
  // Evicts up to `n` victims; returns how many writes it started.
  size_t EvictBatch(size_t n);
  // Evicts the victims [first, first + count) of one region (adjacent
  // pages move out in runs), appending their writes.
  void EvictRun(uint32_t region_id, PageIndex first, uint64_t count,
                std::vector<BackingStore::Request>* writes);
  // A staging page whose bytes are no longer needed: dropped (with its
  // frame) in batches by FlushStagingZaps, one madvise per run.
  void ZapStaging(int staging);
  void FlushStagingZaps();
  // Claims frames for a fill of up to `want` pages; 0 means wait.
  uint64_t ReserveFrames(uint64_t want);
  void ReleaseFrames(uint64_t n);
  void KickEvictor();
  // A fault on swapped page t.page: reads it, with a read-ahead window
  // when it continues a stream. `at_marker`: the fault took the stream's
  // marker (FaultAroundSizer::TakeMarker) and has started the next window
  // already; only this page is read.
  Served StartSwapIn(const Target& t, PageEntry swapped,
                     bool at_marker = false);
  // What a swap-in window is for.
  enum class SwapIn : uint8_t {
    kRandom,     // a fault outside any stream: its page alone
    kStream,     // a fault that starts or continues a stream: its window
    kMarker,     // a fault at a stream's marker: the page alone, inside the
                 // window already read (the stream does not move back)
    kReadAhead,  // no fault waits: a stream's next window
  };
  // Starts reads for the swapped pages of [first, first + want) (stopping
  // at the first that is not swapped, or short of frames or buffers),
  // holding `marker` back if it is among them. Except for kReadAhead, a
  // fault waits for `first`, whose entry the caller read as `first_entry`.
  // Returns the pages claimed.
  uint64_t SwapInWindow(RegionCore* core, PageIndex first,
                        PageEntry first_entry, uint64_t want, SwapIn kind,
                        std::optional<PageIndex> marker);
  // A swap-in fault at `page`: counts the read-ahead pages its stream
  // passed as hits (pager/read_ahead_ledger.h).
  void StreamReached(RegionCore* core, PageIndex page);
  // The stream of `core` reached its marker at `at`: reads its next
  // windows ahead (up to two windows past `at`).
  void ReadAheadNext(RegionCore* core, PageIndex at);
  // A fault found `page` claimed (kFilling). If it is the stream's marker,
  // the next window starts now, and a marker page held back meanwhile is
  // served at once (kRetryLater is then not possible: kDone or the
  // swap-in's own answer).
  Served OnFaultAtFilling(const Target& t);
  // OnReadDone of a marker page that is still armed: holds its bytes and
  // puts the page back to swapped (true), or false when it is to be mapped
  // as usual. Called with the region's snap_mu held.
  bool HoldMarker(int buffer, PageEntry claimed, uintptr_t addr);
  // The buffer held for `slot` goes back to the arena (the slot was
  // freed: its bytes may change).
  void DropHeld(uint64_t slot);
  Served MarkWanted(const Target& t, PageEntry evicting);
  void DrainCompletions();
  void HandleCompletions(absl::Span<const BackingStore::Completion> done);
  void OnWriteDone(int staging, int error);
  void FinishWrite(int staging, int error);
  // Completes an eviction whose page the application dropped meanwhile
  // (the caller has set the entry absent).
  void FinishDroppedWrite(int staging, PageEntry dropped, int error, bool wake);
  // Fills that put a page's old bytes back (a swap-in, a cancelled
  // eviction's move-back, a copy-on-write put-back) check its discard flag
  // first; but the kernel zaps a madvised page as soon as the REMOVE is
  // *read*, before it is applied (runtime/app_events.cc). An event read
  // between the check and the fill could zap the page before the fill
  // lands, and the fill would bring back bytes the application dropped.
  //
  // Writable fills (move-backs, put-backs) hold every read off for the
  // check and the fill: EventReadsHeld() is the fault service's event
  // mutex (null without a service), for an absl::MutexLockMaybe. A read
  // waiting meanwhile waits for one ioctl; a fill that meets a queued
  // event gets EAGAIN and is retried after the read, as always.
  absl::Mutex* EventReadsHeld() const;
  // Swap-ins (up to a 1 MiB copy, on the hot path) do not block reads:
  // FillFence() before the check; after the fill, EventsReadDuringFill(): true
  // if address-space events were read since the fence (applied once it
  // returns); a page whose discard flag is set then (the caller still holds its
  // claim) must be taken back with RevokeFill and dropped. Costs one atomic
  // load each when no event was read meanwhile. Safe because a swap-in maps
  // write-protected: no write lands before RevokeFill takes the page back
  // (without the WP feature a write in that window would be lost with the
  // drop).
  uint64_t FillFence() const;
  bool EventsReadDuringFill(uint64_t fence) const;
  // Takes back the page a swap-in just put at `addr` (if the kernel has
  // not zapped it already): moved out to the scrap page and dropped there,
  // without raising an event. Faults on it meanwhile wait: its entry is
  // still claimed.
  void RevokeFill(uintptr_t addr);
  // Puts an evicted page's bytes back into the region (eviction cancelled
  // or its write failed); retried after the next read on EAGAIN.
  void CompleteMoveBack(int staging);
  void OnReadDone(int buffer, int error);
  // A read's completion (or its refusal) arrived: it no longer counts as
  // awaited (Paging::awaited_reads).
  void ReadArrived(int buffer);
  // Reads into buffers [first, first + count) that completed together
  // without error, for consecutive pages of one region: filled with one
  // UFFDIO_COPY when nothing about them changed, else page by page.
  void OnReadRun(int first, size_t count);
  // Publishes a swapped-in page as resident (write-protected and clean,
  // or unprotected with its slot freed or given to a snapshot) and counts
  // it; the caller admits it to the policy.
  void PublishSwappedIn(const IoOp& op, uint64_t mark, bool write_protected);
  void RetryPendingReads();
  // Claims swapped page `page` (kSwapped -> kFilling) with a read buffer
  // and appends its read to *reads; false if no buffer is free or the
  // entry changed.
  // A slot whose bytes are held (a marker served from its buffer) needs no
  // read: its buffer goes to *held_hits instead, for OnReadDone.
  bool QueueSwapIn(RegionCore* core, PageIndex page, PageEntry swapped,
                   bool readahead, bool sequential, bool marker,
                   std::vector<BackingStore::Request>* reads,
                   std::vector<int>* held_hits);
  // Submits and clears *reads; on a refused batch every read completes
  // with EIO.
  void SubmitReads(std::vector<BackingStore::Request>* reads);
  // Starts reads for the swapped pages of [first, first + count) (WillNeed).
  void Prefetch(RegionCore* core, PageIndex first, uint64_t count);
  // Current address of `page` of `core`, or 0 if the application unmapped
  // it; with `count`, of [page, page + count), or 0 unless it lies in one
  // mapped interval (one stretch of memory).
  uintptr_t AddressOf(RegionCore* core, PageIndex page,
                      uint64_t count = 1) const;
  void AdmitToPolicy(RegionCore* core, PageIndex first, uint64_t count,
                     bool sequential);
  // Reads every paged-out page back into its region (~Engine when the
  // regions outlive the Runtime).
  void SwapEverythingIn();
  // Frees what a region holds in the store (Unmap / ~Engine).
  void ReleaseRegionPaging(RegionCore* core);
  // snapshot_engine.cc
  absl::Status StartSnapshots();
  // Copies aside the captured present pages of [first, first + max) that
  // start at `first` (which must be one), recording a version of each, and
  // puts them back writable; wakes whoever waits on them. Returns how many
  // pages it handled (0: nothing captured at `first`). Sets *retry when the
  // caller should try again later (EAGAIN, or no frame for the copies).
  // Caller holds core->snap_mu shared.
  uint64_t CopyAside(RegionCore* core, PageIndex first, uint64_t max,
                     uintptr_t addr, bool* retry)
      ABSL_SHARED_LOCKS_REQUIRED(core->snap_mu);
  // Copies aside every captured page of [first, first + count) (before
  // upager drops them on the application's behalf). From any thread not
  // holding snap_mu.
  absl::Status CopyAsideRange(RegionCore* core, PageIndex first,
                              uint64_t count);
  // A version of `bytes`: kZero if all zero, else a pool copy (charged to
  // the budget; `charge` false when the caller reserved the frame).
  absl::StatusOr<CopyRef> CopyBytes(const std::byte* bytes, bool charge);
  // Records `ref` as the bytes `page` had before a change; frees it when
  // no snapshot needs them. Returns whether it was kept.
  bool CaptureOrFree(RegionCore* core, PageIndex page, CopyRef ref);
  void FreeCopies(const std::vector<CopyRef>& refs);
  // Reads a store slot from an application thread (reaps completions
  // itself). FailedPrecondition without paging.
  absl::Status ReadSlot(uint64_t slot, std::byte* out);
  // Writes up to `n` snapshot copies from memory to store slots (the
  // evictor: copies are the coldest pages there are). Returns how many
  // writes it started.
  size_t SpillCopies(size_t n);
  void OnSpillDone(uint64_t index, int error);
  // Frees the memory of spilled copies once no snapshot read can be
  // copying from it.
  void FreeSpilledMemory();
  // Copy-on-write put-backs that hit EAGAIN, retried after the next read.
  void RetryPendingFills();
  // Looks up a live region by id and pins it (io_inflight) until Unpin.
  RegionCore* PinRegion(uint32_t region_id);
  void Unpin(RegionCore* core);
  // Clears every captured mark and lifts the protection (last snapshot
  // released).
  void Unprotect(RegionCore* core);
  // ~Engine with regions kept: ends every snapshot (so writes copy
  // nothing more) and fills back the copy-on-write put-backs still
  // pending, while the service threads run (engine.cc).
  void EndSnapshotsForTeardown();
  // Ends every live snapshot of `core` (counted released) and frees the
  // copies they held.
  void EndRegionSnapshots(RegionCore* core);
  // Reads one page of snapshot `epoch` into out; *zero set (and out left
  // alone) for a zero page.
  absl::Status ReadSnapshotPage(RegionCore* core, uint64_t epoch,
                                PageIndex page, std::byte* out, bool* zero);

  // snapshot_files.cc
  // Fills absent pages of a snapshot-mapped region from its file in the
  // background (MapSnapshotOptions::prefetch).
  // until_done: ignore the stop flag and the budget (~Engine).
  void PrefetchLoop(RegionCore* core, bool until_done);
  void StopPrefetch(RegionCore* core);
  void UnmapSnapshotSource(RegionCore* core);

  // signal_fault.cc
  // Sets up signal mode (Create): handler, hand-off queue and eventfd.
  absl::Status StartSignalMode();
  // Fills the absent page `page` and its fault-around window inside the
  // SIGBUS handler; kHandOff when the fault needs a service thread.
  enum class HandlerFill { kDone, kRetry, kHandOff };
  HandlerFill FillInHandler(RegionCore* core, PageIndex page,
                            uint64_t page_limit, uintptr_t addr, bool write);
  SignalOutcome HandOff(uintptr_t addr, bool write, bool wp);
  // A hand-off was served (or will never be): releases its thread, which
  // then retries its access. Called exactly once per hand-off, after the
  // fault's last effect, so that a thread never has two hand-offs queued
  // (a second one, served after the thread moved on, would act on a page
  // whose state changed meanwhile).
  static void CompleteHandoff(const os::UffdEvent& e);
  // ~Engine, once no handler can push: completes every queued hand-off.
  void AbandonHandoffs();
  // Republishes this Engine's intervals to SignalRegistry (signal mode;
  // no-op otherwise). Returns after the registry's grace period.
  void PublishSignalRegions() ABSL_EXCLUSIVE_LOCKS_REQUIRED(map_mu_);

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

  const RuntimeOptions options_;
  const size_t page_size_;
  const int owner_pid_;
  std::unique_ptr<os::Uffd> uffd_;
  void* const zero_source_;  // kMaxFaultAroundPages read-only zero pages
  Counters counters_;
  std::unique_ptr<FaultService> service_;
  std::unique_ptr<Paging> paging_;  // null without a budget
  // Pre-zeroed pages for write faults; null when off (zero_pool_off_ says
  // why). Destroyed before paging_, whose budget it charges.
  std::unique_ptr<ZeroPool> zero_pool_;
  std::string zero_pool_off_;
  // Pool moves that failed with a hard error in a row; past a limit the
  // pool is disabled (see FillZeroPages).
  std::atomic<uint32_t> move_failures_in_a_row_{0};
  // A copy-on-write put-back deferred by EAGAIN: the page stays kFilling
  // until its bytes are filled back (pins the region through io_inflight).
  struct PendingFill {
    RegionCore* core = nullptr;
    PageIndex page;
    PageEntry publish;  // the entry to publish once filled
    std::unique_ptr<std::byte[]> bytes;
  };
  // Everything snapshots need; null when the kernel cannot support them
  // (snapshots_missing_ says why).
  struct Snapshots {
    explicit Snapshots(size_t page_size) : pool(page_size) {}
    // Like Paging::staging_uffd: UFFDIO_MOVE needs its destination
    // registered, and this uffd reads no events.
    std::unique_ptr<os::Uffd> uffd;
    absl::Mutex copy_mu;  // one copy-aside at a time owns `staging`
    std::unique_ptr<PageArena> staging ABSL_PT_GUARDED_BY(copy_mu);
    CopyPool pool;
    absl::Mutex pending_mu;
    std::vector<PendingFill> pending ABSL_GUARDED_BY(pending_mu);
    std::atomic<bool> pending_any{false};
    // Spilling copies to the store (with a budget): candidates in the
    // order they were made (oldest first), writes in flight, and memory
    // waiting for readers to finish.
    struct Spill {
      uint32_t region_id = 0;
      RegionCore* core = nullptr;  // pinned while in flight / waiting
      uint64_t page = 0;
      uint64_t handle = 0;  // pool frame
      uint64_t slot = 0;
    };
    absl::Mutex spill_mu;
    std::deque<Spill> spill_queue ABSL_GUARDED_BY(spill_mu);
    std::vector<Spill> spill_ops ABSL_GUARDED_BY(spill_mu);
    std::vector<uint64_t> spill_free_ops ABSL_GUARDED_BY(spill_mu);
    std::vector<Spill> spilled ABSL_GUARDED_BY(spill_mu);
    std::atomic<int64_t> spills_inflight{0};
  };
  std::unique_ptr<Snapshots> snaps_;
  // Signal mode: faults the SIGBUS handler hands to the service threads,
  // and the eventfd that tells them (null in thread mode).
  std::unique_ptr<HandoffQueue> handoffs_;
  std::unique_ptr<os::EventFd> handoff_fd_;
  // Signal mode: pages whose fault failed (a swap read error, a corrupt
  // saved page). The next SIGBUS there is passed to the application's
  // handler instead of being served; see ReleaseWithFailure.
  static constexpr int kFailedSlots = 64;
  std::atomic<uint64_t> failed_pages_[kFailedSlots] = {};
  std::atomic<int> failed_count_{0};
  // Records / consumes a failed page address (lock-free).
  void NoteFailedPage(uintptr_t addr);
  bool TakeFailedPage(uintptr_t addr);
  std::string snapshots_missing_;
  const std::shared_ptr<EngineLink> link_ = std::make_shared<EngineLink>();
  // Signal mode: regions up to this size get their whole page table when
  // mapped (see Engine::Map).
  static constexpr uint64_t kSignalReserveBytes = uint64_t{16} << 30;
  // Regions are registered for write-protect too (clean-page tracking).
  bool track_writes_ = false;
  uint32_t next_region_id_ ABSL_GUARDED_BY(map_mu_) = 1;
  absl::flat_hash_map<uint32_t, RegionCore*> regions_by_id_
      ABSL_GUARDED_BY(map_mu_);

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
