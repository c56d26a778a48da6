#include "runtime/fault_service.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runtime/os/errno_status.h"

namespace upager::internal {

uint64_t MonotonicNanos() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

absl::StatusOr<std::unique_ptr<FaultService>> FaultService::Start(
    os::Uffd* uffd, Handler* handler, Config config) {
  auto stop = os::EventFd::Create();
  if (!stop.ok()) return stop.status();
  auto kick = os::EventFd::Create();
  if (!kick.ok()) return kick.status();
  std::vector<int> per_thread;
  for (int i = 0; i < config.threads && !config.cpus.empty(); ++i) {
    per_thread.push_back(config.cpus[i % config.cpus.size()]);
  }
  const int total = config.threads + (config.idle_priority ? 1 : 0);
  std::unique_ptr<FaultService> s(
      new FaultService(uffd, handler, std::move(*stop), std::move(*kick),
                       std::move(config), std::move(per_thread)));
  for (int i = 0; i < total; ++i) {
    s->threads_.emplace_back([svc = s.get(), i] { svc->Loop(i); });
  }
  return s;
}

FaultService::FaultService(os::Uffd* uffd, Handler* handler, os::EventFd stop,
                           os::EventFd kick, Config config,
                           std::vector<int> cpus)
    : uffd_(uffd),
      handler_(handler),
      stop_(std::move(stop)),
      kick_(std::move(kick)),
      config_(std::move(config)),
      epochs_(new Epoch[config_.threads + 1]),
      cpus_(std::move(cpus)) {}

FaultService::~FaultService() { Stop(); }

void FaultService::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true, std::memory_order_relaxed);
  if (const int err = stop_.Signal(); err != 0) {
    handler_->OnServiceError(os::ErrnoToStatus(err, "eventfd write (stop)"));
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void FaultService::AbandonAfterFork() {
  stopped_ = true;
  for (std::thread& t : threads_) t.detach();
  threads_.clear();
}

void FaultService::WaitForQuiescence() const {
  const size_t n = threads_.size();
  std::vector<uint64_t> seen(n);
  for (size_t i = 0; i < n; ++i) {
    seen[i] = epochs_[i].value.load(std::memory_order_acquire);
  }
  for (size_t i = 0; i < n; ++i) {
    if ((seen[i] & 1) == 0) continue;  // was idle: nothing to wait for
    // Batches last microseconds; a short sleep keeps this off the CPU the
    // service thread needs.
    while (epochs_[i].value.load(std::memory_order_acquire) == seen[i]) {
      absl::SleepFor(absl::Microseconds(20));
    }
  }
}

void FaultService::Kick() {
  if (const int err = kick_.Signal(); err != 0) {
    handler_->OnServiceError(os::ErrnoToStatus(err, "eventfd write (kick)"));
  }
}

void FaultService::SyncEvents() const {
  absl::MutexLock lock(&event_mu_);
}

uint64_t FaultService::QuiesceEvents() const {
  const uint64_t fence = event_reads_.load(std::memory_order_acquire);
  if ((fence & 1) == 0) return fence;
  SyncEvents();
  return event_reads_.load(std::memory_order_acquire);
}

bool FaultService::GuardShouldServe() {
  const uint64_t reads_before = reads_.load(std::memory_order_relaxed);
  uint64_t ready = 0;
  // Sleep on the stop eventfd alone: stoppable, and not woken by faults.
  const int stop_fd[1] = {stop_.fd()};
  if (os::PollReadable(stop_fd, kGuardDelayMs, &ready) != 0 || ready != 0) {
    return false;
  }
  const int uffd[1] = {uffd_->fd()};
  if (os::PollReadable(uffd, 0, &ready) != 0 || ready == 0) return false;
  return reads_.load(std::memory_order_relaxed) == reads_before;
}

void FaultService::Loop(int index) {
  const bool guard = index == config_.threads;
  os::NameCurrentThread(
      absl::StrCat(guard ? "upager-guard" : "upager-svc-", guard ? "" : absl::StrCat(index))
          .c_str());
  if (!guard && !cpus_.empty()) {
    if (const int err = os::PinCurrentThread(cpus_[index]); err != 0) {
      handler_->OnServiceError(os::ErrnoToStatus(
          err, absl::StrCat("sched_setaffinity(cpu=", cpus_[index], ")")));
    }
  }
  if (!guard && config_.idle_priority) {
    if (const int err = os::SetCurrentThreadIdlePriority(); err != 0) {
      handler_->OnServiceError(
          os::ErrnoToStatus(err, "sched_setscheduler(SCHED_IDLE)"));
    }
  }
  std::vector<os::UffdEvent> batch(config_.batch);
  std::vector<os::UffdEvent> deferred;
  // uffd, stop, then (serving threads only) kick, the store's completion
  // fd and the signal-mode hand-off fd; poll ignores the -1 ones.
  const int fds[5] = {uffd_->fd(), stop_.fd(), kick_.fd(), handler_->ExtraFd(),
                      handler_->HandoffFd()};
  const size_t nfds = guard ? 2 : 5;
  std::atomic<uint64_t>& epoch = epochs_[index].value;
  // Config::spin_ns and read_spin_ns: until then, poll without sleeping
  // (the latter only while a read a fault waits for is in flight).
  uint64_t spin_until = 0;
  uint64_t read_spin_until = 0;
  while (true) {
    uint64_t ready = 0;
    // With deferred faults, wake up soon even if nothing new arrives: the
    // event that made the kernel answer EAGAIN may be read by another
    // service thread, and a kick may go to another thread.
    const uint64_t now =
        spin_until != 0 || read_spin_until != 0 ? MonotonicNanos() : 0;
    const bool spinning =
        now < spin_until || (now < read_spin_until && handler_->ReadsAwaited());
    const int timeout_ms = spinning ? 0 : deferred.empty() ? -1 : 1;
    if (const int err = os::PollReadable(absl::MakeConstSpan(fds, nfds),
                                         timeout_ms, &ready);
        err != 0) {
      handler_->OnServiceError(os::ErrnoToStatus(err, "poll(userfaultfd)"));
      absl::SleepFor(absl::Milliseconds(1));
      continue;
    }
    if (ready == 0 && spinning) continue;  // nothing yet: keep spinning
    if (!guard && config_.spin_ns != 0 && (ready & ~uint64_t{2}) != 0) {
      spin_until = MonotonicNanos() + config_.spin_ns;
    }
    if (ready & 2) break;
    if (guard && (ready & 1)) {
      if (stopping_.load(std::memory_order_relaxed)) break;
      if (!GuardShouldServe()) continue;
      guard_batches_.fetch_add(1, std::memory_order_relaxed);
    }
    epoch.fetch_add(1, std::memory_order_acq_rel);  // odd: in a batch
    if (ready & 4) (void)kick_.Clear();
    if (ready & 8) handler_->OnExtraReady();
    size_t count = 0;
    if (ready & 1) {
      absl::MutexLock lock(&event_mu_);
      event_reads_.fetch_add(1, std::memory_order_acq_rel);  // odd: reading
      handler_->EventsBegin();
      const os::ReadResult r = uffd_->ReadEvents(absl::MakeSpan(batch));
      if (r.error != 0) {
        handler_->OnServiceError(
            os::ErrnoToStatus(r.error, "read(userfaultfd)"));
      }
      count = r.count;
      if (count > 0) {
        reads_.fetch_add(1, std::memory_order_relaxed);
        handler_->ApplyEvents(absl::MakeConstSpan(batch.data(), count));
      }
      handler_->EventsEnd();
      // Even again: one more if the batch held address-space events (now
      // applied), else back to where it was, so fills fenced meanwhile
      // need not wait: page faults zap nothing.
      const bool layout_events =
          std::any_of(batch.begin(), batch.begin() + count,
                      [](const os::UffdEvent& e) {
                        return e.kind != os::UffdEvent::Kind::kPageFault;
                      });
      if (layout_events) {
        event_reads_.fetch_add(1, std::memory_order_acq_rel);
      } else {
        event_reads_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
    batch.resize(count);
    if (ready & 16) {
      // Under event_mu_, like a read: a fault handed over after the
      // application's madvise or mremap returned is served only once that
      // call's event (read already, or the call would not have returned)
      // is applied.
      absl::MutexLock lock(&event_mu_);
      handler_->TakeHandoffs(&batch);
    }
    if (!batch.empty() || !deferred.empty()) {
      handler_->Serve(batch, MonotonicNanos(), &deferred);
    }
    batch.resize(config_.batch);
    handler_->AfterBatch();
    // The faulting thread sleeps until the read completes, so its CPU,
    // where this thread is pinned, idles anyway: polling saves the
    // wake-up of this thread, which must run the completion's io_uring
    // task work before anything can be mapped (README, "Paging").
    if (!guard && config_.read_spin_ns != 0 &&
        handler_->TakeAwaitedReadSubmitted()) {
      read_spin_until = MonotonicNanos() + config_.read_spin_ns;
    }
    epoch.fetch_add(1, std::memory_order_acq_rel);  // even: idle
  }
  handler_->Abandon(deferred);
}

}  // namespace upager::internal
