// The io_uring swap file behind OpenSwapFile: slot i is the page at file
// offset i * page_size(), read and written with O_DIRECT where the file
// system allows it.
//
// How a request travels. Submit checks the whole batch, gives each request
// an op record and queues it: reads and writes wait in separate queues.
// Pump() moves queued ops into the ring while fewer than cq_entries()
// entries are in flight (so the completion queue can never overflow),
// submitting whenever the submission queue fills and once more at the end:
// one io_uring_submit per batch that fits.
// - Reads go first, and writes may hold at most kWriteShareQuarters of the
//   ring's entries and kMaxWritePagesInRing pages:
//   a read has a faulting thread waiting for it, a write only frees a
//   frame a little sooner. Queued behind a burst of eviction writes (FIFO,
//   the old rule) a sequential swap-in read waited ~430 us at the median.
// - Ops at the head of a queue for consecutive slots from consecutive
//   buffers (an evicted run, a read-ahead window) share one entry of up to
//   max_merge_pages pages: user_data is the first op's index and the ops
//   are chained through Op::next.
// Reap takes every available completion and hands each op's bytes to it
// in order: a short transfer is queued again for the remaining bytes (at
// the head of its queue, alone) and reported only when all page_size()
// bytes have moved. A failed merged entry is retried op by op (solo), so
// an error is reported, with its errno and counted, for the page it
// belongs to. Completions beyond the caller's span wait in ready_. An op
// that does not fit in the ring waits in its queue and goes in as earlier
// completions are reaped, so no request is dropped.
//
// completion_fd() is an eventfd the ring signals for every completion. A
// Reap that took completions clears it, and signals it again if some are
// left behind (the caller's span was full), so it is readable while
// completions wait; Wait polls it with the lock released.
//
// SYNCHRONIZATION
// - mu_ guards the ring (liburing's queues are not thread-safe), the op
//   table, the queue, the registration state and the counters. Every public
//   method holds it only for non-blocking work; Wait sleeps in poll(2) on
//   the eventfd without it.
// - slots_ has its own lock and is never called with mu_ held, except from
//   stats() (lock order: mu_, then the allocator's).
// - Destruction must not race with any other call (as for any object). The
//   destructor waits for the requests already in the kernel, because their
//   buffers belong to the caller, who may free them once it returns.
#ifndef UPAGER_BACKING_SWAP_FILE_STORE_H_
#define UPAGER_BACKING_SWAP_FILE_STORE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "backing/slot_allocator.h"
#include "runtime/os/file.h"
#include "runtime/os/io_uring.h"
#include "runtime/os/wakeup.h"
#include "upager/backing_store.h"

namespace upager::internal {

// Makes the ring a store runs on; tests pass one that wraps the kernel's.
using IoUringFactory =
    std::function<absl::StatusOr<std::unique_ptr<os::IoUring>>(
        uint32_t queue_depth)>;

class SwapFileStore final : public BackingStore {
 public:
  // The queue depth options accept.
  static constexpr uint32_t kMaxQueueDepth = 4096;
  // The merge limit options accept (1 MiB of 4 KiB pages).
  static constexpr uint32_t kMaxMergePages = 256;

  // Validates `options` (InvalidArgument naming the bad one), opens or
  // creates the file (mode 0600, O_DIRECT unless refused), sizes it to the
  // capacity with its blocks reserved, sets up the ring and registers the
  // file and the eventfd with it (falling back to plain descriptors when
  // file registration is refused). A failed system call yields its status,
  // which names the path; a file created by the failed attempt is removed.
  static absl::StatusOr<std::unique_ptr<SwapFileStore>> Open(
      const SwapFileOptions& options,
      const IoUringFactory& make_ring = os::CreateIoUring);

  SwapFileStore(const SwapFileStore&) = delete;
  SwapFileStore& operator=(const SwapFileStore&) = delete;
  // Waits (up to 30 s) for requests the kernel has started, drops the ones
  // still queued, closes the file and, with unlink_on_close, removes it if
  // Open could not already.
  ~SwapFileStore() override;

  size_t page_size() const override { return page_size_; }
  uint64_t capacity_slots() const override { return slots_.capacity(); }
  const std::string& path() const { return options_.path; }

  absl::StatusOr<uint64_t> AllocateSlot() override;
  void FreeSlot(uint64_t slot) override;
  // Registers [base, base + len) as io_uring fixed buffers (replacing an
  // earlier region). The kernel pins the whole range, faulting it in:
  // offer a dedicated pool of I/O buffers, never a userfaultfd-registered
  // region. Refusal (RLIMIT_MEMLOCK) is not an error: requests then go
  // plain, and stats().registered_buffers says false.
  absl::Status RegisterBuffers(std::byte* base, size_t len) override;
  // Checks the whole batch first: a bad request refuses the batch and
  // nothing is queued. A checked batch is accepted; the only later error is
  // io_uring_enter failing with something other than EAGAIN, EBUSY or
  // EINTR (which are retried), which only a broken ring reports (EBADF,
  // EFAULT...): the status is returned, but the requests stay queued in the
  // ring, so their buffers must be kept until their completions arrive.
  // Requests are not ordered against each other: read a slot only after its
  // write's completion was reaped.
  absl::Status Submit(absl::Span<const Request> requests) override;
  size_t Reap(absl::Span<Completion> out) override;
  size_t Wait(absl::Span<Completion> out, absl::Duration timeout) override;
  int completion_fd() const override { return completions_.fd(); }
  BackingStoreStats stats() const override;

 private:
  static constexpr uint32_t kNoOp = ~uint32_t{0};
  // Writes hold at most this share of the ring's entries (in quarters):
  // the rest is kept for reads.
  static constexpr uint32_t kWriteShareQuarters = 3;
  // And at most this many pages (1 MiB): a read the device queues behind
  // writes waits for all of them, and ~1 MiB in flight already keeps this
  // disk at its sequential rate (Device/SeqRead: 128 KiB at QD8).
  static constexpr uint32_t kMaxWritePagesInRing = 256;

  // One accepted request, from Submit until its completion is reaped.
  struct Op {
    Request request;
    uint32_t done = 0;       // bytes already transferred (short transfers)
    uint32_t next = kNoOp;   // the next op of its merged entry
    bool solo = false;       // never merged again (its merged entry failed)
  };

  SwapFileStore(const SwapFileOptions& options, size_t page_size,
                os::File file, os::EventFd completions,
                std::unique_ptr<os::IoUring> ring, int ring_fd,
                bool file_registered, bool unlinked);

  // Moves queued ops into the ring while there is room and submits what it
  // prepared. A transient refusal (EAGAIN, EBUSY) leaves the entries in
  // the ring for the next call; another error is returned, with the
  // entries also left for the next call.
  absl::Status Pump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SubmitRing() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The queue Pump takes from next (reads first; writes while under their
  // share of the ring), or nullptr.
  std::deque<uint32_t>* NextQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How many ops at the head of `q` one entry can carry.
  size_t MergeableAtHead(const std::deque<uint32_t>& q) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The entry for the first `n` ops of `q`.
  os::IoRequest MakeIoRequest(const std::deque<uint32_t>& q, size_t n) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies one completion to the ops of its entry: each whole op's
  // Completion goes to ready_ and its op is freed; the rest are requeued.
  void HandleCompletion(const os::IoCompletion& c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts `ids` back at the head of their queue, in order.
  void Requeue(absl::Span<const uint32_t> ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(uint32_t id, int error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::deque<uint32_t>& QueueOf(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t NewOp(const Request& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t ReapLocked(absl::Span<Completion> out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SwapFileOptions options_;
  const size_t page_size_;  // bytes per slot
  os::File file_;
  os::EventFd completions_;  // registered with the ring
  // The descriptor requests name: file_.fd(), or its index in the ring's
  // registered files when file_registered_.
  const int ring_fd_;
  const bool file_registered_;
  const bool unlinked_;  // unlink_on_close: removed at open already
  SlotAllocator slots_;
  // Entries in the ring at most: the completion queue's size.
  const uint32_t max_in_ring_;
  const uint32_t max_writes_in_ring_;  // kWriteShareQuarters of it
  const uint32_t max_merge_pages_;

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  std::unique_ptr<os::IoUring> ring_ ABSL_GUARDED_BY(mu_);
  std::vector<Op> ops_ ABSL_GUARDED_BY(mu_);  // indexed by user_data
  std::vector<uint32_t> free_ops_ ABSL_GUARDED_BY(mu_);
  // Ops accepted but not in the ring, oldest first (requeued ones go to
  // the front: they are the oldest).
  std::deque<uint32_t> queued_reads_ ABSL_GUARDED_BY(mu_);
  std::deque<uint32_t> queued_writes_ ABSL_GUARDED_BY(mu_);
  // Completions produced but not yet handed to a caller.
  std::deque<Completion> ready_ ABSL_GUARDED_BY(mu_);
  uint32_t in_ring_ ABSL_GUARDED_BY(mu_) = 0;  // entries prepared, not reaped
  uint32_t writes_in_ring_ ABSL_GUARDED_BY(mu_) = 0;  // of which writes
  uint32_t write_pages_in_ring_ ABSL_GUARDED_BY(mu_) = 0;  // their pages
  // Prepared entries the kernel has not taken yet (a transient submit
  // failure); retried by every later call.
  uint32_t unsubmitted_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<os::IoCompletion> cqes_ ABSL_GUARDED_BY(mu_);  // Reap scratch
  bool buffers_registered_ ABSL_GUARDED_BY(mu_) = false;
  // reads, writes, errors, submits, short transfers.
  BackingStoreStats counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace upager::internal

#endif  // UPAGER_BACKING_SWAP_FILE_STORE_H_
