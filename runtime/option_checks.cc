#include "runtime/option_checks.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pager/eviction_policy.h"
#include "pager/page_table.h"

namespace upager::internal {
namespace {

// The checks that hold with or without a resident budget: the fault
// service, fault-around, the zero-page pool.
absl::Status CheckFaultOptions(const RuntimeOptions& o, size_t page_size) {
  if (o.service_threads < 0 ||
      o.service_threads > RuntimeOptions::kMaxServiceThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.service_threads = ", o.service_threads,
                     " is outside [0, ", RuntimeOptions::kMaxServiceThreads,
                     "] (0 = one per CPU)"));
  }
  if (o.fault_around_pages < 1 ||
      o.fault_around_pages > RuntimeOptions::kMaxFaultAroundPages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.fault_around_pages = ", o.fault_around_pages,
        " is outside [1, ", RuntimeOptions::kMaxFaultAroundPages,
        "] (1 turns fault-around off)"));
  }
  if (o.fault_around_max_pages < 1 ||
      o.fault_around_max_pages > RuntimeOptions::kMaxFaultAroundPages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.fault_around_max_pages = ", o.fault_around_max_pages,
        " is outside [1, ", RuntimeOptions::kMaxFaultAroundPages, "]"));
  }
  if (o.uffd_open != UffdOpenMode::kAuto &&
      o.uffd_open != UffdOpenMode::kSyscall &&
      o.uffd_open != UffdOpenMode::kDevice &&
      o.uffd_open != UffdOpenMode::kUserModeOnly) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.uffd_open = ", static_cast<int>(o.uffd_open),
        " is not a UffdOpenMode"));
  }
  if (o.fault_mode != FaultMode::kThread &&
      o.fault_mode != FaultMode::kSignal) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.fault_mode = ", static_cast<int>(o.fault_mode),
        " is not a FaultMode (kThread = 0, kSignal = 1)"));
  }
  if (o.service_spin_ns > RuntimeOptions::kMaxServiceSpinNs) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.service_spin_ns = ", o.service_spin_ns,
                     " is above ", RuntimeOptions::kMaxServiceSpinNs));
  }
  if (o.swap_in_spin_ns > RuntimeOptions::kMaxServiceSpinNs) {
    return absl::InvalidArgumentError(
        absl::StrCat("RuntimeOptions.swap_in_spin_ns = ", o.swap_in_spin_ns,
                     " is above ", RuntimeOptions::kMaxServiceSpinNs));
  }
  if (o.max_events_per_read < 1 || o.max_events_per_read > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.max_events_per_read = ", o.max_events_per_read,
        " is outside [1, 64]"));
  }
  if (o.zero_pool_bytes.has_value()) {
    const uint64_t pool = *o.zero_pool_bytes;
    if (pool % page_size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("RuntimeOptions.zero_pool_bytes = ", pool,
                       " is not a multiple of the page size ", page_size));
    }
    if (pool > RuntimeOptions::kMaxZeroPoolBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("RuntimeOptions.zero_pool_bytes = ", pool,
                       " is larger than RuntimeOptions::kMaxZeroPoolBytes = ",
                       RuntimeOptions::kMaxZeroPoolBytes));
    }
    if (o.resident_budget_bytes != 0 && pool > o.resident_budget_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "RuntimeOptions.zero_pool_bytes = ", pool,
          " is larger than resident_budget_bytes = ", o.resident_budget_bytes,
          " (pool pages count against the budget)"));
    }
  }
  return absl::OkStatus();
}

// The resident budget and what only matters with one.
absl::Status CheckPagingOptions(const RuntimeOptions& o, size_t page_size) {
  if (o.resident_budget_bytes == 0) return absl::OkStatus();
  if (o.resident_budget_bytes < page_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.resident_budget_bytes = ", o.resident_budget_bytes,
        " is smaller than one page (", page_size, " bytes)"));
  }
  if (o.resident_budget_bytes / page_size > EvictionPolicy::kMaxBudgetPages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions.resident_budget_bytes = ", o.resident_budget_bytes,
        " is above the largest budget, ", EvictionPolicy::kMaxBudgetPages,
        " pages of ", page_size, " bytes"));
  }
  if (o.low_watermark_percent < 1 || o.high_watermark_percent > 100 ||
      o.low_watermark_percent > o.high_watermark_percent) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RuntimeOptions watermarks low = ", o.low_watermark_percent,
        "%, high = ", o.high_watermark_percent,
        "% must satisfy 1 <= low <= high <= 100"));
  }
  if (o.swap.store == nullptr && o.swap.capacity_bytes % page_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SwapOptions.capacity_bytes = ", o.swap.capacity_bytes,
                     " is not a multiple of the page size ", page_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRuntimeOptions(const RuntimeOptions& o, size_t page_size) {
  if (absl::Status s = CheckFaultOptions(o, page_size); !s.ok()) return s;
  return CheckPagingOptions(o, page_size);
}

absl::StatusOr<RegionShape> CheckRegionOptions(
    const RegionOptions& o, size_t page_size,
    uint32_t runtime_fault_around_pages) {
  if (o.size == 0 || o.size % page_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RegionOptions.size = ", o.size, " for region '", o.name,
        "' is not a non-zero multiple of the page size ", page_size));
  }
  RegionShape shape;
  shape.pages = o.size / page_size;
  if (absl::Status s = PageTable::Validate(shape.pages); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RegionOptions.size = ", o.size, " for region '", o.name,
                     "': ", s.message()));
  }
  const auto fixed = reinterpret_cast<uintptr_t>(o.fixed_address);
  if (fixed % page_size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "RegionOptions.fixed_address = %#x for region '%s' is not aligned to "
        "the page size %d",
        fixed, o.name, page_size));
  }
  shape.fault_around_pages =
      o.fault_around_pages.value_or(runtime_fault_around_pages);
  if (shape.fault_around_pages < 1 ||
      shape.fault_around_pages > RuntimeOptions::kMaxFaultAroundPages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RegionOptions.fault_around_pages = ", shape.fault_around_pages,
        " for region '", o.name, "' is outside [1, ",
        RuntimeOptions::kMaxFaultAroundPages, "]"));
  }
  if (o.source_offset % page_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RegionOptions.source_offset = ", o.source_offset, " for region '",
        o.name, "' is not a multiple of the page size ", page_size));
  }
  return shape;
}

absl::Status CheckMapSnapshotOptions(const MapSnapshotOptions& o) {
  if (!o.region.source_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Runtime::MapSnapshot: RegionOptions.source_path = '",
        o.region.source_path, "' must be empty (the snapshot is the source)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<RegionOptions> SnapshotRegionOptions(
    const MapSnapshotOptions& o, const std::string& path,
    uint64_t snapshot_page_size, uint64_t snapshot_page_count,
    size_t page_size) {
  if (snapshot_page_size != page_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Runtime::MapSnapshot: '%s' has %d-byte pages, this runtime %d", path,
        snapshot_page_size, page_size));
  }
  const uint64_t size = snapshot_page_count * page_size;
  if (o.region.size != 0 && o.region.size != size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Runtime::MapSnapshot: RegionOptions.size = %d, but '%s' holds a "
        "region of %d bytes (0 takes the snapshot's size)",
        o.region.size, path, size));
  }
  RegionOptions ro = o.region;
  ro.size = size;
  if (ro.name.empty()) ro.name = path;
  return ro;
}

}  // namespace upager::internal
