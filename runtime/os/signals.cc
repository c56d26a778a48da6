#include "runtime/os/signals.h"

#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "absl/base/const_init.h"
#include "absl/synchronization/mutex.h"
#include "runtime/os/errno_status.h"

namespace upager::internal::os {
namespace {

ABSL_CONST_INIT absl::Mutex g_install_mu(absl::kConstInit);
std::atomic<SigbusCallback> g_callback{nullptr};
// Written once before the handler is installed, read only by the handler.
struct sigaction g_previous;

// x86 page-fault error code bits (arch/x86/include/asm/trap_pf.h).
constexpr unsigned long kPfProt = 1ul << 0;
constexpr unsigned long kPfWrite = 1ul << 1;

void Chain(int sig, siginfo_t* info, void* context) {
  if (g_previous.sa_flags & SA_SIGINFO) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler == SIG_DFL || g_previous.sa_handler == SIG_IGN) {
    // The default action (terminate with a core dump). A fault raised by
    // an instruction recurs when the handler returns and now meets the
    // default; a SIGBUS sent by kill() is raised again (it stays pending
    // until this handler returns). SIG_IGN is no different: the kernel
    // does not let a fault's SIGBUS be ignored either.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, nullptr);
    if (info->si_code <= 0) raise(sig);
    return;
  }
  g_previous.sa_handler(sig);
}

void OnSigbus(int sig, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  const SigbusCallback cb = g_callback.load(std::memory_order_acquire);
  if (cb != nullptr && info->si_code == BUS_ADRERR) {
    SigbusFault f;
    f.address = reinterpret_cast<uintptr_t>(info->si_addr);
#if defined(__x86_64__)
    const auto* uc = static_cast<const ucontext_t*>(context);
    const auto err =
        static_cast<unsigned long>(uc->uc_mcontext.gregs[REG_ERR]);
    f.write = (err & kPfWrite) != 0;
    f.present = (err & kPfProt) != 0;
    f.known = true;
#endif
    if (cb(f)) {
      errno = saved_errno;
      return;
    }
  }
  errno = saved_errno;
  Chain(sig, info, context);
}

}  // namespace

absl::Status InstallSigbusHandler(SigbusCallback callback) {
  absl::MutexLock lock(&g_install_mu);
  const SigbusCallback installed = g_callback.load(std::memory_order_relaxed);
  if (installed != nullptr) {
    if (installed != callback) {
      return absl::InternalError(
          "InstallSigbusHandler: a different callback is installed already");
    }
    return absl::OkStatus();
  }
  struct sigaction sa {};
  sa.sa_sigaction = &OnSigbus;
  // SA_ONSTACK: an application running on an alternate signal stack keeps
  // it. SIGBUS stays blocked while the handler runs (no SA_NODEFER): the
  // handler never touches registered memory, so a nested SIGBUS would be a
  // bug, which the kernel then reports by killing the process.
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  g_callback.store(callback, std::memory_order_release);
  if (sigaction(SIGBUS, &sa, &g_previous) != 0) {
    const int err = errno;
    g_callback.store(nullptr, std::memory_order_release);
    return ErrnoToStatus(err, "sigaction(SIGBUS)");
  }
  return absl::OkStatus();
}

void FutexWait(const std::atomic<uint32_t>* word, uint32_t expected,
               uint64_t timeout_ns) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000u);
  ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000u);
  const int saved_errno = errno;
  syscall(SYS_futex, reinterpret_cast<const uint32_t*>(word),
          FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
  errno = saved_errno;
}

void FutexWakeAll(const std::atomic<uint32_t>* word) {
  const int saved_errno = errno;
  syscall(SYS_futex, reinterpret_cast<const uint32_t*>(word),
          FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
  errno = saved_errno;
}

void YieldCpu() { sched_yield(); }

}  // namespace upager::internal::os
