#include "bench/wake_calibration.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"

namespace upager::bench {
namespace {

// Returns 0 or an errno (pthread functions return it rather than set it).
int PinCurrentThread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// Both ends of a pipe, closed on destruction.
struct Pipe {
  int fds[2] = {-1, -1};
  ~Pipe() {
    for (const int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
};

absl::Status ErrnoError(int err, const char* what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, ": ", std::strerror(err)));
}

}  // namespace

std::vector<int> AllowedCpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

absl::StatusOr<double> WakeRoundTripMicros(int cpu_a, int cpu_b, int rounds) {
  if (rounds < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("WakeRoundTripMicros: rounds = ", rounds, " < 1"));
  }
  Pipe ping;
  Pipe pong;
  if (pipe(ping.fds) != 0 || pipe(pong.fds) != 0) {
    return ErrnoError(errno, "pipe");
  }
  // Pinned, not left to the scheduler: which CPU a woken thread lands on is
  // exactly what makes the hand-off cheap or expensive, so each
  // measurement fixes it. The caller's own affinity is restored below.
  cpu_set_t saved;
  if (sched_getaffinity(0, sizeof(saved), &saved) != 0) {
    return ErrnoError(errno, "sched_getaffinity");
  }
  if (const int err = PinCurrentThread(cpu_a); err != 0) {
    return ErrnoError(err, "pthread_setaffinity_np");
  }
  int echo_error = 0;
  std::thread echo([&] {
    if (const int err = PinCurrentThread(cpu_b); err != 0) echo_error = err;
    char c;
    for (int i = 0; i < rounds; ++i) {
      if (read(ping.fds[0], &c, 1) != 1 || write(pong.fds[1], &c, 1) != 1) {
        echo_error = errno != 0 ? errno : EIO;
        return;
      }
    }
  });
  std::vector<int64_t> samples(static_cast<size_t>(rounds));
  int error = 0;
  char c = 0;
  for (int i = 0; i < rounds && error == 0; ++i) {
    const int64_t start = NowNanos();
    if (write(ping.fds[1], &c, 1) != 1 || read(pong.fds[0], &c, 1) != 1) {
      error = errno != 0 ? errno : EIO;
      // Unblock the echo thread so the join below returns.
      close(ping.fds[1]);
      ping.fds[1] = -1;
    }
    samples[static_cast<size_t>(i)] = NowNanos() - start;
  }
  echo.join();
  (void)pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
  if (error != 0) return ErrnoError(error, "pipe ping-pong");
  if (echo_error != 0) return ErrnoError(echo_error, "pipe ping-pong (echo)");
  // The median: a stray preemption by another tenant should not move it.
  return static_cast<double>(Percentile(samples, 0.5)) / 1e3;
}

}  // namespace upager::bench
