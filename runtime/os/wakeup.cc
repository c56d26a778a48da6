#include "runtime/os/wakeup.h"

#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "runtime/os/errno_status.h"

namespace upager::internal::os {

absl::StatusOr<EventFd> EventFd::Create() {
  const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return ErrnoToStatus(errno, "eventfd()");
  return EventFd(fd);
}

EventFd::~EventFd() {
  if (fd_ >= 0) close(fd_);
}

int EventFd::Signal() {
  const int saved_errno = errno;
  const uint64_t one = 1;
  int err = 0;
  // EAGAIN means the counter is saturated: already readable, which is all
  // we need.
  if (write(fd_, &one, sizeof(one)) < 0 && errno != EAGAIN) err = errno;
  errno = saved_errno;
  return err;
}

int EventFd::Clear() {
  uint64_t v;
  if (read(fd_, &v, sizeof(v)) < 0 && errno != EAGAIN) return errno;
  return 0;
}

int PollReadable(absl::Span<const int> fds, int timeout_ms, uint64_t* ready) {
  constexpr size_t kMax = 64;
  pollfd p[kMax];
  const size_t n = fds.size() < kMax ? fds.size() : kMax;
  for (size_t i = 0; i < n; ++i) p[i] = {fds[i], POLLIN, 0};
  int rc;
  do {
    rc = poll(p, n, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return errno;
  uint64_t mask = 0;
  for (size_t i = 0; i < n; ++i) {
    if (p[i].revents & (POLLIN | POLLERR | POLLHUP)) mask |= 1ull << i;
  }
  *ready = mask;
  return 0;
}

uint32_t CurrentThreadId() { return static_cast<uint32_t>(syscall(SYS_gettid)); }

uint64_t CurrentThreadCpuNanos() {
  timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 +
         static_cast<uint64_t>(ts.tv_nsec);
}

int CurrentProcessId() { return getpid(); }

void CloseFd(int fd) { close(fd); }

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

int PinCurrentThread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : errno;
}

int SetCurrentThreadIdlePriority() {
  sched_param p = {};
  return sched_setscheduler(0, SCHED_IDLE, &p) == 0 ? 0 : errno;
}

void NameCurrentThread(const char* name) {
  char buf[16] = {};
  for (int i = 0; i < 15 && name[i] != '\0'; ++i) buf[i] = name[i];
  pthread_setname_np(pthread_self(), buf);
}

int AtFork(void (*prepare)(), void (*parent)(), void (*child)()) {
  return pthread_atfork(prepare, parent, child);
}

}  // namespace upager::internal::os
