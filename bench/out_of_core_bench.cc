// OutOfCore/*: upager paging a working set four times its resident budget
// (1 GiB through 256 MiB) to its io_uring swap file, on the workloads of
// out_of_core_workload.h (which has the sizes and the checks). The kernel's
// own swap runs the very same workloads in kernel_swap_bench.cc
// (Kernel/Swap/*), in the same run.
//
// Each working set has its own Runtime (resident_budget_bytes = 256 MiB,
// default service threads and fault-around) whose swap file lives in
// $UPAGER_BENCH_DIR, else /var/tmp, like Device/*, and is removed with the
// Runtime. Building the working set is untimed and serves three timed parts
// (one per repetition, out_of_core_fixture.h).
//
// Counters besides ns_per_page (and p50_ns / p99_ns per access for the
// random reads), over the timed part, from Stats deltas:
//   swapins_per_page / swapouts_per_page  pages read from / written to the
//       store per page accessed (read-ahead counts as read);
//   hit_ratio (HotCold)  1 - swapins_per_page: accesses the budget absorbed;
//   budget_waits  faults that found no free frame and waited for eviction;
//   read_ahead_per_page / read_ahead_hits_per_page /
//       read_ahead_waste_per_page  Stats::pages_read_ahead, read_ahead_hits
//       and read_ahead_waste per page accessed (waste may be of pages read
//       ahead in an earlier part, counted when a new stream replaced it);
//   faults_per_page, service_ns  uffd faults per page, and the mean time a
//       service thread spent on one (read to wake, not waiting for I/O);
//   swap_in_p50_ns / swap_in_p99_ns / swap_out_p50_ns  the store's read and
//       write latency, submit to completion, over the Runtime's life (the
//       build and earlier parts included: Stats keeps one histogram).
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/out_of_core_fixture.h"
#include "bench/out_of_core_workload.h"
#include "benchmark/benchmark.h"
#include "upager/runtime.h"

namespace upager::bench {
namespace {

class UpagerWorkingSet : public OocFixture {
 public:
  static absl::StatusOr<std::unique_ptr<UpagerWorkingSet>> Build(
      OocWorkload workload, int threads, bool read_spin) {
    std::unique_ptr<UpagerWorkingSet> ws(
        new UpagerWorkingSet(OocTimedParts(workload)));
    ws->plan_ = MakeOocPlan(workload, threads);
    RuntimeOptions o;
    o.resident_budget_bytes = kOocBudgetBytes;
    if (!read_spin) o.swap_in_spin_ns = 0;
    o.swap.path = absl::StrCat(OocSwapDir(), "/upager-ooc-", getpid(), ".swap");
    // Every page of the working set fits, so the store never fills.
    o.swap.capacity_bytes = kOocWorkingSetBytes;
    absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(o);
    if (!rt.ok()) return rt.status();
    ws->runtime_ = std::move(*rt);
    RegionOptions r;
    r.size = kOocWorkingSetBytes;
    r.name = "out-of-core";
    absl::StatusOr<Region*> region = ws->runtime_->Map(r);
    if (!region.ok()) return region.status();
    ws->region_ = *region;
    if (absl::Status s = BuildOocWorkingSet(ws->plan_, ws->base()); !s.ok()) {
      return s;
    }
    if (absl::Status s = ws->PagerStatus(); !s.ok()) return s;
    return ws;
  }

  // Unmaps the region first, then ~Runtime removes the swap file.
  ~UpagerWorkingSet() override {
    if (region_ != nullptr) (void)runtime_->Unmap(region_);
  }

  Runtime& runtime() { return *runtime_; }
  std::byte* base() const { return region_->data(); }
  const OocPlan& plan() const { return plan_; }

  // OK unless the fault service recorded an error or failed a swap I/O.
  absl::Status PagerStatus() const {
    if (absl::Status s = runtime_->status(); !s.ok()) return s;
    const Stats st = runtime_->stats();
    if (st.threads_poisoned != 0 || st.swap_read_errors != 0 ||
        st.swap_write_errors != 0) {
      return absl::InternalError(absl::StrFormat(
          "%d threads poisoned, %d swap read errors, %d swap write errors",
          st.threads_poisoned, st.swap_read_errors, st.swap_write_errors));
    }
    return absl::OkStatus();
  }

 private:
  explicit UpagerWorkingSet(int timed_parts) : OocFixture(timed_parts) {}

  OocPlan plan_;
  std::unique_ptr<Runtime> runtime_;
  Region* region_ = nullptr;
};

// Sums of Stats deltas over the timed parts.
struct Tally {
  uint64_t swapins = 0;
  uint64_t swapouts = 0;
  uint64_t budget_waits = 0;
  uint64_t faults = 0;
  uint64_t served = 0;
  double service_ns = 0;
  uint64_t read_ahead = 0;
  uint64_t read_ahead_hits = 0;
  uint64_t read_ahead_waste = 0;

  void Add(const Stats& before, const Stats& after) {
    swapins += after.pages_swapped_in - before.pages_swapped_in;
    swapouts += after.pages_swapped_out - before.pages_swapped_out;
    budget_waits += after.budget_waits - before.budget_waits;
    read_ahead += after.pages_read_ahead - before.pages_read_ahead;
    read_ahead_hits += after.read_ahead_hits - before.read_ahead_hits;
    read_ahead_waste += after.read_ahead_waste - before.read_ahead_waste;
    faults += (after.faults_missing_read + after.faults_missing_write) -
              (before.faults_missing_read + before.faults_missing_write);
    served += after.fault_latency.count - before.fault_latency.count;
    // Stats gives the mean; mean * count recovers the sum.
    service_ns += after.fault_latency.mean_ns *
                      static_cast<double>(after.fault_latency.count) -
                  before.fault_latency.mean_ns *
                      static_cast<double>(before.fault_latency.count);
  }
};

void BM_OutOfCore(benchmark::State& state, OocWorkload workload, int threads,
                  bool read_spin = true) {
  const std::string key = absl::StrFormat(
      "upager/%d/%d/%d", static_cast<int>(workload), threads, read_spin);
  int64_t elapsed_ns = 0;
  uint64_t accesses = 0;
  Tally tally;
  Stats last;
  std::vector<int64_t> latencies;
  for (auto _ : state) {
    absl::StatusOr<UpagerWorkingSet*> ws = AcquireOocFixture<UpagerWorkingSet>(
        key, [&] {
          return UpagerWorkingSet::Build(workload, threads, read_spin);
        });
    if (SkipIfError(state, ws.status())) break;
    Runtime& rt = (*ws)->runtime();
    const int slice = (*ws)->TakeSlice();
    const Stats before = rt.stats();
    OocTimed t = RunOocTimed((*ws)->plan(), (*ws)->base(), slice);
    last = rt.stats();
    absl::Status s = t.status;
    if (s.ok()) s = VerifyOocSlice((*ws)->plan(), (*ws)->base(), slice);
    if (s.ok()) s = (*ws)->PagerStatus();
    if (!s.ok() || (*ws)->exhausted()) ReleaseOocFixture();
    if (SkipIfError(state, s)) break;
    state.SetIterationTime(static_cast<double>(t.elapsed_ns) * 1e-9);
    elapsed_ns += t.elapsed_ns;
    accesses += t.accesses;
    tally.Add(before, last);
    latencies.insert(latencies.end(), t.latencies.begin(), t.latencies.end());
  }
  if (state.error_occurred() || accesses == 0) return;
  const auto pages = static_cast<double>(accesses);
  state.SetItemsProcessed(static_cast<int64_t>(accesses));
  state.SetBytesProcessed(static_cast<int64_t>(accesses * kPageSize));
  state.counters["ns_per_page"] = static_cast<double>(elapsed_ns) / pages;
  if (!latencies.empty()) {
    state.counters["p50_ns"] = static_cast<double>(Percentile(latencies, 0.50));
    state.counters["p99_ns"] = static_cast<double>(Percentile(latencies, 0.99));
  }
  state.counters["swapins_per_page"] =
      static_cast<double>(tally.swapins) / pages;
  state.counters["swapouts_per_page"] =
      static_cast<double>(tally.swapouts) / pages;
  if (workload == OocWorkload::kHotCold) {
    state.counters["hit_ratio"] =
        std::max(0.0, 1.0 - static_cast<double>(tally.swapins) / pages);
  }
  state.counters["budget_waits"] = static_cast<double>(tally.budget_waits);
  state.counters["read_ahead_per_page"] =
      static_cast<double>(tally.read_ahead) / pages;
  state.counters["read_ahead_hits_per_page"] =
      static_cast<double>(tally.read_ahead_hits) / pages;
  state.counters["read_ahead_waste_per_page"] =
      static_cast<double>(tally.read_ahead_waste) / pages;
  state.counters["faults_per_page"] = static_cast<double>(tally.faults) / pages;
  if (tally.served > 0) {
    state.counters["service_ns"] =
        tally.service_ns / static_cast<double>(tally.served);
  }
  state.counters["swap_in_p50_ns"] =
      static_cast<double>(last.swap_in_latency.p50_ns);
  state.counters["swap_in_p99_ns"] =
      static_cast<double>(last.swap_in_latency.p99_ns);
  state.counters["swap_out_p50_ns"] =
      static_cast<double>(last.swap_out_latency.p50_ns);
  state.SetLabel(
      absl::StrFormat("swap file in %s%s%s", OocSwapDir(),
                      last.store.direct_io ? " O_DIRECT" : " buffered",
                      last.store.registered_buffers ? " fixed-buffers" : ""));
}

// Iterations(1): one timed part per repetition (out_of_core_workload.h has
// the sizes); each takes 0.1-3 s.
BENCHMARK_CAPTURE(BM_OutOfCore, seq_write, OocWorkload::kSeqWrite, 1)
    ->Name("OutOfCore/SeqWrite/upager")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_OutOfCore, seq_read, OocWorkload::kSeqRead, 1)
    ->Name("OutOfCore/SeqRead/upager")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_OutOfCore, rand_read, OocWorkload::kRandRead, 1)
    ->Name("OutOfCore/RandRead4K/upager")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
// The default without RuntimeOptions::swap_in_spin_ns: the service thread
// sleeps while the read is in flight, and the completion must wake it.
BENCHMARK_CAPTURE(BM_OutOfCore, rand_read_nospin, OocWorkload::kRandRead, 1,
                  /*read_spin=*/false)
    ->Name("OutOfCore/RandRead4K/upager-nospin")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_OutOfCore, rand_read2, OocWorkload::kRandRead, 2)
    ->Name("OutOfCore/RandRead4K/Threads2/upager")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_OutOfCore, hot_cold, OocWorkload::kHotCold, 1)
    ->Name("OutOfCore/HotCold/upager")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace upager::bench
