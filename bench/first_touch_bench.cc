// FirstTouch/Sequential and FirstTouch/Random: the cost of giving a page
// memory on its first write, served by the kernel (private anonymous
// memory) and by upager (a Region: userfaultfd missing fault, resolved by
// the service thread), in the same run. "upager-thread" resolves it with
// UFFDIO_COPY of zeros (the zero-page pool off); "upager-pool" moves
// pre-zeroed pages in from the pool with UFFDIO_MOVE.
//
// Every iteration touches memory no one has touched before: mapping and
// unmapping happen outside the timed part, so the benchmarks use manual
// time (benchmark appends "/manual_time" to their names).
#include <cstdint>
#include <memory>
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

// Two costs per page: ns_per_page, the application thread's wall time
// (what the application waits), and cpu_ns_per_page, the CPU time of the
// whole process over the same span (CLOCK_PROCESS_CPUTIME_ID: the
// application thread, the service threads, and for the pool rows the
// refill thread's allocating and zeroing), which is what the machine
// pays. The pool moves the zeroing off the fault path, not out of the
// CPU count.
//
// upager-pool: the pool is full when each timed part starts, as a pool
// refilled in idle time would be; its refill of what the iteration took
// is waited for after the timed part and counted in cpu_ns_per_page, so
// no zeroing escapes the CPU count. The pool refills only while faults
// pause (runtime/zero_pool.h), so of the 1 GiB stream the first 64 MiB
// (the default pool) are moved in and the rest copied.
// upager-pool-burst: the same with a pool bigger than the 1 GiB touched:
// every page moved in, i.e. a burst that idle time fully prepared for.
// upager-pool-cold: a new Runtime per iteration, so the pool starts empty
// (no idle time at all); the CPU count ends with the timed part, the pool
// having handed out nothing it populated after.

// Sets the counters every FirstTouch/Sequential row reports.
void SetSequentialCounters(benchmark::State& state, Pager pager,
                           int64_t timed_ns, int64_t cpu_ns,
                           const UpagerTally& tally) {
  const auto pages = static_cast<int64_t>(state.iterations() * kSeqPages);
  state.SetItemsProcessed(pages);
  state.SetBytesProcessed(pages * static_cast<int64_t>(kPageSize));
  state.counters["ns_per_page"] = static_cast<double>(timed_ns) / pages;
  state.counters["cpu_ns_per_page"] = static_cast<double>(cpu_ns) / pages;
  SetUpagerCounters(state, pager, tally, pages);
}

// After a Sequential iteration's timed part: its bytes, the pager's status,
// and the memory given back; the first failure.
absl::Status CheckAndRelease(FreshMemory& mem) {
  absl::Status s =
      VerifyTouchedRange(mem.data(), 0, kSeqPages, kSeqFullCheckStride,
                         kSeqPages + kSeqTailPages - 1);
  if (s.ok()) s = mem.PagerStatus();
  if (s.ok()) s = mem.Release();
  return s;
}

// The memory a pool pager's pool holds beside the region, for
// WarmHostMemory.
size_t PoolBytes(Pager pager) {
  if (pager == Pager::kUpagerPool) return RuntimeOptions::kDefaultZeroPoolBytes;
  if (pager == Pager::kUpagerPoolBurst) return kBurstZeroPoolBytes;
  return 0;
}

void BM_FirstTouchSequential(benchmark::State& state, Pager pager) {
  if (SkipIfNoRuntime(state, pager)) return;
  // The first iteration then gets host-backed pages (see WarmHostMemory),
  // and so does the pool; later ones reuse what the previous iteration
  // freed moments before.
  if (SkipIfError(state, WarmHostMemory(kSeqMapBytes + PoolBytes(pager)))) {
    return;
  }
  if (SkipIfError(state, WarmZeroPool(pager))) return;
  Runtime* const rt =
      IsUpager(pager) ? *SharedRuntime(pager) : nullptr;  // checked above
  int64_t timed_ns = 0;
  int64_t cpu_ns = 0;
  UpagerTally tally;
  for (auto _ : state) {
    absl::StatusOr<FreshMemory> mem =
        FreshMemory::Map(pager, kSeqMapBytes, std::nullopt);
    if (SkipIfError(state, mem.status())) break;
    std::byte* const base = mem->data();
    const UpagerTally before = TallyUpager(pager);

    const int64_t cpu_start = ProcessCpuNanos();
    const int64_t start = NowNanos();
    for (uint64_t page = 0; page < kSeqPages; ++page) TouchPage(base, page);
    const int64_t end = NowNanos();
    // The refill of what this iteration took from the pool (none without
    // one) belongs to its CPU cost; the waiting itself does not.
    const int64_t waiting_cpu =
        rt != nullptr ? WaitForFullZeroPool(rt, absl::Seconds(30)) : 0;
    const int64_t cpu_end = ProcessCpuNanos();

    state.SetIterationTime(static_cast<double>(end - start) * 1e-9);
    timed_ns += end - start;
    cpu_ns += cpu_end - cpu_start - waiting_cpu;
    tally += TallyUpager(pager) - before;
    if (SkipIfError(state, CheckAndRelease(*mem))) break;
  }
  if (state.error_occurred() || state.iterations() == 0) return;
  SetSequentialCounters(state, pager, timed_ns, cpu_ns, tally);
}

void BM_FirstTouchSequentialColdPool(benchmark::State& state) {
  if (SkipIfNoRuntime(state, Pager::kUpagerPool)) return;
  if (SkipIfError(state, WarmHostMemory(kSeqMapBytes +
                                        PoolBytes(Pager::kUpagerPool)))) {
    return;
  }
  int64_t timed_ns = 0;
  int64_t cpu_ns = 0;
  UpagerTally tally;
  for (auto _ : state) {
    absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(
        {.zero_pool_bytes = RuntimeOptions::kDefaultZeroPoolBytes});
    if (SkipIfError(state, rt.status())) break;
    absl::StatusOr<FreshMemory> mem =
        FreshMemory::Map(rt->get(), kSeqMapBytes, std::nullopt);
    if (SkipIfError(state, mem.status())) break;
    std::byte* const base = mem->data();

    // No wait for the refill here: the pool started empty, so every page
    // it handed out was populated inside this span, and what it populates
    // after it is stock nobody took.
    const int64_t cpu_start = ProcessCpuNanos();
    const int64_t start = NowNanos();
    for (uint64_t page = 0; page < kSeqPages; ++page) TouchPage(base, page);
    const int64_t end = NowNanos();
    const int64_t cpu_end = ProcessCpuNanos();

    state.SetIterationTime(static_cast<double>(end - start) * 1e-9);
    timed_ns += end - start;
    cpu_ns += cpu_end - cpu_start;
    tally += TallyUpager(rt->get());
    if (SkipIfError(state, CheckAndRelease(*mem))) break;
  }
  if (state.error_occurred() || state.iterations() == 0) return;
  SetSequentialCounters(state, Pager::kUpagerPool, timed_ns, cpu_ns, tally);
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

  if (SkipIfError(state, WarmZeroPool(pager))) return;
  Runtime* const rt =
      IsUpager(pager) ? *SharedRuntime(pager) : nullptr;  // checked above
  // Sized up front: an allocation inside the timed loop would be measured
  // as part of a fault.
  std::vector<int64_t> latencies(static_cast<size_t>(state.max_iterations) *
                                 kRandTouches);
  size_t recorded = 0;
  int64_t timed_ns = 0;
  UpagerTally tally;
  for (auto _ : state) {
    // A full pool at the start of every iteration (which takes a quarter
    // of it), as after idle time.
    if (rt != nullptr) (void)WaitForFullZeroPool(rt, absl::Seconds(30));
    absl::StatusOr<FreshMemory> mem = FreshMemory::Map(
        pager, kRandRegionPages * kPageSize, /*fault_around_pages=*/1);
    if (SkipIfError(state, mem.status())) break;
    std::byte* const base = mem->data();
    const UpagerTally before = TallyUpager(pager);

    const int64_t span = TouchEachTimed(base, order, latencies, &recorded);
    state.SetIterationTime(static_cast<double>(span) * 1e-9);
    timed_ns += span;
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
BENCHMARK_CAPTURE(BM_FirstTouchSequential, upager_thread, Pager::kUpagerCopy)
    ->Name("FirstTouch/Sequential/upager-thread")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchSequential, upager_pool, Pager::kUpagerPool)
    ->Name("FirstTouch/Sequential/upager-pool")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchSequential, upager_pool_burst,
                  Pager::kUpagerPoolBurst)
    ->Name("FirstTouch/Sequential/upager-pool-burst")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FirstTouchSequentialColdPool)
    ->Name("FirstTouch/Sequential/upager-pool-cold")
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
BENCHMARK_CAPTURE(BM_FirstTouchRandom, upager_thread, Pager::kUpagerCopy)
    ->Name("FirstTouch/Random/upager-thread")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchRandom, upager_pool, Pager::kUpagerPool)
    ->Name("FirstTouch/Random/upager-pool")
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
