// os::File against the real file system: create vs open, O_DIRECT, sizing
// (grow, shrink, reserve), and statuses that name the path.
#include "runtime/os/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace upager::internal::os {
namespace {

std::string TempPath(const char* tag) {
  static std::atomic<int> n{0};
  return absl::StrCat("/var/tmp/upager-file-test-", getpid(), "-", n++, "-",
                      tag);
}

bool Contains(const absl::Status& s, const std::string& what) {
  return s.message().find(what) != absl::string_view::npos;
}

TEST(FileTest, CreatesOnceThenOpensTheExistingFile) {
  const std::string path = TempPath("create");
  {
    absl::StatusOr<File> f = File::Open(path, {});
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_TRUE(f->created());
    EXPECT_FALSE(f->direct_io());
    EXPECT_EQ(f->path(), path);
    struct stat st;
    ASSERT_EQ(fstat(f->fd(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  absl::StatusOr<File> again = File::Open(path, {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created());
  EXPECT_TRUE(again->Close().ok());
  EXPECT_EQ(again->fd(), -1);
  EXPECT_TRUE(again->Close().ok());  // closing twice is harmless
  EXPECT_TRUE(UnlinkFile(path).ok());
}

TEST(FileTest, DirectIoOnADiskFileSystem) {
  const std::string path = TempPath("direct");
  absl::StatusOr<File> f = File::Open(path, {.direct_io = true});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->direct_io());
  EXPECT_NE(fcntl(f->fd(), F_GETFL) & O_DIRECT, 0);
  EXPECT_TRUE(UnlinkFile(path).ok());
}

TEST(FileTest, SetSizeGrowsReservesAndShrinks) {
  const std::string path = TempPath("size");
  absl::StatusOr<File> f = File::Open(path, {});
  ASSERT_TRUE(f.ok()) << f.status();
  bool allocated = false;
  ASSERT_TRUE(f->SetSize(1 << 20, &allocated).ok());
  EXPECT_TRUE(allocated);  // ext4 has fallocate
  EXPECT_EQ(*f->Size(), 1u << 20);
  struct stat st;
  ASSERT_EQ(fstat(f->fd(), &st), 0);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, 1u << 20);
  ASSERT_TRUE(f->SetSize(8192).ok());
  EXPECT_EQ(*f->Size(), 8192u);
  EXPECT_TRUE(UnlinkFile(path).ok());
}

TEST(FileTest, ErrorsNameThePath) {
  const std::string missing = "/var/tmp/upager-no-such-dir/x";
  absl::StatusOr<File> f = File::Open(missing, {});
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(f.status(), missing)) << f.status();
  EXPECT_TRUE(Contains(f.status(), "O_CREAT")) << f.status();

  f = File::Open(TempPath("absent"), {.create = false});
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);

  EXPECT_EQ(File::Open("", {}).status().code(),
            absl::StatusCode::kInvalidArgument);

  const std::string gone = TempPath("gone");
  absl::Status s = UnlinkFile(gone);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(s, gone)) << s;
}

TEST(FileTest, MoveKeepsOneOwner) {
  const std::string path = TempPath("move");
  absl::StatusOr<File> f = File::Open(path, {});
  ASSERT_TRUE(f.ok()) << f.status();
  const int fd = f->fd();
  File moved = std::move(*f);
  EXPECT_EQ(moved.fd(), fd);
  EXPECT_EQ(f->fd(), -1);  // NOLINT(bugprone-use-after-move): checked on purpose
  File assigned = std::move(moved);
  EXPECT_EQ(assigned.fd(), fd);
  EXPECT_TRUE(UnlinkFile(path).ok());
}

TEST(FileTest, ReadOnlyReadAtTruncateSyncRename) {
  const std::string path = TempPath("rw");
  const std::string renamed = TempPath("renamed");
  {
    absl::StatusOr<File> f = File::Open(path, {});
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_EQ(pwrite(f->fd(), "hello", 5, 0), 5);
    // Truncate grows sparse (no blocks reserved) and shrinks.
    ASSERT_TRUE(f->Truncate(1 << 20).ok());
    EXPECT_EQ(*f->Size(), 1u << 20);
    struct stat st;
    ASSERT_EQ(fstat(f->fd(), &st), 0);
    EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 1u << 20);
    ASSERT_TRUE(f->Truncate(4096).ok());
    EXPECT_EQ(*f->Size(), 4096u);
    EXPECT_TRUE(f->Sync().ok());
  }
  ASSERT_TRUE(RenameFile(path, renamed).ok());
  absl::StatusOr<File> r =
      File::Open(renamed, {.create = false, .read_only = true});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(fcntl(r->fd(), F_GETFL) & O_ACCMODE, O_RDONLY);
  std::string buf(8, 'x');
  absl::StatusOr<size_t> n =
      r->ReadAt(0, absl::MakeSpan(reinterpret_cast<std::byte*>(buf.data()), 8));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 8u);
  EXPECT_EQ(buf, std::string("hello\0\0\0", 8));
  // Past the end: fewer bytes, not an error.
  n = r->ReadAt(4092,
                absl::MakeSpan(reinterpret_cast<std::byte*>(buf.data()), 8));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4u);
  EXPECT_EQ(
      File::Open(renamed, {.create = true, .read_only = true}).status().code(),
      absl::StatusCode::kInvalidArgument);
  absl::Status s = RenameFile(path, renamed);  // `path` is gone
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(s, path)) << s;
  absl::StatusOr<File> missing =
      File::Open(path, {.create = false, .read_only = true});
  EXPECT_TRUE(Contains(missing.status(), "O_RDONLY")) << missing.status();
  EXPECT_TRUE(SyncDirectory("/var/tmp").ok());
  EXPECT_EQ(SyncDirectory(path).code(), absl::StatusCode::kNotFound);
  absl::StatusOr<std::string> cwd = CurrentDirectory();
  ASSERT_TRUE(cwd.ok()) << cwd.status();
  EXPECT_EQ(cwd->front(), '/');
  EXPECT_TRUE(UnlinkFile(renamed).ok());
}

}  // namespace
}  // namespace upager::internal::os
