// One io_uring: page-sized reads and writes at file offsets, submitted in
// batches and reaped in batches. The swap store drives it; the benchmarks use
// it raw for the device's ceilings.
//
// Contract: nothing here blocks except WaitForCompletion. liburing reports
// failures as -errno; the kernel implementation turns them into a positive
// errno (IoCompletion::error, the int results) or an absl::Status in one
// place, so callers never see a negative errno.
//
// `IoUring` is an interface so tests can wrap the kernel ring and inject
// short transfers, errors and slow completions (tests/backing/
// fake_io_uring.h); `CreateIoUring` returns the only implementation that
// talks to the kernel.
//
// Thread-safety: none. A ring is one submission queue and one completion
// queue that liburing updates without locks; the owner serializes every
// call (the swap store holds its mutex around each one).
#ifndef UPAGER_RUNTIME_OS_IO_URING_H_
#define UPAGER_RUNTIME_OS_IO_URING_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace upager::internal::os {

enum class IoOp : uint8_t { kRead, kWrite };

// One read or write of `len` bytes between `buf` and the file at `offset`.
struct IoRequest {
  IoOp op = IoOp::kRead;
  // The descriptor, or with `fixed_file` the index RegisterFile returned.
  int fd = -1;
  bool fixed_file = false;
  // Uses the registered buffer region; [buf, buf + len) must lie inside it.
  bool fixed_buffer = false;
  void* buf = nullptr;
  uint32_t len = 0;     // bytes
  uint64_t offset = 0;  // bytes from the start of the file
  uint64_t user_data = 0;  // returned in the completion
};

// One completion-queue entry, already decoded.
struct IoCompletion {
  uint64_t user_data = 0;
  uint32_t bytes = 0;  // bytes transferred when error == 0 (may be short)
  int error = 0;       // 0, or the errno the request failed with
};

class IoUring {
 public:
  virtual ~IoUring() = default;

  // Submission-queue entries (the queue depth asked for, rounded up to a
  // power of two by the kernel) and completion-queue entries (twice that).
  // Keeping at most cq_entries() requests in flight means the completion
  // queue cannot overflow.
  virtual uint32_t sq_entries() const = 0;
  virtual uint32_t cq_entries() const = 0;

  // Registers [base, base + len) as fixed buffers (split into 1 GiB pieces,
  // the kernel's limit per buffer) so requests with `fixed_buffer` skip the
  // per-I/O page pinning. Replaces an earlier registration. The kernel pins
  // (and faults in) the whole range and may refuse: RLIMIT_MEMLOCK without
  // CAP_IPC_LOCK gives ResourceExhausted. On failure nothing is registered
  // and plain requests keep working: callers fall back, they do not fail.
  virtual absl::Status RegisterBuffer(void* base, size_t len) = 0;
  // Drops the registration (no-op without one).
  virtual absl::Status UnregisterBuffer() = 0;
  // Registers `fd` as fixed file 0 (skips the per-I/O file reference).
  // Returns the index to put in IoRequest::fd with fixed_file.
  virtual absl::StatusOr<int> RegisterFile(int fd) = 0;
  // The kernel signals `fd` (an eventfd) for every completion it posts.
  virtual absl::Status RegisterEventFd(int fd) = 0;

  // Fills one submission-queue entry. Returns false, leaving the queue
  // unchanged, when it is full: Submit, then prepare again.
  [[nodiscard]] virtual bool Prepare(const IoRequest& request) = 0;
  // Hands every prepared entry to the kernel with one io_uring_enter.
  // Returns 0 and sets *submitted (entries the kernel took), or an errno:
  // EAGAIN/EBUSY/EINTR are transient and leave the entries queued for the
  // next Submit.
  [[nodiscard]] virtual int Submit(uint32_t* submitted) = 0;
  // Non-blocking: moves up to out.size() completions into `out` and frees
  // their queue entries. Returns how many.
  virtual size_t Reap(absl::Span<IoCompletion> out) = 0;
  // Completions waiting to be reaped.
  virtual uint32_t Ready() const = 0;
  // Blocks until at least one completion is waiting or `timeout` passes
  // (absl::InfiniteDuration(): no limit). Returns 0 when one is ready,
  // ETIME on timeout, or another errno.
  [[nodiscard]] virtual int WaitForCompletion(absl::Duration timeout) = 0;
};

// Sets up a kernel ring with `queue_depth` submission entries (1..4096).
// Fails with InvalidArgument for a depth out of range, or the errno of
// io_uring_setup (PermissionDenied when io_uring is disabled by the
// kernel.io_uring_disabled sysctl).
absl::StatusOr<std::unique_ptr<IoUring>> CreateIoUring(uint32_t queue_depth);

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_IO_URING_H_
