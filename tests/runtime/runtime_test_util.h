// Helpers shared by the runtime's end-to-end tests.
#ifndef UPAGER_TESTS_RUNTIME_RUNTIME_TEST_UTIL_H_
#define UPAGER_TESTS_RUNTIME_RUNTIME_TEST_UTIL_H_

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "upager/upager.h"

namespace upager::testing {

// The fault mode the suite runs in: ctest registers the paging, snapshot
// and first-touch suites twice, the second time with
// UPAGER_TEST_FAULT_MODE=signal (tests/CMakeLists.txt, upager_test_both_modes).
inline bool SignalModeUnderTest() {
  const char* m = std::getenv("UPAGER_TEST_FAULT_MODE");
  return m != nullptr && std::string_view(m) == "signal";
}
inline RuntimeOptions WithTestMode(RuntimeOptions o) {
  if (SignalModeUnderTest()) o.fault_mode = FaultMode::kSignal;
  return o;
}
// Runtime::Create in the suite's fault mode.
inline absl::StatusOr<std::unique_ptr<Runtime>> CreateForTest(
    const RuntimeOptions& o = {}) {
  return Runtime::Create(WithTestMode(o));
}

// A Runtime, or nullptr after a test failure naming the status.
inline std::unique_ptr<Runtime> MakeRuntime(const RuntimeOptions& o = {}) {
  auto rt = CreateForTest(o);
  EXPECT_TRUE(rt.ok()) << rt.status();
  return rt.ok() ? std::move(*rt) : nullptr;
}

// The faulting thread is woken by the fill ioctl itself, before the service
// thread publishes the page's new state and bumps the counters, so a Stats
// snapshot taken right after a touch can be one fill behind. Waits (bounded)
// until every fault read so far has finished being served, then returns a
// snapshot taken after that: stats() reads its counters one after another
// and the latency histogram near the end, so the very snapshot that shows a
// fault served can hold counts read before its fill published them
// (resident_pages 0 beside a served fault: the likely cause of one CI
// failure under ASan). `Rt` is a Runtime or an internal::Engine.
template <typename Rt>
Stats SettledStats(const Rt& rt) {
  for (int i = 0; i < 10000; ++i) {
    const Stats s = rt.stats();
    const uint64_t faults = s.faults_missing_read + s.faults_missing_write +
                            s.faults_write_protect + s.faults_minor;
    if (s.fault_latency.count + s.fill_retries >= faults) break;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return rt.stats();
}

// A start address for `len` bytes far below every mapping made so far, for
// a test that will check a range it released is unmapped. The kernel gives
// a new mmap the highest free gap that fits, so a range released among the
// packed mappings is the next one handed out, and another mapper in the
// process (a sanitizer's runtime, a thread stack) can take it between the
// release and the check: a false failure, seen under TSan. A range 64 GiB
// or more below the packed mappings, once released, joins the free space
// whose top (far above it) is handed out next. Not reserved: pass it to a
// MAP_FIXED_NOREPLACE mapping (RegionOptions::fixed_address does that).
inline std::byte* FarFreeRange(size_t len) {
  static std::atomic<uint64_t> calls{0};
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // Where a fresh mapping lands now: the bottom of the packed mappings.
  void* probe = mmap(nullptr, page, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (probe == MAP_FAILED) return nullptr;
  const auto frontier = reinterpret_cast<uintptr_t>(probe);
  munmap(probe, page);
  // Each call 1 GiB further down (64 slots), 2 MiB aligned.
  const uintptr_t below = (uintptr_t{64} << 30) +
                          (calls.fetch_add(1) % 64) * (uintptr_t{1} << 30) +
                          len;
  if (frontier < below + (uintptr_t{1} << 32)) return nullptr;
  return reinterpret_cast<std::byte*>((frontier - below) &
                                      ~((uintptr_t{2} << 20) - 1));
}

// `len` bytes of PROT_NONE at FarFreeRange(len) (an mremap target), or
// MAP_FAILED.
inline void* FarReserve(size_t len) {
  return mmap(FarFreeRange(len), len, PROT_NONE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
              -1, 0);
}

// Is all of [p, p + len) mapped? Is none of it? (msync fails with ENOMEM
// on a range with unmapped pages.)
inline bool IsMapped(const void* p, size_t len) {
  return msync(const_cast<void*>(p), len, MS_ASYNC) == 0;
}
inline bool IsUnmapped(const void* p, size_t len) {
  return msync(const_cast<void*>(p), len, MS_ASYNC) != 0 && errno == ENOMEM;
}

}  // namespace upager::testing

#endif  // UPAGER_TESTS_RUNTIME_RUNTIME_TEST_UTIL_H_
