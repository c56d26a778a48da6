// The public API end to end on the real kernel: bad input, many regions,
// faults the kernel takes on the application's behalf (read(2) into a
// region), user-mode-only userfaultfds, and Stats. Every test that pages
// checks the bytes it reads back against a shadow copy.
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;

// A byte pattern that differs per (seed, offset), never all zero.
unsigned char Pattern(uint64_t seed, uint64_t i) {
  return static_cast<unsigned char>((seed * 131 + i * 7 + (i >> 12) * 3) % 251 +
                                    1);
}

std::vector<unsigned char> Shadow(uint64_t seed, size_t n) {
  std::vector<unsigned char> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = Pattern(seed, i);
  return v;
}

// Maps a region at a fixed address inside a range of `range` bytes nobody
// uses, `offset` bytes into it, and returns the region. Finding a free range
// means reserving and releasing it, and until the region is mapped any other
// thread of this process (a sanitizer's fake stacks, the allocator, a service
// thread starting up) may take it: the kernel hands out the highest free gap
// first, which is the one just released. So a fixed mapping that fails on a
// foreign occupant is retried with a new range; any other failure is returned.
absl::StatusOr<Region*> MapInFreeRange(Runtime& rt, RegionOptions o,
                                       size_t range, size_t offset) {
  absl::StatusOr<Region*> r = absl::UnknownError("no attempt made");
  for (int attempt = 0; attempt < 16; ++attempt) {
    void* p = mmap(nullptr, range, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return absl::ResourceExhaustedError("mmap failed");
    munmap(p, range);
    o.fixed_address = static_cast<std::byte*>(p) + offset;
    r = rt.Map(o);
    if (r.ok() && (*r)->data() != o.fixed_address) {
      return absl::InternalError(
          absl::StrFormat("region mapped at %p, not at fixed_address %p",
                          (*r)->data(), o.fixed_address));
    }
    if (!absl::IsAlreadyExists(r.status()) ||
        !absl::StrContains(r.status().message(), "an existing mapping")) {
      return r;
    }
  }
  return r;
}

// The mapping of this process that holds `addr`, as "start-end perms", from
// /proc/self/maps ("" if none does).
std::string MappingAt(uintptr_t addr) {
  std::FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return "";
  std::string found;
  char line[512];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    unsigned long start = 0, end = 0;
    char perms[8] = {};
    if (std::sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3 &&
        start <= addr && addr < end) {
      found = absl::StrFormat("%#x-%#x %s", start, end, perms);
      break;
    }
  }
  std::fclose(f);
  return found;
}

// ---------------------------------------------------------------------------
// Bad input.

TEST(RuntimeOptionsTest, OutOfRangeValuesAreRejectedNamingTheValue) {
  // (field as named in the message, value, setter)
  const struct {
    const char* field;
    int64_t value;
    void (*set)(RuntimeOptions&, int64_t);
  } cases[] = {
      {"service_threads", 65,
       [](RuntimeOptions& o, int64_t v) { o.service_threads = static_cast<int>(v); }},
      {"service_threads", -1,
       [](RuntimeOptions& o, int64_t v) { o.service_threads = static_cast<int>(v); }},
      {"fault_around_pages", 0,
       [](RuntimeOptions& o, int64_t v) { o.fault_around_pages = static_cast<uint32_t>(v); }},
      {"fault_around_pages", 513,
       [](RuntimeOptions& o, int64_t v) { o.fault_around_pages = static_cast<uint32_t>(v); }},
      {"fault_around_max_pages", 0,
       [](RuntimeOptions& o, int64_t v) { o.fault_around_max_pages = static_cast<uint32_t>(v); }},
      {"fault_around_max_pages", 513,
       [](RuntimeOptions& o, int64_t v) { o.fault_around_max_pages = static_cast<uint32_t>(v); }},
      {"max_events_per_read", 0,
       [](RuntimeOptions& o, int64_t v) { o.max_events_per_read = static_cast<uint32_t>(v); }},
      {"max_events_per_read", 65,
       [](RuntimeOptions& o, int64_t v) { o.max_events_per_read = static_cast<uint32_t>(v); }},
      {"service_spin_ns", 1000001,
       [](RuntimeOptions& o, int64_t v) { o.service_spin_ns = static_cast<uint32_t>(v); }},
      {"swap_in_spin_ns", 1000001,
       [](RuntimeOptions& o, int64_t v) { o.swap_in_spin_ns = static_cast<uint32_t>(v); }},
      {"uffd_open", 9,
       [](RuntimeOptions& o, int64_t v) { o.uffd_open = static_cast<UffdOpenMode>(v); }},
      {"fault_mode", 7,
       [](RuntimeOptions& o, int64_t v) { o.fault_mode = static_cast<FaultMode>(v); }},
  };
  for (const auto& c : cases) {
    RuntimeOptions o;
    c.set(o, c.value);
    auto rt = Runtime::Create(o);
    ASSERT_FALSE(rt.ok()) << c.field << " = " << c.value;
    EXPECT_EQ(rt.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(rt.status().message()),
                HasSubstr(absl::StrCat(c.field, " = ", c.value)));
  }
}

TEST(RuntimeOptionsTest, UnpinnedServiceThreadsReportNoCpus) {
  RuntimeOptions o;
  o.service_threads = 3;
  o.pin_service_threads = false;
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->stats().service_threads, 3);
  EXPECT_TRUE(rt->stats().service_cpus.empty());
  auto r = rt->Map({.size = 64 * rt->page_size(), .name = "unpinned"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::memset((*r)->data(), 0x5a, 64 * rt->page_size());
  for (size_t i = 0; i < 64 * rt->page_size(); ++i) {
    ASSERT_EQ(static_cast<unsigned char>((*r)->data()[i]), 0x5a) << i;
  }
}

TEST(RuntimeOptionsTest, BoundaryValuesAreAccepted) {
  RuntimeOptions o;
  o.service_threads = RuntimeOptions::kMaxServiceThreads;
  o.fault_around_pages = RuntimeOptions::kMaxFaultAroundPages;
  o.max_events_per_read = 1;
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->stats().service_threads, RuntimeOptions::kMaxServiceThreads);
  const size_t ps = rt->page_size();
  auto r = rt->Map({.size = 600 * ps, .name = "edge"});
  ASSERT_TRUE(r.ok()) << r.status();
  const auto shadow = Shadow(7, 600 * ps);
  std::memcpy((*r)->data(), shadow.data(), shadow.size());
  EXPECT_EQ(std::memcmp((*r)->data(), shadow.data(), shadow.size()), 0);
  // One fault, a 512-page window, then one more for the rest.
  EXPECT_EQ(SettledStats(*rt).resident_pages, 600u);
  EXPECT_EQ((*r)->resident_pages(), 600u);
  EXPECT_TRUE(rt->Unmap(*r).ok());
}

class MapBadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    ps_ = rt_->page_size();
  }
  void ExpectNothingMapped() {
    const Stats s = rt_->stats();
    EXPECT_EQ(s.regions, live_);
  }
  std::unique_ptr<Runtime> rt_;
  size_t ps_ = 0;
  uint64_t live_ = 0;
};

TEST_F(MapBadInputTest, ZeroSize) {
  auto r = rt_->Map({.size = 0, .name = "zero"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("size = 0"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("'zero'"));
  ExpectNothingMapped();
}

TEST_F(MapBadInputTest, SizeNotPageMultiple) {
  for (size_t bad : {size_t{1}, ps_ + 1, 3 * ps_ - 7}) {
    auto r = rt_->Map({.size = bad, .name = "odd"});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr(absl::StrCat("size = ", bad)));
  }
  ExpectNothingMapped();
}

TEST_F(MapBadInputTest, MisalignedFixedAddress) {
  // A range this test holds (PROT_NONE), so nothing else can land there
  // while it looks; a Map that wrongly mapped over it would change it.
  void* hold = mmap(nullptr, 16 * ps_, PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(hold, MAP_FAILED);
  const auto base = reinterpret_cast<uintptr_t>(hold);
  const std::string before = MappingAt(base);
  ASSERT_THAT(before, HasSubstr(" ---p"));
  for (uintptr_t bad : {base + 1, base + ps_ / 2, base + ps_ - 1}) {
    auto r = rt_->Map({.size = 4 * ps_,
                       .name = "misaligned",
                       .fixed_address = reinterpret_cast<void*>(bad)});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr(absl::StrFormat("%#x", bad)));
  }
  // Nothing was mapped there: the held range is one untouched mapping.
  EXPECT_EQ(MappingAt(base), before);
  munmap(hold, 16 * ps_);
  ExpectNothingMapped();
}

TEST_F(MapBadInputTest, RegionFaultAroundOutOfRange) {
  for (uint32_t bad : {0u, 513u}) {
    auto r =
        rt_->Map({.size = 4 * ps_, .name = "fa", .fault_around_pages = bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr(absl::StrCat("fault_around_pages = ", bad)));
  }
  ExpectNothingMapped();
}

TEST_F(MapBadInputTest, FixedAddressOverlappingARegion) {
  // Layout, in pages of a free 64-page range: the first region at [16, 32).
  auto first =
      MapInFreeRange(*rt_, {.size = 16 * ps_, .name = "first"}, 64 * ps_,
                     16 * ps_);
  ASSERT_TRUE(first.ok()) << first.status();
  const uintptr_t base =
      reinterpret_cast<uintptr_t>((*first)->data()) - 16 * ps_;
  live_ = 1;
  const std::string first_range =
      absl::StrFormat("[%#x, %#x)", base + 16 * ps_, base + 32 * ps_);

  struct Case {
    uint64_t start_page, pages;
  };
  // Exactly over it, starting inside it, ending inside it.
  for (const Case c : {Case{16, 16}, Case{20, 4}, Case{24, 16}, Case{8, 9}}) {
    auto r = rt_->Map(
        {.size = c.pages * ps_,
         .name = "second",
         .fixed_address = reinterpret_cast<void*>(base + c.start_page * ps_)});
    ASSERT_FALSE(r.ok()) << c.start_page;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
    const std::string msg(r.status().message());
    EXPECT_THAT(msg, HasSubstr("'first'")) << c.start_page;
    EXPECT_THAT(msg, HasSubstr(first_range)) << c.start_page;
    EXPECT_THAT(msg, HasSubstr("'second'"));
  }
  ExpectNothingMapped();
  // The first region is untouched by the failed attempts and still served.
  const auto shadow = Shadow(1, 16 * ps_);
  std::memcpy((*first)->data(), shadow.data(), shadow.size());
  EXPECT_EQ(std::memcmp((*first)->data(), shadow.data(), shadow.size()), 0);
  EXPECT_GT(rt_->stats().faults_missing_write, 0u);
  EXPECT_TRUE(rt_->Unmap(*first).ok());
}

TEST_F(MapBadInputTest, FixedAddressCoveringARegionNamesIt) {
  // A second region that starts before the first and ends after it.
  auto first =
      MapInFreeRange(*rt_, {.size = 16 * ps_, .name = "first"}, 64 * ps_,
                     16 * ps_);
  ASSERT_TRUE(first.ok()) << first.status();
  const uintptr_t base =
      reinterpret_cast<uintptr_t>((*first)->data()) - 16 * ps_;
  live_ = 1;
  auto r = rt_->Map({.size = 32 * ps_,
                     .name = "cover",
                     .fixed_address = reinterpret_cast<void*>(base + 8 * ps_)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("'first'"));
  ExpectNothingMapped();
  EXPECT_TRUE(rt_->Unmap(*first).ok());
}

TEST_F(MapBadInputTest, FixedAddressOverlappingForeignMapping) {
  void* other = mmap(nullptr, 8 * ps_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(other, MAP_FAILED);
  std::memset(other, 0x5a, 8 * ps_);
  auto r =
      rt_->Map({.size = 4 * ps_,
                .name = "onto-foreign",
                .fixed_address = static_cast<std::byte*>(other) + 2 * ps_});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("an existing mapping"));
  // The foreign mapping is intact.
  std::vector<unsigned char> want(8 * ps_, 0x5a);
  EXPECT_EQ(std::memcmp(other, want.data(), want.size()), 0);
  munmap(other, 8 * ps_);
  ExpectNothingMapped();
}

TEST_F(MapBadInputTest, UnmapOfNonRegionIsNotFound) {
  int not_a_region = 0;
  absl::Status s = rt_->Unmap(reinterpret_cast<Region*>(&not_a_region));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  s = rt_->Unmap(nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;

  // A region of another runtime is not one of ours.
  auto other_rt = MakeRuntime();
  ASSERT_NE(other_rt, nullptr);
  auto foreign = other_rt->Map({.size = 4 * ps_, .name = "theirs"});
  ASSERT_TRUE(foreign.ok());
  s = rt_->Unmap(*foreign);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(other_rt->FindRegion((*foreign)->data()), *foreign);
  EXPECT_TRUE(other_rt->Unmap(*foreign).ok());
}

TEST_F(MapBadInputTest, DoubleUnmapIsNotFound) {
  auto r = rt_->Map({.size = 4 * ps_, .name = "once"});
  ASSERT_TRUE(r.ok());
  Region* region = *r;
  std::byte* data = region->data();
  data[0] = std::byte{1};
  ASSERT_TRUE(rt_->Unmap(region).ok());
  EXPECT_EQ(rt_->FindRegion(data), nullptr);
  const absl::Status s = rt_->Unmap(region);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(rt_->stats().regions, 0u);
}

// ---------------------------------------------------------------------------
// Many regions.

TEST(ManyRegionsTest, TenThousandRegions) {
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  const size_t ps = rt->page_size();
  constexpr int kRegions = 10000;
  constexpr size_t kSize = 64 << 10;
  std::vector<Region*> regions;
  regions.reserve(kRegions);
  for (int i = 0; i < kRegions; ++i) {
    auto r = rt->Map({.size = kSize, .name = absl::StrCat("r", i)});
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    regions.push_back(*r);
  }
  Stats s = rt->stats();
  EXPECT_EQ(s.regions, static_cast<uint64_t>(kRegions));
  EXPECT_EQ(s.reserved_bytes, uint64_t{kRegions} * kSize);

  // Each region gets its own content (a slice of a pattern picked by its
  // index, plus the index stamped on every page); a neighbour's fill
  // (regions are usually adjacent) must never leak into it.
  const std::vector<unsigned char> pattern = Shadow(11, kSize + 251);
  auto fill = [&](int i, unsigned char* out) {
    std::memcpy(out, pattern.data() + i % 251, kSize);
    for (size_t off = 0; off < kSize; off += ps) {
      const uint32_t stamp = static_cast<uint32_t>(i) + 1;
      std::memcpy(out + off + (i % 64) * 8, &stamp, sizeof(stamp));
    }
  };
  std::vector<unsigned char> shadow(kSize);
  for (int i = 0; i < kRegions; ++i) {
    fill(i, shadow.data());
    std::memcpy(regions[i]->data(), shadow.data(), kSize);
  }
  for (int i = 0; i < kRegions; ++i) {
    fill(i, shadow.data());
    ASSERT_EQ(std::memcmp(regions[i]->data(), shadow.data(), kSize), 0)
        << "region " << i;
    const size_t probe = (i * 4099u) % kSize;
    EXPECT_EQ(rt->FindRegion(regions[i]->data() + probe), regions[i]) << i;
    EXPECT_EQ(regions[i]->name(), absl::StrCat("r", i));
  }
  s = SettledStats(*rt);
  EXPECT_EQ(s.resident_pages, uint64_t{kRegions} * (kSize / ps));
  EXPECT_GE(s.faults_missing_write, static_cast<uint64_t>(kRegions));
  EXPECT_EQ(s.errors, 0u);

  for (int i = 0; i < kRegions; ++i) {
    std::byte* data = regions[i]->data();
    ASSERT_TRUE(rt->Unmap(regions[i]).ok()) << i;
    ASSERT_EQ(rt->FindRegion(data), nullptr) << i;
  }
  s = rt->stats();
  EXPECT_EQ(s.regions, 0u);
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_EQ(s.resident_pages, 0u);
}

// ---------------------------------------------------------------------------
// Faults the kernel takes for the application (copy_to_user in read(2)).

class TempFile {
 public:
  explicit TempFile(const std::vector<unsigned char>& bytes) {
    char name[] = "/tmp/upager_runtime_test_XXXXXX";
    fd_ = mkstemp(name);
    EXPECT_GE(fd_, 0) << std::strerror(errno);
    unlink(name);
    EXPECT_EQ(pwrite(fd_, bytes.data(), bytes.size(), 0),
              static_cast<ssize_t>(bytes.size()));
  }
  ~TempFile() {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

TEST(KernelFaultTest, ReadSyscallIntoUntouchedPages) {
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  const Stats before = rt->stats();
  ASSERT_EQ(before.uffd_mode, "full");
  ASSERT_TRUE(before.kernel_faults_served);
  const size_t ps = rt->page_size();
  auto r = rt->Map({.size = 64 * ps, .name = "kernel-io"});
  ASSERT_TRUE(r.ok());
  std::byte* p = (*r)->data();
  const auto file_bytes = Shadow(3, 3 * ps);
  TempFile f(file_bytes);

  std::vector<unsigned char> shadow(64 * ps, 0);
  // A whole page, then a read straddling two untouched pages mid-page.
  ASSERT_EQ(pread(f.fd(), p, ps, 0), static_cast<ssize_t>(ps))
      << std::strerror(errno);
  std::memcpy(shadow.data(), file_bytes.data(), ps);
  const size_t off = 40 * ps + 123;
  ASSERT_EQ(pread(f.fd(), p + off, 2 * ps, ps), static_cast<ssize_t>(2 * ps))
      << std::strerror(errno);
  std::memcpy(shadow.data() + off, file_bytes.data() + ps, 2 * ps);

  EXPECT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);
  const Stats s = rt->stats();
  EXPECT_GE(s.faults_missing_write, 2u);  // copy_to_user writes
  EXPECT_EQ(s.errors, 0u);
  EXPECT_TRUE(rt->Unmap(*r).ok());
}

TEST(KernelFaultTest, UserModeOnlyFailsKernelFaultsWithEfault) {
  RuntimeOptions o;
  o.uffd_open = UffdOpenMode::kUserModeOnly;
  auto created = Runtime::Create(o);
  if (!created.ok()) {
    UPAGER_SKIP_MISSING_FEATURE(
        absl::StrCat("UFFD_USER_MODE_ONLY: ", created.status().ToString()));
  }
  std::unique_ptr<Runtime> rt = std::move(*created);
  const Stats s0 = rt->stats();
  EXPECT_EQ(s0.uffd_mode, "user-mode-only");
  EXPECT_FALSE(s0.kernel_faults_served);
  EXPECT_THAT(s0.uffd_open_path, HasSubstr("USER_MODE_ONLY"));

  const size_t ps = rt->page_size();
  auto r = rt->Map({.size = 32 * ps, .name = "umo", .fault_around_pages = 1});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* p = (*r)->data();
  const auto file_bytes = Shadow(5, ps);
  TempFile f(file_bytes);

  // The kernel may not resolve a fault on our behalf: EFAULT, and the
  // untouched page stays untouched.
  errno = 0;
  EXPECT_EQ(pread(f.fd(), p + 8 * ps, ps, 0), -1);
  EXPECT_EQ(errno, EFAULT);

  // A user-space touch still works, and after it the same read(2) does too.
  std::vector<unsigned char> shadow(32 * ps, 0);
  p[8 * ps] = std::byte{0x11};
  shadow[8 * ps] = 0x11;
  EXPECT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);
  ASSERT_EQ(pread(f.fd(), p + 8 * ps, ps, 0), static_cast<ssize_t>(ps));
  std::memcpy(shadow.data() + 8 * ps, file_bytes.data(), ps);
  EXPECT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);
  const Stats s = rt->stats();
  EXPECT_GT(s.faults_missing_write + s.faults_missing_read, 0u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_TRUE(rt->Unmap(*r).ok());
}

// ---------------------------------------------------------------------------
// Stats.

TEST(StatsTest, LatencyAndToString) {
  auto rt = MakeRuntime();
  ASSERT_NE(rt, nullptr);
  const size_t ps = rt->page_size();
  auto r =
      rt->Map({.size = 256 * ps, .name = "stats", .fault_around_pages = 1});
  ASSERT_TRUE(r.ok());
  std::byte* p = (*r)->data();
  std::vector<unsigned char> shadow(256 * ps, 0);
  for (size_t i = 0; i < 128; ++i) {
    p[i * ps + i] = static_cast<std::byte>(i + 1);
    shadow[i * ps + i] = static_cast<unsigned char>(i + 1);
  }
  EXPECT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);

  const Stats s = SettledStats(*rt);
  EXPECT_EQ(s.faults_missing_write, 128u);
  EXPECT_EQ(s.faults_missing_read, 128u);
  EXPECT_EQ(s.resident_pages, 128u);
  EXPECT_EQ(s.zero_mapped_pages, 128u);
  EXPECT_EQ(s.pages_zero_filled, 128u);
  EXPECT_EQ(s.pages_zero_mapped, 128u);
  EXPECT_EQ(s.pages_fault_around, 0u);
  EXPECT_EQ(s.regions, 1u);
  EXPECT_EQ(s.reserved_bytes, 256 * ps);
  EXPECT_GT(s.metadata_bytes, 0u);
  EXPECT_GE(s.events_read, 256u);
  EXPECT_GT(s.reads, 0u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_TRUE(s.first_error.empty());
  EXPECT_TRUE(rt->status().ok());
  // Default: one pinned service thread per CPU this process may use.
  cpu_set_t cpus;
  ASSERT_EQ(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
  const int ncpu = std::min(CPU_COUNT(&cpus), RuntimeOptions::kAutoServiceThreads);
  EXPECT_EQ(s.service_threads, ncpu);
  ASSERT_EQ(s.service_cpus.size(), static_cast<size_t>(ncpu));
  for (int c : s.service_cpus) EXPECT_TRUE(CPU_ISSET(c, &cpus)) << c;
  EXPECT_FALSE(s.uffd_feature_names.empty());

  EXPECT_EQ(s.fault_latency.count, 256u);
  EXPECT_LE(s.fault_latency.p50_ns, s.fault_latency.p90_ns);
  EXPECT_LE(s.fault_latency.p90_ns, s.fault_latency.p99_ns);
  EXPECT_LE(s.fault_latency.p99_ns, s.fault_latency.max_ns);
  EXPECT_GT(s.fault_latency.max_ns, 0u);
  EXPECT_GT(s.fault_latency.mean_ns, 0.0);
  EXPECT_LE(s.fault_latency.mean_ns,
            static_cast<double>(s.fault_latency.max_ns));

  const std::string text = s.ToString();
  EXPECT_THAT(text, HasSubstr("faults:"));
  EXPECT_THAT(text, HasSubstr("128 missing-write"));
  EXPECT_THAT(text, HasSubstr("128 missing-read"));
  EXPECT_THAT(text, HasSubstr("n=256"));
  EXPECT_THAT(text, HasSubstr("1 region(s)"));
  EXPECT_TRUE(rt->Unmap(*r).ok());
  EXPECT_EQ(rt->stats().regions, 0u);
}

}  // namespace
}  // namespace upager::testing

namespace upager::testing {
namespace {

int ReadSysctl(const char* path) {
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return -1;
  int v = -1;
  if (std::fscanf(f, "%d", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}

TEST(PermissionTest, UnprivilegedUserGetsAClearErrorOrUserModeOnly) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to drop to an unprivileged user";
  const bool sysctl_open =
      ReadSysctl("/proc/sys/vm/unprivileged_userfaultfd") == 1;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: become nobody (no CAP_SYS_PTRACE), then try both ways.
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
    auto strict = Runtime::Create({.uffd_open = UffdOpenMode::kSyscall});
    if (!sysctl_open) {
      if (strict.ok()) _exit(11);
      if (strict.status().code() != absl::StatusCode::kPermissionDenied) _exit(12);
      if (std::string(strict.status().message())
              .find("vm.unprivileged_userfaultfd") == std::string::npos) {
        _exit(13);
      }
    }
    auto rt = Runtime::Create({});
    if (!rt.ok()) _exit(14);
    const Stats s = (*rt)->stats();
    if (!sysctl_open && access("/dev/userfaultfd", R_OK | W_OK) != 0 &&
        (s.uffd_mode != "user-mode-only" || s.kernel_faults_served)) {
      _exit(15);
    }
    auto region = (*rt)->Map({.size = 16 * 4096, .name = "nobody"});
    if (!region.ok()) _exit(16);
    std::memset((*region)->data(), 0x42, 16 * 4096);
    for (size_t i = 0; i < 16 * 4096; ++i) {
      if (static_cast<int>((*region)->data()[i]) != 0x42) _exit(17);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died: " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10 setuid, 11 strict open succeeded, 12 wrong code, 13 message "
         "lacks the fix, 14 auto failed, 15 not user-mode-only, 16 map, "
         "17 data";
}

}  // namespace
}  // namespace upager::testing
