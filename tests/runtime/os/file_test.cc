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

}  // namespace
}  // namespace upager::internal::os
