// libFuzzer target: option validation, called directly (no userfaultfd, no
// files, no threads). Each input is decoded into
//   - RuntimeOptions (every field, SwapOptions included) and a page size
//     for CheckRuntimeOptions (runtime/option_checks.h), the checks
//     Runtime::Create makes first;
//   - a region's page count for PageTable::Validate, the size check
//     Runtime::Map delegates to;
//   - EvictionPolicy::Options for EvictionPolicy::Validate, which a
//     resident budget goes through;
//   - a snapshot geometry for snapshot_format::ComputeLayout, which
//     Snapshot::SaveTo's writer goes through;
//   - RegionOptions for CheckRegionOptions, Runtime::Map's checks;
//   - MapSnapshotOptions and a snapshot's geometry for
//     CheckMapSnapshotOptions and SnapshotRegionOptions, Runtime::
//     MapSnapshot's checks, and the RegionOptions they give for
//     CheckRegionOptions, as MapSnapshot then maps them.
// (The last three and the page size come from the bytes the others leave,
// so the seeds made before they existed decode as they did.)
//
// Contract, beyond no crash, no leak and no undefined behavior: a
// validator accepts exactly the values its header documents (the ranges
// are restated below, next to each check); a rejection is InvalidArgument
// and its message names a field it rejects together with the value passed
// ("RuntimeOptions.service_threads = -1 ..."); and what a validator
// accepts can be built or is what the header promises: the PageTable and
// the EvictionPolicy it guards are constructed and checked, a region's
// shape and a snapshot's RegionOptions are compared with the options.
//
// What only the system can check (the swap file, a region's source file,
// the snapshot files, a fixed address in use) is the Engine's, out of
// reach here.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "backing/memory_store.h"
#include "backing/snapshot_file.h"
#include "backing/snapshot_format.h"
#include "pager/eviction_policy.h"
#include "pager/page_table.h"
#include "runtime/option_checks.h"
#include "runtime/os/memory.h"
#include "tests/fuzz/fuzz_check.h"
#include "upager/backing_store.h"
#include "upager/options.h"

namespace upager::fuzz {
namespace {

using internal::EvictionPolicy;
using internal::PageTable;

// A field a validator may reject: how a message rejecting it names it and
// the value passed ("RuntimeOptions.service_threads = -1"), and whether the
// documented range holds the value.
struct Field {
  std::string mention;
  bool in_range;
};

// The verdict contract: OK exactly when every field is in range; otherwise
// InvalidArgument, and the message names some out-of-range field.
void CheckVerdict(const char* validator, const absl::Status& s,
                  const std::vector<Field>& fields) {
  bool all_in_range = true;
  for (const Field& f : fields) all_in_range = all_in_range && f.in_range;
  std::string values;
  for (const Field& f : fields) {
    absl::StrAppend(&values, "\n    ", f.mention,
                    f.in_range ? "" : " (out of range)");
  }
  UPAGER_FUZZ_CHECK(s.ok() == all_in_range,
                    absl::StrCat(validator, " returned ", s.ToString(),
                                 " for", values));
  if (s.ok()) return;
  UPAGER_FUZZ_CHECK(absl::IsInvalidArgument(s),
                    absl::StrCat(validator, ": ", s.ToString()));
  bool named = false;
  for (const Field& f : fields) {
    named = named || (!f.in_range && absl::StrContains(s.message(), f.mention));
  }
  UPAGER_FUZZ_CHECK(named, absl::StrCat(validator, ": '", s.message(),
                                        "' names no rejected field of",
                                        values));
}

// "<prefix><name> = <value>", the way most messages name a field.
template <typename T>
std::string Mention(absl::string_view prefix, absl::string_view name,
                    const T& value) {
  return absl::StrCat(prefix, name, " = ", value);
}

RuntimeOptions ConsumeRuntimeOptions(FuzzedDataProvider& in) {
  RuntimeOptions o;
  o.resident_budget_bytes = in.ConsumeIntegral<uint64_t>();
  o.high_watermark_percent = in.ConsumeIntegral<uint32_t>();
  o.low_watermark_percent = in.ConsumeIntegral<uint32_t>();
  o.swap.path = in.ConsumeRandomLengthString(64);
  o.swap.capacity_bytes = in.ConsumeIntegral<uint64_t>();
  o.swap.direct_io = in.ConsumeBool();
  o.service_threads = in.ConsumeIntegral<int>();
  o.pin_service_threads = in.ConsumeBool();
  o.service_idle_priority = in.ConsumeBool();
  o.fault_around_pages = in.ConsumeIntegral<uint32_t>();
  o.fault_around_max_pages = in.ConsumeIntegral<uint32_t>();
  o.max_events_per_read = in.ConsumeIntegral<uint32_t>();
  // Any value of the underlying type, not only the named ones.
  o.uffd_open = static_cast<UffdOpenMode>(in.ConsumeIntegral<int>());
  o.unmap_regions_on_destroy = in.ConsumeBool();
  o.service_spin_ns = in.ConsumeIntegral<uint32_t>();
  o.fault_mode = static_cast<FaultMode>(in.ConsumeIntegral<int>());
  o.swap_in_spin_ns = in.ConsumeIntegral<uint32_t>();
  return o;
}

// The rest of a RuntimeOptions, from the bytes the other checks left: the
// zero-page pool and whether the application supplies a store.
void ConsumeMoreRuntimeOptions(FuzzedDataProvider& in, RuntimeOptions* o) {
  if (in.ConsumeBool()) o->zero_pool_bytes = in.ConsumeIntegral<uint64_t>();
  if (in.ConsumeBool()) {
    // Only its presence is checked; one store serves every input.
    static const std::shared_ptr<BackingStore> store = [] {
      auto s = internal::MemoryStore::Create(internal::os::PageSize());
      UPAGER_FUZZ_CHECK(s.ok(), s.status().ToString());
      return std::shared_ptr<BackingStore>(std::move(*s));
    }();
    o->swap.store = store;
  }
}

// A page size the system might have: a power of two, 4 KiB .. 1 GiB.
size_t ConsumePageSize(FuzzedDataProvider& in) {
  return size_t{1} << in.ConsumeIntegralInRange<int>(12, 30);
}

// CheckRuntimeOptions, against upager/options.h: service_threads
// 0..kMaxServiceThreads, fault_around_pages and fault_around_max_pages
// 1..kMaxFaultAroundPages, max_events_per_read 1..64, service_spin_ns and
// swap_in_spin_ns 0..kMaxServiceSpinNs, fault_mode kThread or kSignal, uffd_open a named
// UffdOpenMode; zero_pool_bytes, when set, a multiple of the page size, at
// most kMaxZeroPoolBytes and (with a budget) at most the budget. With a
// budget (resident_budget_bytes != 0): at least one page and at most
// EvictionPolicy::kMaxBudgetPages pages, 1 <= low <= high <= 100 percent,
// and without an application store, capacity_bytes a multiple of the page
// size. Without one, the watermarks and the swap are not looked at.
void CheckRuntimeOptions(const RuntimeOptions& o, size_t page_size) {
  const auto in = [](int64_t v, int64_t lo, int64_t hi) {
    return v >= lo && v <= hi;
  };
  const auto field = [](absl::string_view name, auto value, bool in_range) {
    return Field{Mention("RuntimeOptions.", name, value), in_range};
  };
  const uint64_t budget = o.resident_budget_bytes;
  const bool no_budget = budget == 0;
  std::vector<Field> fields = {
      field("service_threads", o.service_threads,
            in(o.service_threads, 0, RuntimeOptions::kMaxServiceThreads)),
      field("fault_around_pages", o.fault_around_pages,
            in(o.fault_around_pages, 1, RuntimeOptions::kMaxFaultAroundPages)),
      field("fault_around_max_pages", o.fault_around_max_pages,
            in(o.fault_around_max_pages, 1,
               RuntimeOptions::kMaxFaultAroundPages)),
      field("max_events_per_read", o.max_events_per_read,
            in(o.max_events_per_read, 1, 64)),
      field("service_spin_ns", o.service_spin_ns,
            in(o.service_spin_ns, 0, RuntimeOptions::kMaxServiceSpinNs)),
      field("swap_in_spin_ns", o.swap_in_spin_ns,
            in(o.swap_in_spin_ns, 0, RuntimeOptions::kMaxServiceSpinNs)),
      field("fault_mode", static_cast<int>(o.fault_mode),
            in(static_cast<int>(o.fault_mode), 0, 1)),
      field("uffd_open", static_cast<int>(o.uffd_open),
            in(static_cast<int>(o.uffd_open), 0, 3)),
      field("resident_budget_bytes", budget,
            no_budget || (budget >= page_size &&
                          budget / page_size <=
                              EvictionPolicy::kMaxBudgetPages)),
      {absl::StrCat("RuntimeOptions watermarks low = ",
                    o.low_watermark_percent,
                    "%, high = ", o.high_watermark_percent, "%"),
       no_budget || (o.low_watermark_percent >= 1 &&
                     o.low_watermark_percent <= o.high_watermark_percent &&
                     o.high_watermark_percent <= 100)},
      {Mention("SwapOptions.", "capacity_bytes", o.swap.capacity_bytes),
       no_budget || o.swap.store != nullptr ||
           o.swap.capacity_bytes % page_size == 0},
  };
  if (o.zero_pool_bytes.has_value()) {
    const uint64_t pool = *o.zero_pool_bytes;
    fields.push_back(field("zero_pool_bytes", pool,
                           pool % page_size == 0 &&
                               pool <= RuntimeOptions::kMaxZeroPoolBytes &&
                               (no_budget || pool <= budget)));
  }
  CheckVerdict("CheckRuntimeOptions",
               internal::CheckRuntimeOptions(o, page_size), fields);
}

// PageTable::Validate: 1..kMaxPages. An accepted count builds a table
// whose first and last entries can be written and read back.
void CheckPageTable(uint64_t pages) {
  const absl::Status s = PageTable::Validate(pages);
  CheckVerdict("PageTable::Validate", s,
               {{absl::StrCat("page table: page_count ", pages),
                 pages >= 1 && pages <= PageTable::kMaxPages}});
  if (!s.ok()) return;
  PageTable table(pages);
  UPAGER_FUZZ_CHECK(table.page_count() == pages, "page_count");
  const auto resident =
      internal::PageEntry::Of(internal::PageState::kResident);
  const internal::PageIndex first(0), last(pages - 1);
  UPAGER_FUZZ_CHECK(table.Get(first).raw() == 0 && table.Get(last).raw() == 0,
                    "a new table has a page that is not absent");
  UPAGER_FUZZ_CHECK(table.Set(first, resident) && table.Set(last, resident),
                    "Set failed");
  UPAGER_FUZZ_CHECK(table.Get(first) == resident && table.Get(last) == resident,
                    "a page did not read back");
  const absl::Status inv = table.CheckInvariants();
  UPAGER_FUZZ_CHECK(inv.ok(), inv.ToString());
}

// EvictionPolicy::Validate, against pager/eviction_policy.h: budget_pages
// 1..2^31-1; protected_pages below budget_pages; ghost_pages and the three
// ages at most 2^31-1; stale_pages, once defaults are resolved, at least
// probe_age_pages. An accepted set builds a policy whose resolved options
// keep those promises.
void CheckEvictionPolicy(FuzzedDataProvider& in) {
  constexpr uint64_t kMax = (uint64_t{1} << 31) - 1;
  EvictionPolicy::Options o;
  // Small values half the time: that is where the defaults interact.
  auto consume = [&in]() {
    return in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, 64)
                            : in.ConsumeIntegral<uint64_t>();
  };
  o.budget_pages = consume();
  o.protected_pages = consume();
  o.ghost_pages = consume();
  o.sequential_reserve_pages = consume();
  o.correlation_pages = consume();
  o.probe_age_pages = consume();
  o.stale_pages = consume();

  const bool ages_in_range = o.correlation_pages <= kMax &&
                             o.probe_age_pages <= kMax &&
                             o.stale_pages <= kMax;
  // stale_pages against probe_age_pages only matters once the others
  // hold; the defaults are documented beside each field.
  const uint64_t b = o.budget_pages;
  const uint64_t probe =
      o.probe_age_pages != 0 ? o.probe_age_pages : std::min(kMax, b / 4);
  const bool stale_ok = o.stale_pages == 0 || o.stale_pages >= probe;
  const auto field = [](absl::string_view name, uint64_t value,
                        bool in_range) {
    return Field{Mention("EvictionPolicy::Options::", name, value), in_range};
  };
  const std::vector<Field> fields = {
      field("budget_pages", b, b >= 1 && b <= kMax),
      field("protected_pages", o.protected_pages, o.protected_pages < b),
      field("ghost_pages", o.ghost_pages, o.ghost_pages <= kMax),
      field("correlation_pages", o.correlation_pages,
            o.correlation_pages <= kMax),
      field("probe_age_pages", o.probe_age_pages, o.probe_age_pages <= kMax),
      field("stale_pages", o.stale_pages,
            o.stale_pages <= kMax && (!ages_in_range || stale_ok)),
  };
  const absl::Status s = EvictionPolicy::Validate(o);
  CheckVerdict("EvictionPolicy::Validate", s, fields);
  if (!s.ok()) return;
  const EvictionPolicy policy(o);
  const EvictionPolicy::Options& r = policy.options();
  UPAGER_FUZZ_CHECK(
      r.budget_pages == b && r.protected_pages < b && r.ghost_pages <= kMax &&
          r.correlation_pages <= kMax && r.probe_age_pages <= kMax &&
          r.stale_pages <= kMax && r.stale_pages >= r.probe_age_pages,
      absl::StrCat("resolved: budget ", r.budget_pages, " protected ",
                   r.protected_pages, " ghost ", r.ghost_pages,
                   " correlation ", r.correlation_pages, " probe_age ",
                   r.probe_age_pages, " stale ", r.stale_pages));
}

// snapshot_format::ComputeLayout: accepts a geometry exactly when the file
// stays within kMaxFileBytes, and then lays it out as snapshot_file.h
// says (data right after the header page, metadata right after the data).
void CheckSnapshotLayout(FuzzedDataProvider& in) {
  namespace fmt = internal::snapshot_format;
  internal::SnapshotFileInfo info;
  info.page_size = uint64_t{1} << in.ConsumeIntegralInRange<int>(12, 30);
  info.page_count = in.ConsumeIntegral<uint64_t>();
  info.extent_count = in.ConsumeIntegral<uint64_t>();
  info.data_pages = in.ConsumeIntegral<uint64_t>();
  using U = unsigned __int128;
  const U data = U{info.page_count} * info.page_size;
  const U meta_offset = info.page_size + data;
  const U meta_len = fmt::kMetadataPrefixBytes +
                     U{info.extent_count} * fmt::kExtentBytes +
                     U{info.data_pages} * 4 + 4;
  const U end = meta_offset + meta_len;
  const U limit = fmt::kMaxFileBytes;
  const bool fits = data <= limit &&
                    U{info.extent_count} * fmt::kExtentBytes <= limit &&
                    U{info.data_pages} * 4 <= limit && meta_offset <= limit &&
                    end <= limit;
  const absl::Status s = fmt::ComputeLayout(&info);
  const std::string what =
      absl::StrCat(info.page_count, " pages of ", info.page_size, " bytes");
  UPAGER_FUZZ_CHECK(s.ok() == fits,
                    absl::StrCat("ComputeLayout(", what, ", ",
                                 info.extent_count, " extents, ",
                                 info.data_pages, " data pages): ",
                                 s.ToString()));
  if (!s.ok()) {
    UPAGER_FUZZ_CHECK(absl::IsInvalidArgument(s) &&
                          absl::StrContains(s.message(), what),
                      s.ToString());
    return;
  }
  UPAGER_FUZZ_CHECK(info.data_offset == info.page_size &&
                        info.metadata_offset == meta_offset &&
                        info.metadata_length == meta_len &&
                        info.file_size == end + fmt::kFooterBytes,
                    absl::StrCat("layout of ", what));
}

// A byte count or an address: any value; a multiple of `page_size`; or
// one of up to twice PageTable::kMaxPages pages, where a region's limit is.
uint64_t ConsumeBytes(FuzzedDataProvider& in, size_t page_size) {
  switch (in.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      return in.ConsumeIntegral<uint64_t>();
    case 1:
      return in.ConsumeIntegral<uint64_t>() & ~uint64_t{page_size - 1};
    default:
      return page_size * in.ConsumeIntegralInRange<uint64_t>(
                             0, std::min(2 * PageTable::kMaxPages,
                                         ~uint64_t{0} / page_size));
  }
}

RegionOptions ConsumeRegionOptions(FuzzedDataProvider& in, size_t page_size) {
  RegionOptions o;
  o.size = ConsumeBytes(in, page_size);
  o.name = in.ConsumeRandomLengthString(16);
  // Never dereferenced: the checks look at its alignment only.
  o.fixed_address = reinterpret_cast<void*>(ConsumeBytes(in, page_size));
  if (in.ConsumeBool()) {
    o.fault_around_pages =
        in.ConsumeBool()
            ? in.ConsumeIntegralInRange<uint32_t>(
                  0, RuntimeOptions::kMaxFaultAroundPages + 1)
            : in.ConsumeIntegral<uint32_t>();
  }
  o.source_path = in.ConsumeRandomLengthString(16);
  o.source_offset = ConsumeBytes(in, page_size);
  return o;
}

// CheckRegionOptions, against upager/options.h: size a non-zero multiple
// of the page size of at most PageTable::kMaxPages pages, fixed_address
// and source_offset multiples of the page size, the region's
// fault_around_pages (else the runtime's) in 1..kMaxFaultAroundPages.
// Every message names the region as well. An accepted set's shape is the
// region's page count and its window.
void CheckRegion(const RegionOptions& o, size_t page_size,
                 uint32_t runtime_fault_around) {
  const std::string region = absl::StrCat(" for region '", o.name, "'");
  const auto fixed = reinterpret_cast<uintptr_t>(o.fixed_address);
  const uint32_t window = o.fault_around_pages.value_or(runtime_fault_around);
  const absl::StatusOr<internal::RegionShape> shape =
      internal::CheckRegionOptions(o, page_size, runtime_fault_around);
  CheckVerdict(
      "CheckRegionOptions", shape.status(),
      {{Mention("RegionOptions.", "size", o.size) + region,
        o.size != 0 && o.size % page_size == 0 &&
            o.size / page_size <= PageTable::kMaxPages},
       {absl::StrFormat("RegionOptions.fixed_address = %#x", fixed) + region,
        fixed % page_size == 0},
       {Mention("RegionOptions.", "fault_around_pages", window) + region,
        window >= 1 && window <= RuntimeOptions::kMaxFaultAroundPages},
       {Mention("RegionOptions.", "source_offset", o.source_offset) + region,
        o.source_offset % page_size == 0}});
  if (!shape.ok()) return;
  UPAGER_FUZZ_CHECK(
      shape->pages == o.size / page_size &&
          shape->fault_around_pages == window,
      absl::StrCat("shape of", region, ": ", shape->pages, " pages, window ",
                   shape->fault_around_pages));
}

// CheckMapSnapshotOptions: no source_path. Then SnapshotRegionOptions for
// a snapshot of some geometry (one a file can have): its pages are the
// runtime's, and the region's size is 0 or the snapshot's. What it accepts
// is the region's options with the snapshot's size and, for an unnamed
// region, the path as its name; CheckRegionOptions then runs on those, as
// in Runtime::MapSnapshot.
void CheckMapSnapshot(FuzzedDataProvider& in, size_t page_size,
                      uint32_t runtime_fault_around) {
  namespace fmt = internal::snapshot_format;
  MapSnapshotOptions o;
  o.region = ConsumeRegionOptions(in, page_size);
  if (in.ConsumeBool()) o.region.source_path.clear();
  o.prefetch = in.ConsumeBool();
  const std::string path = in.ConsumeRandomLengthString(16);
  const uint64_t file_page_size =
      in.ConsumeBool() ? page_size : ConsumePageSize(in);
  const uint64_t file_pages = in.ConsumeIntegralInRange<uint64_t>(
      1, fmt::kMaxFileBytes / file_page_size);
  const uint64_t file_bytes = file_pages * file_page_size;
  switch (in.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      o.region.size = 0;  // takes the snapshot's
      break;
    case 1:
      o.region.size = file_bytes;
      break;
    default:
      break;  // as decoded
  }

  const absl::Status args = internal::CheckMapSnapshotOptions(o);
  CheckVerdict("CheckMapSnapshotOptions", args,
               {{absl::StrCat("RegionOptions.source_path = '",
                              o.region.source_path, "'"),
                 o.region.source_path.empty()}});
  if (!args.ok()) return;
  const absl::StatusOr<RegionOptions> ro = internal::SnapshotRegionOptions(
      o, path, file_page_size, file_pages, page_size);
  CheckVerdict(
      "SnapshotRegionOptions", ro.status(),
      {{absl::StrFormat("'%s' has %d-byte pages, this runtime %d", path,
                        file_page_size, page_size),
        file_page_size == page_size},
       {absl::StrFormat("RegionOptions.size = %d, but '%s' holds a region of "
                        "%d bytes",
                        o.region.size, path, file_bytes),
        o.region.size == 0 || o.region.size == file_bytes}});
  if (!ro.ok()) return;
  const std::string& name = o.region.name.empty() ? path : o.region.name;
  UPAGER_FUZZ_CHECK(
      ro->size == file_bytes && ro->name == name &&
          ro->fixed_address == o.region.fixed_address &&
          ro->fault_around_pages == o.region.fault_around_pages &&
          ro->source_path.empty() &&
          ro->source_offset == o.region.source_offset,
      absl::StrCat("SnapshotRegionOptions gave size ", ro->size, " name '",
                   ro->name, "' for a snapshot of ", file_bytes,
                   " bytes at '", path, "'"));
  CheckRegion(*ro, page_size, runtime_fault_around);
}

void TestOneInput(FuzzedDataProvider& in) {
  RuntimeOptions o = ConsumeRuntimeOptions(in);
  CheckPageTable(in.ConsumeIntegral<uint64_t>());
  CheckEvictionPolicy(in);
  CheckSnapshotLayout(in);
  // From the bytes left (see the top of this file).
  ConsumeMoreRuntimeOptions(in, &o);
  const size_t page_size = ConsumePageSize(in);
  CheckRuntimeOptions(o, page_size);
  // The budget's checks come after fields the decoding seldom gets in
  // range: again with those at their defaults, so every input reaches them.
  RuntimeOptions budget_only;
  budget_only.resident_budget_bytes = o.resident_budget_bytes;
  budget_only.high_watermark_percent = o.high_watermark_percent;
  budget_only.low_watermark_percent = o.low_watermark_percent;
  budget_only.swap = o.swap;
  budget_only.zero_pool_bytes = o.zero_pool_bytes;
  CheckRuntimeOptions(budget_only, page_size);
  CheckRegion(ConsumeRegionOptions(in, page_size), page_size,
              o.fault_around_pages);
  CheckMapSnapshot(in, page_size, o.fault_around_pages);
}

}  // namespace
}  // namespace upager::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  upager::fuzz::TestOneInput(in);
  return 0;
}
