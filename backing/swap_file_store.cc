#include "backing/swap_file_store.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <utility>

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
  return std::unique_ptr<SwapFileStore>(new SwapFileStore(
      options, page_size, std::move(file), std::move(*completions),
      std::move(*ring), ring_fd, file_registered));
}

SwapFileStore::SwapFileStore(const SwapFileOptions& options, size_t page_size,
                             os::File file, os::EventFd completions,
                             std::unique_ptr<os::IoUring> ring, int ring_fd,
                             bool file_registered)
    : options_(options),
      page_size_(page_size),
      file_(std::move(file)),
      completions_(std::move(completions)),
      ring_fd_(ring_fd),
      file_registered_(file_registered),
      slots_(options.capacity_bytes / page_size),
      max_in_ring_(ring->cq_entries()),
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
    queued_.clear();
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
  if (options_.unlink_on_close) (void)os::UnlinkFile(path);
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
  for (const Request& r : requests) queued_.push_back(NewOp(r));
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
  ops_[id] = Op{.request = r, .done = 0};
  return id;
}

os::IoRequest SwapFileStore::MakeIoRequest(uint32_t id) const {
  const Op& op = ops_[id];
  os::IoRequest io;
  io.op = op.request.op == Request::Op::kRead ? os::IoOp::kRead
                                              : os::IoOp::kWrite;
  io.fd = ring_fd_;
  io.fixed_file = file_registered_;
  io.fixed_buffer = buffers_registered_;
  io.buf = op.request.buffer + op.done;
  io.len = static_cast<uint32_t>(page_size_ - op.done);
  io.offset = op.request.slot * page_size_ + op.done;
  io.user_data = id;
  return io;
}

absl::Status SwapFileStore::Pump() {
  while (!queued_.empty() && in_ring_ < max_in_ring_) {
    const os::IoRequest io = MakeIoRequest(queued_.front());
    if (!ring_->Prepare(io)) {
      // The submission queue is full: hand it to the kernel, which frees
      // every entry it takes, and try once more.
      UPAGER_RETURN_IF_ERROR(SubmitRing());
      // Still full: the kernel took nothing for now. The op stays queued
      // and goes in on a later call.
      if (!ring_->Prepare(io)) break;
    }
    queued_.pop_front();
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

bool SwapFileStore::HandleCompletion(const os::IoCompletion& c,
                                     Completion* out) {
  // Every entry this store prepares carries an op index; anything else is
  // not ours to report.
  if (c.user_data >= ops_.size()) return false;
  const auto id = static_cast<uint32_t>(c.user_data);
  Op& op = ops_[id];
  --in_ring_;
  const bool read = op.request.op == Request::Op::kRead;
  int error = c.error;
  // A transfer of zero bytes makes no progress: a read past the end of the
  // file (someone truncated it) or a write the device would not take.
  // Requeuing it would spin forever.
  if (error == 0 && c.bytes == 0) error = EIO;
  // The request was not started (interrupted before any byte moved): the
  // same request again is correct.
  if (error == EAGAIN || error == EINTR) {
    queued_.push_front(id);
    return false;
  }
  if (error == 0) {
    op.done += std::min<uint32_t>(c.bytes,
                                  static_cast<uint32_t>(page_size_ - op.done));
    if (op.done < page_size_) {
      // A short transfer is not a page: queue the remaining bytes, ahead of
      // newer requests, and report nothing until they have moved.
      ++counters_.short_transfers;
      queued_.push_front(id);
      return false;
    }
    ++(read ? counters_.reads : counters_.writes);
  } else {
    ++(read ? counters_.read_errors : counters_.write_errors);
  }
  *out = Completion{.tag = op.request.tag, .error = error};
  free_ops_.push_back(id);
  return true;
}

size_t SwapFileStore::ReapLocked(absl::Span<Completion> out) {
  size_t produced = 0;
  size_t reaped = 0;
  // Each completion yields at most one Completion, so taking no more than
  // the room left in `out` never strands one.
  while (produced < out.size()) {
    const size_t room = std::min(out.size() - produced, cqes_.size());
    const size_t n = ring_->Reap(absl::MakeSpan(cqes_.data(), room));
    if (n == 0) break;
    reaped += n;
    for (size_t i = 0; i < n; ++i) {
      if (HandleCompletion(cqes_[i], &out[produced])) ++produced;
    }
  }
  // Reaped completions made room in the ring, and short transfers were
  // queued again. An error here leaves the entries for the next call, so
  // there is nothing to report to a caller who only asked for completions.
  (void)Pump();
  // The kernel signals the eventfd once per completion it posts, and only
  // this function consumes completions (under mu_). So when nothing was
  // reaped, no signal arrived since the last clear below, and the eventfd
  // needs no system call. When something was, clear it; a completion
  // posted after the clear signals again on its own, and one posted before
  // it but not taken (the caller's span was full, or it raced in) is seen
  // by Ready(), so the descriptor stays readable exactly while completions
  // wait.
  if (reaped > 0) {
    (void)completions_.Clear();
    if (ring_->Ready() > 0) (void)completions_.Signal();
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
