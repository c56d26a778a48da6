// libFuzzer target: option validation, called directly (no userfaultfd, no
// files, no threads). Each input is decoded into
//   - RuntimeOptions (every field, SwapOptions included) for
//     Engine::ValidateOptions, the check Runtime::Create makes first;
//   - a region's page count for PageTable::Validate, the size check
//     Runtime::Map delegates to;
//   - EvictionPolicy::Options for EvictionPolicy::Validate, which a
//     resident budget goes through;
//   - a snapshot geometry for snapshot_format::ComputeLayout, which
//     Snapshot::SaveTo's writer goes through.
//
// Contract, beyond no crash, no leak and no undefined behavior: a
// validator accepts exactly the values its header documents (the ranges
// are restated below, next to each check); a rejection is InvalidArgument
// and its message names a field it rejects together with the value passed
// ("RuntimeOptions.service_threads = -1 ..."); and what a validator
// accepts can be built: the PageTable and the EvictionPolicy it guards are
// constructed and checked.
//
// Not reachable from here without an Engine (and so a userfaultfd): the
// paging checks (Engine::ValidatePaging is private), the region checks and
// the MapSnapshotOptions checks, which are written inline in Engine::Map
// and Engine::MapSnapshot.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backing/snapshot_file.h"
#include "backing/snapshot_format.h"
#include "pager/eviction_policy.h"
#include "pager/page_table.h"
#include "runtime/engine.h"
#include "tests/fuzz/fuzz_check.h"
#include "upager/options.h"

namespace upager::fuzz {
namespace {

using internal::EvictionPolicy;
using internal::PageTable;

// A field a validator may reject: its name as messages spell it after the
// struct's prefix, the value passed, and whether the documented range
// holds it.
struct Field {
  std::string name;
  std::string value;
  bool in_range;
};

// The verdict contract: OK exactly when every field is in range; otherwise
// InvalidArgument, and the message names some out-of-range field as
// "<prefix><name><separator><value>".
void CheckVerdict(const char* validator, const absl::Status& s,
                  const std::string& prefix, const std::string& separator,
                  const std::vector<Field>& fields) {
  bool all_in_range = true;
  for (const Field& f : fields) all_in_range = all_in_range && f.in_range;
  std::string values;
  for (const Field& f : fields) {
    absl::StrAppend(&values, " ", f.name, "=", f.value,
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
    named = named ||
            (!f.in_range &&
             absl::StrContains(s.message(),
                               absl::StrCat(prefix, f.name, separator,
                                            f.value)));
  }
  UPAGER_FUZZ_CHECK(named, absl::StrCat(validator, ": '", s.message(),
                                        "' names no rejected field of",
                                        values));
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
  return o;
}

// Engine::ValidateOptions, against upager/options.h: service_threads
// 0..kMaxServiceThreads, fault_around_pages and fault_around_max_pages
// 1..kMaxFaultAroundPages, max_events_per_read 1..64, service_spin_ns
// 0..kMaxServiceSpinNs, fault_mode kThread or kSignal, uffd_open a named
// UffdOpenMode. (The budget, the
// watermarks and the swap options are ValidatePaging's.)
void CheckRuntimeOptions(const RuntimeOptions& o) {
  const auto in = [](int64_t v, int64_t lo, int64_t hi) {
    return v >= lo && v <= hi;
  };
  CheckVerdict(
      "Engine::ValidateOptions", internal::Engine::ValidateOptions(o),
      "RuntimeOptions.", " = ",
      {{"service_threads", absl::StrCat(o.service_threads),
        in(o.service_threads, 0, RuntimeOptions::kMaxServiceThreads)},
       {"fault_around_pages", absl::StrCat(o.fault_around_pages),
        in(o.fault_around_pages, 1, RuntimeOptions::kMaxFaultAroundPages)},
       {"fault_around_max_pages", absl::StrCat(o.fault_around_max_pages),
        in(o.fault_around_max_pages, 1, RuntimeOptions::kMaxFaultAroundPages)},
       {"max_events_per_read", absl::StrCat(o.max_events_per_read),
        in(o.max_events_per_read, 1, 64)},
       {"service_spin_ns", absl::StrCat(o.service_spin_ns),
        in(o.service_spin_ns, 0, RuntimeOptions::kMaxServiceSpinNs)},
       {"fault_mode", absl::StrCat(static_cast<int>(o.fault_mode)),
        in(static_cast<int>(o.fault_mode), 0, 1)},
       {"uffd_open", absl::StrCat(static_cast<int>(o.uffd_open)),
        in(static_cast<int>(o.uffd_open), 0, 3)}});
}

// PageTable::Validate: 1..kMaxPages. An accepted count builds a table
// whose first and last entries can be written and read back.
void CheckPageTable(uint64_t pages) {
  const absl::Status s = PageTable::Validate(pages);
  CheckVerdict("PageTable::Validate", s, "page table: ", " ",
               {{"page_count", absl::StrCat(pages),
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
  const std::vector<Field> fields = {
      {"budget_pages", absl::StrCat(b), b >= 1 && b <= kMax},
      {"protected_pages", absl::StrCat(o.protected_pages),
       o.protected_pages < b},
      {"ghost_pages", absl::StrCat(o.ghost_pages), o.ghost_pages <= kMax},
      {"correlation_pages", absl::StrCat(o.correlation_pages),
       o.correlation_pages <= kMax},
      {"probe_age_pages", absl::StrCat(o.probe_age_pages),
       o.probe_age_pages <= kMax},
      {"stale_pages", absl::StrCat(o.stale_pages),
       o.stale_pages <= kMax && (!ages_in_range || stale_ok)},
  };
  const absl::Status s = EvictionPolicy::Validate(o);
  CheckVerdict("EvictionPolicy::Validate", s, "EvictionPolicy::Options::",
               " = ", fields);
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

}  // namespace
}  // namespace upager::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  upager::fuzz::CheckRuntimeOptions(upager::fuzz::ConsumeRuntimeOptions(in));
  upager::fuzz::CheckPageTable(in.ConsumeIntegral<uint64_t>());
  upager::fuzz::CheckEvictionPolicy(in);
  upager::fuzz::CheckSnapshotLayout(in);
  return 0;
}
