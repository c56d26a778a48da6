// Shared helpers for the upager microbenchmarks: fresh memory from either
// pager (the kernel or upager) behind one type, a process-wide Runtime, a
// cheap clock, percentiles, and the data checks every benchmark runs after
// its timed part.
//
// Thread-safety: SharedRuntime() may be called from any thread. A
// FreshMemory is used by one benchmark at a time; the memory it hands out
// may be touched by any number of threads.
#ifndef UPAGER_BENCH_BENCH_UTIL_H_
#define UPAGER_BENCH_BENCH_UTIL_H_

#include <time.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "upager/runtime.h"

namespace upager::bench {

// The only page size these benchmarks use: both sides run with THP off so
// that one touch is one 4 KiB fault, not a 2 MiB one.
inline constexpr size_t kPageSize = 4096;

// Who serves the first touch of a page.
enum class Pager {
  kKernel,  // private anonymous memory, MADV_NOHUGEPAGE
  kUpager,  // a Region of SharedRuntime(): default options (one pinned
            // service thread per CPU, normal priority)
  // Default options but the zero-page pool off: every write fault copies
  // zeros in (UFFDIO_COPY) on the service thread. The FirstTouch
  // "upager-thread" rows.
  kUpagerCopy,
  // Default options with the zero-page pool on at its default size,
  // whatever the default: write faults move pre-zeroed pages in
  // (UFFDIO_MOVE). The "upager-pool" rows.
  kUpagerPool,
  // kUpagerPool with a pool of kBurstZeroPoolBytes, more than any
  // FirstTouch benchmark touches: every page is moved in from pages
  // populated before the timed part, none while it runs. What the pool
  // gives a burst that idle time fully prepared for.
  kUpagerPoolBurst,
  // kUpagerCopy with one unpinned service thread: what placement is
  // worth, measured in the same run.
  kUpagerUnpinned,
  // kUpagerCopy with pinned per-CPU threads at SCHED_IDLE plus the guard
  // thread: what RuntimeOptions::service_idle_priority is worth.
  kUpagerIdlePriority,
  // A Region of a Runtime in FaultMode::kSignal: the faulting thread
  // resolves its own fault in the SIGBUS handler.
  kUpagerSignal,
  // The default Runtime with service_spin_ns = 50 us: what spinning before
  // sleeping is worth.
  kUpagerSpin,
};

inline bool IsUpager(Pager p) { return p != Pager::kKernel; }

// The pool of kUpagerPoolBurst: 1 GiB and 1 MiB.
inline constexpr uint64_t kBurstZeroPoolBytes = (uint64_t{1025} << 20);

// The Runtime every upager benchmark maps its regions through. Created on
// first use and kept for the life of the process, so that opening the
// userfaultfd and starting the service thread is never inside a benchmark
// (nor repeated per iteration). Returns the creation error, e.g.
// PermissionDenied without userfaultfd access, every time it is called.
absl::StatusOr<Runtime*> SharedRuntime(Pager pager = Pager::kUpager);

// Memory no one has touched yet, unmapped on destruction. Map and Unmap are
// slow (an upager Unmap waits for the service thread to go quiet), so
// benchmarks call them outside the timed region.
class FreshMemory {
 public:
  // Maps `bytes` (a multiple of kPageSize). For kUpager,
  // `fault_around_pages` overrides the Runtime default; nullopt keeps it.
  static absl::StatusOr<FreshMemory> Map(
      Pager pager, size_t bytes, std::optional<uint32_t> fault_around_pages);
  // The same in a Runtime of the caller's (which must outlive it).
  static absl::StatusOr<FreshMemory> Map(
      Runtime* runtime, size_t bytes,
      std::optional<uint32_t> fault_around_pages);

  FreshMemory(FreshMemory&& other) noexcept;
  FreshMemory& operator=(FreshMemory&& other) = delete;
  FreshMemory(const FreshMemory&) = delete;
  FreshMemory& operator=(const FreshMemory&) = delete;
  ~FreshMemory();

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  // The upager Region behind data() (for its snapshots); nullptr for
  // kKernel and after Release.
  Region* region() const { return region_; }

  // Unmaps now and reports failure; the destructor ignores errors. After
  // Release, data() is nullptr.
  absl::Status Release();

  // OK unless upager's fault service recorded an error (sticky) or
  // poisoned a faulting thread. Always OK for kKernel.
  absl::Status PagerStatus() const;

 private:
  FreshMemory(Runtime* runtime, std::byte* data, size_t size, Region* region)
      : runtime_(runtime), data_(data), size_(size), region_(region) {}

  Runtime* runtime_;  // null for kKernel
  std::byte* data_;
  size_t size_;
  Region* region_;  // upager only; owned by runtime_
};

// Makes the next `bytes` of page allocations cheap for the hypervisor, so
// the kernel and upager variants start from the same host state. Why: on a
// VM with free page reporting (virtio-balloon, page_reporting_order in the
// run's context), memory freed more than ~2 s ago has been handed back to
// the host, and the next first touch of it takes a host-level fault that
// costs microseconds, as much as the guest's own fault. Which side got such
// pages would otherwise depend on how long the previous benchmark took.
// Populating and freeing `bytes` leaves that many host-backed pages at the
// head of the free lists. Call it once before a benchmark's loop: after the
// first iteration, each one reuses the pages the previous one just freed
// (warming before every iteration was measured to add noise, not remove
// it). Slow (~1 us per page); never inside the timed part.
absl::Status WarmHostMemory(size_t bytes);

// Monotonic nanoseconds through the vDSO (~20 ns): cheap enough to bracket
// every single touch in the per-fault latency benchmarks.
inline int64_t NowNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// CPU time of the whole process (every thread: the application's, upager's
// service and pool threads; user and kernel time), and of the calling
// thread alone, in nanoseconds. A system call each: outside timed loops.
inline int64_t ProcessCpuNanos() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
inline int64_t ThreadCpuNanos() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Waits (up to `timeout`) until the zero-page pool of `runtime` is full
// again, i.e. its refill thread has populated everything taken from it.
// Returns the CPU time the calling thread spent waiting (polling Stats),
// which a CPU measurement around the wait should not charge to the pool.
// The pool refills only once something was taken (it starts asleep), so
// a pool never used returns at once.
int64_t WaitForFullZeroPool(Runtime* runtime, absl::Duration timeout);

// Makes the pool of `pager`'s Runtime full before a benchmark's loop: one
// write fault wakes it, then WaitForFullZeroPool. No-op for pagers whose
// pool is off.
absl::Status WarmZeroPool(Pager pager);

// The byte written to page `page`: never zero, so a page that was not
// written (or was written and then lost) cannot pass the check, and it
// varies by page, so pages served in the wrong place cannot either.
inline uint8_t TouchValue(uint64_t page) {
  return static_cast<uint8_t>(page % 255 + 1);
}

// The first touch itself: one byte at the start of the page, through a
// volatile pointer so the compiler keeps exactly one store per page, in
// order.
inline void TouchPage(std::byte* base, uint64_t page) {
  *reinterpret_cast<volatile uint8_t*>(base + page * kPageSize) =
      TouchValue(page);
}

// `count` distinct page indices in [0, total_pages), in random order. The
// same seed gives the same order, so the kernel and upager variants touch
// the same pages.
std::vector<uint64_t> ShuffledDistinctPages(uint64_t total_pages,
                                            uint64_t count, uint64_t seed);

// Touches the pages of `order` in turn, each timed on its own: one clock
// read per touch, each interval running from the end of the previous touch
// to the end of this one, so the intervals add up to the whole span
// exactly (the ~20 ns of clock and loop overhead is in every sample, on
// every side alike). Appends to latencies[*recorded...] (sized by the
// caller: an allocation here would be timed). Returns the span in ns.
int64_t TouchEachTimed(std::byte* base, absl::Span<const uint64_t> order,
                       std::vector<int64_t>& latencies, size_t* recorded);

// The value at fraction q (0..1) of `samples` (nearest rank); reorders
// `samples`. 0 when empty.
int64_t Percentile(std::vector<int64_t>& samples, double q);

// Checks the memory after a benchmark's timed part: every page in
// `touched` holds TouchValue(page) at its start; one page in every
// `full_check_stride` of them is compared in full (the rest of it zero);
// and page `untouched` (never written) reads as zero throughout. Reading it
// faults it in, so the read path is checked too. Returns DataLoss naming
// the first wrong byte.
absl::Status VerifyTouched(const std::byte* base,
                           absl::Span<const uint64_t> touched,
                           size_t full_check_stride, uint64_t untouched);

// Same for a contiguous run of pages [first, first + count).
absl::Status VerifyTouchedRange(const std::byte* base, uint64_t first,
                                uint64_t count, size_t full_check_stride,
                                uint64_t untouched);

// Records a non-OK `s` as the benchmark's error (SkipWithError) and returns
// true, for `if (SkipIfError(state, ...)) break;`. OK returns false.
bool SkipIfError(benchmark::State& state, const absl::Status& s);

// For kUpager without a Runtime (e.g. no userfaultfd permission): skips
// with the creation error instead of reporting numbers for a benchmark that
// did not run. Returns true when skipped.
bool SkipIfNoRuntime(benchmark::State& state, Pager pager);

// upager's fault counters at one instant, for per-iteration deltas of a
// Runtime that every benchmark shares. All zero for kKernel.
struct UpagerTally {
  uint64_t faults = 0;    // missing faults read (read + write)
  uint64_t served = 0;    // faults with a recorded service time
  double service_ns = 0;  // their summed service time, ns
  uint64_t pool_hits = 0;    // pages moved in from the zero-page pool
  uint64_t pool_misses = 0;  // pages copied while the pool was on

  UpagerTally& operator+=(const UpagerTally& o);
  UpagerTally operator-(const UpagerTally& o) const;
};
UpagerTally TallyUpager(Pager pager);
UpagerTally TallyUpager(Runtime* runtime);  // null: all zero

// For kUpager, sets counters from the faults taken while touching `pages`
// pages: faults_per_page (1/16 with default fault-around, 1 without) and
// service_ns, the mean time the service thread spent per fault, from
// reading it off the userfaultfd to the return of the ioctl that filled
// the pages and woke the faulting thread (so it includes sending that
// wakeup). The rest of a fault's end-to-end time is trapping, waking the
// service thread, and scheduling. With the zero-page pool on,
// pool_hit_ratio: the share of write-faulted pages moved in from the pool
// (the rest were copied because it was empty).
void SetUpagerCounters(benchmark::State& state, Pager pager,
                       const UpagerTally& tally, int64_t pages);

}  // namespace upager::bench

#endif  // UPAGER_BENCH_BENCH_UTIL_H_
