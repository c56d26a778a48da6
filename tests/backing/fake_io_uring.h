// An io_uring that forwards to the kernel's ring but can inject what the
// swap store must survive: short transfers, failed requests (EIO, ENOSPC),
// zero-byte transfers, refused submissions, refused registrations, and
// completions that arrive late. Fakes only at the OS seam: everything not
// injected really goes to the kernel, so the bytes on disk are real.
//
// Thread-safety: the store calls the IoUring methods under its own mutex;
// the injection knobs may be called from the test thread at any time (the
// fake's own mutex orders them).
#ifndef UPAGER_TESTS_BACKING_FAKE_IO_URING_H_
#define UPAGER_TESTS_BACKING_FAKE_IO_URING_H_

#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "runtime/os/io_uring.h"

namespace upager::testing {

class FakeIoUring final : public internal::os::IoUring {
 public:
  using IoOp = internal::os::IoOp;
  using IoRequest = internal::os::IoRequest;
  using IoCompletion = internal::os::IoCompletion;

  explicit FakeIoUring(std::unique_ptr<internal::os::IoUring> real)
      : real_(std::move(real)) {}

  // --- Knobs.

  // Every `every`-th request (1 = all) that is longer than `granule` bytes
  // goes to the kernel shortened to about half, in whole `granule`s (512
  // keeps O_DIRECT's alignment), so its completion reports a short
  // transfer.
  void ShortenEvery(int every, uint32_t granule = 512) {
    absl::MutexLock l(&mu_);
    shorten_every_ = every;
    granule_ = granule;
  }
  // The next `n` requests of kind `op` fail with `err` without reaching
  // the kernel (err == 0: they complete with zero bytes moved).
  void FailNext(IoOp op, int n, int err) {
    absl::MutexLock l(&mu_);
    fail_op_ = op;
    fail_n_ = n;
    fail_err_ = err;
  }
  // The next `n` Submit calls return `err` and hand nothing to the kernel.
  void RefuseSubmits(int n, int err) {
    absl::MutexLock l(&mu_);
    refuse_submits_ = n;
    refuse_err_ = err;
  }
  void RefuseBufferRegistration(int err) {
    absl::MutexLock l(&mu_);
    refuse_buffers_ = err;
  }
  void RefuseFileRegistration(int err) {
    absl::MutexLock l(&mu_);
    refuse_file_ = err;
  }
  // While held, completions stay invisible: Reap returns none, Ready says
  // none, WaitForCompletion times out. Release makes them visible and
  // signals the registered eventfd, as the kernel would on arrival.
  void HoldCompletions() {
    absl::MutexLock l(&mu_);
    hold_ = true;
  }
  void ReleaseCompletions() {
    absl::MutexLock l(&mu_);
    hold_ = false;
    SignalLocked();
  }

  int shortened() const {
    absl::MutexLock l(&mu_);
    return shortened_;
  }
  int injected() const {
    absl::MutexLock l(&mu_);
    return injected_;
  }
  int submits() const {
    absl::MutexLock l(&mu_);
    return submits_;
  }
  // Requests prepared and sent to the kernel (injected failures excluded).
  int prepared() const {
    absl::MutexLock l(&mu_);
    return seen_;
  }

  // --- IoUring.

  uint32_t sq_entries() const override { return real_->sq_entries(); }
  uint32_t cq_entries() const override { return real_->cq_entries(); }
  absl::Status RegisterBuffer(void* base, size_t len) override {
    {
      absl::MutexLock l(&mu_);
      if (refuse_buffers_ != 0) {
        return absl::ResourceExhaustedError("injected buffer refusal");
      }
    }
    return real_->RegisterBuffer(base, len);
  }
  absl::Status UnregisterBuffer() override {
    return real_->UnregisterBuffer();
  }
  absl::StatusOr<int> RegisterFile(int fd) override {
    {
      absl::MutexLock l(&mu_);
      if (refuse_file_ != 0) {
        return absl::ResourceExhaustedError("injected file refusal");
      }
    }
    return real_->RegisterFile(fd);
  }
  absl::Status RegisterEventFd(int fd) override {
    absl::MutexLock l(&mu_);
    eventfd_ = fd;
    return real_->RegisterEventFd(fd);
  }

  bool Prepare(const IoRequest& request) override {
    absl::MutexLock l(&mu_);
    if (fail_n_ > 0 && request.op == fail_op_) {
      // Takes a submission-queue entry like a real request would, so the
      // store's SQ-full handling sees the same pressure.
      if (staged_.size() + real_pending_ >= real_->sq_entries()) return false;
      --fail_n_;
      ++injected_;
      staged_.push_back(IoCompletion{.user_data = request.user_data,
                                     .bytes = 0,
                                     .error = fail_err_});
      return true;
    }
    IoRequest r = request;
    ++seen_;
    if (shorten_every_ > 0 && seen_ % shorten_every_ == 0 &&
        r.len > granule_) {
      r.len = std::max(granule_, r.len / 2 / granule_ * granule_);
      ++shortened_;
    }
    if (!real_->Prepare(r)) return false;
    ++real_pending_;
    return true;
  }

  int Submit(uint32_t* submitted) override {
    absl::MutexLock l(&mu_);
    ++submits_;
    if (refuse_submits_ > 0) {
      --refuse_submits_;
      return refuse_err_;
    }
    uint32_t taken = 0;
    if (real_pending_ > 0) {
      if (const int err = real_->Submit(&taken); err != 0) return err;
      real_pending_ -= std::min(taken, real_pending_);
    }
    // Injected failures "complete" once submitted, like the kernel's.
    const auto injected = static_cast<uint32_t>(staged_.size());
    for (const IoCompletion& c : staged_) ready_.push_back(c);
    staged_.clear();
    if (injected > 0) SignalLocked();
    *submitted = taken + injected;
    return 0;
  }

  size_t Reap(absl::Span<IoCompletion> out) override {
    absl::MutexLock l(&mu_);
    if (hold_) {
      // The kernel already signalled the eventfd for what it posted; a
      // completion that has not "arrived" must not have, so swallow it
      // (ReleaseCompletions signals again).
      eventfd_t v;
      if (eventfd_ >= 0) (void)eventfd_read(eventfd_, &v);
      return 0;
    }
    size_t n = 0;
    while (n < out.size() && !ready_.empty()) {
      out[n++] = ready_.front();
      ready_.pop_front();
    }
    return n + real_->Reap(out.subspan(n));
  }

  uint32_t Ready() const override {
    absl::MutexLock l(&mu_);
    if (hold_) return 0;
    return static_cast<uint32_t>(ready_.size()) + real_->Ready();
  }

  int WaitForCompletion(absl::Duration timeout) override {
    {
      absl::MutexLock l(&mu_);
      if (hold_) return ETIME;
      if (!ready_.empty()) return 0;
    }
    return real_->WaitForCompletion(timeout);
  }

 private:
  void SignalLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (eventfd_ >= 0) eventfd_write(eventfd_, 1);
  }

  const std::unique_ptr<internal::os::IoUring> real_;
  mutable absl::Mutex mu_;
  int eventfd_ ABSL_GUARDED_BY(mu_) = -1;
  int shorten_every_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t granule_ ABSL_GUARDED_BY(mu_) = 512;
  uint64_t seen_ ABSL_GUARDED_BY(mu_) = 0;
  IoOp fail_op_ ABSL_GUARDED_BY(mu_) = IoOp::kRead;
  int fail_n_ ABSL_GUARDED_BY(mu_) = 0;
  int fail_err_ ABSL_GUARDED_BY(mu_) = 0;
  int refuse_submits_ ABSL_GUARDED_BY(mu_) = 0;
  int refuse_err_ ABSL_GUARDED_BY(mu_) = 0;
  int refuse_buffers_ ABSL_GUARDED_BY(mu_) = 0;
  int refuse_file_ ABSL_GUARDED_BY(mu_) = 0;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  // Prepared real entries not yet handed to the kernel.
  uint32_t real_pending_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<IoCompletion> staged_ ABSL_GUARDED_BY(mu_);  // injected, unsubmitted
  std::deque<IoCompletion> ready_ ABSL_GUARDED_BY(mu_);    // injected, posted
  int shortened_ ABSL_GUARDED_BY(mu_) = 0;
  int injected_ ABSL_GUARDED_BY(mu_) = 0;
  int submits_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace upager::testing

#endif  // UPAGER_TESTS_BACKING_FAKE_IO_URING_H_
