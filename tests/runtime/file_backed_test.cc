// File-backed regions: pages fill lazily from the source file; writes stay
// private to the region and never reach the file.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/runtime/runtime_test_util.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;

// A temporary file holding `bytes` of a known pattern; removed at scope end.
class TempFile {
 public:
  explicit TempFile(size_t bytes) : bytes_(bytes) {
    char tmpl[] = "/var/tmp/upager_source_XXXXXX";
    const int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    path_ = tmpl;
    contents_.resize(bytes);
    for (size_t i = 0; i < bytes; ++i) {
      contents_[i] = static_cast<unsigned char>((i * 2654435761u) >> 13);
    }
    EXPECT_EQ(write(fd, contents_.data(), bytes), static_cast<ssize_t>(bytes));
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }
  const std::vector<unsigned char>& contents() const { return contents_; }
  // What the file holds now, read back with pread.
  std::vector<unsigned char> Reread() const {
    std::vector<unsigned char> v(bytes_);
    const int fd = open(path_.c_str(), O_RDONLY);
    EXPECT_EQ(pread(fd, v.data(), bytes_, 0), static_cast<ssize_t>(bytes_));
    close(fd);
    return v;
  }

 private:
  size_t bytes_;
  std::string path_;
  std::vector<unsigned char> contents_;
};

constexpr size_t kPage = 4096;

TEST(FileBackedTest, EveryByteComesFromTheFileAndWritesStayPrivate) {
  constexpr size_t kPages = 1024;  // 4 MiB
  TempFile file(kPages * kPage);
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = kPages * kPage, .name = "file",
                    .source_path = file.path()});
  ASSERT_TRUE(r.ok()) << r.status();
  auto* p = reinterpret_cast<unsigned char*>((*r)->data());
  // Two threads read disjoint halves (read faults must copy, not map zero).
  std::thread a([&] {
    EXPECT_EQ(std::memcmp(p, file.contents().data(), kPages / 2 * kPage), 0);
  });
  std::thread b([&] {
    EXPECT_EQ(std::memcmp(p + kPages / 2 * kPage,
                          file.contents().data() + kPages / 2 * kPage,
                          kPages / 2 * kPage),
              0);
  });
  a.join();
  b.join();
  // Writes change the region only.
  std::vector<unsigned char> shadow = file.contents();
  for (size_t i = 0; i < kPages; i += 7) {
    p[i * kPage + 11] ^= 0xff;
    shadow[i * kPage + 11] ^= 0xff;
  }
  EXPECT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);
  EXPECT_EQ(file.Reread(), file.contents()) << "the source file was modified";
  const Stats s = SettledStats(*rt);
  EXPECT_EQ(s.pages_file_filled, kPages);
  EXPECT_EQ(s.pages_zero_mapped, 0u);
  EXPECT_EQ(s.resident_pages, kPages);
  ASSERT_TRUE(rt->Unmap(*r).ok());
}

TEST(FileBackedTest, OffsetSelectsThePartOfTheFile) {
  TempFile file(64 * kPage);
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = 16 * kPage, .name = "window",
                    .source_path = file.path(), .source_offset = 40 * kPage});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::memcmp((*r)->data(), file.contents().data() + 40 * kPage,
                        16 * kPage),
            0);
}

TEST(FileBackedTest, KernelModeReadIntoAFileBackedPage) {
  TempFile src(8 * kPage);
  TempFile other(kPage);
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = 8 * kPage, .name = "kread",
                    .source_path = src.path()});
  ASSERT_TRUE(r.ok());
  // read(2) overwrites page 3 from another file; the rest still reads as
  // the source.
  const int fd = open(other.path().c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  if (SignalModeUnderTest()) {
    // Signal mode cannot serve the kernel's own access (FaultMode::kSignal):
    // EFAULT, nothing written; a user-space touch first makes it work.
    errno = 0;
    ASSERT_EQ(read(fd, (*r)->data() + 3 * kPage, kPage), -1);
    ASSERT_EQ(errno, EFAULT);
    volatile std::byte touch = (*r)->data()[3 * kPage];
    (void)touch;
  }
  ASSERT_EQ(read(fd, (*r)->data() + 3 * kPage, kPage),
            static_cast<ssize_t>(kPage));
  close(fd);
  std::vector<unsigned char> want = src.contents();
  std::memcpy(want.data() + 3 * kPage, other.contents().data(), kPage);
  EXPECT_EQ(std::memcmp((*r)->data(), want.data(), want.size()), 0);
}

TEST(FileBackedTest, RemapKeepsServingFromTheFile) {
  TempFile file(32 * kPage);
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto r = rt->Map({.size = 32 * kPage, .name = "moving",
                    .fault_around_pages = 1, .source_path = file.path()});
  ASSERT_TRUE(r.ok());
  auto* p = reinterpret_cast<unsigned char*>((*r)->data());
  ASSERT_EQ(std::memcmp(p, file.contents().data(), 4 * kPage), 0);
  // Far from other mappings: it is checked unmapped at the end
  // (FarFreeRange).
  void* dst = FarReserve(32 * kPage);
  ASSERT_NE(dst, MAP_FAILED);
  ASSERT_EQ(mremap(p, 32 * kPage, 32 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED,
                   dst),
            dst);
  // Untouched pages at the new address still come from the file.
  EXPECT_EQ(std::memcmp(dst, file.contents().data(), 32 * kPage), 0);
  ASSERT_TRUE(rt->Unmap(*r).ok());
  EXPECT_TRUE(IsUnmapped(dst, 32 * kPage));
}

TEST(FileBackedTest, BadSourcesAreClearErrors) {
  TempFile small(4 * kPage);
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto missing = rt->Map({.size = kPage, .name = "m",
                          .source_path = "/nonexistent/upager/file"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/upager/file"));

  auto short_file = rt->Map({.size = 8 * kPage, .name = "s",
                             .source_path = small.path()});
  EXPECT_EQ(short_file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_file.status().message(), HasSubstr("has 16384 bytes"));

  auto past_end = rt->Map({.size = kPage, .name = "p",
                           .source_path = small.path(),
                           .source_offset = 4 * kPage});
  EXPECT_EQ(past_end.status().code(), absl::StatusCode::kInvalidArgument);

  auto misaligned = rt->Map({.size = kPage, .name = "o",
                             .source_path = small.path(),
                             .source_offset = 100});
  EXPECT_EQ(misaligned.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(misaligned.status().message(), HasSubstr("source_offset = 100"));

  auto dir = rt->Map({.size = kPage, .name = "d", .source_path = "/var/tmp"});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dir.status().message(), HasSubstr("not a regular file"));
  EXPECT_EQ(rt->stats().regions, 0u) << "failed maps leave nothing behind";
}

}  // namespace
}  // namespace upager::testing
