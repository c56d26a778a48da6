// Options for a Runtime and for each Region it maps. Plain structs: the
// library reads no environment variables and no flags.
#ifndef UPAGER_OPTIONS_H_
#define UPAGER_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace upager {

// How the Runtime obtains its userfaultfd.
enum class UffdOpenMode {
  // userfaultfd(2), then /dev/userfaultfd, then user-mode-only: the first
  // that works. Default.
  kAuto,
  kSyscall,       // only userfaultfd(2): root, CAP_SYS_PTRACE, or the sysctl
                  // vm.unprivileged_userfaultfd=1
  kDevice,        // only /dev/userfaultfd (Linux 6.1+; its mode is the policy)
  // Only userfaultfd(2) with UFFD_USER_MODE_ONLY, which unprivileged users
  // may always open. Faults the kernel takes on the application's behalf
  // (read(2) or recv(2) into an untouched page of a region) fail with
  // EFAULT instead of being served: Stats::kernel_faults_served is false.
  kUserModeOnly,
};

struct RuntimeOptions {
  // Fault-service threads reading the userfaultfd. 1..kMaxServiceThreads.
  // One is right for most machines: a thread resolves a fault in a few
  // microseconds, and every extra thread is woken for each batch.
  int service_threads = 1;
  static constexpr int kMaxServiceThreads = 64;

  // Pages filled per missing fault (the faulting page and the ones after
  // it, stopping at the region's end or the first page already present).
  // 1 turns fault-around off. 1..kMaxFaultAroundPages. A region may
  // override it.
  uint32_t fault_around_pages = 16;
  static constexpr uint32_t kMaxFaultAroundPages = 512;

  // Events read per read(2) of the userfaultfd. 1..64.
  uint32_t max_events_per_read = 64;

  UffdOpenMode uffd_open = UffdOpenMode::kAuto;

  // What ~Runtime does with regions the application did not Unmap: true
  // (default) unmaps them, like freeing memory; false leaves them mapped as
  // ordinary anonymous memory the application then owns and must munmap.
  // Either way, threads blocked in a fault when the Runtime is destroyed are
  // released first (the ranges are unregistered, so the kernel serves them
  // as plain anonymous memory). With true, touching a region after ~Runtime
  // returns is a use-after-free (SIGSEGV); use false when application
  // threads may still be running over the regions.
  bool unmap_regions_on_destroy = true;
};

struct RegionOptions {
  // Bytes; a non-zero multiple of the page size.
  size_t size = 0;
  // For Stats and error messages. Optional.
  std::string name;
  // Map exactly here (page-aligned) or fail with AlreadyExists if the range
  // overlaps another region or any existing mapping. nullptr: anywhere.
  void* fixed_address = nullptr;
  // Overrides RuntimeOptions::fault_around_pages for this region.
  std::optional<uint32_t> fault_around_pages;
};

}  // namespace upager

#endif  // UPAGER_OPTIONS_H_
