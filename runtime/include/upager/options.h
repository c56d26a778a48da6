// Options for a Runtime and for each Region it maps. Plain structs: the
// library reads no environment variables and no flags.
#ifndef UPAGER_OPTIONS_H_
#define UPAGER_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "upager/backing_store.h"

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

// Where evicted pages go when the Runtime has a resident budget.
struct SwapOptions {
  // The swap file (created, and removed when the Runtime is destroyed).
  // Empty: a file in $TMPDIR (or /var/tmp). Use a local disk.
  std::string path;
  // Bytes; a multiple of the page size. 0: four times the budget.
  uint64_t capacity_bytes = 0;
  bool direct_io = true;  // O_DIRECT, falling back when unsupported
  // An application-supplied store (a compressed tier, a remote one);
  // overrides the swap file. Shared so the application may keep it.
  std::shared_ptr<BackingStore> store;
};

// Where a page fault on a region is resolved.
enum class FaultMode {
  // Default. The faulting thread sleeps in the kernel while a service
  // thread reads the fault from the userfaultfd and resolves it. Every
  // kind of access is served, including the kernel's own on the
  // application's behalf (read(2) into a region).
  kThread,
  // UFFD_FEATURE_SIGBUS: the kernel raises SIGBUS on the faulting thread,
  // and upager's SIGBUS handler resolves the fault right there (zero-fill
  // or copy from the region's source file, with fault-around), with no
  // wake-up of another thread. Faults that need I/O or state guarded by
  // locks (swap-in, a page being evicted, a snapshot's copy-on-write, a
  // budget that needs a frame, a saved-snapshot region) are handed to a
  // service thread through a lock-free queue while the faulting thread
  // waits in the handler on a futex. Trade-offs:
  // - faults the kernel takes on the application's behalf (read(2),
  //   recv(2), a syscall writing into an untouched page of a region) fail
  //   with EFAULT instead of being served: touch the pages first;
  // - the handler is process-wide and stays installed; a SIGBUS it does
  //   not own (an address outside every signal-mode region, a poisoned
  //   page) goes to the handler installed before it, unchanged;
  // - with a budget, write faults always go to a service thread (a frame
  //   and the eviction policy take locks), so the gain is for zero-filled
  //   and file-backed regions without one.
  // Needs UFFD_FEATURE_SIGBUS (Linux 4.14+); Runtime::Create fails with
  // FailedPrecondition without it.
  kSignal,
};

struct RuntimeOptions {
  // Private pages the Runtime may keep in memory, in bytes; 0 (default)
  // means no budget: nothing is ever evicted. Past the high watermark a
  // background evictor writes victims to the swap store and drops them
  // until the low watermark; a fault that finds the budget exhausted waits
  // for a frame. At least one page. Pages mapped to the shared zero page
  // (read, never written) cost no memory and are not counted.
  uint64_t resident_budget_bytes = 0;
  uint32_t high_watermark_percent = 95;  // start evicting above this
  uint32_t low_watermark_percent = 85;   // stop at this; <= high
  SwapOptions swap;

  // Fault-service threads reading the userfaultfd: 0 (default) means one
  // per CPU this process may run on, at most kAutoServiceThreads; otherwise
  // 1..kMaxServiceThreads. Every thread is woken for each fault, so more
  // threads than CPUs only costs wake-ups.
  int service_threads = 0;
  static constexpr int kAutoServiceThreads = 8;
  static constexpr int kMaxServiceThreads = 64;

  // Pin service thread i to the i-th CPU this process may run on (round
  // robin). The thread on the faulting CPU then serves the fault without a
  // cross-CPU wake-up, which on VMs is most of a fault's cost (measured in
  // the README: 5x faster first touch here). Turn off if the application
  // manages CPU placement itself.
  bool pin_service_threads = true;

  // Run service threads at SCHED_IDLE: a thread woken for a fault on
  // another CPU then never preempts the application thread running there.
  // One extra normal-priority guard thread serves any fault left unread
  // for 1 ms, so a machine whose CPUs are all busy delays a fault by ~1 ms
  // at worst instead of starving it. Off by default: measured here, the
  // guard's own wake-ups cost what idle priority saves (README,
  // "Benchmarks", the -idleprio rows); it may pay on machines where
  // application threads keep every CPU busy between faults.
  bool service_idle_priority = false;

  // After serving a batch, a service thread keeps polling the userfaultfd
  // without sleeping for this long before it blocks, so that a fault
  // arriving meanwhile needs no wake-up. 0 (default): block at once.
  // Measured here (README, "Benchmarks", the -spin rows) spinning does not
  // pay on a 2-vCPU VM: the spinning thread takes the CPU the application
  // needs, and the thread on the faulting CPU is woken locally anyway. It
  // may pay on machines with idle cores. At most kMaxServiceSpinNs.
  uint32_t service_spin_ns = 0;
  static constexpr uint32_t kMaxServiceSpinNs = 1'000'000;

  // Pages filled per missing fault (the faulting page and the ones after
  // it, stopping at the region's end or the first page already present).
  // 1 turns fault-around off. 1..kMaxFaultAroundPages. A region may
  // override it.
  uint32_t fault_around_pages = 16;
  static constexpr uint32_t kMaxFaultAroundPages = 512;

  // While a region's faults form a sequential stream (each at the page
  // right after the previous fill), the window doubles per fault up to
  // this many pages; any other fault resets it to fault_around_pages.
  // 1..kMaxFaultAroundPages. The effective maximum is never below the
  // window a region starts with (its fault_around_pages), so a value at or
  // below that base gives a fixed window.
  uint32_t fault_around_max_pages = 256;

  // Pre-zeroed page pool, in bytes: a background thread keeps this many
  // pages allocated and zeroed, and a write fault on a zero-filled page
  // moves them into the region with UFFDIO_MOVE (a page-table update)
  // instead of having the kernel allocate and zero them inside the fault
  // (UFFDIO_COPY). The thread runs at idle priority and only once faults
  // have paused for a millisecond (a refill beside a fault stream slowed
  // the stream here), so a burst of faults up to the pool's size is
  // served several times faster than by copying, and a longer stream
  // copies the rest as if there were no pool (README, "Benchmarks").
  // Windows under 16 pages are always copied. The pool fills after the
  // first fault that wants it, so a Runtime without such faults pays
  // nothing. The pages are real memory: they show in the process's RSS
  // and count against resident_budget_bytes (the pool then fills only
  // while the budget is below its low watermark). Unset (default):
  // kDefaultZeroPoolBytes without a budget; off with one, where memory is
  // what is scarce. 0 turns it off; any other value must be a multiple of
  // the page size, at most kMaxZeroPoolBytes and at most the budget.
  // Needs UFFDIO_MOVE (Linux 6.8+); without it the pool stays off and
  // Stats::zero_pool_state says why.
  std::optional<uint64_t> zero_pool_bytes;
  static constexpr uint64_t kDefaultZeroPoolBytes = uint64_t{64} << 20;
  static constexpr uint64_t kMaxZeroPoolBytes = uint64_t{16} << 30;

  // Events read per read(2) of the userfaultfd. 1..64.
  uint32_t max_events_per_read = 64;

  UffdOpenMode uffd_open = UffdOpenMode::kAuto;

  // See FaultMode. kThread by default: it serves every access, and on the
  // benchmarks in the README it is ... (README, "Fault modes").
  FaultMode fault_mode = FaultMode::kThread;

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

  // File-backed region: page i first reads as bytes [source_offset +
  // i * page_size, ...) of this file, filled lazily on first touch. Writes
  // stay in the region (private copy-on-write): the file is never modified.
  // The file must hold source_offset + size bytes; source_offset is a
  // multiple of the page size. Empty: a zero-filled region.
  std::string source_path;
  uint64_t source_offset = 0;
};

// Runtime::MapSnapshot: a region whose pages come from a saved snapshot.
struct MapSnapshotOptions {
  // size 0 (the default) takes the snapshot's size; any other value must
  // equal it. source_path must stay empty: the snapshot is the source.
  RegionOptions region;
  // Fill the region from the file in the background (one thread, batches
  // of 64 pages, stopping at the high watermark of a resident budget), so
  // later touches find their pages present. Off: pages fill on first
  // touch only.
  bool prefetch = false;
};

}  // namespace upager

#endif  // UPAGER_OPTIONS_H_
