#include "runtime/os/userfaultfd.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/os/errno_status.h"
#include "runtime/os/uffd_abi.h"

namespace upager::internal::os {
namespace {

static_assert(uffd_feature::kPagefaultFlagWp == UFFD_FEATURE_PAGEFAULT_FLAG_WP);
static_assert(uffd_feature::kEventFork == UFFD_FEATURE_EVENT_FORK);
static_assert(uffd_feature::kEventRemap == UFFD_FEATURE_EVENT_REMAP);
static_assert(uffd_feature::kEventRemove == UFFD_FEATURE_EVENT_REMOVE);
static_assert(uffd_feature::kEventUnmap == UFFD_FEATURE_EVENT_UNMAP);
static_assert(uffd_feature::kSigbus == UFFD_FEATURE_SIGBUS);
static_assert(uffd_feature::kThreadId == UFFD_FEATURE_THREAD_ID);
static_assert(uffd_feature::kExactAddress == UFFD_FEATURE_EXACT_ADDRESS);
static_assert(uffd_feature::kWpHugetlbfsShmem ==
              UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
static_assert(uffd_feature::kWpUnpopulated == UFFD_FEATURE_WP_UNPOPULATED);
static_assert(uffd_feature::kPoison == UFFD_FEATURE_POISON);
static_assert(uffd_feature::kWpAsync == UFFD_FEATURE_WP_ASYNC);
static_assert(uffd_feature::kMove == UFFD_FEATURE_MOVE);

constexpr int kFdFlags = O_CLOEXEC | O_NONBLOCK;

// Returns a new uffd, or -errno.
int OpenRaw(UffdOpenPath path) {
  switch (path) {
    case UffdOpenPath::kSyscall: {
      const long fd = syscall(SYS_userfaultfd, kFdFlags);
      return fd >= 0 ? static_cast<int>(fd) : -errno;
    }
    case UffdOpenPath::kSyscallUserModeOnly: {
      const long fd = syscall(SYS_userfaultfd, kFdFlags | UFFD_USER_MODE_ONLY);
      return fd >= 0 ? static_cast<int>(fd) : -errno;
    }
    case UffdOpenPath::kDevice: {
      const int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
      if (dev < 0) return -errno;
      const int fd = ioctl(dev, USERFAULTFD_IOC_NEW, kFdFlags);
      const int err = errno;
      close(dev);
      return fd >= 0 ? fd : -err;
    }
  }
  return -EINVAL;
}

// UFFDIO_API may be called once per descriptor, so the kernel's supported
// set is probed on a throwaway descriptor first. Returns 0 or an errno.
int Api(int fd, uint64_t features, uint64_t* granted) {
  uffdio_api api = {};
  api.api = UFFD_API;
  api.features = features;
  if (ioctl(fd, UFFDIO_API, &api) != 0) return errno;
  *granted = api.features;
  return 0;
}

UffdResult FromIoctl(int rc, int64_t done, uint64_t len) {
  if (rc == 0) return {UffdOutcome::kDone, len, 0};
  const int err = errno;
  UffdResult r;
  r.bytes = done > 0 ? static_cast<uint64_t>(done) : 0;
  r.error = err;
  switch (err) {
    case EEXIST:
      r.outcome = UffdOutcome::kExists;
      break;
    case EAGAIN:
      r.outcome = UffdOutcome::kRetry;
      break;
    case ENOENT:
    case ESRCH:
      r.outcome = UffdOutcome::kGone;
      break;
    default:
      r.outcome = UffdOutcome::kFailed;
  }
  return r;
}

// The kernel reports a short COPY/ZEROPAGE/MOVE as -EAGAIN with the bytes
// done (and wakes waiters on those bytes), whatever stopped it. Continuing
// from where it stopped yields the real reason for the first page not
// done: EEXIST for a present page, EAGAIN with nothing done for a pending
// address-space event. Callers thus see "bytes done + why it stopped".
template <typename Attempt>
UffdResult FillAll(uint64_t len, Attempt attempt) {
  uint64_t total = 0;
  for (;;) {
    UffdResult r = attempt(total, len - total);
    total += r.bytes;
    if (r.ok() || r.outcome != UffdOutcome::kRetry || r.bytes == 0 ||
        total >= len) {
      if (total >= len) return {UffdOutcome::kDone, len, 0};
      r.bytes = total;
      return r;
    }
  }
}

class KernelUffd final : public Uffd {
 public:
  KernelUffd(int fd, UffdOpenPath path, uint64_t granted, uint64_t supported)
      : fd_(fd), path_(path), features_(granted), supported_(supported) {}
  ~KernelUffd() override { close(fd_); }

  int fd() const override { return fd_; }
  UffdOpenPath path() const override { return path_; }
  uint64_t features() const override { return features_; }
  uint64_t supported_features() const override { return supported_; }

  absl::Status Register(uint64_t addr, uint64_t len, uint32_t modes) override {
    uffdio_register reg = {};
    reg.range.start = addr;
    reg.range.len = len;
    if (modes & kRegisterMissing) reg.mode |= UFFDIO_REGISTER_MODE_MISSING;
    if (modes & kRegisterWriteProtect) reg.mode |= UFFDIO_REGISTER_MODE_WP;
    if (modes & kRegisterMinor) reg.mode |= UFFDIO_REGISTER_MODE_MINOR;
    if (ioctl(fd_, UFFDIO_REGISTER, &reg) != 0) {
      return ErrnoToStatus(
          errno, absl::StrFormat("UFFDIO_REGISTER(start=%#x, len=%#x, mode=%#x)",
                                 addr, len, reg.mode));
    }
    return absl::OkStatus();
  }

  absl::Status Unregister(uint64_t addr, uint64_t len) override {
    uffdio_range range = {addr, len};
    if (ioctl(fd_, UFFDIO_UNREGISTER, &range) != 0) {
      return ErrnoToStatus(errno,
                           absl::StrFormat("UFFDIO_UNREGISTER(start=%#x, len=%#x)",
                                           addr, len));
    }
    return absl::OkStatus();
  }

  ReadResult ReadEvents(absl::Span<UffdEvent> out) override {
    // uffd_msg is 32 bytes; 64 of them fit in 2 KiB of stack.
    constexpr size_t kMax = 64;
    uffd_msg msgs[kMax];
    const size_t want = out.size() < kMax ? out.size() : kMax;
    ssize_t n;
    do {
      n = read(fd_, msgs, want * sizeof(uffd_msg));
    } while (n < 0 && errno == EINTR);
    if (n < 0) return {0, errno == EAGAIN ? 0 : errno};
    const size_t count = static_cast<size_t>(n) / sizeof(uffd_msg);
    for (size_t i = 0; i < count; ++i) out[i] = Decode(msgs[i]);
    return {count, 0};
  }

  UffdResult Copy(uint64_t dst, const void* src, uint64_t len, bool wake,
                  bool write_protect) override {
    return FillAll(len, [&](uint64_t off, uint64_t left) {
      uffdio_copy c = {};
      c.dst = dst + off;
      c.src = reinterpret_cast<uint64_t>(src) + off;
      c.len = left;
      c.mode = (wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE) |
               (write_protect ? UFFDIO_COPY_MODE_WP : 0);
      const int rc = ioctl(fd_, UFFDIO_COPY, &c);
      return FromIoctl(rc, c.copy, left);
    });
  }

  UffdResult ZeroPage(uint64_t dst, uint64_t len, bool wake) override {
    return FillAll(len, [&](uint64_t off, uint64_t left) {
      uffdio_zeropage z = {};
      z.range = {dst + off, left};
      z.mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE;
      const int rc = ioctl(fd_, UFFDIO_ZEROPAGE, &z);
      return FromIoctl(rc, z.zeropage, left);
    });
  }

  UffdResult Wake(uint64_t addr, uint64_t len) override {
    uffdio_range r = {addr, len};
    const int rc = ioctl(fd_, UFFDIO_WAKE, &r);
    return FromIoctl(rc, 0, len);
  }

  UffdResult WriteProtect(uint64_t addr, uint64_t len, bool protect,
                          bool wake) override {
    uffdio_writeprotect wp = {};
    wp.range = {addr, len};
    // The kernel wakes only when un-protecting, and rejects WP|DONTWAKE.
    wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP
                      : (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
    const int rc = ioctl(fd_, UFFDIO_WRITEPROTECT, &wp);
    return FromIoctl(rc, 0, len);
  }

  UffdResult Move(uint64_t dst, uint64_t src, uint64_t len, bool wake,
                  bool allow_src_holes) override {
    return FillAll(len, [&](uint64_t off, uint64_t left) {
      uffdio_move m = {};
      m.dst = dst + off;
      m.src = src + off;
      m.len = left;
      m.mode = (wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE) |
               (allow_src_holes ? UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES : 0);
      const int rc = ioctl(fd_, UFFDIO_MOVE, &m);
      return FromIoctl(rc, m.move, left);
    });
  }

  UffdResult Poison(uint64_t addr, uint64_t len, bool wake) override {
    uffdio_poison p = {};
    p.range = {addr, len};
    p.mode = wake ? 0 : UFFDIO_POISON_MODE_DONTWAKE;
    const int rc = ioctl(fd_, UFFDIO_POISON, &p);
    return FromIoctl(rc, p.updated, len);
  }

 private:
  static UffdEvent Decode(const uffd_msg& m) {
    UffdEvent e;
    switch (m.event) {
      case UFFD_EVENT_PAGEFAULT:
        e.kind = UffdEvent::Kind::kPageFault;
        e.address = m.arg.pagefault.address;
        e.write = m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE;
        e.wp = m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP;
        e.minor = m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR;
        e.tid = m.arg.pagefault.feat.ptid;
        break;
      case UFFD_EVENT_FORK:
        e.kind = UffdEvent::Kind::kFork;
        e.address = m.arg.fork.ufd;
        break;
      case UFFD_EVENT_REMAP:
        e.kind = UffdEvent::Kind::kRemap;
        e.address = m.arg.remap.from;
        e.arg2 = m.arg.remap.to;
        e.arg3 = m.arg.remap.len;
        break;
      case UFFD_EVENT_REMOVE:
        e.kind = UffdEvent::Kind::kRemove;
        e.address = m.arg.remove.start;
        e.arg2 = m.arg.remove.end;
        break;
      case UFFD_EVENT_UNMAP:
        e.kind = UffdEvent::Kind::kUnmap;
        e.address = m.arg.remove.start;
        e.arg2 = m.arg.remove.end;
        break;
      default:
        e.kind = UffdEvent::Kind::kUnknown;
        e.address = m.event;
    }
    return e;
  }

  const int fd_;
  const UffdOpenPath path_;
  const uint64_t features_;
  const uint64_t supported_;
};

}  // namespace

const char* UffdFeatureName(int bit) {
  static constexpr const char* kNames[uffd_feature::kCount] = {
      "pagefault_flag_wp", "event_fork",      "event_remap",
      "event_remove",      "missing_hugetlbfs", "missing_shmem",
      "event_unmap",       "sigbus",          "thread_id",
      "minor_hugetlbfs",   "minor_shmem",     "exact_address",
      "wp_hugetlbfs_shmem", "wp_unpopulated", "poison",
      "wp_async",          "move"};
  return bit >= 0 && bit < uffd_feature::kCount ? kNames[bit] : "unknown";
}

std::vector<std::string> UffdFeatureNames(uint64_t features) {
  std::vector<std::string> out;
  for (int b = 0; b < 64; ++b) {
    if (features & (1ull << b)) {
      out.push_back(b < uffd_feature::kCount ? UffdFeatureName(b)
                                             : absl::StrCat("bit", b));
    }
  }
  return out;
}

const char* UffdOpenPathName(UffdOpenPath p) {
  switch (p) {
    case UffdOpenPath::kSyscall:
      return "userfaultfd(2)";
    case UffdOpenPath::kDevice:
      return "/dev/userfaultfd";
    case UffdOpenPath::kSyscallUserModeOnly:
      return "userfaultfd(2, UFFD_USER_MODE_ONLY)";
  }
  return "unknown";
}

const char* UffdOutcomeName(UffdOutcome o) {
  switch (o) {
    case UffdOutcome::kDone:
      return "done";
    case UffdOutcome::kExists:
      return "exists";
    case UffdOutcome::kRetry:
      return "retry";
    case UffdOutcome::kGone:
      return "gone";
    case UffdOutcome::kFailed:
      return "failed";
  }
  return "unknown";
}

absl::Status UffdResult::ToStatus(const char* what) const {
  if (ok()) return absl::OkStatus();
  return ErrnoToStatus(error, absl::StrCat(what, " [", UffdOutcomeName(outcome),
                                           ", ", bytes, " bytes done]"));
}

absl::StatusOr<std::unique_ptr<Uffd>> OpenUffd(const UffdOpenOptions& options) {
  if (options.paths.empty()) {
    return absl::InvalidArgumentError("OpenUffd: no open path given");
  }
  std::vector<std::string> failures;
  for (const UffdOpenPath path : options.paths) {
    const int probe = OpenRaw(path);
    if (probe < 0) {
      failures.push_back(absl::StrCat(UffdOpenPathName(path), ": ",
                                      ErrnoToStatus(-probe, "open").message()));
      continue;
    }
    uint64_t supported = 0;
    const int perr = Api(probe, 0, &supported);
    close(probe);
    if (perr != 0) {
      failures.push_back(absl::StrCat(UffdOpenPathName(path), ": ",
                                      ErrnoToStatus(perr, "UFFDIO_API").message()));
      continue;
    }
    const uint64_t missing = options.required_features & ~supported;
    if (missing != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "userfaultfd lacks required features: ",
          absl::StrJoin(UffdFeatureNames(missing), ", "),
          " (kernel supports: ", absl::StrJoin(UffdFeatureNames(supported), ", "),
          ")"));
    }
    const uint64_t request =
        (options.wanted_features | options.required_features) & supported;
    const int fd = OpenRaw(path);
    if (fd < 0) {
      failures.push_back(absl::StrCat(UffdOpenPathName(path), ": ",
                                      ErrnoToStatus(-fd, "open").message()));
      continue;
    }
    uint64_t granted = 0;
    const int aerr = Api(fd, request, &granted);
    if (aerr != 0) {
      close(fd);
      failures.push_back(absl::StrCat(
          UffdOpenPathName(path), ": ",
          ErrnoToStatus(aerr, absl::StrFormat("UFFDIO_API(features=%#x)", request))
              .message()));
      continue;
    }
    // The kernel reports every feature it supports in api.features; what we
    // enabled is what we asked for.
    return std::make_unique<KernelUffd>(fd, path, granted & request, supported);
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "cannot open a userfaultfd (", absl::StrJoin(failures, "; "),
      "). Run as root, set sysctl vm.unprivileged_userfaultfd=1, or grant "
      "read/write access to /dev/userfaultfd"));
}

}  // namespace upager::internal::os
