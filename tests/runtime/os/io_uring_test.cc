// The io_uring wrapper against the real kernel: queue limits, plain and
// fixed (buffer, file) reads and writes, reaping in pieces, the eventfd,
// timeouts, and errors decoded as positive errnos.
#include "runtime/os/io_uring.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "runtime/os/file.h"

namespace upager::internal::os {
namespace {

constexpr size_t kPage = 4096;

std::string TempPath(const char* tag) {
  static std::atomic<int> n{0};
  return absl::StrCat("/var/tmp/upager-iouring-test-", getpid(), "-", n++, "-",
                      tag);
}

// A page-aligned buffer of `pages` pages.
struct Pages {
  explicit Pages(size_t pages)
      : p(static_cast<std::byte*>(std::aligned_alloc(kPage, pages * kPage))),
        n(pages) {
    std::memset(p, 0, pages * kPage);
  }
  ~Pages() { std::free(p); }
  std::byte* page(size_t i) const { return p + i * kPage; }
  std::byte* p;
  size_t n;
};

// A scratch O_DIRECT file of `pages` pages, removed at the end.
class ScratchFile {
 public:
  explicit ScratchFile(size_t pages) : path_(TempPath("file")) {
    absl::StatusOr<File> f = File::Open(path_, {.direct_io = true});
    EXPECT_TRUE(f.ok()) << f.status();
    file_ = std::make_unique<File>(std::move(*f));
    EXPECT_TRUE(file_->SetSize(pages * kPage).ok());
  }
  ~ScratchFile() { (void)UnlinkFile(path_); }
  int fd() const { return file_->fd(); }

 private:
  std::string path_;
  std::unique_ptr<File> file_;
};

// Waits for and reaps exactly `n` completions.
std::vector<IoCompletion> ReapN(IoUring& ring, size_t n) {
  std::vector<IoCompletion> all;
  std::vector<IoCompletion> out(n);
  while (all.size() < n) {
    if (ring.Ready() == 0) {
      EXPECT_EQ(ring.WaitForCompletion(absl::Seconds(10)), 0);
    }
    const size_t got = ring.Reap(absl::MakeSpan(out).first(n - all.size()));
    all.insert(all.end(), out.begin(), out.begin() + got);
  }
  return all;
}

TEST(IoUringTest, QueueDepthOutOfRangeIsInvalidArgument) {
  for (uint32_t depth : {0u, 4097u}) {
    absl::StatusOr<std::unique_ptr<IoUring>> r = CreateIoUring(depth);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(absl::StrCat("queue_depth=", depth)),
              std::string::npos);
  }
}

TEST(IoUringTest, PrepareReportsAFullQueueAndSubmitEmptiesIt) {
  auto ring = CreateIoUring(4);
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ((*ring)->sq_entries(), 4u);
  EXPECT_EQ((*ring)->cq_entries(), 8u);
  ScratchFile file(8);
  Pages buf(8);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_TRUE((*ring)->Prepare({.op = IoOp::kRead, .fd = file.fd(),
                                  .buf = buf.page(i), .len = kPage,
                                  .offset = i * kPage, .user_data = i}));
  }
  EXPECT_FALSE((*ring)->Prepare({.op = IoOp::kRead, .fd = file.fd(),
                                 .buf = buf.page(4), .len = kPage,
                                 .offset = 4 * kPage, .user_data = 4}));
  uint32_t submitted = 0;
  ASSERT_EQ((*ring)->Submit(&submitted), 0);
  EXPECT_EQ(submitted, 4u);
  EXPECT_TRUE((*ring)->Prepare({.op = IoOp::kRead, .fd = file.fd(),
                                .buf = buf.page(4), .len = kPage,
                                .offset = 4 * kPage, .user_data = 4}));
  ASSERT_EQ((*ring)->Submit(&submitted), 0);
  EXPECT_EQ(submitted, 1u);
  for (const IoCompletion& c : ReapN(**ring, 5)) {
    EXPECT_EQ(c.error, 0);
    EXPECT_EQ(c.bytes, kPage);
  }
}

TEST(IoUringTest, FixedBuffersAndFileMoveTheSameBytesAsPlainOnes) {
  auto ring = CreateIoUring(16);
  ASSERT_TRUE(ring.ok()) << ring.status();
  ScratchFile file(8);
  Pages plain(8), fixed(8);
  ASSERT_TRUE((*ring)->RegisterBuffer(fixed.p, 8 * kPage).ok());
  absl::StatusOr<int> index = (*ring)->RegisterFile(file.fd());
  ASSERT_TRUE(index.ok()) << index.status();
  for (size_t i = 0; i < 8 * kPage; ++i) {
    plain.p[i] = static_cast<std::byte>(i * 7 + 3);
  }
  // Plain writes through the descriptor...
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE((*ring)->Prepare({.op = IoOp::kWrite, .fd = file.fd(),
                                  .buf = plain.page(i), .len = kPage,
                                  .offset = i * kPage, .user_data = i}));
  }
  uint32_t submitted = 0;
  ASSERT_EQ((*ring)->Submit(&submitted), 0);
  for (const IoCompletion& c : ReapN(**ring, 8)) ASSERT_EQ(c.error, 0);
  // ...read back with fixed buffers through the registered file.
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE((*ring)->Prepare({.op = IoOp::kRead, .fd = *index,
                                  .fixed_file = true, .fixed_buffer = true,
                                  .buf = fixed.page(i), .len = kPage,
                                  .offset = i * kPage, .user_data = 100 + i}));
  }
  ASSERT_EQ((*ring)->Submit(&submitted), 0);
  for (const IoCompletion& c : ReapN(**ring, 8)) {
    EXPECT_GE(c.user_data, 100u);
    EXPECT_EQ(c.error, 0);
    EXPECT_EQ(c.bytes, kPage);
  }
  EXPECT_EQ(std::memcmp(plain.p, fixed.p, 8 * kPage), 0);
  EXPECT_TRUE((*ring)->UnregisterBuffer().ok());
  EXPECT_TRUE((*ring)->UnregisterBuffer().ok());  // no-op the second time
}

TEST(IoUringTest, ReapTakesWhatFitsAndLeavesTheRest) {
  auto ring = CreateIoUring(8);
  ASSERT_TRUE(ring.ok()) << ring.status();
  ScratchFile file(8);
  Pages buf(8);
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE((*ring)->Prepare({.op = IoOp::kRead, .fd = file.fd(),
                                  .buf = buf.page(i), .len = kPage,
                                  .offset = i * kPage, .user_data = i}));
  }
  uint32_t submitted = 0;
  ASSERT_EQ((*ring)->Submit(&submitted), 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*ring)->Ready() < 8 && absl::Now() < deadline) {
    (void)(*ring)->WaitForCompletion(absl::Milliseconds(10));
  }
  ASSERT_EQ((*ring)->Ready(), 8u);
  std::vector<IoCompletion> out(3);
  EXPECT_EQ((*ring)->Reap(absl::MakeSpan(out)), 3u);
  EXPECT_EQ((*ring)->Ready(), 5u);
  out.resize(16);
  EXPECT_EQ((*ring)->Reap(absl::MakeSpan(out)), 5u);
  EXPECT_EQ((*ring)->Ready(), 0u);
  EXPECT_EQ((*ring)->Reap(absl::MakeSpan(out)), 0u);
}

TEST(IoUringTest, WaitTimesOutWithEtime) {
  auto ring = CreateIoUring(4);
  ASSERT_TRUE(ring.ok()) << ring.status();
  const absl::Time start = absl::Now();
  EXPECT_EQ((*ring)->WaitForCompletion(absl::Milliseconds(20)), ETIME);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(15));
}

TEST(IoUringTest, RegisteredEventFdIsSignalledByACompletion) {
  auto ring = CreateIoUring(4);
  ASSERT_TRUE(ring.ok()) << ring.status();
  const int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(efd, 0);
  ASSERT_TRUE((*ring)->RegisterEventFd(efd).ok());
  ScratchFile file(1);
  Pages buf(1);
  ASSERT_TRUE((*ring)->Prepare({.op = IoOp::kRead, .fd = file.fd(),
                                .buf = buf.page(0), .len = kPage,
                                .offset = 0, .user_data = 1}));
  uint32_t submitted = 0;
  ASSERT_EQ((*ring)->Submit(&submitted), 0);
  pollfd p = {efd, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 10'000), 1);
  EXPECT_EQ(ReapN(**ring, 1)[0].user_data, 1u);
  close(efd);
}

TEST(IoUringTest, FailedRequestsCarryAPositiveErrno) {
  auto ring = CreateIoUring(4);
  ASSERT_TRUE(ring.ok()) << ring.status();
  const std::string path = TempPath("ro");
  const int fd = open(path.c_str(), O_RDONLY | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  Pages buf(1);
  // Writing through a read-only descriptor: EBADF.
  ASSERT_TRUE((*ring)->Prepare({.op = IoOp::kWrite, .fd = fd,
                                .buf = buf.page(0), .len = kPage,
                                .offset = 0, .user_data = 7}));
  uint32_t submitted = 0;
  ASSERT_EQ((*ring)->Submit(&submitted), 0);
  const IoCompletion c = ReapN(**ring, 1)[0];
  EXPECT_EQ(c.user_data, 7u);
  EXPECT_EQ(c.error, EBADF);
  EXPECT_EQ(c.bytes, 0u);
  close(fd);
  unlink(path.c_str());
}

TEST(IoUringTest, ShortReadAtTheEndOfTheFileReportsTheBytesMoved) {
  auto ring = CreateIoUring(4);
  ASSERT_TRUE(ring.ok()) << ring.status();
  const std::string path = TempPath("short");
  absl::StatusOr<File> f = File::Open(path, {});
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->SetSize(1000).ok());
  Pages buf(1);
  ASSERT_TRUE((*ring)->Prepare({.op = IoOp::kRead, .fd = f->fd(),
                                .buf = buf.page(0), .len = kPage,
                                .offset = 0, .user_data = 1}));
  uint32_t submitted = 0;
  ASSERT_EQ((*ring)->Submit(&submitted), 0);
  const IoCompletion c = ReapN(**ring, 1)[0];
  EXPECT_EQ(c.error, 0);
  EXPECT_EQ(c.bytes, 1000u);
  (void)UnlinkFile(path);
}

TEST(IoUringTest, RegisterBufferRejectsAnEmptyRegion) {
  auto ring = CreateIoUring(4);
  ASSERT_TRUE(ring.ok()) << ring.status();
  Pages buf(1);
  EXPECT_EQ((*ring)->RegisterBuffer(nullptr, kPage).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*ring)->RegisterBuffer(buf.p, 0).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace upager::internal::os
