#include "runtime/os/probe.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "runtime/os/errno_status.h"
#include "runtime/os/file.h"
#include "runtime/os/io_uring.h"
#include "runtime/os/memory.h"
#include "runtime/os/pagemap_scan.h"
#include "runtime/os/uffd_abi.h"
#include "runtime/os/wakeup.h"

namespace upager::internal::os {
namespace {

static_assert(_UFFDIO_REGISTER == 0 && _UFFDIO_UNREGISTER == 1 &&
              _UFFDIO_WAKE == 2 && _UFFDIO_COPY == 3 && _UFFDIO_ZEROPAGE == 4 &&
              _UFFDIO_MOVE == 5 && _UFFDIO_WRITEPROTECT == 6 &&
              _UFFDIO_CONTINUE == 7 && _UFFDIO_POISON == 8 &&
              _UFFDIO_API == 0x3f);

constexpr int kUffdFlags = O_CLOEXEC | O_NONBLOCK;

// The same opens as OpenUffd, kept apart so that the probe can report each
// path's own errno instead of OpenUffd's summary. Returns a descriptor or
// -errno.
int OpenUffdRaw(UffdOpenPath path) {
  switch (path) {
    case UffdOpenPath::kSyscall: {
      const long fd = syscall(SYS_userfaultfd, kUffdFlags);
      return fd >= 0 ? static_cast<int>(fd) : -errno;
    }
    case UffdOpenPath::kSyscallUserModeOnly: {
      const long fd =
          syscall(SYS_userfaultfd, kUffdFlags | UFFD_USER_MODE_ONLY);
      return fd >= 0 ? static_cast<int>(fd) : -errno;
    }
    case UffdOpenPath::kDevice: {
      const int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
      if (dev < 0) return -errno;
      const int fd = ioctl(dev, USERFAULTFD_IOC_NEW, kUffdFlags);
      const int err = errno;
      close(dev);
      return fd >= 0 ? fd : -err;
    }
  }
  return -EINVAL;
}

struct ApiReply {
  int error = 0;          // errno of UFFDIO_API, or of the open
  uint64_t features = 0;  // every feature the kernel offers
  uint64_t ioctls = 0;
};

// UFFDIO_API may succeed only once per descriptor, and a refused request
// leaves the descriptor unusable, so every handshake gets a fresh one.
// Returns the reply and, if `keep` is non-null and the handshake worked,
// the descriptor (else it is closed).
ApiReply Handshake(UffdOpenPath path, uint64_t features, int* keep) {
  ApiReply reply;
  const int fd = OpenUffdRaw(path);
  if (fd < 0) {
    reply.error = -fd;
    return reply;
  }
  uffdio_api api = {};
  api.api = UFFD_API;
  api.features = features;
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    reply.error = errno;
    close(fd);
    return reply;
  }
  reply.features = api.features;
  reply.ioctls = api.ioctls;
  if (keep != nullptr) {
    *keep = fd;
  } else {
    close(fd);
  }
  return reply;
}

// Registers one fresh anonymous page on `fd` to learn which range ioctls
// the kernel allows there; unregisters and unmaps it again.
void ProbeRange(int fd, UffdPathProbe* out) {
  const size_t page = PageSize();
  absl::StatusOr<void*> mem = MapAnonymous(page, Protection::kReadWrite);
  if (!mem.ok()) {
    out->register_error = ENOMEM;
    return;
  }
  uffdio_register reg = {};
  reg.range.start = reinterpret_cast<uint64_t>(*mem);
  reg.range.len = page;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  out->register_modes = kRegisterMissing;
  // Write-protect mode is what snapshots and clean-page tracking register
  // with; the kernel lists WRITEPROTECT only for ranges registered so.
  if (out->granted & uffd_feature::kPagefaultFlagWp) {
    reg.mode |= UFFDIO_REGISTER_MODE_WP;
    out->register_modes |= kRegisterWriteProtect;
  }
  if (ioctl(fd, UFFDIO_REGISTER, &reg) == 0) {
    out->range_ioctls = reg.ioctls;
    uffdio_range range = reg.range;
    (void)ioctl(fd, UFFDIO_UNREGISTER, &range);
  } else {
    out->register_error = errno;
  }
  (void)Unmap(*mem, page);
}

}  // namespace

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          size_t max_bytes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open(\"", path, "\")"));
  std::string out;
  char buf[4096];
  while (out.size() < max_bytes) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return ErrnoToStatus(err, absl::StrCat("read(\"", path, "\")"));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (out.size() > max_bytes) out.resize(max_bytes);
  return out;
}

absl::StatusOr<PathInfo> StatPath(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("stat(\"", path, "\")"));
  }
  PathInfo info;
  info.mode = st.st_mode;
  info.uid = st.st_uid;
  info.gid = st.st_gid;
  // AT_EACCESS: the effective ids, which are what open(2) checks.
  info.read_write =
      faccessat(AT_FDCWD, path.c_str(), R_OK | W_OK, AT_EACCESS) == 0;
  return info;
}

HostInfo GetHostInfo() {
  HostInfo h;
  struct utsname u;
  if (uname(&u) == 0) {
    h.kernel_release = u.release;
    h.machine = u.machine;
  }
  h.page_size = PageSize();
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  h.online_cpus = online > 0 ? static_cast<int>(online) : 0;
  h.allowed_cpus = static_cast<int>(AllowedCpus().size());
  h.uid = getuid();
  h.euid = geteuid();
  if (absl::StatusOr<std::string> status = ReadSmallFile("/proc/self/status");
      status.ok()) {
    for (absl::string_view line : absl::StrSplit(*status, '\n')) {
      if (absl::ConsumePrefix(&line, "CapEff:")) {
        uint64_t caps = 0;
        if (absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line), &caps)) {
          h.capabilities = caps;
        }
      }
    }
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
    h.memlock_limit =
        rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : uint64_t{rl.rlim_cur};
  }
  return h;
}

UffdPathProbe ProbeUffdPath(UffdOpenPath path) {
  UffdPathProbe p;
  p.path = path;
  const ApiReply base = Handshake(path, 0, nullptr);
  if (base.error != 0) {
    // Tell "could not open" from "opened, but the handshake failed".
    const int fd = OpenUffdRaw(path);
    if (fd < 0) {
      p.open_error = -fd;
    } else {
      close(fd);
      p.api_error = base.error;
    }
    return p;
  }
  p.supported = base.features;
  p.api_ioctls = base.ioctls;

  int fd = -1;
  if (Handshake(path, p.supported, &fd).error == 0) {
    p.granted = p.supported;
  } else {
    // Some feature is refused to this process (the kernel refuses
    // EVENT_FORK without CAP_SYS_PTRACE): ask for each one alone to name it.
    for (int bit = 0; bit < 64; ++bit) {
      const uint64_t f = uint64_t{1} << bit;
      if (!(p.supported & f)) continue;
      const ApiReply r = Handshake(path, f, nullptr);
      if (r.error == 0) {
        p.granted |= f;
      } else {
        p.denied |= f;
        p.denied_error = r.error;
      }
    }
    if (const ApiReply r = Handshake(path, p.granted, &fd); r.error != 0) {
      p.register_error = r.error;
      return p;
    }
  }
  ProbeRange(fd, &p);
  close(fd);
  return p;
}

const char* UffdIoctlName(int bit) {
  switch (bit) {
    case _UFFDIO_REGISTER:
      return "REGISTER";
    case _UFFDIO_UNREGISTER:
      return "UNREGISTER";
    case _UFFDIO_WAKE:
      return "WAKE";
    case _UFFDIO_COPY:
      return "COPY";
    case _UFFDIO_ZEROPAGE:
      return "ZEROPAGE";
    case _UFFDIO_MOVE:
      return "MOVE";
    case _UFFDIO_WRITEPROTECT:
      return "WRITEPROTECT";
    case _UFFDIO_CONTINUE:
      return "CONTINUE";
    case _UFFDIO_POISON:
      return "POISON";
    case _UFFDIO_API:
      return "API";
  }
  return nullptr;
}

IoUringProbe ProbeIoUring(uint32_t queue_depth, size_t buffer_bytes) {
  IoUringProbe p;
  const size_t page = PageSize();
  p.buffer_bytes = (buffer_bytes + page - 1) / page * page;
  if (p.buffer_bytes == 0) p.buffer_bytes = page;
  const absl::Status not_tried =
      absl::FailedPreconditionError("not tried: no ring");
  absl::StatusOr<std::unique_ptr<IoUring>> ring = CreateIoUring(queue_depth);
  if (!ring.ok()) {
    p.ring = ring.status();
    p.registered_buffers = p.registered_file = p.io = not_tried;
    return p;
  }
  p.sq_entries = (*ring)->sq_entries();

  absl::StatusOr<void*> mem =
      MapAnonymous(p.buffer_bytes, Protection::kReadWrite);
  if (!mem.ok()) {
    p.registered_buffers = p.io = mem.status();
    p.registered_file = not_tried;
    return p;
  }
  auto* buf = static_cast<unsigned char*>(*mem);
  p.registered_buffers = (*ring)->RegisterBuffer(buf, p.buffer_bytes);

  // /dev/zero: readable everywhere, and its bytes are known, so the read
  // below checks data, not just a completion.
  absl::StatusOr<File> zero = File::Open("/dev/zero", {.create = false});
  absl::StatusOr<int> index = zero.ok() ? (*ring)->RegisterFile(zero->fd())
                                        : absl::StatusOr<int>(zero.status());
  p.registered_file = index.status();

  if (zero.ok()) {
    std::memset(buf, 0xa5, page);
    const IoRequest req = {
        .op = IoOp::kRead,
        .fd = index.ok() ? *index : zero->fd(),
        .fixed_file = index.ok(),
        .fixed_buffer = p.registered_buffers.ok(),
        .buf = buf,
        .len = static_cast<uint32_t>(page),
        .offset = 0,
        .user_data = 0x5eed,
    };
    uint32_t submitted = 0;
    IoCompletion c;
    if (!(*ring)->Prepare(req)) {
      p.io = absl::InternalError("io_uring: submission queue full");
    } else if (const int err = (*ring)->Submit(&submitted); err != 0) {
      p.io = ErrnoToStatus(err, "io_uring_submit");
    } else if (const int werr = (*ring)->WaitForCompletion(absl::Seconds(5));
               werr != 0) {
      p.io = ErrnoToStatus(werr, "io_uring_wait_cqe");
    } else if ((*ring)->Reap(absl::MakeSpan(&c, 1)) != 1 ||
               c.user_data != req.user_data) {
      p.io = absl::InternalError("io_uring: no completion for the read");
    } else if (c.error != 0) {
      p.io = ErrnoToStatus(c.error, "io_uring read of /dev/zero");
    } else if (c.bytes != page) {
      p.io = absl::InternalError(absl::StrCat(
          "io_uring read of /dev/zero: ", c.bytes, " of ", page, " bytes"));
    } else {
      for (size_t i = 0; i < page; ++i) {
        if (buf[i] != 0) {
          p.io = absl::DataLossError(absl::StrCat(
              "io_uring read of /dev/zero: byte ", i, " is ", buf[i]));
          break;
        }
      }
    }
  } else {
    p.io = zero.status();
  }
  // The ring pins the buffer: tear it down before unmapping.
  ring->reset();
  (void)Unmap(*mem, p.buffer_bytes);
  return p;
}

absl::Status ProbePagemapScan() { return PagemapScanner::Open().status(); }

}  // namespace upager::internal::os
