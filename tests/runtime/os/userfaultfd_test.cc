// The OS layer against the real kernel: every open path, feature
// negotiation, and each ioctl's normal outcomes (done, exists, retry, gone).
#include "runtime/os/userfaultfd.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/os/memory.h"
#include "runtime/os/wakeup.h"
#include "tests/test_support.h"

namespace upager::internal::os {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kPage = 4096;

std::unique_ptr<Uffd> OpenOrDie(uint64_t wanted = uffd_feature::kEventRemove |
                                                  uffd_feature::kThreadId |
                                                  uffd_feature::kMove |
                                                  uffd_feature::kPoison) {
  UffdOpenOptions o;
  o.wanted_features = wanted;
  auto u = OpenUffd(o);
  EXPECT_TRUE(u.ok()) << u.status();
  return u.ok() ? std::move(*u) : nullptr;
}

// A registered anonymous range; unmapped at scope exit.
struct Registered {
  Registered(Uffd* u, uint64_t pages, uint32_t modes = kRegisterMissing)
      : len(pages * kPage) {
    auto m = MapAnonymous(len, Protection::kReadWrite);
    EXPECT_TRUE(m.ok()) << m.status();
    base = reinterpret_cast<uint64_t>(*m);
    EXPECT_TRUE(u->Register(base, len, modes).ok());
  }
  ~Registered() { (void)Unmap(reinterpret_cast<void*>(base), len); }
  unsigned char* at(uint64_t page) const {
    return reinterpret_cast<unsigned char*>(base + page * kPage);
  }
  uint64_t base = 0;
  uint64_t len;
};

TEST(UffdOpenTest, DefaultChainOpensFullModeAsRoot) {
  auto u = OpenUffd({});
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_GE((*u)->fd(), 0);
  if (geteuid() == 0) {
    EXPECT_EQ((*u)->path(), UffdOpenPath::kSyscall);
    EXPECT_FALSE((*u)->user_mode_only());
  }
  EXPECT_EQ((*u)->features(), 0u) << "nothing was requested";
  EXPECT_NE((*u)->supported_features(), 0u);
}

TEST(UffdOpenTest, EachPathOpens) {
  for (UffdOpenPath p : {UffdOpenPath::kSyscall, UffdOpenPath::kDevice,
                         UffdOpenPath::kSyscallUserModeOnly}) {
    UffdOpenOptions o;
    o.paths = {p};
    auto u = OpenUffd(o);
    if (!u.ok() && p == UffdOpenPath::kDevice && access("/dev/userfaultfd", F_OK) != 0) {
      UPAGER_SKIP_MISSING_FEATURE("/dev/userfaultfd (Linux 6.1+)");
    }
    ASSERT_TRUE(u.ok()) << UffdOpenPathName(p) << ": " << u.status();
    EXPECT_EQ((*u)->path(), p);
    EXPECT_EQ((*u)->user_mode_only(), p == UffdOpenPath::kSyscallUserModeOnly);
  }
}

TEST(UffdOpenTest, GrantsOnlyWhatWasRequestedAndSupported) {
  const uint64_t want = uffd_feature::kEventRemove | uffd_feature::kEventUnmap |
                        (1ull << 50);  // a bit no kernel has
  UffdOpenOptions o;
  o.wanted_features = want;
  auto u = OpenUffd(o);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ((*u)->features() & ~want, 0u);
  EXPECT_EQ((*u)->features() & (1ull << 50), 0u);
  EXPECT_TRUE((*u)->has(uffd_feature::kEventRemove));
}

TEST(UffdOpenTest, MissingRequiredFeatureIsFailedPreconditionNamingIt) {
  UffdOpenOptions o;
  o.required_features = 1ull << 50;
  auto u = OpenUffd(o);
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(u.status().message(), HasSubstr("bit50"));
}

TEST(UffdOpenTest, NoPathIsInvalidArgument) {
  UffdOpenOptions o;
  o.paths.clear();
  EXPECT_EQ(OpenUffd(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(UffdFeatureTest, Names) {
  EXPECT_THAT(UffdFeatureNames(uffd_feature::kPagefaultFlagWp |
                               uffd_feature::kMove),
              ElementsAre("pagefault_flag_wp", "move"));
  EXPECT_THAT(UffdFeatureNames(1ull << 40), ElementsAre("bit40"));
}

TEST(UffdIoctlTest, ZeroPageThenExists) {
  auto u = OpenOrDie();
  Registered r(u.get(), 4);
  UffdResult z = u->ZeroPage(r.base, kPage, true);
  EXPECT_EQ(z.outcome, UffdOutcome::kDone);
  EXPECT_EQ(z.bytes, kPage);
  EXPECT_EQ(*r.at(0), 0);
  z = u->ZeroPage(r.base, 2 * kPage, true);
  EXPECT_EQ(z.outcome, UffdOutcome::kExists);
  EXPECT_EQ(z.bytes, 0u);
}

TEST(UffdIoctlTest, CopyStopsAtAnExistingPageAndReportsBytesDone) {
  auto u = OpenOrDie();
  Registered r(u.get(), 4);
  std::vector<unsigned char> src(4 * kPage);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<unsigned char>(i * 7 + 1);
  ASSERT_TRUE(u->Copy(r.base + 2 * kPage, src.data(), kPage, true, false).ok());
  const UffdResult c = u->Copy(r.base, src.data(), 4 * kPage, true, false);
  EXPECT_EQ(c.outcome, UffdOutcome::kExists);
  EXPECT_EQ(c.error, EEXIST);
  EXPECT_EQ(c.bytes, 2 * kPage);
  // Pages 0..1 hold the copied bytes; page 2 kept what it had.
  EXPECT_EQ(std::memcmp(r.at(0), src.data(), 2 * kPage), 0);
  EXPECT_EQ(std::memcmp(r.at(2), src.data(), kPage), 0);
}

TEST(UffdIoctlTest, CopyToUnregisteredRangeIsGone) {
  auto u = OpenOrDie();
  auto m = MapAnonymous(kPage, Protection::kReadWrite);
  ASSERT_TRUE(m.ok());
  std::vector<unsigned char> src(kPage, 1);
  const UffdResult c =
      u->Copy(reinterpret_cast<uint64_t>(*m), src.data(), kPage, true, false);
  EXPECT_EQ(c.outcome, UffdOutcome::kGone);
  EXPECT_FALSE(c.ToStatus("copy").ok());
  (void)Unmap(*m, kPage);
}

TEST(UffdIoctlTest, FillDuringPendingRemoveIsRetry) {
  auto u = OpenOrDie();
  if (!u->has(uffd_feature::kEventRemove)) {
    UPAGER_SKIP_MISSING_FEATURE("UFFD_FEATURE_EVENT_REMOVE");
  }
  Registered r(u.get(), 4);
  ASSERT_TRUE(u->ZeroPage(r.base, kPage, true).ok());
  // madvise blocks until its REMOVE event is read; until then the kernel
  // refuses fills with EAGAIN (mmap_changing).
  std::thread t([&] { ASSERT_TRUE(AdviseDontNeed(r.at(0), kPage).ok()); });
  uint64_t ready = 0;
  ASSERT_EQ(PollReadable({u->fd()}, 5000, &ready), 0);
  ASSERT_EQ(ready, 1u);
  std::vector<unsigned char> src(kPage, 9);
  const UffdResult c = u->Copy(r.base + kPage, src.data(), kPage, true, false);
  EXPECT_EQ(c.outcome, UffdOutcome::kRetry);
  UffdEvent e[4];
  const ReadResult rr = u->ReadEvents(absl::MakeSpan(e));
  ASSERT_EQ(rr.count, 1u);
  EXPECT_EQ(e[0].kind, UffdEvent::Kind::kRemove);
  EXPECT_EQ(e[0].address, r.base);
  EXPECT_EQ(e[0].arg2, r.base + kPage);
  t.join();
  EXPECT_TRUE(u->Copy(r.base + kPage, src.data(), kPage, true, false).ok());
  EXPECT_EQ(*r.at(1), 9);
}

TEST(UffdIoctlTest, ReadsAFaultEventAndResolvesIt) {
  auto u = OpenOrDie();
  Registered r(u.get(), 2);
  std::atomic<uint32_t> tid{0};
  unsigned char seen = 0;
  std::thread t([&] {
    tid = CurrentThreadId();
    seen = *r.at(1);  // blocks until the copy below
    *r.at(1) = 42;
  });
  uint64_t ready = 0;
  ASSERT_EQ(PollReadable({u->fd()}, 5000, &ready), 0);
  UffdEvent e[4];
  const ReadResult rr = u->ReadEvents(absl::MakeSpan(e));
  ASSERT_EQ(rr.count, 1u);
  EXPECT_EQ(e[0].kind, UffdEvent::Kind::kPageFault);
  EXPECT_EQ(e[0].address, r.base + kPage);
  EXPECT_FALSE(e[0].write);
  EXPECT_FALSE(e[0].wp);
  std::vector<unsigned char> src(kPage, 5);
  ASSERT_TRUE(u->Copy(r.base + kPage, src.data(), kPage, true, false).ok());
  t.join();
  EXPECT_EQ(e[0].tid, tid.load());
  EXPECT_EQ(seen, 5);
  EXPECT_EQ(*r.at(1), 42);
  EXPECT_EQ(u->ReadEvents(absl::MakeSpan(e)).count, 0u) << "nothing pending";
}

TEST(UffdIoctlTest, MoveTransfersPagesWithoutCopy) {
  auto u = OpenOrDie();
  if (!u->has(uffd_feature::kMove)) UPAGER_SKIP_MISSING_FEATURE("UFFDIO_MOVE");
  Registered r(u.get(), 4);
  auto src = MapAnonymous(2 * kPage, Protection::kReadWrite);
  ASSERT_TRUE(src.ok());
  auto* s = static_cast<unsigned char*>(*src);
  std::memset(s, 0xab, kPage);
  std::memset(s + kPage, 0xcd, kPage);
  const UffdResult m = u->Move(r.base, reinterpret_cast<uint64_t>(s),
                               2 * kPage, true, false);
  ASSERT_EQ(m.outcome, UffdOutcome::kDone) << m.ToStatus("move");
  EXPECT_EQ(m.bytes, 2 * kPage);
  EXPECT_EQ(*r.at(0), 0xab);
  EXPECT_EQ(*r.at(1), 0xcd);
  EXPECT_EQ(s[0], 0) << "the source is a hole after the move";
  (void)Unmap(s, 2 * kPage);
}

TEST(UffdIoctlTest, WriteProtectFaultIsReportedAsWp) {
  auto u = OpenOrDie(uffd_feature::kPagefaultFlagWp);
  if (!u->has(uffd_feature::kPagefaultFlagWp)) {
    UPAGER_SKIP_MISSING_FEATURE("UFFD_FEATURE_PAGEFAULT_FLAG_WP");
  }
  Registered r(u.get(), 1, kRegisterMissing | kRegisterWriteProtect);
  std::vector<unsigned char> src(kPage, 3);
  ASSERT_TRUE(u->Copy(r.base, src.data(), kPage, true, /*wp=*/true).ok());
  std::thread t([&] { *r.at(0) = 4; });  // blocks on the protection
  uint64_t ready = 0;
  ASSERT_EQ(PollReadable({u->fd()}, 5000, &ready), 0);
  UffdEvent e[2];
  ASSERT_EQ(u->ReadEvents(absl::MakeSpan(e)).count, 1u);
  EXPECT_TRUE(e[0].wp);
  EXPECT_TRUE(e[0].write);
  EXPECT_EQ(*r.at(0), 3) << "the write has not happened yet";
  ASSERT_TRUE(u->WriteProtect(r.base, kPage, false, true).ok());
  t.join();
  EXPECT_EQ(*r.at(0), 4);
}

TEST(UffdIoctlDeathTest, PoisonedPageRaisesSigbus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto u = OpenOrDie(uffd_feature::kPoison);
        if (!u->has(uffd_feature::kPoison)) _exit(3);
        Registered r(u.get(), 1);
        if (!u->Poison(r.base, kPage, true).ok()) _exit(4);
        volatile unsigned char v = *r.at(0);
        (void)v;
        _exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

TEST(WakeupTest, EventFdMakesPollReturn) {
  auto efd = EventFd::Create();
  ASSERT_TRUE(efd.ok());
  uint64_t ready = 0;
  ASSERT_EQ(PollReadable({efd->fd()}, 0, &ready), 0);
  EXPECT_EQ(ready, 0u);
  ASSERT_EQ(efd->Signal(), 0);
  ASSERT_EQ(PollReadable({efd->fd()}, 1000, &ready), 0);
  EXPECT_EQ(ready, 1u);
  ASSERT_EQ(efd->Clear(), 0);
  ASSERT_EQ(PollReadable({efd->fd()}, 0, &ready), 0);
  EXPECT_EQ(ready, 0u);
}

TEST(MemoryTest, FixedMappingOverAnExistingOneIsAlreadyExists) {
  auto a = MapAnonymous(4 * kPage, Protection::kReadWrite);
  ASSERT_TRUE(a.ok());
  auto b = MapAnonymous(kPage, Protection::kReadWrite,
                        static_cast<char*>(*a) + kPage);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(b.status().message(), HasSubstr("mmap(addr="));
  EXPECT_EQ(PageSize(), kPage);
  (void)Unmap(*a, 4 * kPage);
}

}  // namespace
}  // namespace upager::internal::os
