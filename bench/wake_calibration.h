// Measures what one thread-to-thread hand-off costs on this machine, so a
// benchmark report can be read against it.
//
// Why: every upager fault is two wakeups (the faulting thread wakes the
// service thread through the userfaultfd, the service thread's UFFDIO_COPY
// wakes the faulting thread). When the two threads sit on different CPUs
// and the target CPU is idle, each wakeup is an IPI to a halted CPU; on a
// VM without guest halt-polling that is a trip through the hypervisor,
// tens of microseconds, more than the whole fault costs on one CPU. The
// kernel's own fault path has no hand-off, so this cost separates the two
// columns by itself. main.cc records both round trips in the report
// context.
//
// Thread-safety: the function starts and joins its own thread; call it
// while no benchmark is running.
#ifndef UPAGER_BENCH_WAKE_CALIBRATION_H_
#define UPAGER_BENCH_WAKE_CALIBRATION_H_

#include <vector>

#include "absl/status/statusor.h"

namespace upager::bench {

// The CPUs this process may run on (sched_getaffinity), ascending.
std::vector<int> AllowedCpus();

// Median round trip, in microseconds, of a one-byte pipe ping-pong between
// a thread pinned to `cpu_a` and one pinned to `cpu_b` (equal: both on one
// CPU), over `rounds` round trips. Each round trip is two wakeups, like
// one fault served by another thread.
absl::StatusOr<double> WakeRoundTripMicros(int cpu_a, int cpu_b, int rounds);

}  // namespace upager::bench

#endif  // UPAGER_BENCH_WAKE_CALIBRATION_H_
