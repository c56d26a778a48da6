// Typed access to one userfaultfd: open with the fallback chain, negotiate
// features once, register ranges, read events, and resolve faults.
//
// Contract of every resolving call (Copy, ZeroPage, Wake, WriteProtect, Move,
// Poison): addresses and lengths are page-aligned; the call returns a
// UffdResult whose outcome is one of the kernel's normal outcomes (done,
// exists, retry, gone) or kFailed with the errno. None of them allocates or
// throws, so the fault path can call them freely.
//
// `Uffd` is an interface so tests can wrap the kernel one and inject EAGAIN,
// EEXIST or errors (tests/runtime/os/fake_uffd.h); `KernelUffd` is the only
// implementation that talks to the kernel.
//
// Thread-safety: all methods may be called concurrently; the kernel
// serializes what needs serializing. ReadEvents from several threads hands
// each event to exactly one reader.
#ifndef UPAGER_RUNTIME_OS_USERFAULTFD_H_
#define UPAGER_RUNTIME_OS_USERFAULTFD_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace upager::internal::os {

// Feature bits, equal to the kernel's UFFD_FEATURE_* (checked in the .cc).
namespace uffd_feature {
inline constexpr uint64_t kPagefaultFlagWp = 1ull << 0;
inline constexpr uint64_t kEventFork = 1ull << 1;
inline constexpr uint64_t kEventRemap = 1ull << 2;
inline constexpr uint64_t kEventRemove = 1ull << 3;
inline constexpr uint64_t kMissingHugetlbfs = 1ull << 4;
inline constexpr uint64_t kMissingShmem = 1ull << 5;
inline constexpr uint64_t kEventUnmap = 1ull << 6;
inline constexpr uint64_t kSigbus = 1ull << 7;
inline constexpr uint64_t kThreadId = 1ull << 8;
inline constexpr uint64_t kMinorHugetlbfs = 1ull << 9;
inline constexpr uint64_t kMinorShmem = 1ull << 10;
inline constexpr uint64_t kExactAddress = 1ull << 11;
inline constexpr uint64_t kWpHugetlbfsShmem = 1ull << 12;
inline constexpr uint64_t kWpUnpopulated = 1ull << 13;
inline constexpr uint64_t kPoison = 1ull << 14;
inline constexpr uint64_t kWpAsync = 1ull << 15;
inline constexpr uint64_t kMove = 1ull << 16;
inline constexpr int kCount = 17;
}  // namespace uffd_feature

// Short lowercase name of feature bit `bit` ("wp", "event_remove", ...).
const char* UffdFeatureName(int bit);
// Names of every set bit, e.g. {"wp", "event_remove"}.
std::vector<std::string> UffdFeatureNames(uint64_t features);

// How to obtain the file descriptor; OpenUffd tries them in the given order.
enum class UffdOpenPath {
  kSyscall,              // userfaultfd(2); needs CAP_SYS_PTRACE or the sysctl
  kDevice,               // /dev/userfaultfd (its file mode is the policy)
  kSyscallUserModeOnly,  // userfaultfd(UFFD_USER_MODE_ONLY): kernel-mode
                         // faults (read(2) into the region) get EFAULT
};
const char* UffdOpenPathName(UffdOpenPath p);

struct UffdOpenOptions {
  std::vector<UffdOpenPath> paths = {UffdOpenPath::kSyscall,
                                     UffdOpenPath::kDevice,
                                     UffdOpenPath::kSyscallUserModeOnly};
  // Requested where the kernel supports them; the rest are silently dropped
  // (see Uffd::features() for what was granted).
  uint64_t wanted_features = 0;
  // Open fails with FailedPrecondition naming them if any is unsupported.
  uint64_t required_features = 0;
};

// One decoded uffd_msg.
struct UffdEvent {
  enum class Kind : uint8_t { kPageFault, kFork, kRemap, kRemove, kUnmap,
                              kUnknown };
  Kind kind = Kind::kUnknown;
  bool write = false;  // kPageFault: a write access (also kernel copy_to_user)
  bool wp = false;     // kPageFault: a write-protect fault
  bool minor = false;  // kPageFault: a minor fault
  uint32_t tid = 0;    // kPageFault: faulting thread (with kThreadId)
  // kPageFault: fault address. kRemove/kUnmap: range start. kRemap: old
  // address. kFork: the child's new uffd.
  uint64_t address = 0;
  uint64_t arg2 = 0;  // kRemove/kUnmap: range end. kRemap: new address.
  uint64_t arg3 = 0;  // kRemap: length.
  // kPageFault handed over by a signal-mode SIGBUS handler, not read from
  // the uffd: the address of its thread's completion word (0 otherwise).
  uint64_t handoff = 0;
};

enum class UffdOutcome : uint8_t {
  kDone,    // the whole range was handled
  kExists,  // EEXIST: a page in the range is already mapped (someone else
            // filled it); `bytes` were done before it (and their waiters
            // woken); nobody waiting on the rest was woken
  kRetry,   // EAGAIN: the address space is changing (an event is pending);
            // read events, then retry the part after `bytes`. (A short
            // fill, which the kernel also reports as EAGAIN, is continued
            // inside the OS layer, so kRetry always means this.)
  kGone,    // ENOENT/ESRCH: the range is no longer registered or the
            // process is exiting
  kFailed,  // anything else; `error` holds the errno
};
const char* UffdOutcomeName(UffdOutcome o);

struct UffdResult {
  UffdOutcome outcome = UffdOutcome::kDone;
  uint64_t bytes = 0;  // bytes completed, also on partial failure
  int error = 0;       // errno when outcome != kDone

  bool ok() const { return outcome == UffdOutcome::kDone; }
  // OkStatus for kDone; otherwise a status naming `what` and the errno.
  absl::Status ToStatus(const char* what) const;
};

struct ReadResult {
  size_t count = 0;  // events decoded into the output span
  int error = 0;     // 0, or the errno of a failed read (EAGAIN is not one)
};

enum RegisterMode : uint32_t {
  kRegisterMissing = 1u << 0,
  kRegisterWriteProtect = 1u << 1,
  kRegisterMinor = 1u << 2,
};

class Uffd {
 public:
  virtual ~Uffd() = default;

  virtual int fd() const = 0;
  virtual UffdOpenPath path() const = 0;
  // Features granted by UFFDIO_API (kernel-supported & requested).
  virtual uint64_t features() const = 0;
  // Every feature the kernel supports, requested or not.
  virtual uint64_t supported_features() const = 0;
  bool user_mode_only() const {
    return path() == UffdOpenPath::kSyscallUserModeOnly;
  }
  bool has(uint64_t feature) const { return (features() & feature) != 0; }

  // Registers [addr, addr + len). Fails with the errno mapped to a status
  // naming the range.
  virtual absl::Status Register(uint64_t addr, uint64_t len,
                                uint32_t modes) = 0;
  // Unregisters [addr, addr + len); the kernel wakes threads blocked in
  // faults there, which then see ordinary anonymous memory.
  virtual absl::Status Unregister(uint64_t addr, uint64_t len) = 0;

  // Non-blocking: decodes up to out.size() pending events.
  virtual ReadResult ReadEvents(absl::Span<UffdEvent> out) = 0;

  // Fills with bytes from `src` (which must not be registered memory).
  // With `write_protect`, the new PTEs are write-protected (needs WP mode).
  virtual UffdResult Copy(uint64_t dst, const void* src, uint64_t len,
                          bool wake, bool write_protect) = 0;
  // Maps the shared zero page.
  virtual UffdResult ZeroPage(uint64_t dst, uint64_t len, bool wake) = 0;
  virtual UffdResult Wake(uint64_t addr, uint64_t len) = 0;
  // Arms (protect) or clears write protection. `wake` matters only when
  // clearing: protecting never wakes anyone.
  virtual UffdResult WriteProtect(uint64_t addr, uint64_t len, bool protect,
                                  bool wake) = 0;
  // Moves pages from src (ordinary anonymous memory of this process) to dst.
  virtual UffdResult Move(uint64_t dst, uint64_t src, uint64_t len, bool wake,
                          bool allow_src_holes) = 0;
  // Marks the range poisoned: a thread touching it gets SIGBUS. Used to
  // release a faulting thread we cannot serve.
  virtual UffdResult Poison(uint64_t addr, uint64_t len, bool wake) = 0;
};

// Opens a userfaultfd, trying `options.paths` in order, and negotiates
// features with UFFDIO_API. On failure, the status lists why each path
// failed. The descriptor is O_CLOEXEC | O_NONBLOCK.
absl::StatusOr<std::unique_ptr<Uffd>> OpenUffd(const UffdOpenOptions& options);

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_USERFAULTFD_H_
