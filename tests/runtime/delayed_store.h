// A BackingStore for teardown tests: forwards to a real store, but does
// every request's transfer `delay` after Submit, on its own thread, the way
// a device does its DMA when the I/O happens rather than when it is
// queued. So a request in flight really uses its buffer later, and a
// runtime that frees or reuses a buffer before the completion is reaped
// corrupts memory (or faults) here instead of going unnoticed. Completions
// are signalled through an eventfd, as io_uring's are.
//
// Thread-safety: every method may be called from any thread.
#ifndef UPAGER_TESTS_RUNTIME_DELAYED_STORE_H_
#define UPAGER_TESTS_RUNTIME_DELAYED_STORE_H_

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backing/forwarding_store.h"
#include "upager/backing_store.h"

namespace upager::testing {

class DelayedStore final : public ForwardingStore {
 public:
  DelayedStore(std::unique_ptr<BackingStore> real, absl::Duration delay)
      : ForwardingStore(std::move(real)),
        fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        delay_(delay),
        worker_([this] { Work(); }) {}
  ~DelayedStore() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    worker_.join();
    close(fd_);
  }

  // For requests submitted from now on.
  void set_delay(absl::Duration delay) {
    absl::MutexLock lock(&mu_);
    delay_ = delay;
  }
  // Requests submitted whose completion has not been reaped yet.
  uint64_t unreaped() const {
    absl::MutexLock lock(&mu_);
    return submitted_ - reaped_;
  }
  // Requests whose transfer has not happened yet.
  uint64_t pending() const {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

  // Not passed on: the tests wrap a memory store, which needs no
  // registration.
  absl::Status RegisterBuffers(std::byte*, size_t) override {
    return absl::OkStatus();
  }
  absl::Status Submit(absl::Span<const Request> requests) override {
    absl::MutexLock lock(&mu_);
    const absl::Time due = absl::Now() + delay_;
    for (const Request& r : requests) queue_.push_back({r, due});
    submitted_ += requests.size();
    return absl::OkStatus();
  }
  size_t Reap(absl::Span<Completion> out) override {
    absl::MutexLock lock(&mu_);
    return ReapLocked(out);
  }
  size_t Wait(absl::Span<Completion> out, absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !done_.empty();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    return ReapLocked(out);
  }
  int completion_fd() const override { return fd_; }

 private:
  struct Queued {
    Request request;
    absl::Time due;
  };

  size_t ReapLocked(absl::Span<Completion> out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t n = 0;
    while (n < out.size() && !done_.empty()) {
      out[n++] = done_.front();
      done_.pop_front();
    }
    reaped_ += n;
    // Readable exactly while completions wait (cleared under the lock
    // the worker signals under, so no signal is lost).
    if (done_.empty()) {
      uint64_t v;
      (void)!read(fd_, &v, sizeof(v));
    }
    return n;
  }

  void Work() {
    for (;;) {
      Queued q;
      {
        absl::MutexLock lock(&mu_);
        auto due = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || (!queue_.empty() && queue_.front().due <= absl::Now());
        };
        // Poll in small steps: the head's due time may be in the future.
        while (!due()) {
          mu_.AwaitWithTimeout(absl::Condition(&due), absl::Microseconds(200));
        }
        if (stop_) return;
        q = queue_.front();
        queue_.pop_front();
      }
      // The transfer itself, now: the memory store copies inside Submit.
      Completion c{q.request.tag, 0};
      if (absl::Status s = real().Submit({&q.request, 1}); !s.ok()) {
        c.error = EIO;
      } else {
        Completion real_done[1];
        while (real().Reap(real_done) == 0) {
        }
        c.error = real_done[0].error;
      }
      absl::MutexLock lock(&mu_);
      done_.push_back(c);
      const uint64_t one = 1;
      (void)!write(fd_, &one, sizeof(one));
    }
  }

  const int fd_;
  mutable absl::Mutex mu_;
  absl::Duration delay_ ABSL_GUARDED_BY(mu_);
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<Completion> done_ ABSL_GUARDED_BY(mu_);
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t reaped_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;  // last: starts once everything above exists
};

}  // namespace upager::testing

#endif  // UPAGER_TESTS_RUNTIME_DELAYED_STORE_H_
