// Sorting several times more data than the memory it may use: an external
// merge sort whose "disk" is upager. The values live in Regions under one
// resident budget and upager pages them to a swap file, so the code reads
// like an in-memory sort: each run (a quarter of the budget) is sorted in
// place with std::sort, then a k-way merge streams the runs into the output.
// Each run is its own Region, so upager reads ahead along each stream. The
// result must be sorted and hold the same multiset of values.
//
//   build/bin/out_of_core_sort [--data_mib=256] [--budget_mib=64]
//                              [--swap_path=/var/tmp/sort.swap]
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/clock.h"
#include "upager/upager.h"

ABSL_FLAG(uint64_t, data_mib, 256, "Bytes of 64-bit values to sort, in MiB");
ABSL_FLAG(uint64_t, budget_mib, 64,
          "Resident budget in MiB, at least 4 and below --data_mib");
ABSL_FLAG(std::string, swap_path, "",
          "Local swap file; empty: a temporary one in $TMPDIR or /var/tmp");

namespace {

// splitmix64: generates the values, and hashes them for the fingerprint.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

// A multiset fingerprint: a sum of hashes does not depend on order, so it is
// equal before and after the sort exactly when no value was lost, duplicated
// or corrupted (but for a 2^-64 chance).
uint64_t Hash(uint64_t v) { return Mix(v ^ 0x5ca1ab1e); }

struct Run {
  upager::Region* region;
  uint64_t* v;
  uint64_t count;
};

bool Failed(const absl::Status& s, const char* what) {
  if (!s.ok()) std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  return !s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "External merge sort of more data than the resident budget, verified.");
  absl::ParseCommandLine(argc, argv);
  const uint64_t data_mib = absl::GetFlag(FLAGS_data_mib);
  const uint64_t budget_mib = absl::GetFlag(FLAGS_budget_mib);
  if (budget_mib < 4 || budget_mib >= data_mib) {
    std::fprintf(stderr, "need 4 <= --budget_mib (%lu) < --data_mib (%lu)\n",
                 budget_mib, data_mib);
    return 2;
  }
  upager::RuntimeOptions o;
  o.resident_budget_bytes = budget_mib << 20;
  o.swap.path = absl::GetFlag(FLAGS_swap_path);
  // The runs and the output may all be paged out at once.
  o.swap.capacity_bytes = (2 * data_mib + budget_mib) << 20;
  auto rt = upager::Runtime::Create(o);
  if (Failed(rt.status(), "Runtime::Create")) return 1;
  // Runs of a quarter of the budget: one being sorted fits with room to spare.
  const uint64_t run_mib = budget_mib / 4;
  std::vector<Run> runs;
  for (uint64_t mib = 0; mib < data_mib; mib += run_mib) {
    const uint64_t bytes = std::min(run_mib, data_mib - mib) << 20;
    auto r = (*rt)->Map({.size = bytes, .name = "run"});
    if (Failed(r.status(), "Map")) return 1;
    runs.push_back({*r, reinterpret_cast<uint64_t*>((*r)->data()), bytes / 8});
  }
  auto out_region = (*rt)->Map({.size = data_mib << 20, .name = "sorted"});
  if (Failed(out_region.status(), "Map")) return 1;
  auto* out = reinterpret_cast<uint64_t*>((*out_region)->data());
  const uint64_t n = (data_mib << 20) / 8;

  absl::Time t = absl::Now();
  uint64_t before = 0, next = 0;
  for (Run& run : runs) {
    for (uint64_t i = 0; i < run.count; ++i) {
      before += Hash(run.v[i] = Mix(next++));
    }
  }
  const double fill_s = absl::ToDoubleSeconds(absl::Now() - t);

  t = absl::Now();
  for (Run& run : runs) {
    // std::sort's first pass also walks down from the end, which read-ahead
    // cannot follow; asking for the whole run first reads it in as one
    // sequential stream. A hint: if it fails, the sort only runs slower.
    (void)(*rt)->Advise(run.region, 0, run.count * 8,
                        upager::Runtime::Advice::kWillNeed);
    std::sort(run.v, run.v + run.count);
  }
  const double runs_s = absl::ToDoubleSeconds(absl::Now() - t);

  // k-way merge: a min-heap of (next value, run).
  t = absl::Now();
  using Head = std::pair<uint64_t, size_t>;
  std::priority_queue<Head, std::vector<Head>, std::greater<Head>> heads;
  std::vector<uint64_t> pos(runs.size(), 0);
  for (size_t r = 0; r < runs.size(); ++r) heads.emplace(runs[r].v[0], r);
  for (uint64_t i = 0; i < n; ++i) {
    const auto [value, r] = heads.top();
    heads.pop();
    out[i] = value;
    if (++pos[r] < runs[r].count) heads.emplace(runs[r].v[pos[r]], r);
  }
  const double merge_s = absl::ToDoubleSeconds(absl::Now() - t);

  uint64_t after = 0, out_of_order = 0;
  for (uint64_t i = 0; i < n; ++i) {
    out_of_order += i > 0 && out[i - 1] > out[i];
    after += Hash(out[i]);
  }
  const bool ok = out_of_order == 0 && after == before;
  const upager::Stats s = (*rt)->stats();
  std::printf(
      "sorted %lu values (%lu MiB, %zu runs) through a %lu MiB "
      "resident budget: fill %.2f s, sort runs %.2f s, merge %.2f s\n",
      n, data_mib, runs.size(), budget_mib, fill_s, runs_s, merge_s);
  std::printf(
      "  paging: %lu pages swapped out, %lu in (%lu read ahead), %lu "
      "clean drops, %lu faults waited for a frame\n",
      s.pages_swapped_out, s.pages_swapped_in, s.pages_read_ahead,
      s.clean_drops, s.budget_waits);
  std::printf("verification: %s (%lu out of order, fingerprint %s)\n",
              ok ? "sorted, every value kept" : "MISMATCH", out_of_order,
              after == before ? "equal" : "DIFFERENT");
  if (s.pages_swapped_out == 0) {
    std::fprintf(stderr, "nothing was paged out: the budget did not bind\n");
    return 1;
  }
  return ok && !Failed((*rt)->status(), "fault service") ? 0 : 1;
}
