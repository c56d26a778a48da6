// What this kernel lets this process do: the facts behind `upager probe`.
// Each probe opens what it needs on throwaway descriptors and mappings and
// releases them before returning, so probing never changes the process
// (nothing stays registered, no feature is negotiated on a descriptor that
// anyone keeps).
//
// Contract: a probe that cannot run reports why in its result (an errno or
// an absl::Status naming the call); none of them aborts or throws.
// Thread-safety: every function is thread-safe (no shared state).
#ifndef UPAGER_RUNTIME_OS_PROBE_H_
#define UPAGER_RUNTIME_OS_PROBE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/os/userfaultfd.h"

namespace upager::internal::os {

// Reads a small text file whole (a /proc or /sys knob), at most `max_bytes`.
// Fails with the open/read error naming the path.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          size_t max_bytes = 64 << 10);

// stat(2) of a path plus whether this process may open it read-write.
struct PathInfo {
  uint32_t mode = 0;  // st_mode: file type and permission bits
  uint32_t uid = 0;   // owner
  uint32_t gid = 0;
  bool read_write = false;  // access(R_OK | W_OK) for this process
};
// NotFound (naming the path) when it does not exist.
absl::StatusOr<PathInfo> StatPath(const std::string& path);

// The machine and the identity of this process.
struct HostInfo {
  std::string kernel_release;  // uname -r
  std::string machine;         // uname -m, e.g. "x86_64"
  size_t page_size = 0;        // bytes
  int online_cpus = 0;         // sysconf(_SC_NPROCESSORS_ONLN)
  int allowed_cpus = 0;        // CPUs this process may run on (affinity)
  uint32_t uid = 0;            // real user id
  uint32_t euid = 0;           // effective user id
  // Effective capability set (bit n = capability n), from /proc/self/status;
  // 0 if it could not be read.
  uint64_t capabilities = 0;
  // RLIMIT_MEMLOCK soft limit in bytes (UINT64_MAX: unlimited): caps
  // io_uring fixed buffers for a process without CAP_IPC_LOCK.
  uint64_t memlock_limit = 0;
};
HostInfo GetHostInfo();

// Capability numbers from <linux/capability.h>, for HostInfo::capabilities.
inline constexpr int kCapIpcLock = 14;
inline constexpr int kCapSysPtrace = 19;

// One way of opening a userfaultfd, tried for real.
struct UffdPathProbe {
  UffdOpenPath path = UffdOpenPath::kSyscall;
  int open_error = 0;      // errno of the open; 0 when it opened
  int api_error = 0;       // errno of UFFDIO_API; 0 when the handshake worked
  uint64_t supported = 0;  // UFFD_FEATURE_* bits this kernel offers
  // Of `supported`, the bits UFFDIO_API accepted when asked for. A bit the
  // kernel offers but refuses to this process (EVENT_FORK without
  // CAP_SYS_PTRACE) is in `denied` instead.
  uint64_t granted = 0;
  uint64_t denied = 0;
  int denied_error = 0;  // errno of the refusal
  // Bit n = ioctl number n (_UFFDIO_API = 0x3f, _UFFDIO_COPY = 3, ...).
  uint64_t api_ioctls = 0;    // usable on the descriptor itself
  uint64_t range_ioctls = 0;  // usable on a registered anonymous range
  // How the test range was registered (kRegisterMissing, plus
  // kRegisterWriteProtect when granted), and the errno if it failed.
  uint32_t register_modes = 0;
  int register_error = 0;

  bool ok() const { return open_error == 0 && api_error == 0; }
};
// Opens a userfaultfd through `path`, negotiates every feature the kernel
// offers, and registers one page of anonymous memory to learn the range
// ioctls; then closes and unmaps everything.
UffdPathProbe ProbeUffdPath(UffdOpenPath path);

// The name of userfaultfd ioctl number `bit` ("API", "REGISTER", "COPY",
// "MOVE", ...), or nullptr for a number the kernel does not define.
const char* UffdIoctlName(int bit);

// io_uring as the swap store uses it: a ring, fixed buffers, a fixed file,
// and one read through both (of /dev/zero, checked to come back zero).
struct IoUringProbe {
  absl::Status ring;                // io_uring_queue_init
  uint32_t sq_entries = 0;          // of the ring created
  absl::Status registered_buffers;  // RegisterBuffer of `buffer_bytes`
  absl::Status registered_file;     // RegisterFile
  absl::Status io;                  // the read through the ring
  size_t buffer_bytes = 0;
};
// `queue_depth` as for CreateIoUring (1..4096); `buffer_bytes` is rounded
// up to whole pages.
IoUringProbe ProbeIoUring(uint32_t queue_depth, size_t buffer_bytes);

// OK when the PAGEMAP_SCAN ioctl works here; Unimplemented before Linux 6.7.
absl::Status ProbePagemapScan();

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_PROBE_H_
