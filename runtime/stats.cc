#include "upager/stats.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace upager {

std::string Stats::ToString() const {
  std::string s;
  absl::StrAppendFormat(
      &s, "uffd: %s via %s, %d service thread(s)%s\n", uffd_mode,
      uffd_open_path, service_threads,
      service_cpus.empty()
          ? ""
          : absl::StrCat(" pinned to CPUs ", absl::StrJoin(service_cpus, ",")));
  if (service_guard) {
    absl::StrAppendFormat(&s, "  idle priority + guard thread (%d batches served by the guard)\n",
                          guard_batches);
  }
  absl::StrAppendFormat(&s, "  features: %s\n",
                        absl::StrJoin(uffd_feature_names, " "));
  absl::StrAppendFormat(
      &s, "faults: %d missing-read, %d missing-write, %d wp, %d minor, "
      "%d foreign, %d stale\n",
      faults_missing_read, faults_missing_write, faults_write_protect,
      faults_minor, faults_foreign, faults_stale);
  if (fault_mode == "signal") {
    absl::StrAppendFormat(
        &s, "signal mode: %d faults resolved on the faulting thread, %d "
        "handed off, %d waits for a page being filled\n",
        faults_on_thread, faults_handed_off, signal_waits);
  }
  absl::StrAppendFormat(
      &s, "pages: %d zero-filled, %d zero-mapped, %d from files, %d by "
      "fault-around; fills: %d exists, %d retries, %d gone, %d revoked\n",
      pages_zero_filled, pages_zero_mapped, pages_file_filled,
      pages_fault_around, fill_exists,
      fill_retries, fill_gone, fills_revoked);
  if (zero_pool_pages != 0 || zero_pool_hits != 0 || zero_pool_misses != 0) {
    absl::StrAppendFormat(
        &s, "zero pool: %s, %d pages (%d ready); %d hits, %d misses, %d "
        "failed moves; %d populated, refill CPU %.1f ms (%.0f ns/page)\n",
        zero_pool_state, zero_pool_pages, zero_pool_ready_pages,
        zero_pool_hits, zero_pool_misses, zero_pool_move_failures,
        zero_pool_pages_populated, zero_pool_refill_cpu_ns / 1e6,
        zero_pool_pages_populated != 0
            ? static_cast<double>(zero_pool_refill_cpu_ns) /
                  static_cast<double>(zero_pool_pages_populated)
            : 0.0);
  } else {
    absl::StrAppendFormat(&s, "zero pool: %s\n", zero_pool_state);
  }
  absl::StrAppendFormat(
      &s, "events: %d remove, %d unmap, %d remap, %d unknown; %d messages in "
      "%d reads\n",
      events_remove, events_unmap, events_remap, events_unknown, events_read,
      reads);
  absl::StrAppendFormat(
      &s, "memory: %d region(s), %d MiB reserved, %d resident pages, %d "
      "zero-mapped pages, %d KiB page tables\n",
      regions, reserved_bytes >> 20, resident_pages, zero_mapped_pages,
      metadata_bytes >> 10);
  absl::StrAppendFormat(
      &s, "fault service time: n=%d p50=%.1fus p90=%.1fus p99=%.1fus "
      "max=%.1fus mean=%.1fus\n",
      fault_latency.count, fault_latency.p50_ns / 1e3,
      fault_latency.p90_ns / 1e3, fault_latency.p99_ns / 1e3,
      fault_latency.max_ns / 1e3, fault_latency.mean_ns / 1e3);
  if (budget_pages != 0) {
    absl::StrAppendFormat(
        &s, "paging: budget %d pages, %d used, %d swapped; out %d, in %d "
        "(%d read ahead: %d hits, %d waste; %d async windows); %d budget "
        "waits, %d over budget%s\n",
        budget_pages, budget_used_pages, swapped_pages, pages_swapped_out,
        pages_swapped_in, pages_read_ahead, read_ahead_hits, read_ahead_waste,
        read_ahead_async, budget_waits, over_budget_pages,
        eviction_blocked ? " (eviction blocked)" : "");
    absl::StrAppendFormat(
        &s, "  swap errors: %d write, %d read, %d full; evictions %d skipped, "
        "%d cancelled; %d clean drops, %d dirtied\n",
        swap_write_errors, swap_read_errors, swap_full, evictions_skipped,
        evictions_cancelled, clean_drops, pages_dirtied);
    absl::StrAppendFormat(
        &s, "  swap-in p50=%.1fus p99=%.1fus; swap-out p50=%.1fus p99=%.1fus; "
        "store %d/%d slots%s%s\n",
        swap_in_latency.p50_ns / 1e3, swap_in_latency.p99_ns / 1e3,
        swap_out_latency.p50_ns / 1e3, swap_out_latency.p99_ns / 1e3,
        store.used_slots, store.capacity_slots,
        store.direct_io ? ", O_DIRECT" : "",
        store.registered_buffers ? ", fixed buffers" : "");
  }
  if (snapshots_taken != 0) {
    absl::StrAppendFormat(
        &s, "snapshots: %d taken, %d live, %d pages protected; versions: %d "
        "copied, %d zero, %d from slots, %d lost; %d KiB held, %d spilled; "
        "%d pages restored; pause p50=%.2fms max=%.2fms\n",
        snapshots_taken, snapshots_live, pages_protected, snapshot_copies,
        snapshot_zero_copies, snapshot_slot_copies, snapshot_lost_pages,
        snapshot_bytes >> 10, snapshot_spilled_copies, restore_pages, snapshot_pause.p50_ns / 1e6,
        snapshot_pause.max_ns / 1e6);
    if (save_bytes != 0) {
      absl::StrAppendFormat(&s, "  saved %d MiB at %.0f MB/s\n",
                            save_bytes >> 20, save_mb_per_s);
    }
  }
  absl::StrAppendFormat(&s, "errors: %d (%d threads released with SIGBUS)%s\n",
                        errors, threads_poisoned,
                        first_error.empty() ? "" : ", first: " + first_error);
  return s;
}

}  // namespace upager
