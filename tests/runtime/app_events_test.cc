// Application events on a region: munmap of a part, mremap of all or part
// of it, madvise(MADV_DONTNEED). upager must keep serving what is left, at
// its new address after a move, with the page table and Stats kept true;
// bytes are checked against a shadow copy after every step.
//
// The last tests drive the Engine through a userfaultfd wrapper that holds
// a service thread for a while right after it has read a chosen event. The
// kernel lets the application's munmap/madvise/mremap return as soon as the
// event is read, so this is a legal schedule (a preempted service thread),
// made deterministic.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "runtime/engine.h"
#include "runtime/os/userfaultfd.h"
#include "tests/runtime/os/forwarding_uffd.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/test_support.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

using internal::Engine;
namespace os = internal::os;

// Address space nobody uses, reserved PROT_NONE (an mremap destination).
// Far from other mappings (FarFreeRange): the tests check that ranges they
// release stay unmapped.
std::byte* Reserve(size_t len) {
  void* p = FarReserve(len);
  EXPECT_NE(p, MAP_FAILED) << std::strerror(errno);
  return static_cast<std::byte*>(p);
}

class AppEventsTest : public ::testing::Test {
 protected:
  static constexpr size_t kPages = 64;
  void SetUp() override {
    // A fixed 16-page window keeps the expected page counts simple.
    rt_ = MakeRuntime({.fault_around_max_pages = 16});
    ASSERT_NE(rt_, nullptr);
    ps_ = rt_->page_size();
    // Far from other mappings: the tests check that what Unmap released
    // stays unmapped (FarFreeRange).
    auto r = rt_->Map({.size = kPages * ps_,
                       .name = "events",
                       .fixed_address = FarFreeRange(kPages * ps_)});
    ASSERT_TRUE(r.ok()) << r.status();
    region_ = *r;
    p_ = region_->data();
    shadow_.assign(kPages * ps_, 0);
  }
  void TearDown() override {
    if (region_ != nullptr) {
      EXPECT_TRUE(rt_->Unmap(region_).ok());
    }
    EXPECT_EQ(rt_->stats().errors, 0u) << rt_->stats().first_error;
  }
  // Writes a per-page pattern into region pages [first, first + n) at
  // `base` (the region's current address for those pages).
  void Write(std::byte* base, size_t first, size_t n, int seed) {
    for (size_t page = first; page < first + n; ++page) {
      unsigned char* s = shadow_.data() + page * ps_;
      for (size_t i = 0; i < ps_; ++i) {
        s[i] = static_cast<unsigned char>((page * 31 + i * 3 + seed) % 251 + 1);
      }
      std::memcpy(base + (page - first) * ps_, s, ps_);
    }
  }
  // Region pages [first, first + n), now at `at`, match the shadow.
  void Check(const std::byte* at, size_t first, size_t n) {
    ASSERT_EQ(std::memcmp(at, shadow_.data() + first * ps_, n * ps_), 0)
        << "region pages [" << first << ", " << first + n << ")";
  }

  std::unique_ptr<Runtime> rt_;
  size_t ps_ = 0;
  Region* region_ = nullptr;
  std::byte* p_ = nullptr;
  std::vector<unsigned char> shadow_;
};

TEST_F(AppEventsTest, MunmapOfAMiddlePart) {
  Write(p_, 0, 48, 1);  // pages 48-63 stay untouched
  ASSERT_EQ(munmap(p_ + 16 * ps_, 16 * ps_), 0);
  ASSERT_TRUE(
      Eventually([&] { return rt_->FindRegion(p_ + 16 * ps_) == nullptr; }));
  EXPECT_EQ(rt_->stats().events_unmap, 1u);
  EXPECT_EQ(rt_->FindRegion(p_ + 31 * ps_), nullptr);
  EXPECT_EQ(rt_->FindRegion(p_ + 15 * ps_), region_);
  EXPECT_EQ(rt_->FindRegion(p_ + 32 * ps_), region_);
  Stats s = SettledStats(*rt_);
  EXPECT_EQ(s.resident_pages, 32u);  // 48 written, 16 of them unmapped

  // The rest is still served: written pages intact, untouched ones zero
  // (a read fault at 48, window 48-63) and writable.
  Check(p_, 0, 16);
  Check(p_ + 32 * ps_, 32, 32);
  Write(p_ + 48 * ps_, 48, 16, 2);
  Check(p_ + 32 * ps_, 32, 32);
  s = SettledStats(*rt_);
  EXPECT_EQ(s.resident_pages, 32u);
  EXPECT_EQ(s.zero_mapped_pages, 16u);
  EXPECT_EQ(s.faults_missing_read, 1u);
  EXPECT_EQ(s.faults_foreign, 0u);

  // Something else moves into the hole; Unmap must leave it alone.
  void* other = mmap(p_ + 16 * ps_, 16 * ps_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(other, p_ + 16 * ps_) << std::strerror(errno);
  std::memset(other, 0xa5, 16 * ps_);
  EXPECT_EQ(rt_->FindRegion(other), nullptr);
  ASSERT_TRUE(rt_->Unmap(region_).ok());
  region_ = nullptr;
  EXPECT_TRUE(IsUnmapped(p_, 16 * ps_));
  EXPECT_TRUE(IsUnmapped(p_ + 32 * ps_, 32 * ps_));
  ASSERT_TRUE(IsMapped(other, 16 * ps_));
  const std::vector<unsigned char> want(16 * ps_, 0xa5);
  EXPECT_EQ(std::memcmp(other, want.data(), want.size()), 0);
  munmap(other, 16 * ps_);
  EXPECT_EQ(rt_->stats().regions, 0u);
}

TEST_F(AppEventsTest, MunmapOfTheWholeRegionThenUnmap) {
  Write(p_, 0, 8, 3);
  ASSERT_EQ(munmap(p_, kPages * ps_), 0);
  ASSERT_TRUE(Eventually([&] { return rt_->FindRegion(p_) == nullptr; }));
  EXPECT_EQ(rt_->stats().events_unmap, 1u);
  EXPECT_EQ(SettledStats(*rt_).resident_pages, 0u);
  // Unmap of a region the application already unmapped entirely.
  EXPECT_TRUE(rt_->Unmap(region_).ok());
  region_ = nullptr;
  EXPECT_EQ(rt_->stats().regions, 0u);
}

TEST_F(AppEventsTest, MremapOfTheWholeRegion) {
  Write(p_, 0, 24, 4);  // pages 24-63 untouched
  std::byte* const dst = Reserve(kPages * ps_);
  void* moved = mremap(p_, kPages * ps_, kPages * ps_,
                       MREMAP_MAYMOVE | MREMAP_FIXED, dst);
  ASSERT_EQ(moved, dst) << std::strerror(errno);
  ASSERT_TRUE(Eventually([&] { return rt_->FindRegion(dst) == region_; }));
  EXPECT_EQ(rt_->FindRegion(dst + (kPages - 1) * ps_), region_);
  EXPECT_EQ(rt_->FindRegion(p_), nullptr);
  EXPECT_EQ(region_->data(), p_);  // documented: data() keeps the old address
  EXPECT_TRUE(IsUnmapped(p_, kPages * ps_));
  Stats s = SettledStats(*rt_);
  EXPECT_EQ(s.events_remap, 1u);
  EXPECT_EQ(s.resident_pages, 32u);  // 24 written + the rest of the window

  // Moved data intact; untouched pages served at the new address by the
  // region (not as foreign memory), with fault-around clipped as before:
  // a read at 40 maps the zero page over 40-55, writes at 32 and 56 fill
  // 32-39 and 56-63.
  Check(dst, 0, 32);
  Check(dst + 40 * ps_, 40, 1);
  Write(dst + 32 * ps_, 32, 32, 5);
  Write(dst + 8 * ps_, 8, 8, 6);
  Check(dst, 0, kPages);
  s = SettledStats(*rt_);
  EXPECT_EQ(s.faults_foreign, 0u);
  EXPECT_EQ(s.faults_missing_read, 1u);
  EXPECT_EQ(s.resident_pages, 48u);
  EXPECT_EQ(s.zero_mapped_pages, 16u);

  ASSERT_TRUE(rt_->Unmap(region_).ok());
  region_ = nullptr;
  EXPECT_TRUE(IsUnmapped(dst, kPages * ps_));
}

TEST_F(AppEventsTest, MremapOfAPart) {
  Write(p_, 0, 48, 6);  // pages 48-63 untouched
  // Move region pages [40, 56): 8 written, 8 untouched.
  std::byte* const dst = Reserve(16 * ps_);
  void* moved = mremap(p_ + 40 * ps_, 16 * ps_, 16 * ps_,
                       MREMAP_MAYMOVE | MREMAP_FIXED, dst);
  ASSERT_EQ(moved, dst) << std::strerror(errno);
  ASSERT_TRUE(Eventually([&] { return rt_->FindRegion(dst) == region_; }));
  EXPECT_EQ(rt_->FindRegion(dst + 15 * ps_), region_);
  EXPECT_EQ(rt_->FindRegion(p_ + 40 * ps_), nullptr);
  EXPECT_EQ(rt_->FindRegion(p_ + 55 * ps_), nullptr);
  EXPECT_EQ(rt_->FindRegion(p_ + 39 * ps_), region_);
  EXPECT_EQ(rt_->FindRegion(p_ + 56 * ps_), region_);
  EXPECT_EQ(rt_->stats().events_remap, 1u);

  Check(p_, 0, 40);
  Check(dst, 40, 8);
  // Untouched pages on both sides of the move are served and writable; the
  // windows stop at the end of each piece (48-55 and 56-63 are two faults).
  Write(dst + 8 * ps_, 48, 8, 7);
  Write(p_ + 56 * ps_, 56, 8, 8);
  Check(p_, 0, 40);
  Check(dst, 40, 16);
  Check(p_ + 56 * ps_, 56, 8);
  const Stats s = SettledStats(*rt_);
  EXPECT_EQ(s.faults_foreign, 0u);
  EXPECT_EQ(s.faults_missing_write, 3u + 2u);
  EXPECT_EQ(s.resident_pages, kPages);

  ASSERT_TRUE(rt_->Unmap(region_).ok());
  region_ = nullptr;
  EXPECT_TRUE(IsUnmapped(p_, 40 * ps_));
  EXPECT_TRUE(IsUnmapped(dst, 16 * ps_));
  EXPECT_TRUE(IsUnmapped(p_ + 56 * ps_, 8 * ps_));
}

// Thread mode serves a fault only after the madvise's REMOVE event is
// applied, so the windows (and the fault count) are exact. In signal mode
// the handler may fill while the event is still being applied: a window
// then stops at a page not yet marked absent, which faults on its own (one
// more fault, same bytes).
void ExpectReadFaults(const Stats& s, uint64_t n) {
  if (SignalModeUnderTest()) {
    EXPECT_GE(s.faults_missing_read, n) << s.ToString();
  } else {
    EXPECT_EQ(s.faults_missing_read, n) << s.ToString();
  }
}

TEST_F(AppEventsTest, MadviseDontNeed) {
  Write(p_, 0, 32, 9);  // two full windows: pages 0-31 resident
  ASSERT_EQ(SettledStats(*rt_).resident_pages, 32u);
  ASSERT_EQ(madvise(p_ + 8 * ps_, 8 * ps_, MADV_DONTNEED), 0);
  std::memset(shadow_.data() + 8 * ps_, 0, 8 * ps_);
  // Dropped pages read back as zero (a fresh fault each); the rest intact.
  // (Reading them back is a read fault at 8, window 8-15; the untouched
  // rest reads as two zero-page windows, 32-47 and 48-63.)
  Check(p_, 0, kPages);
  Stats s = SettledStats(*rt_);
  EXPECT_EQ(s.events_remove, 1u);
  EXPECT_EQ(s.resident_pages, 24u);
  EXPECT_EQ(region_->resident_pages(), 24u);
  EXPECT_EQ(s.zero_mapped_pages, 8u + 32u);
  ExpectReadFaults(s, 3);

  // A range mixing private and zero-mapped pages (28-31, 32-35); reading
  // it back is one fault whose window stops at 36; then rewrite it.
  ASSERT_EQ(madvise(p_ + 28 * ps_, 8 * ps_, MADV_DONTNEED), 0);
  std::memset(shadow_.data() + 28 * ps_, 0, 8 * ps_);
  Check(p_, 0, kPages);
  s = SettledStats(*rt_);
  EXPECT_EQ(s.events_remove, 2u);
  EXPECT_EQ(s.resident_pages, 20u);
  EXPECT_EQ(s.zero_mapped_pages, 8u + 32u - 4u + 8u);
  ExpectReadFaults(s, 4);
  Write(p_ + 28 * ps_, 28, 8, 10);
  Check(p_, 0, kPages);
  EXPECT_EQ(SettledStats(*rt_).errors, 0u);
}

// ---------------------------------------------------------------------------
// Schedules where a service thread is held between reading an event and
// handling it.

// Forwards to the kernel's userfaultfd; after a read that returned an event
// of the armed kind, sleeps `delay` before handing the batch on (once).
class DelayingUffd final : public ForwardingUffd {
 public:
  using ForwardingUffd::ForwardingUffd;

  void DelayNext(os::UffdEvent::Kind kind, absl::Duration delay) {
    delay_ = delay;
    kind_.store(static_cast<int>(kind));
    armed_.store(true);
  }
  // True once a service thread is being held (set just after the read that
  // let the application's call return, so poll it).
  bool delayed() const { return delayed_.load(); }

  os::ReadResult ReadEvents(absl::Span<os::UffdEvent> out) override {
    const os::ReadResult r = real().ReadEvents(out);
    for (size_t i = 0; i < r.count; ++i) {
      if (static_cast<int>(out[i].kind) == kind_.load() && armed_.load() &&
          armed_.exchange(false)) {
        delayed_.store(true);
        absl::SleepFor(delay_);
        break;
      }
    }
    return r;
  }

 private:
  std::atomic<bool> armed_{false};
  std::atomic<int> kind_{-1};
  std::atomic<bool> delayed_{false};
  absl::Duration delay_;
};

struct DelayedEngine {
  DelayingUffd* uffd = nullptr;
  std::unique_ptr<Engine> engine;
};

DelayedEngine MakeDelayedEngine(int service_threads) {
  os::UffdOpenOptions open;
  open.wanted_features = Engine::WantedFeatures();
  auto real = os::OpenUffd(open);
  EXPECT_TRUE(real.ok()) << real.status();
  if (!real.ok()) return {};
  auto wrapper = std::make_unique<DelayingUffd>(std::move(*real));
  DelayedEngine d;
  d.uffd = wrapper.get();
  RuntimeOptions o;
  o.service_threads = service_threads;
  auto e = Engine::Create(o, std::move(wrapper));
  EXPECT_TRUE(e.ok()) << e.status();
  if (e.ok()) d.engine = std::move(*e);
  return d;
}

constexpr absl::Duration kHold = absl::Milliseconds(300);

TEST(AppEventsScheduleTest, UnmapRightAfterMunmapLeavesTheHoleAlone) {
  // munmap returns once the UNMAP event is read; the service thread is then
  // held before handling it. The application reuses the hole and calls
  // Unmap(region): Unmap must not unmap what now lives in the hole.
  DelayedEngine d = MakeDelayedEngine(1);
  ASSERT_NE(d.engine, nullptr);
  const size_t ps = d.engine->page_size();
  // Far from other mappings, so nobody but the test takes the hole below.
  auto r = d.engine->Map({.size = 16 * ps,
                          .name = "hole",
                          .fixed_address = FarFreeRange(16 * ps)});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* p = (*r)->data();
  std::memset(p, 0x11, 16 * ps);
  d.uffd->DelayNext(os::UffdEvent::Kind::kUnmap, kHold);
  ASSERT_EQ(munmap(p + 4 * ps, 4 * ps), 0);
  ASSERT_TRUE(Eventually([&] { return d.uffd->delayed(); }));
  void* other = mmap(p + 4 * ps, 4 * ps, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(other, p + 4 * ps) << std::strerror(errno);
  std::memset(other, 0xa5, 4 * ps);
  EXPECT_EQ(d.engine->FindRegion(other), nullptr)
      << "FindRegion names the region for an address the application "
         "already munmapped and reused";
  ASSERT_TRUE(d.engine->Unmap(*r).ok());
  EXPECT_TRUE(IsUnmapped(p, 4 * ps));
  EXPECT_TRUE(IsUnmapped(p + 8 * ps, 8 * ps));
  ASSERT_TRUE(IsMapped(other, 4 * ps))
      << "Runtime::Unmap unmapped a mapping the application placed in a "
         "hole it had munmapped from the region";
  const std::vector<unsigned char> want(4 * ps, 0xa5);
  EXPECT_EQ(std::memcmp(other, want.data(), want.size()), 0);
  munmap(other, 4 * ps);
}

TEST(AppEventsScheduleTest, RefillBeforeRemoveIsHandledKeepsThePageTracked) {
  // madvise(DONTNEED) returns once REMOVE is read; while the thread that
  // read it is held, the application writes a dropped page again and the
  // other service thread fills it. When REMOVE is finally handled it must
  // not forget that page: its bytes are in place and it is resident.
  DelayedEngine d = MakeDelayedEngine(2);
  ASSERT_NE(d.engine, nullptr);
  const size_t ps = d.engine->page_size();
  auto r = d.engine->Map({.size = 32 * ps, .name = "refill"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* p = (*r)->data();
  std::vector<unsigned char> shadow(32 * ps, 0x22);
  std::memset(p, 0x22, 32 * ps);
  ASSERT_EQ(SettledStats(*d.engine).resident_pages, 32u);

  d.uffd->DelayNext(os::UffdEvent::Kind::kRemove, kHold);
  ASSERT_EQ(madvise(p, 8 * ps, MADV_DONTNEED), 0);
  ASSERT_TRUE(Eventually([&] { return d.uffd->delayed(); }));
  std::memset(shadow.data(), 0, 8 * ps);
  std::memset(p + 2 * ps, 0x33, ps);  // served by the other service thread
  std::memset(shadow.data() + 2 * ps, 0x33, ps);
  // Until the held thread handles REMOVE, all 32 pages count as resident.
  ASSERT_TRUE(
      Eventually([&] { return SettledStats(*d.engine).resident_pages < 32; }));

  // Pages 8-31 and the write fault's fault-around window, pages 2-7 (it
  // stops at page 8, still present), hold private memory upager filled.
  // (Checked before reading pages 0-1 back, which maps the zero page.)
  EXPECT_EQ(SettledStats(*d.engine).resident_pages, 30u)
      << "the page refilled between reading and handling REMOVE was "
         "dropped from the page table although the kernel maps it";
  EXPECT_EQ(std::memcmp(p, shadow.data(), shadow.size()), 0);
  EXPECT_TRUE(d.engine->Unmap(*r).ok());
}

TEST(AppEventsScheduleTest, MremapWithTwoServiceThreadsFollowsTheRegion) {
  // The kernel reports a move as REMAP (old -> new) and then UNMAP of the
  // old range; with two service threads the UNMAP can be handled first.
  // The region must still be found, and served, at its new address.
  DelayedEngine d = MakeDelayedEngine(2);
  ASSERT_NE(d.engine, nullptr);
  const size_t ps = d.engine->page_size();
  auto r = d.engine->Map({.size = 32 * ps, .name = "moving"});
  ASSERT_TRUE(r.ok()) << r.status();
  std::byte* p = (*r)->data();
  std::vector<unsigned char> shadow(32 * ps, 0);
  std::memset(p, 0x44, 16 * ps);
  std::memset(shadow.data(), 0x44, 16 * ps);
  ASSERT_EQ(SettledStats(*d.engine).resident_pages, 16u);

  std::byte* const dst = Reserve(32 * ps);
  d.uffd->DelayNext(os::UffdEvent::Kind::kRemap, kHold);
  ASSERT_EQ(mremap(p, 32 * ps, 32 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, dst),
            dst);
  ASSERT_TRUE(Eventually([&] { return d.uffd->delayed(); }));
  ASSERT_TRUE(Eventually([&] { return d.engine->stats().events_remap == 1; }));
  EXPECT_TRUE(Eventually([&] { return d.engine->FindRegion(dst) == *r; },
                         absl::Seconds(1)))
      << "the region is not found at its new address";
  const Stats before = SettledStats(*d.engine);
  EXPECT_EQ(d.engine->FindRegion(dst + 31 * ps), *r);
  EXPECT_EQ(before.resident_pages, 16u);
  std::memset(dst + 20 * ps, 0x55, ps);
  std::memset(shadow.data() + 20 * ps, 0x55, ps);
  EXPECT_EQ(std::memcmp(dst, shadow.data(), shadow.size()), 0);
  // The write at page 20 filled pages 20-31; the memcmp read of pages 16-19
  // mapped the shared zero page there.
  const Stats s = SettledStats(*d.engine);
  EXPECT_EQ(s.faults_foreign, 0u);
  EXPECT_EQ(s.resident_pages, 28u);
  EXPECT_EQ(s.zero_mapped_pages, 4u);
  EXPECT_TRUE(d.engine->Unmap(*r).ok());
  EXPECT_TRUE(IsUnmapped(dst, 32 * ps));
}

}  // namespace
}  // namespace upager::testing
