// FirstTouch/Sequential and FirstTouch/Random: the cost of giving a page
// memory on its first write, served by the kernel (private anonymous
// memory) and by upager (a Region: userfaultfd missing fault, resolved by
// the service thread with UFFDIO_COPY), in the same run.
//
// Every iteration touches memory no one has touched before: mapping and
// unmapping happen outside the timed part, so the benchmarks use manual
// time (benchmark appends "/manual_time" to their names).
#include <cstdint>
#include <optional>
#include <vector>

#include "bench/bench_util.h"
#include "benchmark/benchmark.h"

namespace upager::bench {
namespace {

// --- FirstTouch/Sequential: 1 GiB written one page after another.
//
// upager uses its default fault-around (16 pages), so one fault in 16
// reaches the service thread; the kernel takes every fault itself (anon
// memory has no fault-around).

constexpr uint64_t kSeqPages = (uint64_t{1} << 30) / kPageSize;
// Pages past the written range, never written: wider than a fault-around
// window, so the last one stays untouched and the check can read it.
constexpr uint64_t kSeqTailPages = 64;
constexpr size_t kSeqMapBytes = (kSeqPages + kSeqTailPages) * kPageSize;
// Every 1021st page is compared in full; the others only at the written
// byte. Prime, so the full checks do not line up with fault-around windows.
constexpr size_t kSeqFullCheckStride = 1021;

void BM_FirstTouchSequential(benchmark::State& state, Pager pager) {
  if (SkipIfNoRuntime(state, pager)) return;
  // The first iteration then gets host-backed pages (see WarmHostMemory);
  // later ones reuse what the previous iteration freed moments before.
  if (SkipIfError(state, WarmHostMemory(kSeqMapBytes))) return;
  int64_t timed_ns = 0;
  UpagerTally tally;
  for (auto _ : state) {
    absl::StatusOr<FreshMemory> mem =
        FreshMemory::Map(pager, kSeqMapBytes, std::nullopt);
    if (SkipIfError(state, mem.status())) break;
    std::byte* const base = mem->data();
    const UpagerTally before = TallyUpager(pager);

    const int64_t start = NowNanos();
    for (uint64_t page = 0; page < kSeqPages; ++page) TouchPage(base, page);
    const int64_t end = NowNanos();

    state.SetIterationTime(static_cast<double>(end - start) * 1e-9);
    timed_ns += end - start;
    tally += TallyUpager(pager) - before;
    if (SkipIfError(state,
                    VerifyTouchedRange(base, 0, kSeqPages, kSeqFullCheckStride,
                                       kSeqPages + kSeqTailPages - 1)) ||
        SkipIfError(state, mem->PagerStatus()) ||
        SkipIfError(state, mem->Release())) {
      break;
    }
  }
  if (state.error_occurred() || state.iterations() == 0) return;
  const auto pages = static_cast<int64_t>(state.iterations() * kSeqPages);
  state.SetItemsProcessed(pages);
  state.SetBytesProcessed(pages * static_cast<int64_t>(kPageSize));
  state.counters["ns_per_page"] = static_cast<double>(timed_ns) / pages;
  SetUpagerCounters(state, pager, tally, pages);
}

// --- FirstTouch/Random: single-page faults at scattered addresses, each
// timed on its own.
//
// Fault-around is off for upager so that every touch is one round trip to
// the service thread: this is the per-fault latency, not an amortized cost.

constexpr uint64_t kRandRegionPages = (uint64_t{64} << 20) / kPageSize;
constexpr uint64_t kRandTouches = 4096;
constexpr uint64_t kRandSeed = 0x5eed'f1a5;
constexpr size_t kRandFullCheckStride = 61;

void BM_FirstTouchRandom(benchmark::State& state, Pager pager) {
  if (SkipIfNoRuntime(state, pager)) return;
  // The first iteration then gets host-backed pages (see WarmHostMemory);
  // later ones reuse what the previous iteration freed moments before.
  if (SkipIfError(state, WarmHostMemory(kRandRegionPages * kPageSize))) return;
  // One page more than is touched: the last one drawn is the page the
  // check reads as untouched.
  std::vector<uint64_t> order =
      ShuffledDistinctPages(kRandRegionPages, kRandTouches + 1, kRandSeed);
  const uint64_t untouched = order.back();
  order.pop_back();

  // Sized up front: an allocation inside the timed loop would be measured
  // as part of a fault.
  std::vector<int64_t> latencies(static_cast<size_t>(state.max_iterations) *
                                 kRandTouches);
  size_t recorded = 0;
  int64_t timed_ns = 0;
  UpagerTally tally;
  for (auto _ : state) {
    absl::StatusOr<FreshMemory> mem = FreshMemory::Map(
        pager, kRandRegionPages * kPageSize, /*fault_around_pages=*/1);
    if (SkipIfError(state, mem.status())) break;
    std::byte* const base = mem->data();
    const UpagerTally before = TallyUpager(pager);

    // One clock read per touch: each interval runs from the end of the
    // previous touch to the end of this one, so the intervals add up to
    // the iteration's time exactly. The ~20 ns of clock and loop overhead
    // is in every sample, on both sides alike.
    const int64_t start = NowNanos();
    int64_t prev = start;
    for (const uint64_t page : order) {
      TouchPage(base, page);
      const int64_t now = NowNanos();
      latencies[recorded++] = now - prev;
      prev = now;
    }

    state.SetIterationTime(static_cast<double>(prev - start) * 1e-9);
    timed_ns += prev - start;
    tally += TallyUpager(pager) - before;
    if (SkipIfError(state, VerifyTouched(base, order, kRandFullCheckStride,
                                         untouched)) ||
        SkipIfError(state, mem->PagerStatus()) ||
        SkipIfError(state, mem->Release())) {
      break;
    }
  }
  if (state.error_occurred() || recorded == 0) return;
  const auto pages = static_cast<int64_t>(recorded);
  latencies.resize(recorded);
  state.SetItemsProcessed(pages);
  state.SetBytesProcessed(pages * static_cast<int64_t>(kPageSize));
  state.counters["ns_per_page"] = static_cast<double>(timed_ns) / pages;
  state.counters["p50_ns"] = static_cast<double>(Percentile(latencies, 0.50));
  state.counters["p99_ns"] = static_cast<double>(Percentile(latencies, 0.99));
  SetUpagerCounters(state, pager, tally, pages);
}

// Registered kernel first, then upager, so the console shows each pair
// together. Unit: one iteration is 10-500 ms.
BENCHMARK_CAPTURE(BM_FirstTouchSequential, kernel, Pager::kKernel)
    ->Name("FirstTouch/Sequential/kernel")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchSequential, upager, Pager::kUpager)
    ->Name("FirstTouch/Sequential/upager-thread")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchSequential, upager_unpinned, Pager::kUpagerUnpinned)
    ->Name("FirstTouch/Sequential/upager-unpinned")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchSequential, upager_idleprio, Pager::kUpagerIdlePriority)
    ->Name("FirstTouch/Sequential/upager-idleprio")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchSequential, upager_signal, Pager::kUpagerSignal)
    ->Name("FirstTouch/Sequential/upager-signal")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchRandom, kernel, Pager::kKernel)
    ->Name("FirstTouch/Random/kernel")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchRandom, upager, Pager::kUpager)
    ->Name("FirstTouch/Random/upager-thread")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchRandom, upager_unpinned, Pager::kUpagerUnpinned)
    ->Name("FirstTouch/Random/upager-unpinned")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchRandom, upager_idleprio, Pager::kUpagerIdlePriority)
    ->Name("FirstTouch/Random/upager-idleprio")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchRandom, upager_spin, Pager::kUpagerSpin)
    ->Name("FirstTouch/Random/upager-spin")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchRandom, upager_signal, Pager::kUpagerSignal)
    ->Name("FirstTouch/Random/upager-signal")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace upager::bench
