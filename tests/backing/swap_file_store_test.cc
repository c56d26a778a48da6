// The swap file's own contract: option and path errors, O_DIRECT and its
// fallback, the file's life cycle, fixed buffers and files with their
// fallbacks, batching, and the kernel's bad days injected through
// FakeIoUring (short transfers, EIO, ENOSPC, refused submissions, late
// completions).
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backing/swap_file_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/os/io_uring.h"
#include "tests/backing/fake_io_uring.h"
#include "tests/backing/store_test_util.h"
#include "tests/test_support.h"
#include "upager/backing_store.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;
using internal::SwapFileStore;
using Request = BackingStore::Request;
using Op = BackingStore::Request::Op;
using IoOp = internal::os::IoOp;

// A store whose ring is a FakeIoUring; *fake stays valid while the store
// lives (the store owns it).
std::unique_ptr<SwapFileStore> OpenWithFake(SwapFileOptions o,
                                            FakeIoUring** fake,
                                            int refuse_file_registration = 0) {
  auto store = SwapFileStore::Open(
      o, [&](uint32_t depth)
             -> absl::StatusOr<std::unique_ptr<internal::os::IoUring>> {
        auto real = internal::os::CreateIoUring(depth);
        if (!real.ok()) return real.status();
        auto f = std::make_unique<FakeIoUring>(std::move(*real));
        if (refuse_file_registration != 0) {
          f->RefuseFileRegistration(refuse_file_registration);
        }
        *fake = f.get();
        return std::unique_ptr<internal::os::IoUring>(std::move(f));
      });
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

SwapFileOptions DiskOptions(const std::string& tag, uint64_t slots = 64) {
  return {.path = UniquePath(kDiskDir, tag), .capacity_bytes = slots * kPage};
}

std::vector<uint64_t> AllocateAll(BackingStore& store) {
  std::vector<uint64_t> slots;
  for (;;) {
    absl::StatusOr<uint64_t> s = store.AllocateSlot();
    if (!s.ok()) break;
    slots.push_back(*s);
  }
  return slots;
}

// Writes page i of `pool` (filled from `seed`) to slots[i], then reads
// every slot back into `readback` and compares.
void WriteAndCheck(BackingStore& store, const std::vector<uint64_t>& slots,
                   const AlignedPages& pool, const AlignedPages& readback,
                   uint64_t seed) {
  std::vector<Request> reqs;
  for (size_t i = 0; i < slots.size(); ++i) {
    FillPage(pool.page(i), seed + slots[i]);
    reqs.push_back({.op = Op::kWrite, .slot = slots[i], .buffer = pool.page(i),
                    .tag = i});
  }
  ASSERT_TRUE(RunBatchOk(store, reqs).ok());
  for (size_t i = 0; i < slots.size(); ++i) {
    std::memset(readback.page(i), 0, kPage);
    reqs[i] = {.op = Op::kRead, .slot = slots[i], .buffer = readback.page(i),
               .tag = i};
  }
  ASSERT_TRUE(RunBatchOk(store, reqs).ok());
  for (size_t i = 0; i < slots.size(); ++i) {
    ASSERT_EQ(std::memcmp(pool.page(i), readback.page(i), kPage), 0)
        << "slot " << slots[i];
  }
}

// --- Options and paths.

TEST(SwapFileStoreTest, BadOptionsAreInvalidArgumentNamingTheValue) {
  const std::string path = UniquePath(kDiskDir, "opts");
  // (capacity_bytes, queue_depth, path, what the message must name)
  struct Case {
    uint64_t capacity_bytes;
    uint32_t queue_depth;
    bool empty_path;
    const char* mentions;
    uint32_t max_merge_pages = 64;
  };
  const Case cases[] = {
      {0, 128, false, "capacity_bytes=0"},
      {kPage + 1, 128, false, "capacity_bytes=4097"},
      {kPage, 0, false, "queue_depth=0"},
      {kPage, 4097, false, "queue_depth=4097"},
      {kPage, 128, true, "path is empty"},
      {kPage, 128, false, "max_merge_pages=0", 0},
      {kPage, 128, false, "max_merge_pages=257", 257},
  };
  for (const Case& c : cases) {
    SwapFileOptions o;
    o.path = c.empty_path ? "" : path;
    o.capacity_bytes = c.capacity_bytes;
    o.queue_depth = c.queue_depth;
    o.max_merge_pages = c.max_merge_pages;
    absl::StatusOr<std::unique_ptr<BackingStore>> s = OpenSwapFile(o);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument)
        << c.mentions;
    EXPECT_THAT(s.status().message(), HasSubstr(c.mentions));
  }
  EXPECT_FALSE(FileExists(path));
  // The bounds themselves are accepted.
  EXPECT_TRUE(OpenSwapFile({.path = path, .capacity_bytes = kPage,
                            .queue_depth = 1}).ok());
  EXPECT_TRUE(OpenSwapFile({.path = path, .capacity_bytes = kPage,
                            .queue_depth = 4096}).ok());
  EXPECT_TRUE(OpenSwapFile({.path = path, .capacity_bytes = kPage,
                            .max_merge_pages = 1}).ok());
  EXPECT_TRUE(OpenSwapFile({.path = path, .capacity_bytes = kPage,
                            .max_merge_pages = 256}).ok());
}

TEST(SwapFileStoreTest, MissingDirectoryIsNotFoundNamingThePath) {
  const std::string path = "/var/tmp/upager-no-such-dir/sub/a.swap";
  absl::StatusOr<std::unique_ptr<BackingStore>> s =
      OpenSwapFile({.path = path, .capacity_bytes = kPage});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr(path));
}

TEST(SwapFileStoreTest, FileInsteadOfDirectoryNamesThePath) {
  const std::string file = UniquePath(kDiskDir, "plainfile");
  std::fclose(std::fopen(file.c_str(), "w"));
  const std::string path = file + "/a.swap";
  absl::StatusOr<std::unique_ptr<BackingStore>> s =
      OpenSwapFile({.path = path, .capacity_bytes = kPage});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr(path));
  unlink(file.c_str());
}

TEST(SwapFileStoreTest, UnwritableDirectoryIsPermissionDeniedNamingThePath) {
  std::string path;
  std::string dir;
  if (geteuid() == 0) {
    // Root passes every permission check on ordinary directories; sysfs
    // refuses to create files for anyone.
    path = "/sys/upager-test.swap";
  } else {
    dir = UniquePath(kDiskDir, "rodir");
    ASSERT_EQ(mkdir(dir.c_str(), 0500), 0);
    path = dir + "/a.swap";
  }
  absl::StatusOr<std::unique_ptr<BackingStore>> s =
      OpenSwapFile({.path = path, .capacity_bytes = kPage});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied)
      << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr(path));
  if (!dir.empty()) rmdir(dir.c_str());
}

TEST(SwapFileStoreTest, NoRoomIsReportedAtOpenAndLeavesNoFile) {
  // tmpfs checks a reservation against its size limit up front, so asking
  // for more than the whole file system fails fast without filling it.
  struct statvfs fs;
  ASSERT_EQ(statvfs(kShmDir, &fs), 0);
  const uint64_t too_big =
      (static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize / kPage + 262144) *
      kPage;
  const std::string path = UniquePath(kShmDir, "nospace");
  absl::StatusOr<std::unique_ptr<BackingStore>> s =
      OpenSwapFile({.path = path, .capacity_bytes = too_big});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted)
      << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr(path));
  EXPECT_FALSE(FileExists(path));
}

// --- O_DIRECT and the file's life cycle.

TEST(SwapFileStoreTest, DiskFileUsesDirectIo) {
  const SwapFileOptions o = DiskOptions("odirect");
  auto store = OpenSwapFile(o);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->stats().direct_io, DirectIoSupported(kDiskDir));
  if (!DirectIoSupported(kDiskDir)) {
    UPAGER_SKIP_MISSING_FEATURE("O_DIRECT on /var/tmp");
  }
  EXPECT_TRUE((*store)->stats().direct_io);
  EXPECT_TRUE((*store)->stats().registered_file);
  AlignedPages pool(64), readback(64);
  WriteAndCheck(**store, AllocateAll(**store), pool, readback, 1);
}

// The ring runs completions as the submitting thread's task work, with
// COOP_TASKRUN: no IPI interrupts that thread if it runs. A thread that
// submits and then computes without entering the kernel must still not
// hold its completions back from a thread waiting for them: the scheduler
// tick takes it into the kernel, which runs the work.
TEST(SwapFileStoreTest, CompletionsArriveWhileTheSubmitterComputes) {
  auto store = OpenSwapFile(DiskOptions("coop", 16));
  ASSERT_TRUE(store.ok()) << store.status();
  const std::vector<uint64_t> slots = AllocateAll(**store);
  AlignedPages pool(slots.size()), readback(slots.size());
  WriteAndCheck(**store, slots, pool, readback, 7);
  for (size_t i = 0; i < slots.size(); ++i) {
    std::memset(readback.page(i), 0, kPage);
  }
  std::atomic<bool> submitted{false}, stop{false};
  std::thread submitter([&] {
    std::vector<Request> reads;
    for (size_t i = 0; i < slots.size(); ++i) {
      reads.push_back({.op = Op::kRead, .slot = slots[i],
                       .buffer = readback.page(i), .tag = i});
    }
    ASSERT_TRUE((*store)->Submit(reads).ok());
    submitted = true;
    // User space only (the clock is the vDSO's), for at most 5 s.
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!stop.load(std::memory_order_relaxed) &&
           std::chrono::steady_clock::now() < end) {
    }
  });
  while (!submitted.load()) std::this_thread::yield();
  std::vector<BackingStore::Completion> done(slots.size());
  size_t got = 0;
  const auto start = std::chrono::steady_clock::now();
  while (got < slots.size() &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
    got += (*store)->Wait(absl::MakeSpan(done).subspan(got),
                          absl::Milliseconds(100));
  }
  const auto took = std::chrono::steady_clock::now() - start;
  stop = true;
  submitter.join();
  ASSERT_EQ(got, slots.size()) << "completions held back by a busy submitter";
  // A scheduler tick at most (4 ms at HZ=250), with room for a loaded host.
  EXPECT_LT(took, std::chrono::milliseconds(500));
  for (const BackingStore::Completion& c : done) {
    EXPECT_EQ(c.error, 0) << "tag " << c.tag;
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    ASSERT_EQ(std::memcmp(pool.page(i), readback.page(i), kPage), 0)
        << "slot " << slots[i];
  }
}

TEST(SwapFileStoreTest, DirectIoOffIsBuffered) {
  SwapFileOptions o = DiskOptions("buffered");
  o.direct_io = false;
  auto store = OpenSwapFile(o);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE((*store)->stats().direct_io);
  AlignedPages pool(64), readback(64);
  WriteAndCheck(**store, AllocateAll(**store), pool, readback, 2);
}

TEST(SwapFileStoreTest, ShmFileWorksWhateverTheKernelGrants) {
  // tmpfs refused O_DIRECT before Linux 6.6 and accepts it since: the store
  // reports what it got, and the bytes are right either way.
  auto store = OpenSwapFile({.path = UniquePath(kShmDir, "shm"),
                             .capacity_bytes = 64 * kPage});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->stats().direct_io, DirectIoSupported(kShmDir));
  AlignedPages pool(64), readback(64);
  WriteAndCheck(**store, AllocateAll(**store), pool, readback, 3);
}

// For the EXPECT_EXIT children, where gtest assertions cannot set the exit
// code: writes every slot from `pool`, reads them into `readback`, and
// returns whether the bytes match.
bool RoundTripInChild(BackingStore& store, const AlignedPages& pool,
                      const AlignedPages& readback) {
  const std::vector<uint64_t> slots = AllocateAll(store);
  std::vector<Request> reqs;
  for (size_t i = 0; i < slots.size() && i < pool.count(); ++i) {
    FillPage(pool.page(i), 77 + i);
    reqs.push_back({.op = Op::kWrite, .slot = slots[i], .buffer = pool.page(i),
                    .tag = i});
  }
  if (!RunBatchOk(store, reqs).ok()) return false;
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].op = Op::kRead;
    reqs[i].buffer = readback.page(i);
  }
  if (!RunBatchOk(store, reqs).ok()) return false;
  return std::memcmp(pool.data(), readback.data(),
                     reqs.size() * kPage) == 0;
}

// Runs in a child (EXPECT_EXIT): a private mount namespace with a ramfs,
// which refuses O_DIRECT (EINVAL at open) and has no fallocate.
void RamfsChild() {
  if (unshare(CLONE_NEWNS) != 0 ||
      mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    std::fprintf(stderr, "namespace: %s\n", std::strerror(errno));
    std::exit(2);
  }
  const std::string dir = UniquePath(kDiskDir, "ramfs");
  if (mkdir(dir.c_str(), 0700) != 0 ||
      mount("upager-test", dir.c_str(), "ramfs", 0, nullptr) != 0) {
    std::fprintf(stderr, "ramfs: %s\n", std::strerror(errno));
    std::exit(2);
  }
  int code = 0;
  {
    auto store =
        OpenSwapFile({.path = dir + "/a.swap", .capacity_bytes = 16 * kPage});
    if (!store.ok()) {
      std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
      std::exit(3);
    }
    if ((*store)->stats().direct_io) code = 4;
    AlignedPages pool(16), readback(16);
    if (!RoundTripInChild(**store, pool, readback)) code = 5;
  }
  // Lazily: the kernel drops the ring's reference to the registered file
  // asynchronously after the ring is torn down, so the mount can still be
  // busy for a moment.
  if (umount2(dir.c_str(), MNT_DETACH) != 0 || rmdir(dir.c_str()) != 0) {
    std::fprintf(stderr, "cleanup of %s: %s\n", dir.c_str(),
                 std::strerror(errno));
    code = 8;
  }
  std::exit(code);
}

// Whether this process may create a mount namespace whose mounts stay
// private (a chroot, for one, has no root mount to make private); probed in
// a child so the test process itself is untouched.
bool PrivateMountNamespaceWorks() {
  const pid_t pid = fork();
  if (pid == 0) {
    _exit(unshare(CLONE_NEWNS) == 0 &&
                  mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) ==
                      0
              ? 0
              : 1);
  }
  int status = 0;
  return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
}

TEST(SwapFileStoreTest, FileSystemWithoutDirectIoFallsBackToBuffered) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting a ramfs needs root";
  if (!PrivateMountNamespaceWorks()) {
    GTEST_SKIP() << "cannot make a private mount namespace here (no root "
                    "mount, e.g. a chroot): the ramfs would leak";
  }
  EXPECT_EXIT(RamfsChild(), ::testing::ExitedWithCode(0), "");
}

// The descriptor of this process's open file that was at `path` before it
// was removed ("<path> (deleted)" in /proc/self/fd), or -1.
int OpenDeletedFile(const std::string& path) {
  for (int fd = 0; fd < 4096; ++fd) {
    char link[64], target[4096];
    std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    const ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = 0;
    if (std::string(target) == path + " (deleted)") return fd;
  }
  return -1;
}

TEST(SwapFileStoreTest, FileIsRemovedAsSoonAsItIsOpenByDefault) {
  const SwapFileOptions o = DiskOptions("unlink");
  {
    auto store = OpenSwapFile(o);
    ASSERT_TRUE(store.ok()) << store.status();
    // Gone from the directory: a killed process leaves nothing behind.
    EXPECT_FALSE(FileExists(o.path));
    // Still open, sized, private, and working.
    const int fd = OpenDeletedFile(o.path);
    ASSERT_GE(fd, 0) << "no open descriptor for " << o.path;
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), o.capacity_bytes);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    AlignedPages pool(64), readback(64);
    WriteAndCheck(**store, AllocateAll(**store), pool, readback, 9);
    // A new file at the same path is not the store's to remove.
    const int other = open(o.path.c_str(), O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(other, 0);
    close(other);
  }
  EXPECT_TRUE(FileExists(o.path)) << "the store removed a file not its own";
  EXPECT_EQ(unlink(o.path.c_str()), 0);
}

TEST(SwapFileStoreTest, FileIsKeptWhenAskedAndEmptiedWhenReopened) {
  SwapFileOptions o = DiskOptions("keep");
  o.unlink_on_close = false;
  AlignedPages pool(1);
  {
    auto store = OpenSwapFile(o);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->AllocateSlot().ok());
    FillPage(pool.page(0), 5);
    ASSERT_TRUE(RunBatchOk(**store, {{.op = Op::kWrite, .slot = 0,
                                      .buffer = pool.page(0)}}).ok());
  }
  ASSERT_TRUE(FileExists(o.path));
  // An existing, longer file is cut to the new capacity.
  ASSERT_EQ(truncate(o.path.c_str(), 3 * o.capacity_bytes), 0);
  o.capacity_bytes = 8 * kPage;
  o.unlink_on_close = true;
  {
    auto store = OpenSwapFile(o);
    ASSERT_TRUE(store.ok()) << store.status();
    struct stat st;
    ASSERT_EQ(fstat(OpenDeletedFile(o.path), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), o.capacity_bytes);
    // What the earlier store wrote is gone: a slot never written by this
    // store reads as zeros.
    ASSERT_TRUE((*store)->AllocateSlot().ok());
    std::memset(pool.page(0), 0xff, kPage);
    ASSERT_TRUE(RunBatchOk(**store, {{.op = Op::kRead, .slot = 0,
                                      .buffer = pool.page(0)}}).ok());
    const std::vector<std::byte> zeros(kPage);
    EXPECT_EQ(std::memcmp(pool.page(0), zeros.data(), kPage), 0);
  }
  EXPECT_FALSE(FileExists(o.path));
}

// --- Registered buffers and files.

TEST(SwapFileStoreTest, FixedAndPlainBuffersCarryTheSameBytes) {
  auto store = OpenSwapFile(DiskOptions("fixedplain"));
  ASSERT_TRUE(store.ok()) << store.status();
  AlignedPages registered(64), plain(64);
  ASSERT_TRUE((*store)->RegisterBuffers(registered.data(),
                                        registered.bytes()).ok());
  if (!(*store)->stats().registered_buffers) {
    UPAGER_SKIP_MISSING_FEATURE("io_uring_register_buffers (RLIMIT_MEMLOCK?)");
  }
  const std::vector<uint64_t> slots = AllocateAll(**store);
  // Written from fixed buffers, read into plain ones; then the reverse.
  WriteAndCheck(**store, slots, registered, plain, 10);
  WriteAndCheck(**store, slots, plain, registered, 11);
}

// Runs in a child (EXPECT_EXIT): without CAP_IPC_LOCK and with a 64 KiB
// RLIMIT_MEMLOCK, the kernel refuses to pin a 1 MiB buffer region.
void MemlockChild() {
  // Root bypasses the limit through CAP_IPC_LOCK: drop it from the
  // effective set (the ring checks it when it is created).
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2] = {};
  if (syscall(SYS_capget, &header, caps) != 0) std::exit(2);
  caps[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
  if (syscall(SYS_capset, &header, caps) != 0) std::exit(2);
  const rlimit limit = {64 << 10, 64 << 10};
  if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) std::exit(2);
  int code = 0;
  {
    auto store = OpenSwapFile(DiskOptions("memlock", 256));
    if (!store.ok()) std::exit(3);
    AlignedPages pool(256), readback(256);
    if (!(*store)->RegisterBuffers(pool.data(), pool.bytes()).ok()) code = 4;
    if ((*store)->stats().registered_buffers) code = 5;
    if (!RoundTripInChild(**store, pool, readback)) code = 6;
  }
  std::exit(code);
}

TEST(SwapFileStoreTest, MemlockLimitFallsBackToPlainBuffers) {
  EXPECT_EXIT(MemlockChild(), ::testing::ExitedWithCode(0), "");
}

TEST(SwapFileStoreTest, RefusedBufferRegistrationFallsBackToPlainBuffers) {
  FakeIoUring* fake = nullptr;
  auto store = OpenWithFake(DiskOptions("nofixed"), &fake);
  ASSERT_NE(store, nullptr);
  fake->RefuseBufferRegistration(ENOMEM);
  AlignedPages pool(64), readback(64);
  EXPECT_TRUE(store->RegisterBuffers(pool.data(), pool.bytes()).ok());
  EXPECT_FALSE(store->stats().registered_buffers);
  WriteAndCheck(*store, AllocateAll(*store), pool, readback, 12);
}

TEST(SwapFileStoreTest, RefusedFileRegistrationFallsBackToTheDescriptor) {
  FakeIoUring* fake = nullptr;
  auto store = OpenWithFake(DiskOptions("nofile"), &fake, EBADF);
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->stats().registered_file);
  AlignedPages pool(64), readback(64);
  WriteAndCheck(*store, AllocateAll(*store), pool, readback, 13);
}

// --- Batching.

TEST(SwapFileStoreTest, OneSubmitPerBatchThatFits) {
  FakeIoUring* fake = nullptr;
  SwapFileOptions o = DiskOptions("batch", 64);
  o.queue_depth = 64;
  auto store = OpenWithFake(o, &fake);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(64);
  const std::vector<uint64_t> slots = AllocateAll(*store);
  std::vector<Request> reqs;
  for (size_t i = 0; i < slots.size(); ++i) {
    reqs.push_back({.op = Op::kWrite, .slot = slots[i], .buffer = pool.page(i),
                    .tag = i});
  }
  ASSERT_TRUE(store->Submit(reqs).ok());
  EXPECT_EQ(store->stats().submits, 1u);
  EXPECT_EQ(fake->submits(), 1);
  std::vector<BackingStore::Completion> out(64);
  size_t got = 0;
  while (got < 64) {
    const size_t n = store->Wait(absl::MakeSpan(out), absl::Seconds(10));
    ASSERT_GT(n, 0u);
    got += n;
  }
}

TEST(SwapFileStoreTest, BatchMuchLargerThanTheRingCompletes) {
  SwapFileOptions o = DiskOptions("bigbatch", 512);
  o.queue_depth = 4;  // 4 submission entries, at most 8 in flight
  o.max_merge_pages = 1;  // one entry per page: 512 of them
  auto store = OpenSwapFile(o);
  ASSERT_TRUE(store.ok()) << store.status();
  AlignedPages pool(512), readback(512);
  WriteAndCheck(**store, AllocateAll(**store), pool, readback, 14);
  EXPECT_GE((*store)->stats().submits, 512u / 4);
}

TEST(SwapFileStoreTest, ConsecutiveSlotsAndBuffersShareOneIo) {
  FakeIoUring* fake = nullptr;
  auto store = OpenWithFake(DiskOptions("merge", 64), &fake);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(64), readback(64);
  const std::vector<uint64_t> slots = AllocateAll(*store);
  // 64 consecutive slots from 64 consecutive pages: one write, one read.
  WriteAndCheck(*store, slots, pool, readback, 21);
  EXPECT_EQ(fake->prepared(), 2);
  BackingStoreStats st = store->stats();
  EXPECT_EQ(st.writes, 64u);  // still counted, and completed, per page
  EXPECT_EQ(st.reads, 64u);
  // Slots in reverse order break every run: one I/O per page.
  std::vector<uint64_t> reversed(slots.rbegin(), slots.rend());
  WriteAndCheck(*store, reversed, pool, readback, 22);
  EXPECT_EQ(fake->prepared(), 2 + 2 * 64);
}

TEST(SwapFileStoreTest, MergedIoIsCappedAtMaxMergePages) {
  FakeIoUring* fake = nullptr;
  SwapFileOptions o = DiskOptions("mergecap", 64);
  o.max_merge_pages = 16;
  auto store = OpenWithFake(o, &fake);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(64), readback(64);
  WriteAndCheck(*store, AllocateAll(*store), pool, readback, 23);
  EXPECT_EQ(fake->prepared(), 2 * 64 / 16);
}

TEST(SwapFileStoreTest, ShortTransfersOfMergedIoCompleteEveryPage) {
  FakeIoUring* fake = nullptr;
  auto store = OpenWithFake(DiskOptions("mergeshort"), &fake);
  ASSERT_NE(store, nullptr);
  // Each I/O moves about half its bytes: a merged one ends mid-way
  // through its ops, whose rest goes again page by page.
  fake->ShortenEvery(1);
  AlignedPages pool(64), readback(64);
  WriteAndCheck(*store, AllocateAll(*store), pool, readback, 24);
  const BackingStoreStats st = store->stats();
  EXPECT_GT(st.short_transfers, 0u);
  EXPECT_EQ(st.writes, 64u);
  EXPECT_EQ(st.reads, 64u);
  EXPECT_EQ(st.write_errors + st.read_errors, 0u);
}

TEST(SwapFileStoreTest, FailedMergedIoIsRetriedPageByPage) {
  FakeIoUring* fake = nullptr;
  auto store = OpenWithFake(DiskOptions("mergefail", 8), &fake);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(8), readback(8);
  const std::vector<uint64_t> slots = AllocateAll(*store);
  auto writes = [&](uint64_t seed) {
    std::vector<Request> reqs;
    for (size_t i = 0; i < slots.size(); ++i) {
      FillPage(pool.page(i), seed + i);
      reqs.push_back({.op = Op::kWrite, .slot = slots[i],
                      .buffer = pool.page(i), .tag = i});
    }
    return reqs;
  };
  // The merged write fails once: every page is retried alone and lands.
  fake->FailNext(IoOp::kWrite, 1, EIO);
  ASSERT_TRUE(RunBatchOk(*store, writes(30)).ok());
  EXPECT_EQ(store->stats().write_errors, 0u);
  // The merged write and the first page's retry fail: only that page
  // reports the error.
  fake->FailNext(IoOp::kWrite, 2, EIO);
  absl::flat_hash_map<uint64_t, int> errors;
  ASSERT_TRUE(RunBatch(*store, writes(40), &errors).ok());
  for (size_t i = 0; i < slots.size(); ++i) {
    EXPECT_EQ(errors[i], i == 0 ? EIO : 0) << "page " << i;
  }
  EXPECT_EQ(store->stats().write_errors, 1u);
  EXPECT_EQ(store->stats().writes, 8u + 7u);
  // The pages that were written read back (the failed one is not read:
  // its slot may hold anything).
  std::vector<Request> reads;
  for (size_t i = 1; i < slots.size(); ++i) {
    reads.push_back({.op = Op::kRead, .slot = slots[i],
                     .buffer = readback.page(i), .tag = i});
  }
  ASSERT_TRUE(RunBatchOk(*store, reads).ok());
  for (size_t i = 1; i < slots.size(); ++i) {
    EXPECT_EQ(std::memcmp(pool.page(i), readback.page(i), kPage), 0)
        << "page " << i;
  }
}

TEST(SwapFileStoreTest, ReadsOvertakeQueuedWrites) {
  FakeIoUring* fake = nullptr;
  SwapFileOptions o = DiskOptions("priority", 16);
  o.queue_depth = 4;      // at most 8 entries in the ring, 6 of them writes
  o.max_merge_pages = 1;  // one entry per page
  auto store = OpenWithFake(o, &fake);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(16);
  const std::vector<uint64_t> slots = AllocateAll(*store);
  // Slot 15 holds a page to read back.
  FillPage(pool.page(15), 50);
  ASSERT_TRUE(RunBatchOk(*store, {{.op = Op::kWrite, .slot = slots[15],
                                   .buffer = pool.page(15), .tag = 15}})
                  .ok());
  fake->HoldCompletions();
  std::vector<Request> writes;
  for (size_t i = 0; i < 15; ++i) {
    writes.push_back({.op = Op::kWrite, .slot = slots[i],
                      .buffer = pool.page(i), .tag = i});
  }
  ASSERT_TRUE(store->Submit(writes).ok());
  AlignedPages readback(1);
  ASSERT_TRUE(store->Submit({{.op = Op::kRead, .slot = slots[15],
                              .buffer = readback.page(0), .tag = 100}})
                  .ok());
  fake->ReleaseCompletions();
  // The read went into the ring beside the first writes, not behind all
  // fifteen: it completes among the first entries.
  std::vector<uint64_t> order;
  std::vector<BackingStore::Completion> out(16);
  while (order.size() < 16) {
    const size_t n = store->Wait(absl::MakeSpan(out), absl::Seconds(10));
    ASSERT_GT(n, 0u);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(out[i].error, 0);
      order.push_back(out[i].tag);
    }
  }
  const auto at = std::find(order.begin(), order.end(), 100u) - order.begin();
  EXPECT_LT(at, 8) << "the read completed after " << at << " writes";
  EXPECT_EQ(std::memcmp(pool.page(15), readback.page(0), kPage), 0);
}

// --- Injected kernel behavior.

TEST(SwapFileStoreTest, ShortReadsAndWritesAreRequeuedUntilWhole) {
  FakeIoUring* fake = nullptr;
  SwapFileOptions o = DiskOptions("short");
  o.max_merge_pages = 1;  // page by page: the count below is exact
  auto store = OpenWithFake(o, &fake);
  ASSERT_NE(store, nullptr);
  fake->ShortenEvery(1);  // every transfer: 4096 -> 2048 -> 1024 -> 512 -> 512
  AlignedPages pool(64), readback(64);
  WriteAndCheck(*store, AllocateAll(*store), pool, readback, 15);
  const BackingStoreStats st = store->stats();
  EXPECT_EQ(st.short_transfers, 2u * 64 * 3);
  EXPECT_EQ(st.writes, 64u);
  EXPECT_EQ(st.reads, 64u);
  EXPECT_GT(fake->shortened(), 0);
}

TEST(SwapFileStoreTest, ErrorsReachTheCompletionAndAreCounted) {
  FakeIoUring* fake = nullptr;
  auto store = OpenWithFake(DiskOptions("errors"), &fake);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(4);
  const std::vector<uint64_t> slots = AllocateAll(*store);
  auto one = [&](Op op, uint64_t tag) {
    absl::flat_hash_map<uint64_t, int> errors;
    const Request r{.op = op, .slot = slots[tag], .buffer = pool.page(0),
                    .tag = tag};
    EXPECT_TRUE(RunBatch(*store, {r}, &errors).ok());
    return errors[tag];
  };
  fake->FailNext(IoOp::kWrite, 1, ENOSPC);
  EXPECT_EQ(one(Op::kWrite, 0), ENOSPC);
  fake->FailNext(IoOp::kRead, 1, EIO);
  EXPECT_EQ(one(Op::kRead, 1), EIO);
  // A transfer that moves no bytes would be requeued forever; it is EIO.
  fake->FailNext(IoOp::kRead, 1, 0);
  EXPECT_EQ(one(Op::kRead, 2), EIO);
  // The store keeps working.
  EXPECT_EQ(one(Op::kWrite, 3), 0);
  EXPECT_EQ(one(Op::kRead, 3), 0);
  const BackingStoreStats st = store->stats();
  EXPECT_EQ(st.write_errors, 1u);
  EXPECT_EQ(st.read_errors, 2u);
  EXPECT_EQ(st.writes, 1u);
  EXPECT_EQ(st.reads, 1u);
}

TEST(SwapFileStoreTest, TransientlyRefusedSubmissionIsRetried) {
  FakeIoUring* fake = nullptr;
  auto store = OpenWithFake(DiskOptions("eagain"), &fake);
  ASSERT_NE(store, nullptr);
  fake->RefuseSubmits(3, EAGAIN);
  AlignedPages pool(64), readback(64);
  WriteAndCheck(*store, AllocateAll(*store), pool, readback, 16);
}

TEST(SwapFileStoreTest, LateCompletionsArriveAfterAWaitTimesOut) {
  FakeIoUring* fake = nullptr;
  auto store = OpenWithFake(DiskOptions("slow"), &fake);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(1);
  absl::StatusOr<uint64_t> slot = store->AllocateSlot();
  ASSERT_TRUE(slot.ok());
  fake->HoldCompletions();
  ASSERT_TRUE(store->Submit({{.op = Op::kWrite, .slot = *slot,
                              .buffer = pool.page(0), .tag = 99}}).ok());
  std::vector<BackingStore::Completion> out(4);
  const absl::Time start = absl::Now();
  EXPECT_EQ(store->Wait(absl::MakeSpan(out), absl::Milliseconds(30)), 0u);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(30));
  EXPECT_EQ(store->Reap(absl::MakeSpan(out)), 0u);
  fake->ReleaseCompletions();
  pollfd p = {store->completion_fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 10'000), 1);
  ASSERT_EQ(store->Wait(absl::MakeSpan(out), absl::Seconds(10)), 1u);
  EXPECT_EQ(out[0].tag, 99u);
  EXPECT_EQ(out[0].error, 0);
}

TEST(SwapFileStoreTest, DestroyingWithRequestsInFlightWaitsForThem) {
  const SwapFileOptions o = DiskOptions("inflight", 256);
  AlignedPages pool(256);
  {
    auto store = OpenSwapFile(o);
    ASSERT_TRUE(store.ok()) << store.status();
    const std::vector<uint64_t> slots = AllocateAll(**store);
    std::vector<Request> reqs;
    for (size_t i = 0; i < slots.size(); ++i) {
      reqs.push_back({.op = Op::kWrite, .slot = slots[i],
                      .buffer = pool.page(i), .tag = i});
    }
    ASSERT_TRUE((*store)->Submit(reqs).ok());
  }
  EXPECT_FALSE(FileExists(o.path));
}

}  // namespace
}  // namespace upager::testing
