// Options for a Runtime and for each Region it maps. Plain structs: the
// library reads no environment variables and no flags. Every default is the
// value a field has here; the README's "Knobs" table is a summary of this
// file.
//
// Validation: Runtime::Create checks RuntimeOptions, Runtime::Map and
// Runtime::MapSnapshot check RegionOptions and MapSnapshotOptions. A value
// outside its documented range is InvalidArgument, and the message names the
// field and the value ("RuntimeOptions.fault_around_pages = 0 is outside
// [1, 512] ..."); nothing is created or mapped then.
//
// Lifetime and thread-safety: the calls that take these structs copy what
// they need before returning, so the caller may change or destroy them
// afterwards (SwapOptions::store is shared, not copied: see there). Like any
// value type, one instance must not be written by one thread while another
// reads it.
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
  // may always open (Linux 5.11+). Faults the kernel takes on the
  // application's behalf (read(2) or recv(2) into an untouched page of a
  // region) fail with EFAULT instead of being served:
  // Stats::kernel_faults_served is false.
  kUserModeOnly,
};
// Runtime::Create fails with PermissionDenied when none of the allowed paths
// opens; the message lists each path's errno and what to change (run as
// root, set vm.unprivileged_userfaultfd=1, or open up /dev/userfaultfd).

// Where evicted pages go when the Runtime has a resident budget.
// Read only when RuntimeOptions::resident_budget_bytes is non-zero.
struct SwapOptions {
  // The swap file: created if missing, emptied and sized to capacity_bytes by
  // Runtime::Create (an existing file's contents are lost), then removed from
  // its directory at once (the open descriptor keeps it until the Runtime is
  // destroyed), so not even a killed process leaves it behind. Empty (default):
  // a fresh file in $TMPDIR, or /var/tmp when TMPDIR is unset. Use a local
  // disk: every eviction and swap-in goes through it. Create fails with the
  // open or fallocate error naming the path (PermissionDenied, NotFound for a
  // missing directory, ResourceExhausted for a full disk).
  std::string path;
  // Bytes; a multiple of the page size (else InvalidArgument). 0 (default):
  // four times the budget. Reserved up front, so a full disk is reported by
  // Create rather than by a later eviction.
  uint64_t capacity_bytes = 0;
  // O_DIRECT: page I/O bypasses the page cache, which would otherwise hold a
  // second copy of every evicted page. Falls back to buffered I/O, reported
  // in Stats::store.direct_io, where the file system refuses it (tmpfs).
  bool direct_io = true;
  // An application-supplied store (a compressed tier, a remote one) used
  // instead of the swap file: path, capacity_bytes and direct_io are then
  // ignored. Its page_size() must equal the runtime's (else
  // InvalidArgument), and a non-OK RegisterBuffers() fails Create. Shared:
  // the Runtime holds a reference until it is destroyed, so the
  // application may keep one to read the store's stats. A store serves one
  // Runtime at a time: completions go to whoever reaps them.
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
  // for a frame. At least one page, at most 2^31 - 1 pages (else
  // InvalidArgument); rounded down to whole pages. Pages mapped to the
  // shared zero page (read, never written) cost no memory and are not
  // counted; snapshot copies and the zero-page pool are. Needs UFFDIO_MOVE
  // (Linux 6.8+) to evict without losing a concurrent write: without it
  // Create fails with FailedPrecondition.
  uint64_t resident_budget_bytes = 0;
  // Percent of the budget: eviction starts above high and stops at low.
  // With a budget, 1 <= low <= high <= 100, else InvalidArgument (without
  // one they are not read). The gap lets the evictor write victims in
  // batches instead of one per fault.
  uint32_t high_watermark_percent = 95;
  uint32_t low_watermark_percent = 85;
  SwapOptions swap;

  // Fault-service threads reading the userfaultfd: 0 (default) means one
  // per CPU this process may run on, at most kAutoServiceThreads; otherwise
  // 1..kMaxServiceThreads (else InvalidArgument). Every thread is woken for
  // each fault, so more threads than CPUs only costs wake-ups.
  int service_threads = 0;
  static constexpr int kAutoServiceThreads = 8;
  static constexpr int kMaxServiceThreads = 64;

  // Pin service thread i to the i-th CPU this process may run on (round
  // robin). The thread on the faulting CPU then serves the fault without a
  // cross-CPU wake-up, which on VMs is most of a fault's cost (README,
  // "Benchmarks": the pinned and -unpinned rows). Turn off if the
  // application manages CPU placement itself.
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
  // may pay on machines with idle cores. At most kMaxServiceSpinNs (else
  // InvalidArgument).
  uint32_t service_spin_ns = 0;
  static constexpr uint32_t kMaxServiceSpinNs = 1'000'000;

  // After submitting a swap read that a faulting thread waits for, the service
  // thread keeps polling without sleeping until that read completes, for at
  // most this long. The faulting thread sleeps meanwhile, so the CPU it leaves
  // idle is the one spent; in exchange the completion needs no wake-up of the
  // service thread (measured here: the random-read median drops by ~25 us, to
  // ~8 us over the disk's own QD1 latency at the median of paired runs; README,
  // "Paging"). The poll takes the CPU from any other thread runnable there, up
  // to this long per read: where application threads outnumber the CPUs, or the
  // disk is slow (milliseconds per read), 0 may serve better. 0 turns it off.
  // At most kMaxServiceSpinNs (else InvalidArgument).
  uint32_t swap_in_spin_ns = 250'000;

  // Pages filled per missing fault (the faulting page and the ones after
  // it, stopping at the region's end or the first page already present).
  // 1 turns fault-around off. 1..kMaxFaultAroundPages (else
  // InvalidArgument). A region may override it.
  uint32_t fault_around_pages = 16;
  static constexpr uint32_t kMaxFaultAroundPages = 512;

  // While a region's faults form a sequential stream (each at the page
  // right after the previous fill), the window doubles per fault up to
  // this many pages; any other fault resets it to fault_around_pages.
  // 1..kMaxFaultAroundPages (else InvalidArgument). The effective maximum
  // is never below the window a region starts with (its
  // fault_around_pages), so a value at or below that base gives a fixed
  // window.
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
  // the page size, at most kMaxZeroPoolBytes and at most the budget (else
  // InvalidArgument).
  // Needs UFFDIO_MOVE (Linux 6.8+); without it the pool stays off and
  // Stats::zero_pool_state says why.
  std::optional<uint64_t> zero_pool_bytes;
  static constexpr uint64_t kDefaultZeroPoolBytes = uint64_t{64} << 20;
  static constexpr uint64_t kMaxZeroPoolBytes = uint64_t{16} << 30;

  // Messages taken per read(2) of the userfaultfd, 1..64 (else
  // InvalidArgument). A batch is applied in order (address-space events
  // before the faults that follow them); smaller batches only add reads.
  uint32_t max_events_per_read = 64;

  // Which ways of opening a userfaultfd Create may try (see UffdOpenMode).
  UffdOpenMode uffd_open = UffdOpenMode::kAuto;

  // Who resolves a fault (see FaultMode). kThread by default because it
  // serves every access, including the kernel's own into a region; kSignal
  // has lower fault latency but fails such accesses with EFAULT (README,
  // "Fault modes").
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

// Checked by Runtime::Map; every error message names the region.
struct RegionOptions {
  // Bytes; a non-zero multiple of the page size, at most 2^36 pages (256 TiB
  // of 4 KiB pages), else InvalidArgument. Only address space is reserved:
  // an untouched region costs no memory.
  size_t size = 0;
  // For Stats and error messages. Optional, need not be unique.
  std::string name;
  // Map exactly here (page-aligned, else InvalidArgument) or fail with
  // AlreadyExists naming the occupant if the range overlaps another region
  // or any existing mapping (never replaces one). nullptr: anywhere.
  void* fixed_address = nullptr;
  // Overrides RuntimeOptions::fault_around_pages for this region; same
  // range.
  std::optional<uint32_t> fault_around_pages;

  // File-backed region: page i first reads as bytes [source_offset +
  // i * page_size, ...) of this file, filled lazily on first touch. Writes
  // stay in the region (private copy-on-write): the file is never modified.
  // Map maps the file read-only until the region is unmapped: keep it
  // unchanged and untruncated meanwhile (an untouched page reads what the
  // file holds at its first touch).
  // source_offset is a multiple of the page size (else InvalidArgument).
  // Map fails with the open error naming the path (NotFound,
  // PermissionDenied), or InvalidArgument if it is not a regular file or
  // holds fewer than source_offset + size bytes. Empty: a zero-filled
  // region.
  std::string source_path;
  uint64_t source_offset = 0;
};

// Runtime::MapSnapshot: a region whose pages come from a saved snapshot.
struct MapSnapshotOptions {
  // size 0 (the default) takes the snapshot's size; any other value must
  // equal it, and source_path must stay empty (the snapshot is the
  // source), else InvalidArgument. name defaults to the file's path. The
  // rest is checked as by Runtime::Map.
  RegionOptions region;
  // Fill the region from the file in the background (one thread, batches
  // of 64 pages, stopping at the high watermark of a resident budget), so
  // later touches find their pages present. Off: pages fill on first
  // touch only.
  bool prefetch = false;
};

}  // namespace upager

#endif  // UPAGER_OPTIONS_H_
