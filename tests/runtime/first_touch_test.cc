// First touch: lazy zero-fill from many threads over a large region, and the
// fault-around window at its edges (region end, pages already present, read
// vs write faults, fault-around off). Every byte read back is checked
// against a shadow copy; which pages the kernel holds is checked with
// mincore(2).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

// Which pages of [p, p + pages) the kernel has mapped (private or the
// shared zero page).
std::vector<bool> Mapped(const void* p, size_t pages) {
  std::vector<unsigned char> vec(pages);
  EXPECT_EQ(
      mincore(const_cast<void*>(p), pages * sysconf(_SC_PAGESIZE), vec.data()),
      0);
  std::vector<bool> out(pages);
  for (size_t i = 0; i < pages; ++i) out[i] = vec[i] & 1;
  return out;
}

// "0-15,20,31-63": the mapped pages, for readable failures.
std::string MappedString(const std::vector<bool>& m) {
  std::string s;
  for (size_t i = 0; i < m.size();) {
    if (!m[i]) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j + 1 < m.size() && m[j + 1]) ++j;
    absl::StrAppend(&s, s.empty() ? "" : ",", i);
    if (j > i) absl::StrAppend(&s, "-", j);
    i = j + 1;
  }
  return s;
}

// ---------------------------------------------------------------------------
// Multi-threaded first touch.

// Layout of the 512 MiB region, in pages (4 KiB pages; scaled otherwise):
//   [0, kInterleaved)              page p written by thread p % kThreads
//   [kContig, kContig + 4 * 4096)  thread t writes its own 16 MiB block
//   [kShared, kShared + 1024)      every thread writes its own quarter of
//                                  every page (concurrent faults on one page)
//   [kRead, kRead + 4 * 4096)      thread t reads its own block: all zero
//   the rest                       untouched until the final check
constexpr int kThreads = 4;
constexpr uint64_t kInterleaved = 8192;
constexpr uint64_t kContig = kInterleaved;
constexpr uint64_t kContigPerThread = 4096;
constexpr uint64_t kShared = kContig + kThreads * kContigPerThread;
constexpr uint64_t kSharedPages = 1024;
constexpr uint64_t kRead = 65536;
constexpr uint64_t kReadPerThread = 4096;
constexpr uint64_t kWrittenPages =
    kInterleaved + kThreads * kContigPerThread + kSharedPages;

unsigned char ThreadPattern(int t, uint64_t page, size_t i) {
  return static_cast<unsigned char>((page * 131 + i * 7 + t * 61) % 255 + 1);
}

class MultiThreadFirstTouchTest
    : public ::testing::TestWithParam<std::tuple<int, uint32_t>> {};

TEST_P(MultiThreadFirstTouchTest, EveryByteMatchesTheShadow) {
  const auto [service_threads, fault_around] = GetParam();
  RuntimeOptions o;
  o.service_threads = service_threads;
  o.fault_around_pages = fault_around;
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  const size_t ps = rt->page_size();
  const uint64_t pages = (512ull << 20) / 4096;
  auto r = rt->Map({.size = pages * ps, .name = "first-touch"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* const p = (*r)->data();
  // Untouched pages of the shadow stay zero (calloc-like: no cost).
  std::vector<unsigned char> shadow(pages * ps, 0);
  std::vector<uint64_t> nonzero_reads(kThreads, 0);

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto write_page = [&](uint64_t page, size_t from, size_t len) {
        unsigned char* s = shadow.data() + page * ps;
        for (size_t i = from; i < from + len; ++i) {
          s[i] = ThreadPattern(t, page, i);
        }
        std::memcpy(p + page * ps + from, s + from, len);
      };
      // Interleaved, contiguous and shared writes alternate so the threads
      // fault in all three areas at once.
      const uint64_t contig = kContig + t * kContigPerThread;
      const size_t quarter = ps / kThreads;
      for (uint64_t i = 0; i < kContigPerThread; ++i) {
        const uint64_t ip = i * kThreads + t;
        if (ip < kInterleaved) write_page(ip, 0, ps);
        write_page(contig + i, 0, ps);
        if (i < kSharedPages) write_page(kShared + i, t * quarter, quarter);
        const std::byte* rp = p + (kRead + t * kReadPerThread + i) * ps;
        for (size_t b = 0; b < ps; b += 64) {
          if (rp[b] != std::byte{0}) ++nonzero_reads[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(nonzero_reads[t], 0u) << t;

  const Stats s = SettledStats(*rt);
  EXPECT_EQ(s.errors, 0u) << s.first_error;
  EXPECT_GT(s.faults_missing_write, 0u);
  EXPECT_GT(s.faults_missing_read, 0u);
  EXPECT_GE(s.pages_zero_filled, kWrittenPages);
  EXPECT_GE(s.pages_zero_mapped, kThreads * kReadPerThread);
  if (fault_around == 1) {
    // One page per fault: exactly the pages written are private, exactly
    // the pages only read are the zero page.
    EXPECT_EQ(s.resident_pages, kWrittenPages);
    EXPECT_EQ(s.zero_mapped_pages, kThreads * kReadPerThread);
    EXPECT_EQ(s.pages_fault_around, 0u);
    EXPECT_GE(s.faults_missing_write, kWrittenPages);
  } else {
    // Windows start wherever a thread faulted first; only the last shared
    // page's window can run past the written pages.
    EXPECT_GE(s.resident_pages, kWrittenPages);
    EXPECT_LE(s.resident_pages, kWrittenPages + fault_around - 1);
    EXPECT_EQ(s.zero_mapped_pages, kThreads * kReadPerThread);
    EXPECT_GT(s.pages_fault_around, 0u);
    EXPECT_LT(s.faults_missing_write, kWrittenPages);
  }
  EXPECT_EQ(s.resident_pages, (*r)->resident_pages());
  EXPECT_EQ(s.zero_mapped_pages, (*r)->zero_mapped_pages());

  // Every byte of what the threads wrote or read.
  auto check = [&](uint64_t first, uint64_t count) {
    ASSERT_EQ(
        std::memcmp(p + first * ps, shadow.data() + first * ps, count * ps), 0)
        << "mismatch in pages [" << first << ", " << first + count << ")";
  };
  check(0, kShared + kSharedPages);
  check(kRead, kThreads * kReadPerThread);
  // The rest was never touched: the kernel holds none of it (beyond the
  // last write window), and a sample of it reads as zero.
  const uint64_t spill = kShared + kSharedPages + fault_around - 1;
  const std::vector<bool> mapped = Mapped(p, pages);
  uint64_t mapped_untouched = 0;
  for (uint64_t page = spill; page < pages; ++page) {
    if (page >= kRead && page < kRead + kThreads * kReadPerThread) continue;
    mapped_untouched += mapped[page];
  }
  EXPECT_EQ(mapped_untouched, 0u);
  for (uint64_t page = spill; page < pages; page += 97) check(page, 1);
  check(pages - 1, 1);
  EXPECT_EQ(rt->stats().errors, 0u);
  EXPECT_TRUE(rt->Unmap(*r).ok());
}

INSTANTIATE_TEST_SUITE_P(
    ServiceThreadsAndFaultAround, MultiThreadFirstTouchTest,
    ::testing::Combine(::testing::Values(1, 2), ::testing::Values(1u, 16u)),
    [](const auto& info) {
      return absl::StrCat(std::get<0>(info.param), "ServiceThreads_",
                          "FaultAround", std::get<1>(info.param));
    });

// ---------------------------------------------------------------------------
// Fault-around window edges. Each case uses a fresh 64-page region with a
// 16-page window and checks, after each touch, exactly which pages the
// kernel holds and what the counters say.

class FaultAroundEdgeTest : public ::testing::Test {
 protected:
  static constexpr size_t kPages = 64;
  void SetUp() override {
    // A fixed window: the adaptive growth is tested on its own below.
    rt_ = MakeRuntime({.fault_around_max_pages = 16});
    ASSERT_NE(rt_, nullptr);
    ps_ = rt_->page_size();
    auto r = rt_->Map(
        {.size = kPages * ps_, .name = "window", .fault_around_pages = 16});
    ASSERT_TRUE(r.ok()) << r.status();
    region_ = *r;
    p_ = region_->data();
    shadow_.assign(kPages * ps_, 0);
  }
  void TearDown() override {
    if (rt_ != nullptr && region_ != nullptr) {
      EXPECT_TRUE(rt_->Unmap(region_).ok());
    }
  }
  // Writes a pattern over the whole page.
  void WritePage(size_t page, int seed) {
    for (size_t i = 0; i < ps_; ++i) {
      shadow_[page * ps_ + i] =
          static_cast<unsigned char>((page * 17 + i * 5 + seed) % 253 + 1);
    }
    std::memcpy(p_ + page * ps_, shadow_.data() + page * ps_, ps_);
  }
  // Reads the whole page; it must match the shadow.
  void ReadPage(size_t page) {
    std::vector<unsigned char> got(ps_);
    std::memcpy(got.data(), p_ + page * ps_, ps_);
    EXPECT_EQ(std::memcmp(got.data(), shadow_.data() + page * ps_, ps_), 0)
        << "page " << page;
  }
  void ExpectMapped(const std::string& want) {
    EXPECT_EQ(MappedString(Mapped(p_, kPages)), want);
  }
  void ExpectAllBytes() {
    EXPECT_EQ(std::memcmp(p_, shadow_.data(), shadow_.size()), 0);
  }

  std::unique_ptr<Runtime> rt_;
  size_t ps_ = 0;
  Region* region_ = nullptr;
  std::byte* p_ = nullptr;
  std::vector<unsigned char> shadow_;
};

TEST_F(FaultAroundEdgeTest, LastPageFillsOnlyItself) {
  WritePage(kPages - 1, 1);
  const Stats s = SettledStats(*rt_);
  ExpectMapped("63");
  EXPECT_EQ(s.resident_pages, 1u);
  EXPECT_EQ(s.pages_fault_around, 0u);
  EXPECT_EQ(s.faults_missing_write, 1u);
  ExpectAllBytes();
}

TEST_F(FaultAroundEdgeTest, WindowIsClippedAtTheRegionEnd) {
  WritePage(kPages - 4, 2);  // 3 pages before the last
  Stats s = SettledStats(*rt_);
  ExpectMapped("60-63");
  EXPECT_EQ(s.resident_pages, 4u);
  EXPECT_EQ(s.pages_fault_around, 3u);
  // The pages filled around it are zero and do not fault again.
  ReadPage(kPages - 3);
  ReadPage(kPages - 1);
  s = SettledStats(*rt_);
  EXPECT_EQ(s.faults_missing_write + s.faults_missing_read, 1u);
  ExpectAllBytes();
}

TEST_F(FaultAroundEdgeTest, FirstPageFillsAFullWindow) {
  WritePage(0, 3);
  Stats s = SettledStats(*rt_);
  ExpectMapped("0-15");
  EXPECT_EQ(s.resident_pages, 16u);
  EXPECT_EQ(s.pages_zero_filled, 16u);
  EXPECT_EQ(s.pages_fault_around, 15u);
  for (size_t page = 1; page < 16; ++page) WritePage(page, 4);
  s = SettledStats(*rt_);
  EXPECT_EQ(s.faults_missing_write, 1u);
  WritePage(16, 5);  // next window
  s = SettledStats(*rt_);
  ExpectMapped("0-31");
  EXPECT_EQ(s.faults_missing_write, 2u);
  EXPECT_EQ(s.resident_pages, 32u);
  ExpectAllBytes();
}

TEST_F(FaultAroundEdgeTest, WindowStopsBeforePresentPagesAndKeepsTheirData) {
  // Page 20 written first (its own window covers 20-35), page 40 too
  // (40-55). Then faults just before each: the windows must stop at the
  // present pages, whose bytes must survive.
  WritePage(20, 6);
  WritePage(40, 7);
  ExpectMapped("20-35,40-55");
  WritePage(15, 8);  // window 15-19
  Stats s = SettledStats(*rt_);
  ExpectMapped("15-35,40-55");
  EXPECT_EQ(s.resident_pages, 16u + 16u + 5u);
  EXPECT_EQ(s.pages_fault_around, 15u + 15u + 4u);
  WritePage(36, 9);  // window 36-39
  s = SettledStats(*rt_);
  ExpectMapped("15-55");
  EXPECT_EQ(s.resident_pages, 16u + 16u + 5u + 4u);
  ReadPage(20);
  ReadPage(40);
  ReadPage(19);
  // A read fault right before a present page: zero page, clipped too.
  ReadPage(12);  // window 12-14
  s = SettledStats(*rt_);
  ExpectMapped("12-55");
  EXPECT_EQ(s.zero_mapped_pages, 3u);
  EXPECT_EQ(s.resident_pages, 41u);
  EXPECT_EQ(s.faults_missing_write, 4u);
  EXPECT_EQ(s.faults_missing_read, 1u);
  ExpectAllBytes();
}

TEST_F(FaultAroundEdgeTest, ReadFaultMapsTheZeroPage) {
  ReadPage(0);
  Stats s = SettledStats(*rt_);
  ExpectMapped("0-15");
  EXPECT_EQ(s.zero_mapped_pages, 16u);
  EXPECT_EQ(region_->zero_mapped_pages(), 16u);
  EXPECT_EQ(s.resident_pages, 0u);
  EXPECT_EQ(s.pages_zero_mapped, 16u);
  EXPECT_EQ(s.pages_zero_filled, 0u);
  for (size_t page = 1; page < 16; ++page) ReadPage(page);
  s = SettledStats(*rt_);
  EXPECT_EQ(s.faults_missing_read, 1u);
  // Writing a zero-mapped page is the kernel's business (copy on write):
  // no fault reaches us and the page stays counted as zero-mapped.
  WritePage(3, 10);
  ReadPage(3);
  // A write fault right after: private pages.
  WritePage(16, 11);
  s = SettledStats(*rt_);
  ExpectMapped("0-31");
  EXPECT_EQ(s.faults_missing_write, 1u);
  EXPECT_EQ(s.resident_pages, 16u);
  EXPECT_EQ(s.zero_mapped_pages, 16u);
  ExpectAllBytes();
}

TEST(FaultAroundOffTest, OnePagePerFault) {
  // Off per region (overriding the runtime's 16) and for the whole runtime.
  for (const bool per_region : {true, false}) {
    SCOPED_TRACE(per_region ? "per region" : "per runtime");
    RuntimeOptions o;
    if (!per_region) o.fault_around_pages = 1;
    auto rt = MakeRuntime(o);
    ASSERT_NE(rt, nullptr);
    const size_t ps = rt->page_size();
    RegionOptions ro{.size = 64 * ps, .name = "off"};
    if (per_region) ro.fault_around_pages = 1;
    auto r = rt->Map(ro);
    ASSERT_TRUE(r.ok()) << r.status();
    std::byte* p = (*r)->data();
    std::vector<unsigned char> shadow(64 * ps, 0);
    for (size_t page = 0; page < 32; ++page) {
      shadow[page * ps + page] = static_cast<unsigned char>(page + 1);
      p[page * ps + page] = static_cast<std::byte>(page + 1);
      ASSERT_EQ(MappedString(Mapped(p, 64)),
                page == 0 ? "0" : absl::StrCat("0-", page));
    }
    for (size_t page = 32; page < 48; ++page) {
      ASSERT_EQ(p[page * ps + 7], std::byte{0});
    }
    EXPECT_EQ(MappedString(Mapped(p, 64)), "0-47");
    const Stats s = SettledStats(*rt);
    EXPECT_EQ(s.pages_fault_around, 0u);
    EXPECT_EQ(s.faults_missing_write, 32u);
    EXPECT_EQ(s.faults_missing_read, 16u);
    EXPECT_EQ(s.resident_pages, 32u);
    EXPECT_EQ(s.zero_mapped_pages, 16u);
    EXPECT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);
    EXPECT_TRUE(rt->Unmap(*r).ok());
  }
}

TEST(FaultAroundWindowSizeTest, RuntimeDefaultAndRegionOverride) {
  RuntimeOptions o;
  o.fault_around_pages = 4;
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  const size_t ps = rt->page_size();
  auto small = rt->Map({.size = 64 * ps, .name = "default4"});
  auto big = rt->Map(
      {.size = 100 * ps, .name = "override512", .fault_around_pages = 512});
  ASSERT_TRUE(small.ok() && big.ok());
  (*small)->data()[5 * ps] = std::byte{1};
  (*big)->data()[0] = std::byte{2};
  const Stats s = SettledStats(*rt);
  EXPECT_EQ(MappedString(Mapped((*small)->data(), 64)), "5-8");
  EXPECT_EQ(MappedString(Mapped((*big)->data(), 100)), "0-99");
  EXPECT_EQ((*small)->resident_pages(), 4u);
  EXPECT_EQ((*big)->resident_pages(), 100u);
  EXPECT_EQ(s.faults_missing_write, 2u);
  std::vector<unsigned char> want(100 * ps, 0);
  want[0] = 2;
  EXPECT_EQ(std::memcmp((*big)->data(), want.data(), want.size()), 0);
  want[0] = 0;
  want[5 * ps] = 1;
  EXPECT_EQ(std::memcmp((*small)->data(), want.data(), 64 * ps), 0);
  EXPECT_TRUE(rt->Unmap(*small).ok());
  EXPECT_TRUE(rt->Unmap(*big).ok());
}

}  // namespace
}  // namespace upager::testing

namespace upager::testing {
namespace {

TEST(AdaptiveFaultAroundTest, SequentialTouchGrowsTheWindowRandomDoesNot) {
  auto rt = CreateForTest({.fault_around_pages = 16, .fault_around_max_pages = 256});
  ASSERT_TRUE(rt.ok()) << rt.status();
  const size_t ps = (*rt)->page_size();
  constexpr size_t kPages = 4096;
  auto seq = (*rt)->Map({.size = kPages * ps, .name = "seq"});
  ASSERT_TRUE(seq.ok());
  std::vector<unsigned char> shadow(kPages * ps, 0);
  for (size_t i = 0; i < kPages; ++i) {
    (*seq)->data()[i * ps + 7] = std::byte{static_cast<unsigned char>(i | 1)};
    shadow[i * ps + 7] = static_cast<unsigned char>(i | 1);
  }
  ASSERT_EQ(std::memcmp((*seq)->data(), shadow.data(), shadow.size()), 0);
  // 16 + 32 + 64 + 128 + 256 * 14 + ... : about 4096 / 256 + 4 faults,
  // instead of 4096 / 16 = 256 with a fixed window.
  Stats s = SettledStats(**rt);
  EXPECT_LE(s.faults_missing_write, 4096u / 256 + 8) << s.ToString();
  EXPECT_EQ(s.pages_zero_filled, kPages);

  // Touches 100 pages apart never form a stream: each fills the base
  // window and no more.
  auto sparse = (*rt)->Map({.size = kPages * ps, .name = "sparse"});
  ASSERT_TRUE(sparse.ok());
  for (size_t i = 0; i < kPages; i += 100) {
    (*sparse)->data()[i * ps] = std::byte{1};
  }
  EXPECT_TRUE(Eventually([&] {
    return (*rt)->stats().pages_zero_filled == kPages + 41 * 16;
  })) << (*rt)->stats().ToString();
  for (size_t i = 0; i < kPages; ++i) {
    ASSERT_EQ(static_cast<int>((*sparse)->data()[i * ps]), i % 100 == 0 ? 1 : 0)
        << i;
  }
}

}  // namespace
}  // namespace upager::testing
