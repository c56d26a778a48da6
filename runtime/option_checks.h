// The checks of the options the public API takes (upager/options.h):
// RuntimeOptions for Runtime::Create, RegionOptions for Runtime::Map,
// MapSnapshotOptions for Runtime::MapSnapshot. Pure functions of their
// arguments (the page size is passed in, never asked of the system), so
// the Engine and the options fuzzer (tests/fuzz/options_fuzzer.cc) run the
// same code. What only the system can check stays with the Engine: the
// swap file and an application's store (StartPaging), a region's source
// file, the snapshot files, whether a fixed address is free.
//
// Every rejection is InvalidArgument, and its message names the field and
// the value passed ("RegionOptions.size = 5 for region 'heap' is not ...").
// `page_size` is always the system's page size, a power of two.
//
// Thread-safety: pure functions, thread-safe.
#ifndef UPAGER_RUNTIME_OPTION_CHECKS_H_
#define UPAGER_RUNTIME_OPTION_CHECKS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "upager/options.h"

namespace upager::internal {

// Runtime::Create's checks, in this order: the service threads, the
// fault-around windows, uffd_open, fault_mode, service_spin_ns,
// max_events_per_read and zero_pool_bytes; then, with a resident budget,
// the budget (at least one page, at most EvictionPolicy::kMaxBudgetPages),
// the watermarks (1 <= low <= high <= 100) and, without an application
// store, SwapOptions.capacity_bytes (a multiple of the page size).
absl::Status CheckRuntimeOptions(const RuntimeOptions& o, size_t page_size);

// What a region's accepted options come to.
struct RegionShape {
  uint64_t pages = 0;               // size / page_size, 1..PageTable::kMaxPages
  uint32_t fault_around_pages = 0;  // the region's, else the runtime's
};

// Runtime::Map's checks: size a non-zero multiple of the page size within
// PageTable::kMaxPages pages, fixed_address and source_offset multiples of
// the page size, and the fault-around window (o.fault_around_pages, else
// `runtime_fault_around_pages`) in 1..RuntimeOptions::kMaxFaultAroundPages.
// Messages name the region (o.name) too.
absl::StatusOr<RegionShape> CheckRegionOptions(
    const RegionOptions& o, size_t page_size,
    uint32_t runtime_fault_around_pages);

// Runtime::MapSnapshot's check before it opens anything: the region has no
// source_path (the snapshot is its source).
absl::Status CheckMapSnapshotOptions(const MapSnapshotOptions& o);

// The RegionOptions Runtime::MapSnapshot maps the snapshot at `path` with,
// once its chain is open (and CheckMapSnapshotOptions accepted `o`):
// o.region with the snapshot's size, and `path` as the name if it has
// none. InvalidArgument when the snapshot's pages are not `page_size`
// bytes, or o.region.size is neither 0 nor the snapshot's size.
// Precondition: snapshot_page_count * snapshot_page_size does not overflow
// (a SnapshotChain's geometry never does: the file format bounds it).
absl::StatusOr<RegionOptions> SnapshotRegionOptions(
    const MapSnapshotOptions& o, const std::string& path,
    uint64_t snapshot_page_size, uint64_t snapshot_page_count,
    size_t page_size);

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_OPTION_CHECKS_H_
