// Thread plumbing the fault service needs from the OS: an eventfd to stop
// service threads (polled beside the uffd, so stopping needs no flag and no
// timeout), a poll over a few descriptors, and the caller's thread id.
//
// Contract: functions return 0 or an errno unless noted.
// Thread-safety: EventFd::Signal may be called from any thread.
#ifndef UPAGER_RUNTIME_OS_WAKEUP_H_
#define UPAGER_RUNTIME_OS_WAKEUP_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace upager::internal::os {

class EventFd {
 public:
  static absl::StatusOr<EventFd> Create();
  EventFd(EventFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  EventFd& operator=(EventFd&&) = delete;
  EventFd(const EventFd&) = delete;
  ~EventFd();

  int fd() const { return fd_; }
  // Makes fd() readable until Clear(). Async-signal-safe (one write(2))
  // and leaves errno as it was, so a signal handler may call it.
  int Signal();
  int Clear();

 private:
  explicit EventFd(int fd) : fd_(fd) {}
  int fd_;
};

// Waits until one of `fds` is readable or `timeout_ms` passes (-1: forever).
// Sets bit i of *ready for each readable fds[i] (at most 64). Returns 0 (also
// on timeout, with *ready == 0), or an errno. EINTR is retried.
int PollReadable(absl::Span<const int> fds, int timeout_ms, uint64_t* ready);

// Linux thread id of the caller.
uint32_t CurrentThreadId();
// CPU time the calling thread has used, in nanoseconds
// (CLOCK_THREAD_CPUTIME_ID); 0 if the clock cannot be read.
uint64_t CurrentThreadCpuNanos();
// Process id of the caller (getpid()).
int CurrentProcessId();

// pthread_atfork: registers handlers run around every fork() of the
// process. Returns 0 or an errno. Handlers cannot be removed; register once.
int AtFork(void (*prepare)(), void (*parent)(), void (*child)());

// The CPUs this thread may run on (sched_getaffinity), ascending. Empty if
// the call fails.
std::vector<int> AllowedCpus();
// Restricts the calling thread to `cpu`. Returns 0 or an errno.
int PinCurrentThread(int cpu);
// Moves the calling thread to SCHED_IDLE: it then runs only when its CPU
// has nothing else to do and never preempts other work. Irreversible
// without privilege. Returns 0 or an errno.
int SetCurrentThreadIdlePriority();
// Names the calling thread (up to 15 characters; longer is truncated).
void NameCurrentThread(const char* name);

// Closes a descriptor (used where a kernel event hands us one we do not
// keep, e.g. a fork event's uffd).
void CloseFd(int fd);

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_WAKEUP_H_
