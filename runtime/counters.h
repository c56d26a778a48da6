// The runtime's internal counters, bumped on the fault path and read by
// Runtime::stats(). Relaxed atomics: each counter is exact, but a Stats
// snapshot is not a single instant across counters.
#ifndef UPAGER_RUNTIME_COUNTERS_H_
#define UPAGER_RUNTIME_COUNTERS_H_

#include <atomic>
#include <cstdint>

#include "pager/latency_histogram.h"

namespace upager::internal {

struct Counter {
  std::atomic<uint64_t> v{0};
  void Add(uint64_t n = 1) { v.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Get() const { return v.load(std::memory_order_relaxed); }
};

struct Counters {
  Counter faults_missing_read;
  Counter faults_missing_write;
  Counter faults_write_protect;
  Counter faults_minor;
  Counter faults_foreign;
  Counter faults_stale;
  Counter faults_on_thread;   // signal mode: resolved in the SIGBUS handler
  Counter faults_handed_off;  // signal mode: queued for a service thread
  Counter signal_waits;       // signal mode: waited for another's fill
  Counter pages_zero_filled;
  Counter pages_zero_mapped;
  Counter pages_file_filled;
  Counter pages_fault_around;
  // Zero-page pool (runtime/zero_pool.h), write faults on zero pages.
  Counter zero_pool_hits;           // pages moved in from the pool
  Counter zero_pool_misses;         // pages copied: pool empty or move failed
  Counter zero_pool_move_failures;  // moves that failed (then copied)
  Counter fill_exists;
  Counter fill_retries;
  Counter fill_gone;
  Counter fills_revoked;  // swap-ins taken back: Engine::RevokeFill
  Counter events_remove;
  Counter events_unmap;
  Counter events_remap;
  Counter events_unknown;
  Counter reads;
  Counter events_read;
  Counter budget_waits;
  Counter pages_swapped_out;
  Counter pages_swapped_in;
  Counter pages_read_ahead;
  Counter read_ahead_async;
  Counter read_ahead_hits;
  Counter read_ahead_waste;
  Counter clean_drops;
  Counter pages_dirtied;
  Counter swap_write_errors;
  Counter swap_read_errors;
  Counter swap_full;
  Counter evict_skipped;
  Counter evictions_cancelled;
  Counter faults_on_evicting;
  Counter errors;
  Counter threads_poisoned;
  // Snapshots.
  Counter snapshots_taken;
  Counter snapshots_released;
  Counter pages_protected;   // marked by TakeSnapshot sweeps
  Counter copies_memory;     // copy-on-write copies made into the pool
  Counter copies_zero;       // versions known zero: nothing copied
  Counter copies_slot;       // versions that took over a swap slot
  Counter pages_lost;        // discarded by the application while needed
  Counter copies_deferred;   // copy-on-write put-backs retried after EAGAIN
  Counter copies_spilled;    // copies moved from memory to the store
  Counter restore_pages;
  Counter save_bytes;
  Counter save_ns;
  LatencyHistogram fault_latency;
  LatencyHistogram snapshot_pause;
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_COUNTERS_H_
