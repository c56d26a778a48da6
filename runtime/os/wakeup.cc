#include "runtime/os/wakeup.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
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
  const uint64_t one = 1;
  // EAGAIN means the counter is saturated: already readable, which is all
  // we need.
  if (write(fd_, &one, sizeof(one)) < 0 && errno != EAGAIN) return errno;
  return 0;
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

int CurrentProcessId() { return getpid(); }

void CloseFd(int fd) { close(fd); }

int AtFork(void (*prepare)(), void (*parent)(), void (*child)()) {
  return pthread_atfork(prepare, parent, child);
}

}  // namespace upager::internal::os
