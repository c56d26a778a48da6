// SIGBUS plumbing for signal mode (FaultMode::kSignal): one process-wide
// SA_SIGINFO handler that offers each SIGBUS to the runtime first and passes
// everything the runtime does not claim to the handler installed before it;
// futex waits a signal handler may use; the access type of the fault, read
// from the signal frame.
//
// Contract: InstallSigbusHandler installs once per process; the handler then
// stays for the life of the process (an application handler installed
// later may chain to it; removing ours would break that chain). Every
// function here except InstallSigbusHandler is async-signal-safe.
#ifndef UPAGER_RUNTIME_OS_SIGNALS_H_
#define UPAGER_RUNTIME_OS_SIGNALS_H_

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"

namespace upager::internal::os {

// One SIGBUS as the handler saw it.
struct SigbusFault {
  uintptr_t address = 0;
  // From the x86-64 page-fault error code the kernel leaves in the signal
  // frame: the access was a write; a PTE was present (a protection fault,
  // i.e. userfaultfd write-protect). On other architectures `known` is
  // false and both are false: callers then serve the fault as a write.
  bool write = false;
  bool present = false;
  bool known = false;
};

// Returns true when it resolved (or will resolve) the fault: the handler
// returns and the access is retried. False: the SIGBUS is not the
// runtime's and goes to the previous handler unchanged. Called inside the
// signal handler: must be async-signal-safe.
using SigbusCallback = bool (*)(const SigbusFault& fault);

// Installs the handler (first call) with `callback`; later calls must pass
// the same callback and just succeed. A SIGBUS whose si_code is not
// BUS_ADRERR (a poisoned page's BUS_MCEERR_AR, a user-sent signal) never
// reaches the callback.
absl::Status InstallSigbusHandler(SigbusCallback callback);

// Sleeps while *word == expected, at most timeout_ns (FUTEX_WAIT, private).
// Spurious returns are allowed; the caller re-checks.
void FutexWait(const std::atomic<uint32_t>* word, uint32_t expected,
               uint64_t timeout_ns);
// Wakes every thread sleeping in FutexWait on `word`.
void FutexWakeAll(const std::atomic<uint32_t>* word);
// sched_yield().
void YieldCpu();

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_SIGNALS_H_
