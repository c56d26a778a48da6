// Snapshot::SaveTo and Runtime::MapSnapshot end to end: full and
// incremental saves, lazy restore in this process and in a child, prefetch,
// and every bad input. Every check compares bytes with a shadow.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/runtime/snapshot_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;

// Where a death test's child keeps its files: the child is this binary run
// again up to the death, and it dies before its TempDir is removed, so its
// directory is named after the parent, which removes it.
std::string DeathChildDir(pid_t parent) {
  return "/tmp/upager-saved-child-" + std::to_string(parent);
}

class TempDir {
 public:
  TempDir() {
    if (!GTEST_FLAG_GET(internal_run_death_test).empty()) {
      path_ = DeathChildDir(getppid());
      std::filesystem::create_directories(path_);
      return;
    }
    char tmpl[] = "/tmp/upager-saved-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const {
    return path_ + "/" + name;
  }

 private:
  std::string path_;
};

TEST(SavedSnapshotTest, FullSaveMapsBackLazilyByteForByte) {
  constexpr uint64_t kPages = 1024;
  TempDir dir;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "src"});
  ASSERT_TRUE(region.ok());
  std::byte* base = (*region)->data();
  std::vector<uint64_t> g(kPages, 0);
  for (uint64_t p = 0; p < kPages; p += 3) {
    FillPage(base + p * kPage, p, 1);
    g[p] = 1;
  }
  TAKE_OR_SKIP(snap, *region);
  // The application keeps writing while (and after) the snapshot is saved.
  for (uint64_t p = 0; p < kPages; ++p) FillPage(base + p * kPage, p, 2);
  ASSERT_TRUE(snap->SaveTo(dir / "full.snap").ok());
  EXPECT_EQ(snap->saved_path(), dir / "full.snap");
  EXPECT_GT(rt->stats().save_bytes, 0u);

  auto back = rt->MapSnapshot(dir / "full.snap");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->size(), kPages * kPage);
  const Stats before = SettledStats(*rt);
  EXPECT_TRUE(RegionIs((*back)->data(), g));
  const Stats after = SettledStats(*rt);
  EXPECT_GT(after.pages_file_filled, before.pages_file_filled);
  // Writes stay in memory; the file is untouched.
  FillPage((*back)->data(), 0, 7);
  EXPECT_TRUE(PageIs((*back)->data(), 0, 7));
  auto again = rt->MapSnapshot(dir / "full.snap");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(PageIs((*again)->data(), 0, 1));
  EXPECT_TRUE(rt->status().ok()) << rt->status();
}

TEST(SavedSnapshotTest, IncrementalChainRestoresLazilyInAChildProcess) {
  constexpr uint64_t kPages = 2048;
  TempDir dir;
  std::vector<std::vector<uint64_t>> want;
  {
    auto rt = MakeRuntime();
    ASSERT_NE(rt, nullptr);
    auto region = rt->Map({.size = kPages * kPage, .name = "chain"});
    ASSERT_TRUE(region.ok());
    std::byte* base = (*region)->data();
    std::vector<uint64_t> g(kPages, 0);
    std::mt19937_64 rng(5);
    for (uint64_t p = 0; p < kPages / 2; ++p) {
      FillPage(base + p * kPage, p, 1);
      g[p] = 1;
    }
    TAKE_OR_SKIP(s1, *region);
    want.push_back(g);
    ASSERT_TRUE(s1->SaveTo(dir / "s1.snap").ok());
    std::vector<std::unique_ptr<Snapshot>> keep;
    const Snapshot* prev = s1.get();
    for (int level = 2; level <= 4; ++level) {
      for (int i = 0; i < 200; ++i) {
        const uint64_t p = rng() % kPages;
        FillPage(base + p * kPage, p, level);
        g[p] = level;
      }
      // Some pages go back to zero through upager.
      const uint64_t z = rng() % (kPages - 4);
      ASSERT_TRUE(rt->Advise(*region, z * kPage, 4 * kPage,
                             Runtime::Advice::kDontNeed).ok());
      for (uint64_t p = z; p < z + 4; ++p) g[p] = 0;
      auto s = (*region)->TakeSnapshot();
      ASSERT_TRUE(s.ok());
      want.push_back(g);
      ASSERT_TRUE((*s)->SaveTo(dir / absl::StrCat("s", level, ".snap"), prev)
                      .ok());
      prev = s->get();
      keep.push_back(std::move(*s));
    }
    // A delta is much smaller than the image.
    struct stat full_st, delta_st;
    ASSERT_EQ(stat((dir / "s1.snap").c_str(), &full_st), 0);
    ASSERT_EQ(stat((dir / "s4.snap").c_str(), &delta_st), 0);
    EXPECT_LT(delta_st.st_blocks, full_st.st_blocks / 2);
  }  // the writing process's runtime is gone

  // A fresh process maps the newest delta and checks every byte of every
  // level; the bytes come from the files on first touch.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto rt = CreateForTest({});
    if (!rt.ok()) _exit(10);
    for (size_t level = 1; level <= want.size(); ++level) {
      auto r = (*rt)->MapSnapshot(dir / absl::StrCat("s", level, ".snap"));
      if (!r.ok()) _exit(20 + level);
      if (!RegionIs((*r)->data(), want[level - 1])) _exit(30 + level);
    }
    if ((*rt)->stats().pages_file_filled == 0) _exit(40);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: no runtime; 2x: MapSnapshot of level x failed; 3x: level x "
         "bytes differ; 40: nothing filled from the files";
}

TEST(SavedSnapshotTest, PrefetchFillsInTheBackground) {
  constexpr uint64_t kPages = 4096;
  TempDir dir;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "pf"});
  ASSERT_TRUE(region.ok());
  std::vector<uint64_t> g(kPages, 1);
  for (uint64_t p = 0; p < kPages; ++p) FillPage((*region)->data() + p * kPage, p, 1);
  TAKE_OR_SKIP(snap, *region);
  ASSERT_TRUE(snap->SaveTo(dir / "pf.snap").ok());
  auto back = rt->MapSnapshot(dir / "pf.snap", {.prefetch = true});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(Eventually([&] { return (*back)->resident_pages() == kPages; }))
      << (*back)->resident_pages();
  const uint64_t faults = SettledStats(*rt).faults_missing_read;
  EXPECT_TRUE(RegionIs((*back)->data(), g));
  EXPECT_EQ(SettledStats(*rt).faults_missing_read, faults);  // all present
  // Unmapping while a prefetch may still run is clean too.
  auto other = rt->MapSnapshot(dir / "pf.snap", {.prefetch = true});
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(rt->Unmap(*other).ok());
}

TEST(SavedSnapshotTest, BadFilesAndBadCallsGetClearErrors) {
  constexpr uint64_t kPages = 64;
  TempDir dir;
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "bad"});
  ASSERT_TRUE(region.ok());
  for (uint64_t p = 0; p < kPages; ++p) FillPage((*region)->data() + p * kPage, p, 1);
  TAKE_OR_SKIP(s1, *region);
  TAKE_OR_SKIP(s2, *region);

  // A delta against a base that was never saved.
  absl::Status st = s2->SaveTo(dir / "d.snap", s1.get());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_FALSE(std::filesystem::exists(dir / "d.snap"));
  // Base newer than the snapshot.
  EXPECT_EQ(s1->SaveTo(dir / "d.snap", s2.get()).code(),
            absl::StatusCode::kInvalidArgument);
  // An unwritable destination leaves nothing behind.
  st = s1->SaveTo(dir / "no/such/dir/x.snap");
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("no/such/dir"));

  ASSERT_TRUE(s1->SaveTo(dir / "good.snap").ok());
  // Missing file, wrong size.
  auto missing = rt->MapSnapshot(dir / "missing.snap");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("missing.snap"));
  MapSnapshotOptions wrong;
  wrong.region.size = 2 * kPages * kPage;
  auto sized = rt->MapSnapshot(dir / "good.snap", wrong);
  EXPECT_EQ(sized.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(sized.status().message()), HasSubstr("524288"));
  // Truncated: refused at map time.
  std::filesystem::copy_file(dir / "good.snap", dir / "cut.snap");
  ASSERT_EQ(truncate((dir / "cut.snap").c_str(),
                     std::filesystem::file_size(dir / "good.snap") - 100),
            0);
  auto cut = rt->MapSnapshot(dir / "cut.snap");
  EXPECT_FALSE(cut.ok());
  EXPECT_THAT(std::string(cut.status().message()), HasSubstr("cut.snap"));
  const Stats st_before = rt->stats();
  EXPECT_EQ(st_before.regions, 1u);  // nothing was mapped by the failures
}

TEST(SavedSnapshotDeathTest, CorruptPageIsNeverServed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  constexpr uint64_t kPages = 64;
  TempDir dir;
  {
    auto rt = MakeRuntime();
    ASSERT_NE(rt, nullptr);
    auto region = rt->Map({.size = kPages * kPage, .name = "crc"});
    ASSERT_TRUE(region.ok());
    for (uint64_t p = 0; p < kPages; ++p) FillPage((*region)->data() + p * kPage, p, 1);
    TAKE_OR_SKIP(snap, *region);
    ASSERT_TRUE(snap->SaveTo(dir / "c.snap").ok());
  }
  // Flip one byte of page 17's data (data area starts one page in).
  {
    std::fstream f(dir / "c.snap", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(kPage + 17 * kPage + 64);
    f.put(static_cast<char>(0x5a));
  }
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  auto back = rt->MapSnapshot(dir / "c.snap",
                              {.region = {.fault_around_pages = 1}});
  ASSERT_TRUE(back.ok()) << back.status();
  std::byte* data = (*back)->data();
  EXPECT_TRUE(PageIs(data + 16 * kPage, 16, 1));
  EXPECT_TRUE(PageIs(data + 18 * kPage, 18, 1));
  EXPECT_EXIT(
      {
        volatile std::byte b = data[17 * kPage];
        (void)b;
        _exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "");  // SIGBUS: the corrupt bytes never reach the application
  std::filesystem::remove_all(DeathChildDir(getpid()));
  // Pages around it are unaffected.
  EXPECT_TRUE(PageIs(data + 63 * kPage, 63, 1));
}

}  // namespace
}  // namespace upager::testing
