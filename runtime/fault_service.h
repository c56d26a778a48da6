// The fault-service threads: each polls the userfaultfd beside a stop
// eventfd, reads a batch of events per read(2), and hands the batch to the
// Handler. Events that hit EAGAIN (the address space is changing) come back
// as "deferred" and are retried after the next read, which is what lets the
// pending event that caused the EAGAIN be read and its mmap_changing drop.
//
// Event order: the kernel lets an application's munmap/mremap/madvise return
// as soon as a service thread has *read* its event, so events must take
// effect in the order they were read, and before any fault read after them
// is served. Each thread therefore reads its batch and applies the batch's
// address-space events under event_mu_; faults are served outside it, in
// parallel. SyncEvents() (lock + unlock) returns once every event already
// read has been applied; QuiesceEvents()/EventsReadSince() tell a fill
// whether a read began while it went in (Engine::FillFence).
//
// Placement (measured in bench/, see README "Benchmarks"): on a VM a
// wake-up that crosses to a halted vCPU costs tens of microseconds, so each
// service thread may be pinned to one CPU: the thread on the faulting CPU is
// woken locally and runs as soon as the faulting thread blocks. Every
// poller is woken for every fault, though, and the remote one would
// preempt whatever application thread runs on its CPU; at SCHED_IDLE (an
// option, off by default: measured, the guard below costs what it saves)
// it does not, and a CPU running only it counts as idle, so the woken
// application thread stays where it was. SCHED_IDLE threads can starve on a
// CPU busy with other work, so an idle-priority service always has one more
// thread, the guard: normal priority, unpinned. When the uffd turns
// readable the guard waits kGuardDelay; if the uffd is still readable and
// no thread has read anything meanwhile, it serves the batch itself. The
// guard thus bounds starvation at ~1 ms per fault and wakes at most ~1000
// times a second under a fault storm.
//
// Quiescence: each thread bumps an epoch before and after a batch (odd =
// inside a batch). WaitForQuiescence() returns once every thread has been
// seen outside the batch it was in when the call started; anything a
// thread looked up before the call is then no longer in use (see
// runtime/engine.h, SYNCHRONIZATION).
//
// Thread-safety: Start/Stop from one thread; WaitForQuiescence from any
// application thread, never from a service thread.
#ifndef UPAGER_RUNTIME_FAULT_SERVICE_H_
#define UPAGER_RUNTIME_FAULT_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "runtime/os/userfaultfd.h"
#include "runtime/os/wakeup.h"

namespace upager::internal {

// Monotonic clock in nanoseconds (vDSO; no syscall).
uint64_t MonotonicNanos();

class FaultService {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // Applies the address-space events (not the faults) of a batch just
    // read, in order. Called with event_mu_ held: must not block on
    // anything a service thread does.
    virtual void ApplyEvents(absl::Span<const os::UffdEvent> fresh) = 0;
    // Serves the page faults among `fresh` events (read at `read_ns`) and then retries every event
    // in *deferred; leaves in *deferred the ones to retry again later.
    virtual void Serve(absl::Span<const os::UffdEvent> fresh, uint64_t read_ns,
                       std::vector<os::UffdEvent>* deferred) = 0;
    // An unexpected error of the loop itself (poll or read failed).
    virtual void OnServiceError(absl::Status status) = 0;
    // A descriptor to poll beside the userfaultfd (the backing store's
    // completion fd), or -1; OnExtraReady runs when it is readable.
    virtual int ExtraFd() const { return -1; }
    virtual void OnExtraReady() {}
    // Signal mode: a descriptor that becomes readable when faults were
    // handed over (-1: none), and TakeHandoffs appends them to *out as page
    // fault events, to be served like faults read from the userfaultfd.
    virtual int HandoffFd() const { return -1; }
    virtual void TakeHandoffs(std::vector<os::UffdEvent>* out) { (void)out; }
    // Around every read of the userfaultfd and the application of its
    // address-space events (signal mode: a SIGBUS handler that finds no
    // region for an address retries while the layout may be changing).
    virtual void EventsBegin() {}
    virtual void EventsEnd() {}
    // After every batch: faults may have been resolved.
    virtual void AfterBatch() {}
    // Whether this thread submitted, since the last call, a read that a
    // faulting thread waits for; and whether any such read is in flight.
    // Config::read_spin_ns: the thread polls without sleeping while it is.
    virtual bool TakeAwaitedReadSubmitted() { return false; }
    virtual bool ReadsAwaited() const { return false; }
    // A serving thread stops with these faults still deferred: nobody
    // will serve them (signal mode: their threads must be released).
    virtual void Abandon(absl::Span<const os::UffdEvent> deferred) {
      (void)deferred;
    }
  };

  struct Config {
    int threads = 1;       // serving threads (the guard is extra)
    uint32_t batch = 64;   // events per read
    std::vector<int> cpus;  // non-empty: thread i pinned to cpus[i % size]
    bool idle_priority = false;  // SCHED_IDLE + a normal-priority guard
    uint32_t spin_ns = 0;  // poll without sleeping this long after a batch
    // After submitting a read a fault waits for: poll without sleeping
    // until no such read is in flight, for at most this long.
    uint32_t read_spin_ns = 0;
  };
  static constexpr int kGuardDelayMs = 1;

  // Starts the threads serving `uffd` (which must outlive Stop()).
  static absl::StatusOr<std::unique_ptr<FaultService>> Start(
      os::Uffd* uffd, Handler* handler, Config config);
  ~FaultService();  // Stop()

  // Signals the stop eventfd and joins every thread. Idempotent.
  void Stop();
  // In a fork() child the threads do not exist: forget them without joining.
  void AbandonAfterFork();
  void WaitForQuiescence() const;
  // Wakes every service thread to retry its deferred faults now (a frame
  // was freed) instead of at its next poll timeout.
  void Kick();
  // Returns once every event read so far has been applied.
  void SyncEvents() const ABSL_LOCKS_EXCLUDED(event_mu_);
  // Held across every read of the uffd and the application of its events:
  // a fill made under it cannot be overtaken by an event read meanwhile
  // (see Engine::EventReadsHeld).
  absl::Mutex* event_mu() const ABSL_LOCK_RETURNED(event_mu_) {
    return &event_mu_;
  }
  // Fill fence (see Engine::FillFence): twice the number of reads that
  // returned address-space events, odd while any read is in progress.
  // Waits (SyncEvents) for a read in progress first; the result is still
  // odd if another began since.
  uint64_t QuiesceEvents() const ABSL_LOCKS_EXCLUDED(event_mu_);
  // Whether a read of address-space events may have begun since
  // QuiesceEvents returned `fence`: always true for an odd fence.
  bool EventsReadSince(uint64_t fence) const {
    return (fence & 1) != 0 ||
           event_reads_.load(std::memory_order_acquire) != fence;
  }

  // Serving threads, the guard not included.
  int threads() const { return config_.threads; }
  bool has_guard() const { return config_.idle_priority; }
  // Batches the guard served because the others were starved.
  uint64_t guard_batches() const {
    return guard_batches_.load(std::memory_order_relaxed);
  }
  // The CPU each thread is pinned to (empty when unpinned).
  const std::vector<int>& cpus() const { return cpus_; }

 private:
  struct alignas(64) Epoch {
    std::atomic<uint64_t> value{0};
  };

  FaultService(os::Uffd* uffd, Handler* handler, os::EventFd stop,
               os::EventFd kick, Config config, std::vector<int> cpus);
  void Loop(int index);
  // Guard thread: true once the uffd has stayed readable for kGuardDelayMs
  // with no read by anyone; false when it is time to stop.
  bool GuardShouldServe();

  // Held across "read a batch + apply its address-space events".
  mutable absl::Mutex event_mu_;
  // Under event_mu_: bumped to odd before each read; after it, bumped to
  // even once its address-space events are applied, or back to the even
  // value before it if it read only page faults.
  std::atomic<uint64_t> event_reads_{0};

  os::Uffd* const uffd_;
  Handler* const handler_;
  os::EventFd stop_;
  os::EventFd kick_;
  const Config config_;
  std::unique_ptr<Epoch[]> epochs_;
  std::vector<int> cpus_;  // per serving thread; empty = unpinned
  std::atomic<uint64_t> reads_{0};  // reads that returned events, all threads
  std::atomic<uint64_t> guard_batches_{0};
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_FAULT_SERVICE_H_
