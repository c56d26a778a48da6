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
  // A Region of a second Runtime with one unpinned service thread: what
  // placement is worth, measured in the same run.
  kUpagerUnpinned,
  // Pinned per-CPU threads at SCHED_IDLE plus the guard thread: what
  // RuntimeOptions::service_idle_priority is worth.
  kUpagerIdlePriority,
  // A Region of a Runtime in FaultMode::kSignal: the faulting thread
  // resolves its own fault in the SIGBUS handler.
  kUpagerSignal,
  // The default Runtime with service_spin_ns = 50 us: what spinning before
  // sleeping is worth.
  kUpagerSpin,
};

inline bool IsUpager(Pager p) { return p != Pager::kKernel; }

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
  FreshMemory(Pager pager, std::byte* data, size_t size, Region* region)
      : pager_(pager), data_(data), size_(size), region_(region) {}

  Pager pager_;
  std::byte* data_;
  size_t size_;
  Region* region_;  // kUpager only; owned by SharedRuntime()
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

  UpagerTally& operator+=(const UpagerTally& o);
  UpagerTally operator-(const UpagerTally& o) const;
};
UpagerTally TallyUpager(Pager pager);

// For kUpager, sets counters from the faults taken while touching `pages`
// pages: faults_per_page (1/16 with default fault-around, 1 without) and
// service_ns, the mean time the service thread spent per fault, from
// reading it off the userfaultfd to the return of the ioctl that filled
// the pages and woke the faulting thread (so it includes sending that
// wakeup). The rest of a fault's end-to-end time is trapping, waking the
// service thread, and scheduling.
void SetUpagerCounters(benchmark::State& state, Pager pager,
                       const UpagerTally& tally, int64_t pages);

}  // namespace upager::bench

#endif  // UPAGER_BENCH_BENCH_UTIL_H_
