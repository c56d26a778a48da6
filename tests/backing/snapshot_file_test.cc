// The snapshot file format end to end, on real files: round trips compared
// byte for byte with what was written (FULL with data and zero runs, a
// sparse 1 TiB region, base + delta chains against a shadow model), the
// documented layout (pages at data_offset + p * page_size, readable through
// mmap), every kind of bad input (truncation, flipped bytes, wrong
// magic/version, missing or replaced bases, cycles, bad writer calls), and
// failed saves (write errors injected at the io_uring seam, the directory
// removed) that must leave no file behind and an older file intact.
#include "backing/snapshot_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "backing/crc32c.h"
#include "backing/snapshot_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/os/io_uring.h"
#include "tests/backing/fake_io_uring.h"

namespace upager::testing {
namespace {

using internal::ExtentKind;
using internal::PageKind;
using internal::ResolvedPage;
using internal::ResolvedRun;
using internal::SnapshotChain;
using internal::SnapshotExtent;
using internal::SnapshotFileReader;
using internal::SnapshotFileWriter;
using internal::SnapshotId;
using internal::SnapshotKind;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Bytes = std::vector<std::byte>;

constexpr size_t kPage = 4096;

// Documented header offsets (snapshot_file.h, FORMAT): the tests patch
// files through these, so they also hold the documentation to the code.
constexpr size_t kVersionOff = 8;
constexpr size_t kHeaderLengthOff = 12;
constexpr size_t kPageCountOff = 24;
constexpr size_t kBaseIdOff = 48;
constexpr size_t kHeaderCrcOff = 132;
constexpr size_t kBaseNameOff = 136;
constexpr size_t kFooterBytes = 64;

// --- Files and directories.

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/upager-snapfile-XXXXXX";
    const char* d = mkdtemp(tmpl);
    EXPECT_NE(d, nullptr) << "mkdtemp: " << strerror(errno);
    path_ = d != nullptr ? d : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const {
    return absl::StrCat(path_, "/", name);
  }
  // Names of every entry, sorted.
  std::vector<std::string> List() const {
    std::set<std::string> names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(path_, ec)) {
      names.insert(e.path().filename().string());
    }
    return {names.begin(), names.end()};
  }

 private:
  std::string path_;
};

Bytes ReadAll(const std::string& path) {
  Bytes b;
  const int fd = open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0) << path << ": " << strerror(errno);
  if (fd < 0) return b;
  struct stat st;
  fstat(fd, &st);
  b.resize(st.st_size);
  size_t done = 0;
  while (done < b.size()) {
    const ssize_t n = pread(fd, b.data() + done, b.size() - done, done);
    if (n <= 0) break;
    done += n;
  }
  close(fd);
  b.resize(done);
  return b;
}

void WriteAll(const std::string& path, const Bytes& b) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
  ASSERT_EQ(write(fd, b.data(), b.size()), static_cast<ssize_t>(b.size()));
  close(fd);
}

void Patch(const std::string& path, uint64_t offset, const void* bytes,
           size_t n) {
  const int fd = open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
  ASSERT_EQ(pwrite(fd, bytes, n, offset), static_cast<ssize_t>(n));
  close(fd);
}

void FlipByte(const std::string& path, uint64_t offset) {
  Bytes b(1);
  const int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pread(fd, b.data(), 1, offset), 1);
  b[0] ^= std::byte{0x5A};
  ASSERT_EQ(pwrite(fd, b.data(), 1, offset), 1);
  close(fd);
}

uint32_t Le32(const Bytes& b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}

// Recomputes the header CRC after a test patched header fields, the way a
// (future or buggy) writer would have written them.
void ResealHeader(const std::string& path) {
  Bytes b = ReadAll(path);
  const uint32_t len = Le32(b, kHeaderLengthOff);
  std::memset(b.data() + kHeaderCrcOff, 0, 4);
  const uint32_t crc = internal::Crc32c(b.data(), len);
  Patch(path, kHeaderCrcOff, &crc, 4);
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// --- Page contents and the shadow model.

Bytes RandomPages(std::mt19937_64& rng, size_t pages,
                  size_t page_size = kPage) {
  Bytes b(pages * page_size);
  for (size_t i = 0; i < b.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(b.data() + i, &v, 8);
  }
  return b;
}

// What a region (or a delta) says about each page it records: bytes, or
// zero (nullopt). Pages absent from the map are not recorded.
using PageMap = std::map<uint64_t, std::optional<Bytes>>;

SnapshotFileWriter::Options FullOptions(uint64_t page_count,
                                        size_t page_size = kPage) {
  SnapshotFileWriter::Options o;
  o.page_size = page_size;
  o.page_count = page_count;
  return o;
}

SnapshotFileWriter::Options DeltaOptions(uint64_t page_count,
                                         const std::string& base) {
  SnapshotFileWriter::Options o = FullOptions(page_count);
  o.kind = SnapshotKind::kDelta;
  o.base_path = base;
  return o;
}

// Feeds `pages` to `w` in page order: contiguous runs of one kind go in
// calls of 1..7 pages (so some coalesce across calls and some do not). The
// buffer handed to AddData is scribbled over right after each call: the
// writer must have copied it.
absl::Status Feed(SnapshotFileWriter& w, const PageMap& pages,
                  size_t page_size = kPage) {
  std::mt19937_64 rng(pages.size());
  Bytes scratch;
  for (auto it = pages.begin(); it != pages.end();) {
    const uint64_t first = it->first;
    const bool zero = !it->second.has_value();
    const size_t want = 1 + rng() % 7;
    size_t n = 0;
    scratch.clear();
    while (it != pages.end() && it->first == first + n && n < want &&
           it->second.has_value() == !zero) {
      if (!zero)
        scratch.insert(scratch.end(), it->second->begin(), it->second->end());
      ++n;
      ++it;
    }
    absl::Status s = zero ? w.AddZero(first, n) : w.AddData(first, scratch);
    if (!s.ok()) return s;
    std::fill(scratch.begin(), scratch.end(), std::byte{0xEE});
    (void)page_size;
  }
  return absl::OkStatus();
}

absl::Status WriteFile(const std::string& path,
                       const SnapshotFileWriter::Options& o,
                       const PageMap& pages, SnapshotId* id = nullptr) {
  absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> w =
      SnapshotFileWriter::Create(path, o);
  if (!w.ok()) return w.status();
  if (absl::Status s = Feed(**w, pages, o.page_size); !s.ok()) return s;
  if (id != nullptr) *id = (*w)->id();
  return (*w)->Commit();
}

// A mix for `page_count` pages: runs of data, runs of zeros, gaps.
PageMap MixedPages(uint64_t page_count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  PageMap m;
  for (uint64_t p = 0; p < page_count;) {
    const uint64_t run = 1 + rng() % 12;
    const int what = static_cast<int>(rng() % 3);  // 0 data, 1 zero, 2 gap
    for (uint64_t i = 0; i < run && p < page_count; ++i, ++p) {
      if (what == 0) m[p] = RandomPages(rng, 1);
      if (what == 1) m[p] = std::nullopt;
    }
  }
  return m;
}

// The extents a writer must produce for `pages`: adjacent pages of one
// kind merged.
std::vector<SnapshotExtent> ExpectedExtents(const PageMap& pages) {
  std::vector<SnapshotExtent> v;
  for (const auto& [p, bytes] : pages) {
    const ExtentKind k = bytes ? ExtentKind::kData : ExtentKind::kZero;
    if (!v.empty() && v.back().kind == k && v.back().end_page() == p) {
      ++v.back().count;
    } else {
      v.push_back({.first_page = p, .count = 1, .kind = k});
    }
  }
  return v;
}

Bytes Zeros(size_t n = kPage) { return Bytes(n); }

// Every page of `r` read back (ReadPage, and pread at DataOffset for DATA
// pages) equals `pages` (FULL: unrecorded pages are zero).
void ExpectFileHolds(const SnapshotFileReader& r, const PageMap& pages) {
  const uint64_t ps = r.info().page_size;
  Bytes out(ps);
  Bytes raw(ps);
  for (uint64_t p = 0; p < r.info().page_count; ++p) {
    auto it = pages.find(p);
    const bool data = it != pages.end() && it->second.has_value();
    const PageKind want =
        data ? PageKind::kData
             : (it == pages.end() && r.info().kind == SnapshotKind::kDelta
                    ? PageKind::kInherit
                    : PageKind::kZero);
    ASSERT_EQ(r.Kind(p), want) << "page " << p;
    if (want == PageKind::kInherit) continue;
    ASSERT_TRUE(r.ReadPage(p, out.data()).ok()) << "page " << p;
    ASSERT_EQ(out, data ? *it->second : Zeros(ps)) << "page " << p;
    if (data) {
      ASSERT_EQ(pread(r.fd(), raw.data(), ps, r.DataOffset(p)),
                static_cast<ssize_t>(ps));
      ASSERT_EQ(raw, *it->second) << "page " << p << " at DataOffset";
      ASSERT_EQ(r.Crc(p), internal::Crc32c(raw.data(), ps));
    }
  }
}

// --- Round trips.

TEST(SnapshotFileTest, FullRoundTripWithDataAndZeroRuns) {
  TempDir dir;
  const std::string path = dir.File("full.snap");
  constexpr uint64_t kPages = 700;
  const PageMap pages = MixedPages(kPages, 1);
  // Small buffers and a shallow queue: the writer must wait for buffers and
  // coalesce within them.
  SnapshotFileWriter::Options o = FullOptions(kPages);
  o.queue_depth = 2;
  o.max_write_bytes = 5 * kPage;
  const absl::Time before = absl::Now();
  auto w = SnapshotFileWriter::Create(path, o);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE(Exists(path)) << "nothing at path before Commit";
  EXPECT_TRUE(Exists((*w)->temp_path()));
  ASSERT_TRUE(Feed(**w, pages).ok());
  ASSERT_TRUE((*w)->Commit().ok());
  const SnapshotFileWriter::Stats stats = (*w)->stats();
  const SnapshotId id = (*w)->id();
  w->reset();
  EXPECT_EQ(dir.List(), std::vector<std::string>{"full.snap"});

  uint64_t data = 0, zero = 0;
  for (const auto& [p, b] : pages) ++(b ? data : zero);
  EXPECT_EQ(stats.data_pages, data);
  EXPECT_EQ(stats.zero_pages, zero);
  EXPECT_EQ(stats.extents, ExpectedExtents(pages).size());
  EXPECT_GE(stats.bytes_written, data * kPage);

  auto r = SnapshotFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  const internal::SnapshotFileInfo& info = (*r)->info();
  EXPECT_EQ(info.version, 1u);
  EXPECT_EQ(info.kind, SnapshotKind::kFull);
  EXPECT_EQ(info.page_size, kPage);
  EXPECT_EQ(info.page_count, kPages);
  EXPECT_EQ(info.id, id);
  EXPECT_EQ(info.base_id, SnapshotId{});
  EXPECT_EQ(info.base_name, "");
  EXPECT_EQ(info.data_pages, data);
  EXPECT_EQ(info.zero_pages, zero);
  EXPECT_EQ(info.data_offset, kPage);
  EXPECT_EQ(info.metadata_offset, kPage + kPages * kPage);
  EXPECT_EQ(info.file_size, stats.file_size);
  EXPECT_EQ(info.file_size, ReadAll(path).size());
  EXPECT_GE(info.created, before - absl::Seconds(1));
  EXPECT_LE(info.created, absl::Now() + absl::Seconds(1));
  EXPECT_EQ(std::vector<SnapshotExtent>((*r)->extents().begin(),
                                        (*r)->extents().end()),
            ExpectedExtents(pages));
  ExpectFileHolds(**r, pages);

  std::vector<std::pair<uint64_t, uint64_t>> progress;
  ASSERT_TRUE((*r)->VerifyAll([&](uint64_t done, uint64_t total) {
                    progress.emplace_back(done, total);
                  })
                  .ok());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), std::make_pair(data, data));
}

// The runtime's way in: map the file read-only and take page p's bytes at
// data_offset + p * page_size.
TEST(SnapshotFileTest, PagesAreAtTheirDocumentedOffsetsThroughMmap) {
  TempDir dir;
  const std::string path = dir.File("mapped.snap");
  const PageMap pages = MixedPages(64, 2);
  ASSERT_TRUE(WriteFile(path, FullOptions(64), pages).ok());
  auto r = SnapshotFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  const uint64_t size = (*r)->info().file_size;
  void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, (*r)->fd(), 0);
  ASSERT_NE(m, MAP_FAILED);
  const auto* base = static_cast<const std::byte*>(m);
  for (uint64_t p = 0; p < 64; ++p) {
    auto it = pages.find(p);
    const Bytes want = it != pages.end() && it->second ? *it->second : Zeros();
    const std::byte* got = base + (*r)->info().data_offset + p * kPage;
    EXPECT_EQ(std::memcmp(got, want.data(), kPage), 0) << "page " << p;
    EXPECT_TRUE((*r)->VerifyPage(p, got).ok()) << "page " << p;
  }
  munmap(m, size);
}

TEST(SnapshotFileTest, SparseTerabyteRegionCostsOnlyItsPages) {
  TempDir dir;
  const std::string path = dir.File("sparse.snap");
  constexpr uint64_t kPages = (uint64_t{1} << 40) / kPage;  // 1 TiB
  std::mt19937_64 rng(3);
  PageMap pages;
  pages[0] = RandomPages(rng, 1);
  pages[kPages / 2] = RandomPages(rng, 1);
  pages[kPages / 2 + 1] = std::nullopt;
  pages[kPages - 1] = RandomPages(rng, 1);
  ASSERT_TRUE(WriteFile(path, FullOptions(kPages), pages).ok());

  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_GT(static_cast<uint64_t>(st.st_size), uint64_t{1} << 40);
  // 3 data pages, the header and the metadata, plus the file system's own
  // extent blocks: far below a megabyte.
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{256} << 10)
      << "st_blocks=" << st.st_blocks;

  auto r = SnapshotFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->info().page_count, kPages);
  EXPECT_EQ((*r)->info().data_pages, 3u);
  Bytes out(kPage);
  for (const auto& [p, b] : pages) {
    ASSERT_TRUE((*r)->ReadPage(p, out.data()).ok()) << "page " << p;
    EXPECT_EQ(out, b ? *b : Zeros()) << "page " << p;
  }
  for (uint64_t p : {uint64_t{1}, kPages / 3, kPages - 2}) {
    EXPECT_EQ((*r)->Kind(p), PageKind::kZero);
    ASSERT_TRUE((*r)->ReadPage(p, out.data()).ok());
    EXPECT_EQ(out, Zeros());
  }
  EXPECT_TRUE((*r)->VerifyAll().ok());

  auto chain = SnapshotChain::Open(path);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->data_runs().size(), 3u);
  EXPECT_EQ(chain->Resolve(kPages - 1).offset, (*r)->DataOffset(kPages - 1));
  EXPECT_EQ(chain->Resolve(5).file, nullptr);
}

// Huge pages: one page is larger than max_write_bytes.
TEST(SnapshotFileTest, TwoMegabytePages) {
  TempDir dir;
  const std::string path = dir.File("huge.snap");
  constexpr size_t kHuge = size_t{2} << 20;
  std::mt19937_64 rng(4);
  PageMap pages;
  pages[1] = RandomPages(rng, 1, kHuge);
  pages[2] = RandomPages(rng, 1, kHuge);
  pages[5] = std::nullopt;
  ASSERT_TRUE(WriteFile(path, FullOptions(8, kHuge), pages).ok());
  auto r = SnapshotFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->info().data_offset, kHuge);
  ExpectFileHolds(**r, pages);
  EXPECT_TRUE((*r)->VerifyAll().ok());
}

// tmpfs holds files past ext4's 16 TiB: an extent longer than 2^32 - 1
// pages is split in two.
TEST(SnapshotFileTest, ExtentsLongerThanTheirCountFieldAreSplit) {
  if (!std::filesystem::is_directory("/dev/shm")) {
    GTEST_SKIP() << "no /dev/shm";
  }
  char tmpl[] = "/dev/shm/upager-snapfile-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = absl::StrCat(tmpl, "/long.snap");
  constexpr uint64_t kPages = uint64_t{1} << 33;  // 32 TiB of 4 KiB pages
  SnapshotFileWriter::Options o = FullOptions(kPages);
  auto w = SnapshotFileWriter::Create(path, o);
  if (!w.ok()) {
    std::filesystem::remove_all(tmpl);
    GTEST_SKIP() << "tmpfs refuses a 32 TiB file here: " << w.status();
  }
  std::mt19937_64 rng(5);
  const Bytes last = RandomPages(rng, 1);
  ASSERT_TRUE((*w)->AddZero(0, kPages - 1).ok());
  ASSERT_TRUE((*w)->AddData(kPages - 1, last).ok());
  ASSERT_TRUE((*w)->Commit().ok());
  auto r = SnapshotFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<SnapshotExtent> want = {
      {.first_page = 0, .count = 0xFFFFFFFF, .kind = ExtentKind::kZero},
      {.first_page = 0xFFFFFFFF,
       .count = 0xFFFFFFFF,
       .kind = ExtentKind::kZero},
      {.first_page = 2 * uint64_t{0xFFFFFFFF},
       .count = 1,
       .kind = ExtentKind::kZero},
      {.first_page = kPages - 1, .count = 1, .kind = ExtentKind::kData}};
  EXPECT_EQ(std::vector<SnapshotExtent>((*r)->extents().begin(),
                                        (*r)->extents().end()),
            want);
  Bytes out(kPage);
  ASSERT_TRUE((*r)->ReadPage(kPages - 1, out.data()).ok());
  EXPECT_EQ(out, last);
  EXPECT_EQ((*r)->Kind(0xFFFFFFFF), PageKind::kZero);
  std::filesystem::remove_all(tmpl);
}

// --- Chains.

// Applies `delta` to `state` (the whole region's pages: nullopt = zero).
void Apply(std::vector<std::optional<Bytes>>& state, const PageMap& delta) {
  for (const auto& [p, b] : delta) state[p] = b;
}

// Every page resolved through `chain` equals `state`: Resolve + pread,
// ReadPage, RunAt, and ForEachRun over the whole region and random ranges.
void ExpectChainHolds(const SnapshotChain& chain,
                      const std::vector<std::optional<Bytes>>& state) {
  const uint64_t n = state.size();
  Bytes out(kPage);
  for (uint64_t p = 0; p < n; ++p) {
    const ResolvedPage rp = chain.Resolve(p);
    if (!state[p].has_value()) {
      ASSERT_EQ(rp.file, nullptr) << "page " << p;
    } else {
      ASSERT_NE(rp.file, nullptr) << "page " << p;
      ASSERT_EQ(rp.file->Kind(p), PageKind::kData) << "page " << p;
      ASSERT_EQ(rp.offset, rp.file->DataOffset(p));
      ASSERT_EQ(pread(rp.file->fd(), out.data(), kPage, rp.offset),
                static_cast<ssize_t>(kPage));
      ASSERT_EQ(out, *state[p]) << "page " << p;
    }
    ASSERT_TRUE(chain.ReadPage(p, out.data()).ok()) << "page " << p;
    ASSERT_EQ(out, state[p] ? *state[p] : Zeros()) << "page " << p;
    const ResolvedRun run = chain.RunAt(p);
    ASSERT_LE(run.first_page, p);
    ASSERT_GT(run.first_page + run.count, p);
    ASSERT_EQ(run.file, rp.file) << "page " << p;
  }
  // data_runs: sorted, disjoint, maximal (no two adjacent in one file).
  const auto runs = chain.data_runs();
  for (size_t i = 1; i < runs.size(); ++i) {
    ASSERT_GE(runs[i].first_page, runs[i - 1].first_page + runs[i - 1].count);
    ASSERT_FALSE(runs[i].file == runs[i - 1].file &&
                 runs[i].first_page ==
                     runs[i - 1].first_page + runs[i - 1].count);
  }
  std::mt19937_64 rng(n);
  for (int round = 0; round < 50; ++round) {
    uint64_t first = round == 0 ? 0 : rng() % n;
    uint64_t count = round == 0 ? n + 10 : 1 + rng() % (n / 2);
    uint64_t next = first;
    chain.ForEachRun(first, count, [&](const ResolvedRun& r) {
      EXPECT_EQ(r.first_page, next) << "runs must be consecutive";
      EXPECT_GT(r.count, 0u);
      for (uint64_t p = r.first_page; p < r.first_page + r.count; ++p) {
        const ResolvedPage rp = chain.Resolve(p);
        EXPECT_EQ(rp.file, r.file) << "page " << p;
        if (r.file != nullptr) {
          EXPECT_EQ(rp.offset, r.offset + (p - r.first_page) * kPage);
        }
      }
      next = r.first_page + r.count;
    });
    EXPECT_EQ(next, std::min(n, first + count));
  }
}

TEST(SnapshotFileTest, DeltaChainResolvesEveryPageToTheNewestRecord) {
  TempDir dir;
  constexpr uint64_t kPages = 300;
  std::mt19937_64 rng(6);
  std::vector<std::optional<Bytes>> state(kPages);
  // Each level's full state, to check the chain opened at every level.
  std::vector<std::vector<std::optional<Bytes>>> states;
  std::vector<std::string> paths;

  const PageMap base = MixedPages(kPages, 7);
  Apply(state, base);
  paths.push_back(dir.File("base.snap"));
  ASSERT_TRUE(WriteFile(paths.back(), FullOptions(kPages), base).ok());
  states.push_back(state);

  for (int level = 1; level <= 3; ++level) {
    // Overwrite some pages (data), zero some (earlier data among them),
    // leave the rest inherited.
    PageMap delta;
    for (uint64_t p = 0; p < kPages; ++p) {
      const uint64_t dice = rng() % 10;
      if (dice < 2) delta[p] = RandomPages(rng, 1);
      if (dice == 2) delta[p] = std::nullopt;
    }
    Apply(state, delta);
    paths.push_back(dir.File(absl::StrCat("delta", level, ".snap")));
    ASSERT_TRUE(
        WriteFile(paths.back(), DeltaOptions(kPages, paths[level - 1]), delta)
            .ok());
    states.push_back(state);
    auto r = SnapshotFileReader::Open(paths.back());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->info().kind, SnapshotKind::kDelta);
    // Same directory: recorded relative, so the pair can move together.
    EXPECT_EQ(
        (*r)->info().base_name,
        level == 1 ? "base.snap" : absl::StrCat("delta", level - 1, ".snap"));
    ExpectFileHolds(**r, delta);
    EXPECT_TRUE((*r)->VerifyAll().ok());
  }

  for (size_t level = 0; level < paths.size(); ++level) {
    SCOPED_TRACE(absl::StrCat("chain from ", paths[level]));
    auto chain = SnapshotChain::Open(paths[level]);
    ASSERT_TRUE(chain.ok()) << chain.status();
    ASSERT_EQ(chain->files().size(), level + 1);
    for (size_t i = 0; i <= level; ++i) {
      EXPECT_EQ(chain->files()[i]->path(), paths[level - i]) << "newest first";
    }
    for (size_t i = 0; i < level; ++i) {
      EXPECT_EQ(chain->files()[i]->info().base_id,
                chain->files()[i + 1]->info().id);
    }
    ExpectChainHolds(*chain, states[level]);
  }

  // Moving the whole directory keeps the chain whole: the bases are found
  // relative to each delta.
  const std::string moved = dir.path() + "/moved";
  ASSERT_EQ(mkdir(moved.c_str(), 0700), 0);
  for (const std::string& p : paths) {
    const std::string to =
        moved + "/" + std::filesystem::path(p).filename().string();
    ASSERT_EQ(rename(p.c_str(), to.c_str()), 0);
  }
  auto chain = SnapshotChain::Open(moved + "/delta3.snap");
  ASSERT_TRUE(chain.ok()) << chain.status();
  ExpectChainHolds(*chain, states.back());
}

TEST(SnapshotFileTest, BaseNamesAreRelativeOnlyInsideTheDeltasDirectory) {
  using internal::ResolveSnapshotBase;
  using internal::snapshot_format::BaseNameForDelta;
  EXPECT_EQ(BaseNameForDelta("/d/x.snap", "/d/b.snap", "/"), "b.snap");
  EXPECT_EQ(BaseNameForDelta("/d/x.snap", "/d/sub/b.snap", "/"), "sub/b.snap");
  EXPECT_EQ(BaseNameForDelta("/d/x.snap", "/e/b.snap", "/"), "/e/b.snap");
  EXPECT_EQ(BaseNameForDelta("/d/x.snap", "/d/../e/b.snap", "/"), "/e/b.snap");
  EXPECT_EQ(BaseNameForDelta("x.snap", "b.snap", "/w"), "b.snap");
  EXPECT_EQ(BaseNameForDelta("sub/x.snap", "b.snap", "/w"), "/w/b.snap");
  EXPECT_EQ(BaseNameForDelta("x.snap", "/w/./b.snap", "/w"), "b.snap");
  EXPECT_EQ(ResolveSnapshotBase("/d/x.snap", "b.snap"), "/d/b.snap");
  EXPECT_EQ(ResolveSnapshotBase("/d/x.snap", "/e/b.snap"), "/e/b.snap");
  EXPECT_EQ(ResolveSnapshotBase("x.snap", "b.snap"), "b.snap");
  EXPECT_EQ(ResolveSnapshotBase("rel/x.snap", "sub/b.snap"), "rel/sub/b.snap");
}

// A base outside the delta's directory is recorded by absolute path and
// still found.
TEST(SnapshotFileTest, BaseInAnotherDirectoryIsRecordedAbsolute) {
  TempDir dir;
  ASSERT_EQ(mkdir(dir.File("deltas").c_str(), 0700), 0);
  const std::string base = dir.File("base.snap");
  const std::string delta = dir.File("deltas/d.snap");
  std::mt19937_64 rng(8);
  PageMap b, d;
  b[0] = RandomPages(rng, 1);
  d[1] = RandomPages(rng, 1);
  ASSERT_TRUE(WriteFile(base, FullOptions(4), b).ok());
  ASSERT_TRUE(WriteFile(delta, DeltaOptions(4, base), d).ok());
  auto r = SnapshotFileReader::Open(delta);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->info().base_name, base);
  auto chain = SnapshotChain::Open(delta);
  ASSERT_TRUE(chain.ok()) << chain.status();
  std::vector<std::optional<Bytes>> state(4);
  Apply(state, b);
  Apply(state, d);
  ExpectChainHolds(*chain, state);
}

// Relative paths resolve against the working directory when the delta is
// written, and the base is recorded relative to the delta where it can be.
TEST(SnapshotFileTest, RelativePathsAreRecordedForTheDeltasDirectory) {
  TempDir dir;
  char old_cwd[4096];
  ASSERT_NE(getcwd(old_cwd, sizeof(old_cwd)), nullptr);
  ASSERT_EQ(chdir(dir.path().c_str()), 0);
  ASSERT_EQ(mkdir("sub", 0700), 0);
  std::mt19937_64 rng(24);
  PageMap b, d;
  b[1] = RandomPages(rng, 1);
  d[2] = RandomPages(rng, 1);
  const absl::Status written =
      WriteFile("b.snap", FullOptions(4), b).ok() &&
              WriteFile("d.snap", DeltaOptions(4, "b.snap"), d).ok()
          ? WriteFile("sub/d.snap", DeltaOptions(4, "b.snap"), d)
          : absl::InternalError("writing b.snap or d.snap failed");
  auto here = SnapshotFileReader::Open("d.snap");
  auto below = SnapshotFileReader::Open("sub/d.snap");
  auto chain = SnapshotChain::Open("sub/d.snap");
  ASSERT_EQ(chdir(old_cwd), 0);
  ASSERT_TRUE(written.ok()) << written;
  ASSERT_TRUE(here.ok() && below.ok()) << here.status() << below.status();
  EXPECT_EQ((*here)->info().base_name, "b.snap");
  EXPECT_EQ((*below)->info().base_name, dir.File("b.snap"));
  ASSERT_TRUE(chain.ok()) << chain.status();
  std::vector<std::optional<Bytes>> state(4);
  Apply(state, b);
  Apply(state, d);
  ExpectChainHolds(*chain, state);
}

// --- Bad files.

// A FULL file with data pages, zero runs and several extents.
struct Sample {
  std::string path;
  PageMap pages;
  internal::SnapshotFileInfo info;
};

Sample WriteSample(const TempDir& dir, const std::string& name,
                   uint64_t page_count = 40) {
  Sample s{.path = dir.File(name), .pages = MixedPages(page_count, 9)};
  // Make sure pages 17 and 30 hold data (the corruption tests use them).
  std::mt19937_64 rng(10);
  s.pages[17] = RandomPages(rng, 1);
  s.pages[30] = RandomPages(rng, 1);
  EXPECT_TRUE(WriteFile(s.path, FullOptions(page_count), s.pages).ok());
  auto r = SnapshotFileReader::Open(s.path);
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) s.info = (*r)->info();
  return s;
}

TEST(SnapshotFileTest, TruncationAnywhereIsDataLossNamingBothSizes) {
  TempDir dir;
  const Sample s = WriteSample(dir, "whole.snap");
  const Bytes whole = ReadAll(s.path);
  ASSERT_EQ(whole.size(), s.info.file_size);
  const uint64_t meta = s.info.metadata_offset;
  const uint64_t footer = meta + s.info.metadata_length;
  const std::vector<std::pair<const char*, uint64_t>> cuts = {
      {"empty", 0},
      {"inside the magic", 5},
      {"inside the fixed header", 100},
      {"inside the header page", 2000},
      {"inside the data area", kPage + 17 * kPage + 100},
      {"at the end of the data area", meta},
      {"inside the metadata", meta + 30},
      {"at the footer", footer},
      {"inside the footer", footer + 20},
      {"one byte short", whole.size() - 1},
  };
  for (const auto& [where, cut] : cuts) {
    SCOPED_TRACE(absl::StrCat("cut ", where, " at ", cut));
    const std::string path = dir.File(absl::StrCat("cut-", cut, ".snap"));
    WriteAll(path, Bytes(whole.begin(), whole.begin() + cut));
    auto r = SnapshotFileReader::Open(path);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
    EXPECT_THAT(r.status().message(),
                AllOf(HasSubstr(path), HasSubstr("truncated"),
                      HasSubstr(absl::StrCat(cut))));
    if (cut >= 136) {
      EXPECT_THAT(r.status().message(),
                  HasSubstr(absl::StrCat(s.info.file_size)));
    }
    // The in-memory parser agrees.
    const absl::Status f =
        internal::ParseSnapshotFileForFuzzing(absl::MakeConstSpan(
            reinterpret_cast<const uint8_t*>(whole.data()), cut));
    EXPECT_EQ(f.code(), absl::StatusCode::kDataLoss) << f;
  }
  // Bytes after the footer are as wrong as missing ones.
  const std::string longer = dir.File("longer.snap");
  Bytes extra = whole;
  extra.resize(whole.size() + 10);
  WriteAll(longer, extra);
  auto r = SnapshotFileReader::Open(longer);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("10 unexpected bytes"));
  EXPECT_TRUE(
      internal::ParseSnapshotFileForFuzzing(
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(whole.data()),
                              whole.size()))
          .ok());
}

TEST(SnapshotFileTest, FlippedHeaderByteIsAChecksumMismatch) {
  TempDir dir;
  const Sample s = WriteSample(dir, "h.snap");
  FlipByte(s.path, kPageCountOff);
  auto r = SnapshotFileReader::Open(s.path);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(),
              AllOf(HasSubstr(s.path), HasSubstr("header checksum mismatch")));
}

// Rewrites the header of the file at `path` (resealed) to claim a region
// of `pages` pages, every one stored in a single DATA extent, laid out as
// a writer would lay it out: the header's sizes agree with each other, not
// with the bytes present. Returns the claimed layout.
internal::SnapshotFileInfo ClaimDataPages(const std::string& path,
                                          uint64_t pages) {
  internal::SnapshotFileInfo c;
  c.page_size = kPage;
  c.page_count = pages;
  c.data_pages = pages;
  c.extent_count = 1;
  EXPECT_TRUE(internal::snapshot_format::ComputeLayout(&c).ok());
  const std::vector<std::pair<size_t, uint64_t>> fields = {
      {24, c.page_count},      {64, c.data_pages},
      {72, 0},                 {80, c.extent_count},
      {88, c.data_offset},     {96, c.metadata_offset},
      {104, c.metadata_length}, {112, c.file_size}};
  for (const auto& [offset, value] : fields) Patch(path, offset, &value, 8);
  ResealHeader(path);
  return c;
}

// The process's peak resident set so far.
uint64_t PeakRssBytes() {
  struct rusage u;
  EXPECT_EQ(getrusage(RUSAGE_SELF, &u), 0);
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;
}

// Open's status for a file it must refuse without allocating a buffer of
// the size the file claims: the process's peak RSS grows by less than
// 64 MiB (the claims below are 256 MiB and more).
absl::Status OpenRefusedSmall(const std::string& path) {
  const uint64_t peak = PeakRssBytes();
  auto r = SnapshotFileReader::Open(path);
  EXPECT_LT(PeakRssBytes(), peak + (uint64_t{64} << 20));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  return r.status();
}

// A hostile or corrupt header can claim any metadata_length. Open sizes a
// buffer by it, so the claim must be refused first: against the header's
// own counts, against the file's size, and (for a sparse file as large as
// claimed) against the footer the claim would need. Each is DataLoss
// naming the value, and no buffer of the claimed size is ever allocated.
TEST(SnapshotFileTest, HugeMetadataClaimsAreRefusedBeforeAllocating) {
  TempDir dir;
  {
    SCOPED_TRACE("metadata_length disagrees with the counts");
    const Sample s = WriteSample(dir, "length.snap");
    const uint64_t claim = uint64_t{1} << 40;
    Patch(s.path, 104, &claim, 8);
    ResealHeader(s.path);
    EXPECT_THAT(OpenRefusedSmall(s.path).message(),
                AllOf(HasSubstr(s.path),
                      HasSubstr(absl::StrCat("metadata_length ", claim))));
  }
  // 2^26 DATA pages need 256 MiB of page checksums.
  constexpr uint64_t kClaimedPages = uint64_t{1} << 26;
  {
    SCOPED_TRACE("consistent counts, a small file");
    const Sample s = WriteSample(dir, "small.snap");
    const internal::SnapshotFileInfo c = ClaimDataPages(s.path, kClaimedPages);
    ASSERT_GT(c.metadata_length, uint64_t{256} << 20);
    EXPECT_THAT(OpenRefusedSmall(s.path).message(),
                AllOf(HasSubstr("truncated"),
                      HasSubstr(absl::StrCat(c.file_size)),
                      HasSubstr(absl::StrCat(s.info.file_size))));
  }
  {
    SCOPED_TRACE("consistent counts, a sparse file of the claimed size");
    const Sample s = WriteSample(dir, "sparse.snap");
    const internal::SnapshotFileInfo c = ClaimDataPages(s.path, kClaimedPages);
    ASSERT_EQ(truncate(s.path.c_str(), static_cast<off_t>(c.file_size)), 0)
        << strerror(errno);
    EXPECT_THAT(OpenRefusedSmall(s.path).message(),
                AllOf(HasSubstr("no footer at offset"),
                      HasSubstr(absl::StrCat(c.metadata_offset +
                                             c.metadata_length))));
  }
}

TEST(SnapshotFileTest, FlippedMetadataOrFooterByteIsDetectedAtOpen) {
  TempDir dir;
  const Sample s = WriteSample(dir, "m.snap");
  const uint64_t meta = s.info.metadata_offset;
  const uint64_t footer = meta + s.info.metadata_length;
  const std::vector<std::pair<uint64_t, const char*>> flips = {
      {meta + 2, "metadata checksum mismatch"},       // magic
      {meta + 24 + 8, "metadata checksum mismatch"},  // first extent's count
      {meta + 24 + 16 * s.info.extent_count + 1,
       "metadata checksum mismatch"},              // a page CRC
      {footer - 2, "metadata checksum mismatch"},  // the metadata CRC
      {footer + 1, "no footer"},                   // footer magic
      {footer + 20, "footer checksum mismatch"},   // footer id
      {footer + 62, "footer checksum mismatch"},   // footer CRC
  };
  for (const auto& [offset, what] : flips) {
    SCOPED_TRACE(absl::StrCat("flip at ", offset));
    const std::string path = dir.File(absl::StrCat("flip-", offset, ".snap"));
    WriteAll(path, ReadAll(s.path));
    FlipByte(path, offset);
    auto r = SnapshotFileReader::Open(path);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(r.status().message(), AllOf(HasSubstr(path), HasSubstr(what)));
  }
}

TEST(SnapshotFileTest, FlippedDataByteIsNamedByPage) {
  TempDir dir;
  const Sample s = WriteSample(dir, "d.snap");
  FlipByte(s.path, s.info.data_offset + 17 * kPage + 1000);
  FlipByte(s.path, s.info.data_offset + 30 * kPage + 5);
  // Open reads no page data.
  auto r = SnapshotFileReader::Open(s.path);
  ASSERT_TRUE(r.ok()) << r.status();
  Bytes out(kPage);
  const absl::Status read = (*r)->ReadPage(17, out.data());
  EXPECT_EQ(read.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(
      read.message(),
      AllOf(HasSubstr(s.path), HasSubstr("page 17 checksum mismatch"),
            HasSubstr(absl::StrFormat("stored 0x%08x", (*r)->Crc(17)))));
  ASSERT_EQ(pread((*r)->fd(), out.data(), kPage, (*r)->DataOffset(30)),
            static_cast<ssize_t>(kPage));
  const absl::Status verify = (*r)->VerifyPage(30, out.data());
  EXPECT_EQ(verify.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(verify.message(), HasSubstr("page 30 checksum mismatch"));
  // The first bad page, after the good ones before it were reported.
  uint64_t last_done = 0;
  const absl::Status all =
      (*r)->VerifyAll([&](uint64_t done, uint64_t) { last_done = done; });
  EXPECT_EQ(all.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(all.message(),
              AllOf(HasSubstr(s.path), HasSubstr("page 17 checksum mismatch"),
                    HasSubstr("computed 0x")));
  // Good pages still read.
  for (const auto& [p, b] : s.pages) {
    if (p == 17 || p == 30) continue;
    ASSERT_TRUE((*r)->ReadPage(p, out.data()).ok()) << "page " << p;
    EXPECT_EQ(out, b ? *b : Zeros());
  }
  // Through a chain too.
  auto chain = SnapshotChain::Open(s.path);
  ASSERT_TRUE(chain.ok());
  EXPECT_THAT(chain->ReadPage(17, out.data()).message(),
              HasSubstr("page 17 checksum mismatch"));
}

TEST(SnapshotFileTest, ZeroPagesVerifyAsZeros) {
  TempDir dir;
  const Sample s = WriteSample(dir, "z.snap");
  auto r = SnapshotFileReader::Open(s.path);
  ASSERT_TRUE(r.ok());
  uint64_t zero_page = s.info.page_count;
  for (uint64_t p = 0; p < s.info.page_count; ++p) {
    if ((*r)->Kind(p) == PageKind::kZero) zero_page = p;
  }
  ASSERT_LT(zero_page, s.info.page_count);
  Bytes page = Zeros();
  EXPECT_TRUE((*r)->VerifyPage(zero_page, page.data()).ok());
  page[123] = std::byte{7};
  const absl::Status v = (*r)->VerifyPage(zero_page, page.data());
  EXPECT_EQ(v.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(v.message(), AllOf(HasSubstr(absl::StrCat("page ", zero_page)),
                                 HasSubstr("byte 123")));
  EXPECT_EQ((*r)->VerifyPage(s.info.page_count, page.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*r)->ReadPage(s.info.page_count, page.data()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SnapshotFileTest, OtherVersionsAreRefusedNamingBoth) {
  TempDir dir;
  const Sample s = WriteSample(dir, "v.snap");
  const uint32_t v2 = 2;
  Patch(s.path, kVersionOff, &v2, 4);
  ResealHeader(s.path);  // as a version-2 writer would have
  auto r = SnapshotFileReader::Open(s.path);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              AllOf(HasSubstr(s.path), HasSubstr("format version 2"),
                    HasSubstr("version 1")));
}

TEST(SnapshotFileTest, NotASnapshotFile) {
  TempDir dir;
  const Sample s = WriteSample(dir, "magic.snap");
  Patch(s.path, 0, "XXXX", 4);
  auto r = SnapshotFileReader::Open(s.path);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              AllOf(HasSubstr(s.path), HasSubstr("not a snapshot file"),
                    HasSubstr("UPGRSNAP")));
  std::mt19937_64 rng(11);
  const std::string junk = dir.File("junk");
  WriteAll(junk, RandomPages(rng, 3));
  EXPECT_EQ(SnapshotFileReader::Open(junk).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SnapshotFileTest, MissingFileIsNotFound) {
  TempDir dir;
  const std::string path = dir.File("nope.snap");
  auto r = SnapshotFileReader::Open(path);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(path));
  EXPECT_EQ(SnapshotChain::Open(path).status().code(),
            absl::StatusCode::kNotFound);
}

// Base + one delta in `dir`; returns the delta's path.
std::string WritePair(const TempDir& dir, const std::string& base_name,
                      const std::string& delta_name) {
  std::mt19937_64 rng(12);
  PageMap b, d;
  b[0] = RandomPages(rng, 1);
  b[1] = RandomPages(rng, 1);
  d[1] = std::nullopt;
  d[2] = RandomPages(rng, 1);
  EXPECT_TRUE(WriteFile(dir.File(base_name), FullOptions(8), b).ok());
  EXPECT_TRUE(
      WriteFile(dir.File(delta_name), DeltaOptions(8, dir.File(base_name)), d)
          .ok());
  return dir.File(delta_name);
}

TEST(SnapshotFileTest, MissingBaseIsNotFoundNamingBothFiles) {
  TempDir dir;
  const std::string delta = WritePair(dir, "b.snap", "d.snap");
  ASSERT_EQ(unlink(dir.File("b.snap").c_str()), 0);
  // The delta alone still opens (its own pages are readable).
  ASSERT_TRUE(SnapshotFileReader::Open(delta).ok());
  auto chain = SnapshotChain::Open(delta);
  EXPECT_EQ(chain.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(chain.status().message(),
              AllOf(HasSubstr(delta), HasSubstr(dir.File("b.snap"))));
}

TEST(SnapshotFileTest, ReplacedBaseIsAnIdMismatch) {
  TempDir dir;
  const std::string delta = WritePair(dir, "b.snap", "d.snap");
  SnapshotId new_id;
  ASSERT_TRUE(
      WriteFile(dir.File("b.snap"), FullOptions(8), PageMap{}, &new_id).ok());
  auto chain = SnapshotChain::Open(delta);
  EXPECT_EQ(chain.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(chain.status().message(),
              AllOf(HasSubstr(delta), HasSubstr(dir.File("b.snap")),
                    HasSubstr(internal::SnapshotIdToString(new_id))));
}

TEST(SnapshotFileTest, BaseOfAnotherGeometryIsRefused) {
  TempDir dir;
  const std::string delta = WritePair(dir, "b.snap", "d.snap");
  // The writer checks when the delta is made...
  SnapshotFileWriter::Options o = DeltaOptions(8, dir.File("b.snap"));
  o.page_size = 2 * kPage;
  auto w = SnapshotFileWriter::Create(dir.File("d2.snap"), o);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(),
              AllOf(HasSubstr(dir.File("b.snap")), HasSubstr("page_size 8192"),
                    HasSubstr("page_size 4096")));
  o = DeltaOptions(9, dir.File("b.snap"));
  w = SnapshotFileWriter::Create(dir.File("d2.snap"), o);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(),
              AllOf(HasSubstr("page_count 9"), HasSubstr("page_count 8")));
  EXPECT_EQ(dir.List(), (std::vector<std::string>{"b.snap", "d.snap"}));
  // ...and the chain when a base of another page size takes its place.
  ASSERT_TRUE(
      WriteFile(dir.File("b.snap"), FullOptions(8, 2 * kPage), PageMap{}).ok());
  auto chain = SnapshotChain::Open(delta);
  EXPECT_EQ(chain.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(chain.status().message(),
              AllOf(HasSubstr(delta), HasSubstr("page_size 8192")));
}

TEST(SnapshotFileTest, CycleIsRefused) {
  TempDir dir;
  // d.snap names b.snap; rewrite it to name itself, with its own id (a
  // sealed header, as a buggy writer would leave).
  const std::string delta = WritePair(dir, "b.snap", "d.snap");
  auto r = SnapshotFileReader::Open(delta);
  ASSERT_TRUE(r.ok());
  const SnapshotId self = (*r)->info().id;
  ASSERT_EQ((*r)->info().base_name, "b.snap");
  r->reset();
  Patch(delta, kBaseIdOff, self.data(), self.size());
  Patch(delta, kBaseNameOff, "d.snap", 6);
  ResealHeader(delta);
  auto chain = SnapshotChain::Open(delta);
  EXPECT_EQ(chain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(chain.status().message(), HasSubstr("cycle"));
}

TEST(SnapshotFileTest, ChainsDeeperThanTheLimitAreRefused) {
  TempDir dir;
  ASSERT_TRUE(WriteFile(dir.File("s0"), FullOptions(4), PageMap{}).ok());
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(WriteFile(dir.File(absl::StrCat("s", i)),
                          DeltaOptions(4, dir.File(absl::StrCat("s", i - 1))),
                          PageMap{})
                    .ok());
  }
  EXPECT_TRUE(SnapshotChain::Open(dir.File("s3"), 3).ok());
  auto chain = SnapshotChain::Open(dir.File("s3"), 2);
  EXPECT_EQ(chain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(chain.status().message(), HasSubstr("more than 2 bases"));
}

// Every single-byte flip outside the data area (whose pages are checked on
// read, not at Open) and the header page's padding is caught by the
// in-memory parser, and none crashes it.
TEST(SnapshotFileTest, FuzzEntryRejectsEveryMetadataFlip) {
  TempDir dir;
  std::mt19937_64 rng(13);
  PageMap pages;
  pages[0] = RandomPages(rng, 1);
  pages[2] = std::nullopt;
  pages[3] = RandomPages(rng, 1);
  const std::string path = dir.File("f.snap");
  ASSERT_TRUE(WriteFile(path,
                        DeltaOptions(
                            4,
                            [&] {
                              const std::string b = dir.File("fbase.snap");
                              EXPECT_TRUE(
                                  WriteFile(b, FullOptions(4), PageMap{}).ok());
                              return b;
                            }()),
                        pages)
                  .ok());
  Bytes image = ReadAll(path);
  auto parse = [&image] {
    return internal::ParseSnapshotFileForFuzzing(absl::MakeConstSpan(
        reinterpret_cast<const uint8_t*>(image.data()), image.size()));
  };
  ASSERT_TRUE(parse().ok());
  const uint32_t header_length = Le32(image, kHeaderLengthOff);
  auto r = SnapshotFileReader::Open(path);
  ASSERT_TRUE(r.ok());
  const uint64_t meta = (*r)->info().metadata_offset;
  std::vector<uint64_t> offsets;
  for (uint64_t i = 0; i < header_length; ++i) offsets.push_back(i);
  for (uint64_t i = meta; i < image.size(); ++i) offsets.push_back(i);
  for (uint64_t off : offsets) {
    for (uint8_t bit = 1; bit != 0; bit <<= 1) {
      image[off] ^= std::byte{bit};
      ASSERT_FALSE(parse().ok()) << "flip of bit " << int{bit} << " at " << off;
      image[off] ^= std::byte{bit};
    }
  }
  // Random garbage of many sizes, and garbage behind a valid magic and
  // version, never crashes.
  for (size_t n : {0, 1, 8, 12, 135, 136, 200, 4096, 9000}) {
    Bytes junk = RandomPages(rng, 3);
    junk.resize(n);
    if (n >= 12) {
      std::memcpy(junk.data(), "UPGRSNAP\x01\0\0\0", 12);
    }
    EXPECT_FALSE(internal::ParseSnapshotFileForFuzzing(
                     absl::MakeConstSpan(
                         reinterpret_cast<const uint8_t*>(junk.data()), n))
                     .ok());
  }
}

// Recomputes every checksum of an in-memory image after a test changed
// fields, as a buggy writer would have sealed them: the header CRC, the
// metadata CRC and the footer's copy of it, the footer CRC. Follows the
// (possibly changed) header's offsets, skipping what lies past the end.
void Reseal(Bytes& b) {
  auto get64 = [&b](size_t off) {
    uint64_t v;
    std::memcpy(&v, b.data() + off, 8);
    return v;
  };
  auto put32 = [&b](size_t off, uint32_t v) {
    std::memcpy(b.data() + off, &v, 4);
  };
  if (b.size() < kBaseNameOff) return;
  const uint32_t header_length = Le32(b, kHeaderLengthOff);
  if (header_length >= kBaseNameOff && header_length <= b.size()) {
    put32(kHeaderCrcOff, 0);
    put32(kHeaderCrcOff, internal::Crc32c(b.data(), header_length));
  }
  const uint64_t meta = get64(96), len = get64(104);
  if (len < 4 || meta > b.size() || len > b.size() - meta ||
      kFooterBytes > b.size() - meta - len) {
    return;
  }
  const uint32_t crc = internal::Crc32c(b.data() + meta, len - 4);
  put32(meta + len - 4, crc);
  put32(meta + len + 12, crc);
  put32(meta + len + 60, internal::Crc32c(b.data() + meta + len, 60));
}

absl::Status Parse(const Bytes& b) {
  return internal::ParseSnapshotFileForFuzzing(absl::MakeConstSpan(
      reinterpret_cast<const uint8_t*>(b.data()), b.size()));
}

// Damage the checksums cannot see (a writer that sealed bad fields) is
// still refused, each with its reason.
TEST(SnapshotFileTest, StructuralChecksBehindValidChecksums) {
  TempDir dir;
  std::mt19937_64 rng(22);
  PageMap pages;
  pages[0] = RandomPages(rng, 1);
  pages[1] = RandomPages(rng, 1);
  pages[3] = std::nullopt;
  pages[5] = RandomPages(rng, 1);
  const std::string path = dir.File("s.snap");
  ASSERT_TRUE(WriteFile(path, FullOptions(8), pages).ok());
  const Bytes image = ReadAll(path);
  ASSERT_TRUE(Parse(image).ok());
  const uint64_t meta = 9 * kPage;
  const uint64_t ext = meta + 24;  // extents: [0,2) data, [3,4) zero, [5,6)
  const uint64_t footer = meta + 24 + 3 * 16 + 3 * 4 + 4;
  ASSERT_EQ(footer + kFooterBytes, image.size());
  struct Case {
    uint64_t offset;
    uint64_t value;
    int width;  // bytes
    const char* reason;
  };
  const std::vector<Case> cases = {
      {16, 5000, 4, "page_size 5000 is not a power of two"},
      {16, 1u << 31, 4, "page_size 2147483648"},
      {20, 3, 4, "kind 3 is neither"},
      {24, 0, 8, "page_count 0"},
      {24, ~uint64_t{0} / 2, 8, "makes the data area larger"},
      {32, 0, 8, "footer"},  // half the id: the footer's copy disagrees
      {48, 1, 8, "a FULL file names a base"},
      {64, 4, 8, "metadata_length"},  // data_pages
      {72, 2, 8,
       "the extents hold 3 data and 1 zero pages, the header says "
       "3 and 2"},
      {72, 9, 8, "counts do not fit the region"},
      {80, 2, 8, "metadata_length"},  // extent_count
      {88, 100, 8, "data_offset 100"},
      {96, meta + kPage, 8, "file_size"},
      {96, meta - kPage, 8, "metadata_offset"},
      {104, 1u << 20, 8, "metadata_length"},
      {112, 1u << 30, 8, "file_size"},
      {ext + 16, 1, 8, "overlap"},  // [1,..) inside [0,2)
      {ext + 8, 0, 4, "empty"},     // count 0
      {ext + 32, 8, 8, "pass page_count"},
      {ext + 40, 4, 4, "pass page_count"},  // [5, 9)
      {ext + 44, 3, 4, "kind 3 is neither ZERO"},
      {ext + 12, 0, 4, "kind 0 is neither ZERO"},
      {meta, 0x41, 1, "magic"},
      {meta + 8, 4, 8, "does not match the header"},
      {footer + 8, 2, 4, "does not match the header"},   // version
      {footer + 56, 1, 4, "does not match the header"},  // reserved
      {footer + 48, 1, 8, "does not match the header"},  // file_size
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("offset ", c.offset, " = ", c.value));
    Bytes b = image;
    std::memcpy(b.data() + c.offset, &c.value, c.width);
    Reseal(b);
    const absl::Status st = Parse(b);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    EXPECT_THAT(st.message(), HasSubstr(c.reason));
  }
}

// Random fields, sizes and bytes, resealed so the parser's deeper checks
// run: it never crashes (the sanitizer builds make this meaningful) and
// accepts only images whose lookups stay in range.
TEST(SnapshotFileTest, ResealedRandomDamageNeverCrashesTheParser) {
  TempDir dir;
  std::mt19937_64 rng(23);
  const std::string base = dir.File("rb.snap");
  ASSERT_TRUE(WriteFile(base, FullOptions(6), PageMap{}).ok());
  PageMap pages;
  pages[0] = RandomPages(rng, 1);
  pages[2] = std::nullopt;
  pages[4] = RandomPages(rng, 1);
  const std::string path = dir.File("r.snap");
  ASSERT_TRUE(WriteFile(path, DeltaOptions(6, base), pages).ok());
  const Bytes image = ReadAll(path);
  const uint64_t meta = 7 * kPage;
  const uint32_t header_length = Le32(image, kHeaderLengthOff);
  int accepted = 0;
  for (int round = 0; round < 20000; ++round) {
    Bytes b = image;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      // Somewhere in the header or the metadata and footer, aligned to a
      // field half the time, with small, huge or random values.
      const bool in_header = rng() % 2 == 0;
      uint64_t off = in_header ? rng() % header_length
                               : meta + rng() % (image.size() - meta);
      if (rng() % 2 == 0) off &= ~uint64_t{3};
      const uint64_t choices[] = {
          0, 1, 2, 3, 4096, ~uint64_t{0}, uint64_t{1} << 40, rng()};
      const uint64_t v = choices[rng() % 8];
      const size_t width = std::min<size_t>(1 + rng() % 8, b.size() - off);
      std::memcpy(b.data() + off, &v, width);
    }
    if (rng() % 8 == 0) b.resize(rng() % (b.size() + 100));
    Reseal(b);
    if (Parse(b).ok()) ++accepted;
  }
  // Some damage lands where any value is valid (the creation time, a page
  // CRC), so a few images still parse; most do not.
  EXPECT_LT(accepted, 20000 / 2);
}

// --- Bad writer calls.

TEST(SnapshotFileTest, WriterRefusesBadOptionsNamingThem) {
  TempDir dir;
  const std::string path = dir.File("o.snap");
  struct Case {
    SnapshotFileWriter::Options o;
    const char* what;
  };
  std::vector<Case> cases;
  cases.push_back({FullOptions(8, 3000), "page_size=3000"});
  cases.push_back({FullOptions(8, 0), "page_size=0"});
  cases.push_back({FullOptions(0), "page_count=0"});
  cases.push_back({FullOptions(8), "queue_depth=0"});
  cases.back().o.queue_depth = 0;
  cases.push_back({FullOptions(8), "base_path='x'"});
  cases.back().o.base_path = "x";
  cases.push_back({FullOptions(8), "needs Options.base_path"});
  cases.back().o.kind = SnapshotKind::kDelta;
  cases.push_back({FullOptions(uint64_t{1} << 52), "exceeds the largest file"});
  for (const Case& c : cases) {
    auto w = SnapshotFileWriter::Create(path, c.o);
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(w.status().message(), HasSubstr(c.what));
  }
  EXPECT_EQ(SnapshotFileWriter::Create("", FullOptions(8)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto w = SnapshotFileWriter::Create(path, DeltaOptions(8, dir.File("no")));
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(w.status().message(), AllOf(HasSubstr(path), HasSubstr("no")));
  EXPECT_TRUE(dir.List().empty());
}

TEST(SnapshotFileTest, WriterRefusesOutOfOrderAndOutOfRangePages) {
  TempDir dir;
  const std::string path = dir.File("order.snap");
  auto w = SnapshotFileWriter::Create(path, FullOptions(16));
  ASSERT_TRUE(w.ok());
  std::mt19937_64 rng(14);
  const Bytes two = RandomPages(rng, 2);
  ASSERT_TRUE((*w)->AddData(4, two).ok());  // pages 4, 5
  absl::Status s = (*w)->AddData(5, absl::MakeConstSpan(two).first(kPage));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("first_page=5"),
                                 HasSubstr("page 5 was already added")));
  s = (*w)->AddZero(2, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("AddZero(first_page=2)"));
  s = (*w)->AddData(15, two);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("first_page=15, count=2"),
                                 HasSubstr("16 pages")));
  s = (*w)->AddZero(uint64_t{1} << 63, 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = (*w)->AddZero(7, ~uint64_t{0});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = (*w)->AddData(8, absl::MakeConstSpan(two).first(100));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("100 bytes"));
  EXPECT_EQ((*w)->AddData(8, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->AddZero(8, 0).code(), absl::StatusCode::kInvalidArgument);
  // Refused calls change nothing: the writer goes on and the file holds
  // exactly the accepted pages.
  ASSERT_TRUE((*w)->AddZero(6, 2).ok());
  ASSERT_TRUE((*w)->AddData(8, two).ok());
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*w)->AddZero(12, 1).code(), absl::StatusCode::kFailedPrecondition);
  PageMap want;
  want[4] = Bytes(two.begin(), two.begin() + kPage);
  want[5] = Bytes(two.begin() + kPage, two.end());
  want[6] = want[7] = std::nullopt;
  want[8] = want[4];
  want[9] = want[5];
  auto r = SnapshotFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectFileHolds(**r, want);
  EXPECT_EQ(std::vector<SnapshotExtent>((*r)->extents().begin(),
                                        (*r)->extents().end()),
            ExpectedExtents(want));
}

// --- Failed saves.

TEST(SnapshotFileTest, WriterDestroyedWithoutCommitLeavesNothing) {
  TempDir dir;
  const std::string path = dir.File("abandoned.snap");
  {
    auto w = SnapshotFileWriter::Create(path, FullOptions(1000));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(Feed(**w, MixedPages(1000, 15)).ok());  // writes in flight
    EXPECT_EQ(dir.List().size(), 1u) << "the temporary file";
  }
  EXPECT_TRUE(dir.List().empty());
  EXPECT_FALSE(Exists(path));
}

// A ring whose write requests starting in [lo, hi) go to a bad descriptor,
// so the kernel itself completes them with EBADF.
class FailingRing final : public internal::os::IoUring {
 public:
  FailingRing(std::unique_ptr<internal::os::IoUring> real, uint64_t lo,
              uint64_t hi)
      : real_(std::move(real)), lo_(lo), hi_(hi) {}
  uint32_t sq_entries() const override { return real_->sq_entries(); }
  uint32_t cq_entries() const override { return real_->cq_entries(); }
  absl::Status RegisterBuffer(void* b, size_t n) override {
    return real_->RegisterBuffer(b, n);
  }
  absl::Status UnregisterBuffer() override { return real_->UnregisterBuffer(); }
  absl::StatusOr<int> RegisterFile(int fd) override {
    return real_->RegisterFile(fd);
  }
  absl::Status RegisterEventFd(int fd) override {
    return real_->RegisterEventFd(fd);
  }
  bool Prepare(const internal::os::IoRequest& r) override {
    internal::os::IoRequest copy = r;
    if (r.offset >= lo_ && r.offset < hi_) copy.fd = -1;
    return real_->Prepare(copy);
  }
  int Submit(uint32_t* submitted) override { return real_->Submit(submitted); }
  size_t Reap(absl::Span<internal::os::IoCompletion> out) override {
    return real_->Reap(out);
  }
  uint32_t Ready() const override { return real_->Ready(); }
  int WaitForCompletion(absl::Duration t) override {
    return real_->WaitForCompletion(t);
  }

 private:
  const std::unique_ptr<internal::os::IoUring> real_;
  const uint64_t lo_, hi_;
};

internal::SnapshotIoUringFactory FailingIn(uint64_t lo, uint64_t hi) {
  return [lo, hi](uint32_t depth)
             -> absl::StatusOr<std::unique_ptr<internal::os::IoUring>> {
    auto real = internal::os::CreateIoUring(depth);
    if (!real.ok()) return real.status();
    return std::unique_ptr<internal::os::IoUring>(
        new FailingRing(std::move(*real), lo, hi));
  };
}

// A failed save at each stage (data, metadata, header) leaves the good file
// that was at the path before untouched, and no temporary behind.
TEST(SnapshotFileTest, FailedWritesKeepTheOldFileAndLeaveNoTemporary) {
  TempDir dir;
  const Sample good = WriteSample(dir, "keep.snap");
  const Bytes good_bytes = ReadAll(good.path);
  const uint64_t meta = good.info.metadata_offset;
  const std::vector<std::pair<uint64_t, uint64_t>> stages = {
      {kPage, meta},         // data
      {meta, ~uint64_t{0}},  // metadata and footer
      {0, 1},                // header
  };
  for (const auto& [lo, hi] : stages) {
    SCOPED_TRACE(absl::StrCat("writes starting in [", lo, ", ", hi, ") fail"));
    SnapshotFileWriter::Options o = FullOptions(good.info.page_count);
    o.make_ring = FailingIn(lo, hi);
    auto w = SnapshotFileWriter::Create(good.path, o);
    ASSERT_TRUE(w.ok()) << w.status();
    const std::string temp = (*w)->temp_path();
    absl::Status s = Feed(**w, MixedPages(good.info.page_count, 16));
    if (s.ok()) s = (*w)->Commit();
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.message(), AllOf(HasSubstr(temp), HasSubstr("offset="),
                                   HasSubstr("Bad file descriptor")));
    // Sticky: the writer keeps saying so.
    EXPECT_EQ((*w)->AddZero(good.info.page_count - 1, 1).message(),
              s.message());
    w->reset();
    EXPECT_EQ(dir.List(), std::vector<std::string>{"keep.snap"});
    EXPECT_EQ(ReadAll(good.path), good_bytes);
  }
  auto r = SnapshotFileReader::Open(good.path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->info().id, good.info.id);
  ExpectFileHolds(**r, good.pages);
}

TEST(SnapshotFileTest, InjectedEioFailsTheSaveNamingTheOffset) {
  TempDir dir;
  const std::string path = dir.File("eio.snap");
  FakeIoUring* fake = nullptr;
  SnapshotFileWriter::Options o = FullOptions(64);
  o.make_ring = [&fake](uint32_t depth)
      -> absl::StatusOr<std::unique_ptr<internal::os::IoUring>> {
    auto real = internal::os::CreateIoUring(depth);
    if (!real.ok()) return real.status();
    auto f = std::make_unique<FakeIoUring>(std::move(*real));
    fake = f.get();
    return std::unique_ptr<internal::os::IoUring>(std::move(f));
  };
  auto w = SnapshotFileWriter::Create(path, o);
  ASSERT_TRUE(w.ok());
  fake->FailNext(internal::os::IoOp::kWrite, 1, EIO);
  std::mt19937_64 rng(17);
  absl::Status s = (*w)->AddData(3, RandomPages(rng, 2));
  if (s.ok()) s = (*w)->Commit();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("offset=16384"),
                                 HasSubstr("Input/output error")));
  w->reset();
  EXPECT_TRUE(dir.List().empty());
}

// Short writes, refused submissions and a one-deep queue still produce the
// exact file.
TEST(SnapshotFileTest, ShortWritesAndRefusedSubmitsStillRoundTrip) {
  TempDir dir;
  const std::string path = dir.File("short.snap");
  FakeIoUring* fake = nullptr;
  SnapshotFileWriter::Options o = FullOptions(200);
  o.queue_depth = 1;
  o.max_write_bytes = 3 * kPage;
  o.make_ring = [&fake](uint32_t depth)
      -> absl::StatusOr<std::unique_ptr<internal::os::IoUring>> {
    auto real = internal::os::CreateIoUring(depth);
    if (!real.ok()) return real.status();
    auto f = std::make_unique<FakeIoUring>(std::move(*real));
    f->ShortenEvery(2);
    f->RefuseSubmits(3, EAGAIN);
    fake = f.get();
    return std::unique_ptr<internal::os::IoUring>(std::move(f));
  };
  const PageMap pages = MixedPages(200, 18);
  ASSERT_TRUE(WriteFile(path, o, pages).ok());
  EXPECT_NE(fake, nullptr);
  auto r = SnapshotFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectFileHolds(**r, pages);
  EXPECT_TRUE((*r)->VerifyAll().ok());
}

TEST(SnapshotFileTest, CommitIntoARemovedDirectoryFailsAndLeavesNothing) {
  TempDir dir;
  const std::string sub = dir.File("gone");
  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
  const std::string path = sub + "/x.snap";
  auto w = SnapshotFileWriter::Create(path, FullOptions(32));
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(Feed(**w, MixedPages(32, 19)).ok());
  ASSERT_EQ(unlink((*w)->temp_path().c_str()), 0);
  ASSERT_EQ(rmdir(sub.c_str()), 0);
  const absl::Status s = (*w)->Commit();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(path));
  w->reset();
  EXPECT_FALSE(Exists(path));
  EXPECT_TRUE(dir.List().empty());
}

// Two writers to one path at once: distinct temporaries, and the path ends
// up holding one complete file (the last committed).
TEST(SnapshotFileTest, ConcurrentWritersToOnePathDoNotMix) {
  TempDir dir;
  const std::string path = dir.File("both.snap");
  const PageMap a = MixedPages(50, 20), b = MixedPages(50, 21);
  auto wa = SnapshotFileWriter::Create(path, FullOptions(50));
  auto wb = SnapshotFileWriter::Create(path, FullOptions(50));
  ASSERT_TRUE(wa.ok() && wb.ok());
  EXPECT_NE((*wa)->temp_path(), (*wb)->temp_path());
  ASSERT_TRUE(Feed(**wa, a).ok());
  ASSERT_TRUE(Feed(**wb, b).ok());
  ASSERT_TRUE((*wa)->Commit().ok());
  ASSERT_TRUE((*wb)->Commit().ok());
  wa->reset();
  wb->reset();
  EXPECT_EQ(dir.List(), std::vector<std::string>{"both.snap"});
  auto r = SnapshotFileReader::Open(path);
  ASSERT_TRUE(r.ok());
  ExpectFileHolds(**r, b);
}

}  // namespace
}  // namespace upager::testing
