// FirstTouch/Random/signal-floor: the least any SIGBUS-based user-space
// pager pays for a first touch on this machine, to read the
// FirstTouch/Random/upager-signal row against.
//
// The same workload as FirstTouch/Random (first_touch_bench.cc): single
// pages at scattered addresses, each touch timed on its own. But the
// userfaultfd behind it is a bare one with UFFD_FEATURE_SIGBUS, and the
// SIGBUS handler does only what no pager can skip: one UFFDIO_COPY of a
// zero page at the faulting address. No region lookup, no page table, no
// statistics. What is left is the kernel's part (the fault, signal
// delivery and sigreturn) plus the ioctl, so (upager-signal - floor) is
// upager's own cost per fault, and (floor / kernel) is the ratio no
// signal-mode pager can beat here.
#include <signal.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "runtime/os/userfaultfd.h"

namespace upager::bench {
namespace {

namespace os = internal::os;

constexpr uint64_t kFloorRegionPages = (uint64_t{64} << 20) / kPageSize;
constexpr uint64_t kFloorTouches = 4096;
constexpr uint64_t kFloorSeed = 0x5eed'f1a5;  // FirstTouch/Random's pages
constexpr size_t kFloorFullCheckStride = 61;

// Read by the handler only while this benchmark runs.
os::Uffd* g_uffd = nullptr;
alignas(4096) const std::byte kZeroPage[kPageSize] = {};

void FloorHandler(int, siginfo_t* info, void*) {
  const uint64_t page =
      reinterpret_cast<uint64_t>(info->si_addr) & ~uint64_t{kPageSize - 1};
  (void)g_uffd->Copy(page, kZeroPage, kPageSize, /*wake=*/false,
                     /*write_protect=*/false);
}

void BM_FirstTouchRandomSignalFloor(benchmark::State& state) {
  os::UffdOpenOptions o;
  o.required_features = os::uffd_feature::kSigbus;
  absl::StatusOr<std::unique_ptr<os::Uffd>> uffd = os::OpenUffd(o);
  if (SkipIfError(state, uffd.status())) return;
  if (SkipIfError(state, WarmHostMemory(kFloorRegionPages * kPageSize))) {
    return;
  }
  std::vector<uint64_t> order = ShuffledDistinctPages(
      kFloorRegionPages, kFloorTouches + 1, kFloorSeed);
  const uint64_t untouched = order.back();
  order.pop_back();

  // The process's SIGBUS handler (a signal-mode Runtime's, if one was
  // created) steps aside while this runs.
  g_uffd = uffd->get();
  struct sigaction sa = {}, previous = {};
  sa.sa_sigaction = &FloorHandler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, &previous) != 0) {
    SkipIfError(state, absl::ErrnoToStatus(errno, "sigaction(SIGBUS)"));
    return;
  }
  std::vector<int64_t> latencies(static_cast<size_t>(state.max_iterations) *
                                 kFloorTouches);
  size_t recorded = 0;
  int64_t timed_ns = 0;
  const size_t bytes = kFloorRegionPages * kPageSize;
  for (auto _ : state) {
    void* const mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      SkipIfError(state, absl::ErrnoToStatus(errno, "mmap"));
      break;
    }
    auto* const base = static_cast<std::byte*>(mem);
    const auto addr = reinterpret_cast<uint64_t>(mem);
    absl::Status s = absl::OkStatus();
    // 4 KiB pages, like every FirstTouch row.
    if (madvise(mem, bytes, MADV_NOHUGEPAGE) != 0) {
      s = absl::ErrnoToStatus(errno, "madvise(MADV_NOHUGEPAGE)");
    }
    if (s.ok()) s = (*uffd)->Register(addr, bytes, os::kRegisterMissing);
    if (!s.ok()) {
      munmap(mem, bytes);
      SkipIfError(state, s);
      break;
    }
    const int64_t span = TouchEachTimed(base, order, latencies, &recorded);
    state.SetIterationTime(static_cast<double>(span) * 1e-9);
    timed_ns += span;
    s = VerifyTouched(base, order, kFloorFullCheckStride, untouched);
    const absl::Status u = (*uffd)->Unregister(addr, bytes);
    munmap(mem, bytes);
    if (SkipIfError(state, s) || SkipIfError(state, u)) break;
  }
  sigaction(SIGBUS, &previous, nullptr);
  g_uffd = nullptr;
  if (state.error_occurred() || recorded == 0) return;
  latencies.resize(recorded);
  const auto pages = static_cast<int64_t>(recorded);
  state.SetItemsProcessed(pages);
  state.SetBytesProcessed(pages * static_cast<int64_t>(kPageSize));
  state.counters["ns_per_page"] = static_cast<double>(timed_ns) / pages;
  state.counters["p50_ns"] = static_cast<double>(Percentile(latencies, 0.50));
  state.counters["p99_ns"] = static_cast<double>(Percentile(latencies, 0.99));
}

BENCHMARK(BM_FirstTouchRandomSignalFloor)
    ->Name("FirstTouch/Random/signal-floor")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace upager::bench
