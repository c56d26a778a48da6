#include "backing/swap_file_store.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_format.h"
#include "backing/request_checks.h"
#include "runtime/os/errno_status.h"
#include "runtime/os/memory.h"
#include "upager/status_macros.h"

namespace upager::internal {
namespace {

// How long the destructor waits for requests the kernel has started. A
// healthy disk answers in milliseconds; this only bounds a hung device.
constexpr absl::Duration kDrainTimeout = absl::Seconds(30);

absl::Status CheckOptions(const SwapFileOptions& o, size_t page_size) {
  if (o.path.empty()) {
    return absl::InvalidArgumentError("SwapFileOptions.path is empty");
  }
  if (absl::Status s = CheckCapacity(o.capacity_bytes, page_size); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SwapFileOptions.%s", s.message()));
  }
  if (o.max_merge_pages < 1 ||
      o.max_merge_pages > SwapFileStore::kMaxMergePages) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SwapFileOptions.max_merge_pages=%d: must be in 1..%d",
        o.max_merge_pages, SwapFileStore::kMaxMergePages));
  }
  if (o.queue_depth < 1 || o.queue_depth > SwapFileStore::kMaxQueueDepth) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SwapFileOptions.queue_depth=%d: must be in 1..%d", o.queue_depth,
        SwapFileStore::kMaxQueueDepth));
  }
  return absl::OkStatus();
}

// poll(2) takes whole milliseconds: round up, so a wait never ends early.
int PollTimeoutMs(absl::Duration left) {
  if (left == absl::InfiniteDuration()) return -1;
  const int64_t ms = absl::ToInt64Milliseconds(
      absl::Ceil(left, absl::Milliseconds(1)));
  return static_cast<int>(std::clamp<int64_t>(ms, 0, INT_MAX));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SwapFileStore>> SwapFileStore::Open(
    const SwapFileOptions& options, const IoUringFactory& make_ring) {
  const size_t page_size = os::PageSize();
  UPAGER_RETURN_IF_ERROR(CheckOptions(options, page_size));

  UPAGER_ASSIGN_OR_RETURN(
      os::File file,
      os::File::Open(options.path, {.create = true,
                                    .direct_io = options.direct_io}));
  // From here on, a failure removes the file if this call created it: a
  // half-made swap file left behind would only confuse the next attempt.
  auto fail = [&file](absl::Status s) {
    if (file.created()) {
      const std::string path = file.path();
      (void)file.Close();
      (void)os::UnlinkFile(path);
    }
    return s;
  };
  // Emptied first, so a slot never written reads as zeros (as in the memory
  // store) rather than as whatever an earlier user of the file left there.
  // Reserving the blocks then means a full disk is reported here, naming
  // the path, and not later as ENOSPC on an eviction write.
  if (absl::Status s = file.SetSize(0); !s.ok()) return fail(s);
  if (absl::Status s = file.SetSize(options.capacity_bytes); !s.ok()) {
    return fail(s);
  }
  absl::StatusOr<std::unique_ptr<os::IoUring>> ring =
      make_ring(options.queue_depth);
  if (!ring.ok()) return fail(ring.status());
  absl::StatusOr<os::EventFd> completions = os::EventFd::Create();
  if (!completions.ok()) return fail(completions.status());
  if (absl::Status s = (*ring)->RegisterEventFd(completions->fd()); !s.ok()) {
    return fail(s);
  }
  // A registered file saves a file-table lookup and reference per request;
  // when the kernel refuses, the plain descriptor works the same.
  int ring_fd = file.fd();
  bool file_registered = false;
  if (absl::StatusOr<int> index = (*ring)->RegisterFile(file.fd());
      index.ok()) {
    ring_fd = *index;
    file_registered = true;
  }
  // Removed now, not at close: the descriptor keeps the file, and a process
  // that is killed or crashes leaves no swap file (of capacity_bytes) behind.
  // If the unlink fails, the destructor tries again.
  const bool unlinked =
      options.unlink_on_close && os::UnlinkFile(file.path()).ok();
  return std::unique_ptr<SwapFileStore>(new SwapFileStore(
      options, page_size, std::move(file), std::move(*completions),
      std::move(*ring), ring_fd, file_registered, unlinked));
}

SwapFileStore::SwapFileStore(const SwapFileOptions& options, size_t page_size,
                             os::File file, os::EventFd completions,
                             std::unique_ptr<os::IoUring> ring, int ring_fd,
                             bool file_registered, bool unlinked)
    : options_(options),
      page_size_(page_size),
      file_(std::move(file)),
      completions_(std::move(completions)),
      ring_fd_(ring_fd),
      file_registered_(file_registered),
      unlinked_(unlinked),
      slots_(options.capacity_bytes / page_size),
      max_in_ring_(ring->cq_entries()),
      max_writes_in_ring_(
          std::max<uint32_t>(1, max_in_ring_ * kWriteShareQuarters / 4)),
      max_merge_pages_(options.max_merge_pages),
      ring_(std::move(ring)) {
  absl::MutexLock lock(&mu_);
  cqes_.resize(max_in_ring_);
  ops_.reserve(max_in_ring_);
  counters_.capacity_slots = slots_.capacity();
}

SwapFileStore::~SwapFileStore() {
  {
    absl::MutexLock lock(&mu_);
    // Queued ops never reached the kernel: nothing to wait for.
    queued_reads_.clear();
    queued_writes_.clear();
    const absl::Time deadline = absl::Now() + kDrainTimeout;
    while (in_ring_ > 0 && absl::Now() < deadline) {
      if (unsubmitted_ > 0) (void)SubmitRing();
      if (ring_->Ready() == 0) {
        (void)ring_->WaitForCompletion(absl::Milliseconds(100));
      }
      const size_t n = ring_->Reap(absl::MakeSpan(cqes_));
      in_ring_ -= static_cast<uint32_t>(std::min<size_t>(n, in_ring_));
    }
    ring_.reset();
  }
  const std::string path = file_.path();
  (void)file_.Close();
  // Not if removed at open already: the path may name another file now.
  if (options_.unlink_on_close && !unlinked_) (void)os::UnlinkFile(path);
}

absl::StatusOr<uint64_t> SwapFileStore::AllocateSlot() {
  if (std::optional<uint64_t> slot = slots_.Allocate()) return *slot;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "swap file \"%s\" is full: all %d slots (capacity_bytes=%d) are in use",
      options_.path, slots_.capacity(), options_.capacity_bytes));
}

void SwapFileStore::FreeSlot(uint64_t slot) { (void)slots_.Free(slot); }

absl::Status SwapFileStore::RegisterBuffers(std::byte* base, size_t len) {
  UPAGER_RETURN_IF_ERROR(CheckBufferRegion(base, len, page_size_));
  absl::MutexLock lock(&mu_);
  // Refusal is the kernel's policy (RLIMIT_MEMLOCK, or no memory to pin),
  // not a caller error: plain requests carry the same bytes.
  buffers_registered_ = ring_->RegisterBuffer(base, len).ok();
  return absl::OkStatus();
}

absl::Status SwapFileStore::Submit(absl::Span<const Request> requests) {
  UPAGER_RETURN_IF_ERROR(CheckRequests(requests, page_size_, slots_));
  if (requests.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  for (const Request& r : requests) {
    const uint32_t id = NewOp(r);
    QueueOf(id).push_back(id);
  }
  return Pump();
}

size_t SwapFileStore::Reap(absl::Span<Completion> out) {
  if (out.empty()) return 0;
  absl::MutexLock lock(&mu_);
  return ReapLocked(out);
}

size_t SwapFileStore::Wait(absl::Span<Completion> out,
                           absl::Duration timeout) {
  if (out.empty()) return 0;
  const absl::Time deadline = timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + timeout;
  for (;;) {
    bool retry_soon;
    {
      absl::MutexLock lock(&mu_);
      if (const size_t n = ReapLocked(out); n > 0) return n;
      // Entries the kernel refused for now produce no completion to wake
      // us: come back soon to submit them again.
      retry_soon = unsubmitted_ > 0;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return 0;
    int timeout_ms = PollTimeoutMs(left);
    if (retry_soon && (timeout_ms < 0 || timeout_ms > 1)) timeout_ms = 1;
    const int fd = completions_.fd();
    uint64_t ready = 0;
    if (os::PollReadable(absl::MakeConstSpan(&fd, 1), timeout_ms, &ready) !=
        0) {
      return 0;
    }
  }
}

BackingStoreStats SwapFileStore::stats() const {
  absl::MutexLock lock(&mu_);
  BackingStoreStats s = counters_;
  s.used_slots = slots_.used();
  s.registered_buffers = buffers_registered_;
  s.registered_file = file_registered_;
  s.direct_io = file_.direct_io();
  return s;
}

uint32_t SwapFileStore::NewOp(const Request& r) {
  uint32_t id;
  if (free_ops_.empty()) {
    id = static_cast<uint32_t>(ops_.size());
    ops_.emplace_back();
  } else {
    id = free_ops_.back();
    free_ops_.pop_back();
  }
  ops_[id] = Op{.request = r};
  return id;
}

std::deque<uint32_t>& SwapFileStore::QueueOf(uint32_t id) {
  return ops_[id].request.op == Request::Op::kRead ? queued_reads_
                                                   : queued_writes_;
}

std::deque<uint32_t>* SwapFileStore::NextQueue() {
  if (!queued_reads_.empty()) return &queued_reads_;
  if (!queued_writes_.empty() && writes_in_ring_ < max_writes_in_ring_ &&
      write_pages_in_ring_ < kMaxWritePagesInRing) {
    return &queued_writes_;
  }
  return nullptr;
}

size_t SwapFileStore::MergeableAtHead(const std::deque<uint32_t>& q) const {
  const Op& head = ops_[q.front()];
  // An op partly transferred continues alone, from where it stopped.
  if (head.solo || head.done != 0) return 1;
  size_t n = 1;
  while (n < q.size() && n < max_merge_pages_) {
    const Request& prev = ops_[q[n - 1]].request;
    const Op& op = ops_[q[n]];
    if (op.solo || op.done != 0 || op.request.slot != prev.slot + 1 ||
        op.request.buffer != prev.buffer + page_size_) {
      break;
    }
    ++n;
  }
  return n;
}

os::IoRequest SwapFileStore::MakeIoRequest(const std::deque<uint32_t>& q,
                                           size_t n) const {
  const Op& op = ops_[q.front()];
  os::IoRequest io;
  io.op = op.request.op == Request::Op::kRead ? os::IoOp::kRead
                                              : os::IoOp::kWrite;
  io.fd = ring_fd_;
  io.fixed_file = file_registered_;
  io.fixed_buffer = buffers_registered_;
  io.buf = op.request.buffer + op.done;
  io.len = static_cast<uint32_t>(n * page_size_ - op.done);
  io.offset = op.request.slot * page_size_ + op.done;
  io.user_data = q.front();
  return io;
}

absl::Status SwapFileStore::Pump() {
  while (in_ring_ < max_in_ring_) {
    std::deque<uint32_t>* q = NextQueue();
    if (q == nullptr) break;
    const size_t n = MergeableAtHead(*q);
    const os::IoRequest io = MakeIoRequest(*q, n);
    if (!ring_->Prepare(io)) {
      // The submission queue is full: hand it to the kernel, which frees
      // every entry it takes, and try once more.
      UPAGER_RETURN_IF_ERROR(SubmitRing());
      // Still full: the kernel took nothing for now. The ops stay queued
      // and go in on a later call.
      if (!ring_->Prepare(io)) break;
    }
    for (size_t i = 0; i < n; ++i) {
      ops_[(*q)[i]].next = i + 1 < n ? (*q)[i + 1] : kNoOp;
    }
    q->erase(q->begin(), q->begin() + static_cast<ptrdiff_t>(n));
    if (io.op == os::IoOp::kWrite) {
      ++writes_in_ring_;
      write_pages_in_ring_ += static_cast<uint32_t>(n);
    }
    ++in_ring_;
    ++unsubmitted_;
  }
  if (unsubmitted_ == 0) return absl::OkStatus();
  return SubmitRing();
}

absl::Status SwapFileStore::SubmitRing() {
  uint32_t taken = 0;
  const int err = ring_->Submit(&taken);
  ++counters_.submits;
  if (err == 0) {
    unsubmitted_ -= std::min(taken, unsubmitted_);
    return absl::OkStatus();
  }
  // EAGAIN (no memory for requests right now), EBUSY (completions backed
  // up), EINTR: nothing is lost, the entries stay in the ring and the next
  // Submit, Reap or Wait hands them in again.
  if (err == EAGAIN || err == EBUSY || err == EINTR) return absl::OkStatus();
  return os::ErrnoToStatus(
      err, absl::StrFormat("io_uring_submit(swap file \"%s\")", options_.path));
}

void SwapFileStore::Requeue(absl::Span<const uint32_t> ids) {
  for (size_t i = ids.size(); i-- > 0;) {
    ops_[ids[i]].next = kNoOp;
    QueueOf(ids[i]).push_front(ids[i]);
  }
}

void SwapFileStore::Finish(uint32_t id, int error) {
  Op& op = ops_[id];
  const bool read = op.request.op == Request::Op::kRead;
  if (error == 0) {
    ++(read ? counters_.reads : counters_.writes);
  } else {
    ++(read ? counters_.read_errors : counters_.write_errors);
  }
  ready_.push_back(Completion{.tag = op.request.tag, .error = error});
  op.next = kNoOp;
  free_ops_.push_back(id);
}

void SwapFileStore::HandleCompletion(const os::IoCompletion& c) {
  // Every entry this store prepares carries an op index; anything else is
  // not ours to report.
  if (c.user_data >= ops_.size()) return;
  absl::InlinedVector<uint32_t, 64> entry;
  for (auto id = static_cast<uint32_t>(c.user_data); id != kNoOp;
       id = ops_[id].next) {
    entry.push_back(id);
  }
  --in_ring_;
  if (ops_[entry[0]].request.op == Request::Op::kWrite) {
    --writes_in_ring_;
    write_pages_in_ring_ -= static_cast<uint32_t>(entry.size());
  }
  int error = c.error;
  // A transfer of zero bytes makes no progress: a read past the end of the
  // file (someone truncated it) or a write the device would not take.
  // Requeuing it would spin forever.
  if (error == 0 && c.bytes == 0) error = EIO;
  // The entry was not started (interrupted before any byte moved): the
  // same ops again are correct.
  if (error == EAGAIN || error == EINTR) return Requeue(entry);
  if (error != 0) {
    if (entry.size() == 1) return Finish(entry[0], error);
    // Which page failed is unknown: retry each alone, so the error is
    // reported (or not, if it was transient) for the page it belongs to.
    for (uint32_t id : entry) ops_[id].solo = true;
    return Requeue(entry);
  }
  // The bytes moved fill the ops in order; whatever is left over is
  // queued again, each op alone from where it stopped.
  uint64_t bytes = c.bytes;
  absl::InlinedVector<uint32_t, 64> again;
  for (uint32_t id : entry) {
    Op& op = ops_[id];
    const uint64_t credit = std::min<uint64_t>(bytes, page_size_ - op.done);
    op.done += static_cast<uint32_t>(credit);
    bytes -= credit;
    if (op.done == page_size_) {
      Finish(id, 0);
    } else {
      // A short transfer is not a page: report nothing until it has moved.
      if (credit > 0) ++counters_.short_transfers;
      again.push_back(id);
    }
  }
  Requeue(again);
}

size_t SwapFileStore::ReapLocked(absl::Span<Completion> out) {
  size_t reaped = 0;
  // A merged entry yields several completions, so everything available is
  // reaped into ready_ (the ring never keeps more than cqes_ holds) and
  // handed out from there; what does not fit waits for the next call.
  while (ready_.size() < out.size()) {
    const size_t n = ring_->Reap(absl::MakeSpan(cqes_));
    if (n == 0) break;
    reaped += n;
    for (size_t i = 0; i < n; ++i) HandleCompletion(cqes_[i]);
  }
  size_t produced = 0;
  while (produced < out.size() && !ready_.empty()) {
    out[produced++] = ready_.front();
    ready_.pop_front();
  }
  // Reaped completions made room in the ring, and short transfers were
  // queued again. An error here leaves the entries for the next call, so
  // there is nothing to report to a caller who only asked for completions.
  (void)Pump();
  // The kernel signals the eventfd once per completion it posts, and only
  // this function consumes completions (under mu_). So when nothing was
  // reaped or handed out, nothing changed since the last clear below, and
  // the eventfd needs no system call. Otherwise clear it; a completion
  // posted after the clear signals again on its own, and one posted before
  // it but not taken (raced in), or one waiting in ready_ (the caller's
  // span was full), signals it again here, so the descriptor stays
  // readable exactly while completions wait.
  if (reaped > 0 || produced > 0) {
    (void)completions_.Clear();
    if (ring_->Ready() > 0 || !ready_.empty()) (void)completions_.Signal();
  }
  return produced;
}

}  // namespace upager::internal

namespace upager {

absl::StatusOr<std::unique_ptr<BackingStore>> OpenSwapFile(
    const SwapFileOptions& options) {
  UPAGER_ASSIGN_OR_RETURN(std::unique_ptr<internal::SwapFileStore> store,
                          internal::SwapFileStore::Open(options));
  return std::unique_ptr<BackingStore>(std::move(store));
}

}  // namespace upager
