// Runtime statistics: a copy the application may take at any time with
// Runtime::stats() (a plain value: no lock, no lifetime tie to the Runtime).
//
// Counters count since Runtime::Create and never decrease; fields marked
// "now" are gauges. Each counter is exact, but the set is not one atomic
// cut: every address-space event (munmap, mremap, madvise) that has
// returned to the application is reflected, while fills are not: the
// service thread wakes the faulting thread first and publishes the page
// states and counters microseconds later, so a copy taken right after a
// touch may trail it by the fills in flight.
#ifndef UPAGER_STATS_H_
#define UPAGER_STATS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "upager/backing_store.h"

namespace upager {

// A latency distribution, in nanoseconds. Percentiles come from a
// log-bucket histogram (within 12.5%); max is exact; all zero when count is
// 0. For Stats::fault_latency: in thread mode, from the moment a service
// thread read the fault from the userfaultfd to the moment the faulting
// thread was woken; in signal mode, the handler's own fill.
struct LatencySummary {
  uint64_t count = 0;
  uint64_t p50_ns = 0;
  uint64_t p90_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t max_ns = 0;
  double mean_ns = 0;
};

struct Stats {
  // --- The userfaultfd in use.
  std::string uffd_mode;  // "full" or "user-mode-only"
  std::string uffd_open_path;  // how it was opened, e.g. "userfaultfd(2)"
  // False in user-mode-only mode: read(2) into an untouched page fails with
  // EFAULT instead of being served. (Signal mode fails such accesses too,
  // whatever this says: see FaultMode::kSignal.)
  bool kernel_faults_served = true;
  std::string fault_mode;  // "thread" or "signal"
  // UFFD_FEATURE_* bits granted by UFFDIO_API, and their names (e.g.
  // "MOVE"): what the kernel let this Runtime use (`upager probe` says what
  // each missing one disables).
  uint64_t uffd_features = 0;
  std::vector<std::string> uffd_feature_names;
  int service_threads = 0;  // threads reading the userfaultfd
  std::vector<int> service_cpus;  // CPU of each pinned thread; empty if unpinned
  // An idle-priority service has one more, normal-priority guard thread
  // (not counted in service_threads); guard_batches counts the batches it had to serve
  // because every idle-priority thread was starved.
  bool service_guard = false;
  uint64_t guard_batches = 0;

  // --- Faults read from the userfaultfd, by kind.
  uint64_t faults_missing_read = 0;
  uint64_t faults_missing_write = 0;  // includes kernel-mode copy_to_user
  // First writes to write-protected pages: snapshot copy-on-write, and
  // swapped-in pages becoming dirty.
  uint64_t faults_write_protect = 0;
  // Minor faults: upager registers no range in minor mode, so 0 unless the
  // kernel misreports one (it is then woken and retried).
  uint64_t faults_minor = 0;
  // Faults at an address no region owns (a region being unmapped, or the
  // part an application mremap grew): served as plain zero-fill.
  uint64_t faults_foreign = 0;
  // Signal mode: faults resolved inside the SIGBUS handler on the faulting
  // thread, faults it handed to a service thread, and times a handler
  // waited for a page another thread was filling.
  uint64_t faults_on_thread = 0;
  uint64_t faults_handed_off = 0;
  uint64_t signal_waits = 0;
  // Faults already resolved by another fill by the time they were read.
  uint64_t faults_stale = 0;

  // --- Pages filled.
  // Private zeroed pages (write faults): moved in from the zero-page pool
  // (UFFDIO_MOVE) or copied (UFFDIO_COPY); see zero_pool_hits / _misses.
  uint64_t pages_zero_filled = 0;
  uint64_t pages_zero_mapped = 0;  // shared zero page (UFFDIO_ZEROPAGE)
  uint64_t pages_file_filled = 0;  // copied from a file-backed region's file
  uint64_t pages_fault_around = 0;  // of the above, beyond the faulting page
  uint64_t fill_exists = 0;   // EEXIST: someone filled first; woken instead
  uint64_t fill_retries = 0;  // EAGAIN: address space changing; retried
  uint64_t fill_gone = 0;     // ENOENT: the range went away meanwhile
  // Swap-ins taken back right after they landed: the application's
  // madvise dropped the page meanwhile, and the kernel may have zapped it
  // before the fill (it then reads as zero, as the madvise promised).
  uint64_t fills_revoked = 0;

  // --- Zero-page pool (RuntimeOptions::zero_pool_bytes).
  // "on", "off: <why>", or "disabled: <why>" (moves kept failing).
  std::string zero_pool_state;
  uint64_t zero_pool_pages = 0;        // capacity; 0 when off
  uint64_t zero_pool_ready_pages = 0;  // populated and waiting, now
  uint64_t zero_pool_hits = 0;    // pages moved into regions (UFFDIO_MOVE)
  // Pages copied instead (UFFDIO_COPY) although the pool was asked: it
  // was empty, or the move failed. (Windows under 16 pages are always
  // copied, a move's fixed cost being higher: neither hits nor misses.)
  uint64_t zero_pool_misses = 0;
  uint64_t zero_pool_move_failures = 0;  // failed moves (each then copied)
  uint64_t zero_pool_pages_populated = 0;  // by the refill thread, ever
  // The refill thread's CPU time spent populating (allocating and zeroing),
  // the cost the pool moves off the fault path; ns.
  uint64_t zero_pool_refill_cpu_ns = 0;

  // --- Application events.
  uint64_t events_remove = 0;  // madvise(MADV_DONTNEED) and friends
  uint64_t events_unmap = 0;   // munmap by the application
  uint64_t events_remap = 0;   // mremap by the application
  uint64_t events_unknown = 0;  // messages of a kind upager ignores
  uint64_t reads = 0;          // read(2) calls that returned events
  uint64_t events_read = 0;    // messages read, all kinds

  // --- Memory (now).
  uint64_t regions = 0;          // live regions
  uint64_t reserved_bytes = 0;   // address space of live regions
  // Pages holding private memory that upager filled. A page mapped to the
  // shared zero page and later written by the application is copied by the
  // kernel without telling us; it stays in zero_mapped_pages.
  uint64_t resident_pages = 0;
  uint64_t zero_mapped_pages = 0;
  uint64_t metadata_bytes = 0;   // the regions' page tables

  LatencySummary fault_latency;  // every fault served (see LatencySummary)

  // --- Paging (with RuntimeOptions::resident_budget_bytes; zero without).
  uint64_t budget_pages = 0;       // 0: no budget
  uint64_t budget_used_pages = 0;  // now: frames held (private + in flight)
  uint64_t swapped_pages = 0;      // now: pages whose only copy is in the store
  uint64_t pages_swapped_out = 0;  // writes to the store completed
  uint64_t pages_swapped_in = 0;   // pages read back, by faults or read-ahead
  uint64_t pages_read_ahead = 0;   // of those, read ahead of a fault
  // Read-ahead windows started before the stream needed them (its
  // application touched the previous window's marker page), so no fault
  // waited for their reads.
  uint64_t read_ahead_async = 0;
  // Of the pages read ahead for a sequential stream, those the stream went
  // on to reach (hits) and those it never reached: it broke off and
  // another stream's window replaced its range, or the page was evicted
  // first and read again (waste); pages still ahead of a live stream are
  // neither yet. An inference from where the
  // stream faults (reads of a mapped page are invisible to user space; see
  // pager/read_ahead_ledger.h): a stream that stops and whose pages the
  // application reads later anyway counts them as waste, and streams
  // interleaved in one region over-count waste. Pages asked for with
  // Advise(kWillNeed) count in pages_read_ahead but in neither of these.
  uint64_t read_ahead_hits = 0;
  uint64_t read_ahead_waste = 0;
  // Pages evicted without a write: swapped in, never written since, their
  // slot still valid. pages_dirtied: swapped-in pages written later.
  uint64_t clean_drops = 0;
  uint64_t pages_dirtied = 0;
  uint64_t budget_waits = 0;       // faults that found no frame and waited
  // Frames granted over budget because eviction could not make progress
  // (store full or failing); eviction_blocked says it is happening now.
  uint64_t over_budget_pages = 0;
  bool eviction_blocked = false;
  uint64_t swap_write_errors = 0;  // pages kept resident after a failed write
  uint64_t swap_read_errors = 0;   // faults released with SIGBUS
  uint64_t swap_full = 0;          // victims kept: no free slot
  uint64_t evictions_skipped = 0;  // victims the kernel would not move
  uint64_t evictions_cancelled = 0;  // a fault wanted the page mid-write
  uint64_t faults_on_evicting = 0;
  LatencySummary swap_in_latency;   // read submitted -> completed
  LatencySummary swap_out_latency;  // write submitted -> completed
  BackingStoreStats store;  // the store's own view (SwapOptions::store's too)
  std::string policy;  // eviction policy counters, human-readable

  // --- Snapshots (upager/snapshot.h).
  uint64_t snapshots_taken = 0;
  uint64_t snapshots_live = 0;  // now: taken and not yet released or ended
  uint64_t pages_protected = 0;  // write-protected by TakeSnapshot sweeps
  // Versions recorded on first writes (and drops) after a snapshot: copied
  // into memory, known zero (no copy), or taken over from a swap slot
  // (a clean page: no copy either).
  uint64_t snapshot_copies = 0;
  uint64_t snapshot_zero_copies = 0;
  uint64_t snapshot_slot_copies = 0;
  uint64_t snapshot_bytes = 0;      // now: memory held by copies
  // Copies moved from memory to the swap store (under a resident budget
  // copies count against it, and are the first to go).
  uint64_t snapshot_spilled_copies = 0;
  uint64_t snapshot_lost_pages = 0;  // discarded by the application raw
  uint64_t restore_pages = 0;       // pages rewritten by Region::Restore
  LatencySummary snapshot_pause;    // TakeSnapshot, call to return
  uint64_t save_bytes = 0;          // written by Snapshot::SaveTo
  double save_mb_per_s = 0;         // over all SaveTo calls

  // --- Errors the fault service could not report to a caller. The first
  // one is kept (sticky); Runtime::status() returns it as a Status.
  uint64_t errors = 0;
  uint64_t threads_poisoned = 0;  // faults released with SIGBUS (UFFDIO_POISON)
  std::string first_error;

  // Multi-line human-readable form (what `upager tour` prints); not a
  // stable format: parse the fields instead.
  std::string ToString() const;
};

}  // namespace upager

#endif  // UPAGER_STATS_H_
