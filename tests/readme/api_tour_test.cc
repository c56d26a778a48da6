// Runs the README's "API tour" (readme_api_tour.inc, copied out of README.md
// at build time) and checks what its comments claim, so the first code a
// newcomer copies always compiles against the public headers and works.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"
#include "upager/upager.h"

// Defines absl::Status Tour(), with the README's own includes.
#include "readme_api_tour.inc"

namespace upager {
namespace {

// The tour writes heap.snap into the current directory, as an application
// would: run it in a scratch directory.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "upager-readme-XXXXXX")
            .string();
    if (mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
    old_ = std::filesystem::current_path();
    if (!dir_.empty()) std::filesystem::current_path(dir_);
  }
  ~ScratchDir() {
    std::filesystem::current_path(old_);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  bool ok() const { return !dir_.empty(); }

 private:
  std::filesystem::path dir_;
  std::filesystem::path old_;
};

TEST(ReadmeApiTourTest, RunsAndSavesThePointInTimeBytes) {
  ScratchDir scratch;
  ASSERT_TRUE(scratch.ok());
  const absl::Status s = Tour();
  // No userfaultfd for this user, or a kernel without write-protect or
  // UFFDIO_MOVE (snapshots): the README's "Kernel requirements".
  if (absl::IsPermissionDenied(s) || absl::IsFailedPrecondition(s)) {
    UPAGER_SKIP_MISSING_FEATURE(s.ToString());
  }
  ASSERT_TRUE(s.ok()) << s;

  // The file holds the snapshot's bytes: byte 12345 was 1 when it was taken
  // (and 2 afterwards), every other byte zero.
  auto rt = Runtime::Create({});
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto back = (*rt)->MapSnapshot("heap.snap");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->size(), size_t{64} << 30);
  const std::byte* p = (*back)->data();
  EXPECT_EQ(p[12345], std::byte{1});
  EXPECT_EQ(p[12344], std::byte{0});
  EXPECT_EQ(p[(size_t{64} << 30) - 1], std::byte{0});
  EXPECT_TRUE((*rt)->Unmap(*back).ok());
}

}  // namespace
}  // namespace upager
