#include "runtime/os/io_uring.h"

#include <liburing.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "runtime/os/errno_status.h"

namespace upager::internal::os {
namespace {

constexpr uint32_t kMaxQueueDepth = 4096;
// The kernel refuses a fixed buffer larger than 1 GiB (io_buffer_validate),
// so a region is registered as consecutive 1 GiB pieces. Offsets inside the
// region are page multiples and 1 GiB is one too, so a page-sized request
// never straddles two pieces.
constexpr size_t kMaxFixedBufferBytes = size_t{1} << 30;

// The one place where liburing's "-errno" becomes an errno.
int ErrnoOf(int ret) { return ret < 0 ? -ret : 0; }

absl::Status RingStatus(int ret, const std::string& what) {
  return ErrnoToStatus(ErrnoOf(ret), what);
}

__kernel_timespec ToKernelTimespec(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  __kernel_timespec ts;
  ts.tv_sec = ns / 1'000'000'000;
  ts.tv_nsec = ns % 1'000'000'000;
  return ts;
}

class KernelIoUring final : public IoUring {
 public:
  KernelIoUring() = default;
  KernelIoUring(const KernelIoUring&) = delete;
  KernelIoUring& operator=(const KernelIoUring&) = delete;
  // Tearing the ring down cancels what the kernel has not started and
  // unregisters buffers, files and the eventfd.
  ~KernelIoUring() override {
    if (initialized_) io_uring_queue_exit(&ring_);
  }

  // io_uring_queue_init; returns its result (0 or -errno).
  int Init(uint32_t entries, unsigned flags) {
    const int ret = io_uring_queue_init(entries, &ring_, flags);
    initialized_ = ret == 0;
    return ret;
  }

  uint32_t sq_entries() const override { return ring_.sq.ring_entries; }
  uint32_t cq_entries() const override { return ring_.cq.ring_entries; }

  absl::Status RegisterBuffer(void* base, size_t len) override {
    if (base == nullptr || len == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "io_uring buffer region base=%p len=%#x: must be non-empty", base,
          len));
    }
    if (buf_base_ != nullptr) {
      if (absl::Status s = UnregisterBuffer(); !s.ok()) return s;
    }
    std::vector<iovec> pieces;
    for (size_t off = 0; off < len; off += kMaxFixedBufferBytes) {
      const size_t n = std::min(kMaxFixedBufferBytes, len - off);
      pieces.push_back({static_cast<char*>(base) + off, n});
    }
    const int ret = io_uring_register_buffers(
        &ring_, pieces.data(), static_cast<unsigned>(pieces.size()));
    if (ret < 0) {
      return RingStatus(ret, absl::StrFormat(
                                 "io_uring_register_buffers(base=%p, len=%#x)",
                                 base, len));
    }
    buf_base_ = static_cast<std::byte*>(base);
    buf_len_ = len;
    return absl::OkStatus();
  }

  absl::Status UnregisterBuffer() override {
    if (buf_base_ == nullptr) return absl::OkStatus();
    const int ret = io_uring_unregister_buffers(&ring_);
    // Once asked, treat the region as gone either way: a request must never
    // name a buffer index the kernel may no longer hold.
    buf_base_ = nullptr;
    buf_len_ = 0;
    return ret < 0 ? RingStatus(ret, "io_uring_unregister_buffers")
                   : absl::OkStatus();
  }

  absl::StatusOr<int> RegisterFile(int fd) override {
    if (file_registered_) {
      io_uring_unregister_files(&ring_);
      file_registered_ = false;
    }
    const int ret = io_uring_register_files(&ring_, &fd, 1);
    if (ret < 0) {
      return RingStatus(ret,
                        absl::StrFormat("io_uring_register_files(fd=%d)", fd));
    }
    file_registered_ = true;
    return 0;
  }

  absl::Status RegisterEventFd(int fd) override {
    const int ret = io_uring_register_eventfd(&ring_, fd);
    if (ret < 0) {
      return RingStatus(
          ret, absl::StrFormat("io_uring_register_eventfd(fd=%d)", fd));
    }
    return absl::OkStatus();
  }

  bool Prepare(const IoRequest& r) override {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return false;
    auto* buf = static_cast<std::byte*>(r.buf);
    // A request outside the registered region would fail with EFAULT in the
    // kernel; sending it plain is always correct, only slower.
    // A request must also lie within one registered piece (a merged I/O
    // spanning two would be refused the same way).
    const bool fixed =
        r.fixed_buffer && buf_base_ != nullptr && r.len > 0 &&
        buf >= buf_base_ && buf + r.len <= buf_base_ + buf_len_ &&
        static_cast<size_t>(buf - buf_base_) / kMaxFixedBufferBytes ==
            static_cast<size_t>(buf + r.len - 1 - buf_base_) /
                kMaxFixedBufferBytes;
    if (fixed) {
      const int index =
          static_cast<int>(static_cast<size_t>(buf - buf_base_) /
                           kMaxFixedBufferBytes);
      if (r.op == IoOp::kRead) {
        io_uring_prep_read_fixed(sqe, r.fd, r.buf, r.len, r.offset, index);
      } else {
        io_uring_prep_write_fixed(sqe, r.fd, r.buf, r.len, r.offset, index);
      }
    } else if (r.op == IoOp::kRead) {
      io_uring_prep_read(sqe, r.fd, r.buf, r.len, r.offset);
    } else {
      io_uring_prep_write(sqe, r.fd, r.buf, r.len, r.offset);
    }
    if (r.fixed_file) io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
    io_uring_sqe_set_data64(sqe, r.user_data);
    return true;
  }

  int Submit(uint32_t* submitted) override {
    const int ret = io_uring_submit(&ring_);
    if (ret < 0) return ErrnoOf(ret);
    *submitted = static_cast<uint32_t>(ret);
    return 0;
  }

  size_t Reap(absl::Span<IoCompletion> out) override {
    size_t n = 0;
    unsigned seen = 0;
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      if (n == out.size()) break;
      ++seen;
      // Without IORING_FEAT_EXT_ARG (kernels before 5.11) liburing
      // implements a wait timeout with an internal timeout request; its
      // completion is liburing's, not ours.
      if (cqe->user_data == LIBURING_UDATA_TIMEOUT) continue;
      IoCompletion& c = out[n++];
      c.user_data = cqe->user_data;
      c.error = ErrnoOf(cqe->res);
      c.bytes = cqe->res > 0 ? static_cast<uint32_t>(cqe->res) : 0;
    }
    io_uring_cq_advance(&ring_, seen);
    return n;
  }

  uint32_t Ready() const override { return io_uring_cq_ready(&ring_); }

  int WaitForCompletion(absl::Duration timeout) override {
    const bool forever = timeout == absl::InfiniteDuration();
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      int ret;
      if (forever) {
        ret = io_uring_wait_cqe(&ring_, &cqe);
      } else {
        __kernel_timespec ts = ToKernelTimespec(deadline - absl::Now());
        ret = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
      }
      // A signal interrupts the wait, not the I/O: wait out the rest.
      if (ret == -EINTR) continue;
      return ErrnoOf(ret);
    }
  }

 private:
  io_uring ring_ = {};
  bool initialized_ = false;
  std::byte* buf_base_ = nullptr;  // registered region, or nullptr
  size_t buf_len_ = 0;             // bytes
  bool file_registered_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<IoUring>> CreateIoUring(uint32_t queue_depth) {
  if (queue_depth < 1 || queue_depth > kMaxQueueDepth) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "io_uring queue_depth=%d: must be in 1..%d", queue_depth,
        kMaxQueueDepth));
  }
  auto ring = std::make_unique<KernelIoUring>();
  // SUBMIT_ALL (5.18+): an entry that fails at submission does not stop the
  // ones after it, so one io_uring_enter takes the whole batch. Older
  // kernels refuse the flag with EINVAL; they stop at the failed entry and
  // the rest go with the next Submit, which is also correct.
  //
  // COOP_TASKRUN (5.19+): a read's completion runs as task work of the
  // thread that submitted it. Without the flag, the kernel interrupts that
  // thread with an IPI if it is running; with it, the work waits for the
  // thread's next entry into the kernel (a system call, an interrupt or
  // the scheduler tick), and a sleeping thread is still woken at once.
  // Service threads are always about to enter the kernel (they poll), so
  // the IPI only costs: measured here, the random-read median drops by
  // ~15 us when the faulting thread runs on another CPU than the disk's
  // interrupt (README, "Paging"). The price: reads an application thread
  // submits itself (Advise(kWillNeed)) complete once it next enters the
  // kernel, at worst a scheduler tick later.
  int ret = ring->Init(queue_depth,
                       IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN);
  if (ret == -EINVAL) ret = ring->Init(queue_depth, IORING_SETUP_SUBMIT_ALL);
  if (ret == -EINVAL) ret = ring->Init(queue_depth, 0);
  if (ret < 0) {
    return RingStatus(
        ret, absl::StrFormat("io_uring_queue_init(entries=%d)", queue_depth));
  }
  return std::unique_ptr<IoUring>(std::move(ring));
}

}  // namespace upager::internal::os
