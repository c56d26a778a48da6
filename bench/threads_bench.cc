// FirstTouch/Threads2: two application threads taking first-touch faults at
// the same time on disjoint halves of one mapping, fault-around off. For
// upager this measures the fault service's throughput when faults arrive
// concurrently (one service thread by default, so the two faulting threads
// queue behind it); for the kernel, how well its fault path scales to two
// threads of one mm.
#include <algorithm>
#include <cstdint>
#include <latch>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "benchmark/benchmark.h"

namespace upager::bench {
namespace {

constexpr int kThreads = 2;
constexpr uint64_t kThreadsPages = (uint64_t{128} << 20) / kPageSize;
constexpr uint64_t kPagesPerThread = kThreadsPages / kThreads;
// One never-written page after the touched range, for the zero check.
constexpr uint64_t kThreadsTailPages = 1;
constexpr size_t kThreadsMapBytes =
    (kThreadsPages + kThreadsTailPages) * kPageSize;
constexpr size_t kThreadsFullCheckStride = 509;

// Each thread's timestamps, on separate cache lines so that recording them
// does not bounce a line between the two cores mid-measurement.
struct alignas(64) ThreadTimes {
  int64_t start_ns = 0;
  int64_t end_ns = 0;
};

void BM_FirstTouchThreads2(benchmark::State& state, Pager pager) {
  if (SkipIfNoRuntime(state, pager)) return;
  // The first iteration then gets host-backed pages (see WarmHostMemory);
  // later ones reuse what the previous iteration freed moments before.
  if (SkipIfError(state, WarmHostMemory(kThreadsMapBytes))) return;
  int64_t timed_ns = 0;
  UpagerTally tally;
  for (auto _ : state) {
    absl::StatusOr<FreshMemory> mem =
        FreshMemory::Map(pager, kThreadsMapBytes,
                         /*fault_around_pages=*/1);
    if (SkipIfError(state, mem.status())) break;
    std::byte* const base = mem->data();
    const UpagerTally before = TallyUpager(pager);

    // Threads are created outside the timed part and released together by
    // a latch (a futex wake, no spinning: on two cores a spinning waiter
    // would steal the CPU the service thread needs). The measured span runs
    // from the first thread's start to the last thread's end, so thread
    // creation and join are not in it.
    ThreadTimes times[kThreads];
    std::latch go(kThreads + 1);
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        const uint64_t first = static_cast<uint64_t>(t) * kPagesPerThread;
        go.arrive_and_wait();
        times[t].start_ns = NowNanos();
        for (uint64_t page = first; page < first + kPagesPerThread; ++page) {
          TouchPage(base, page);
        }
        times[t].end_ns = NowNanos();
      });
    }
    go.arrive_and_wait();
    for (std::thread& th : threads) th.join();

    int64_t start = times[0].start_ns;
    int64_t end = times[0].end_ns;
    for (const ThreadTimes& tt : times) {
      start = std::min(start, tt.start_ns);
      end = std::max(end, tt.end_ns);
    }
    state.SetIterationTime(static_cast<double>(end - start) * 1e-9);
    timed_ns += end - start;
    tally += TallyUpager(pager) - before;
    if (SkipIfError(state, VerifyTouchedRange(base, 0, kThreadsPages,
                                              kThreadsFullCheckStride,
                                              kThreadsPages)) ||
        SkipIfError(state, mem->PagerStatus()) ||
        SkipIfError(state, mem->Release())) {
      break;
    }
  }
  if (state.error_occurred() || state.iterations() == 0) return;
  // Items are faults (one per page: fault-around is off), so
  // items_per_second is the aggregate fault rate of both threads.
  const auto pages = static_cast<int64_t>(state.iterations() * kThreadsPages);
  state.SetItemsProcessed(pages);
  state.SetBytesProcessed(pages * static_cast<int64_t>(kPageSize));
  state.counters["ns_per_page"] = static_cast<double>(timed_ns) / pages;
  SetUpagerCounters(state, pager, tally, pages);
}

BENCHMARK_CAPTURE(BM_FirstTouchThreads2, kernel, Pager::kKernel)
    ->Name("FirstTouch/Threads2/kernel")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchThreads2, upager, Pager::kUpager)
    ->Name("FirstTouch/Threads2/upager-thread")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchThreads2, upager_unpinned, Pager::kUpagerUnpinned)
    ->Name("FirstTouch/Threads2/upager-unpinned")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchThreads2, upager_idleprio, Pager::kUpagerIdlePriority)
    ->Name("FirstTouch/Threads2/upager-idleprio")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchThreads2, upager_spin, Pager::kUpagerSpin)
    ->Name("FirstTouch/Threads2/upager-spin")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstTouchThreads2, upager_signal, Pager::kUpagerSignal)
    ->Name("FirstTouch/Threads2/upager-signal")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace upager::bench
