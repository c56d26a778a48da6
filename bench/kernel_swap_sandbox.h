// The kernel's own swap, set up for the Kernel/Swap/* baselines: a swap
// file on the benchmark directory's file system, enabled with swapon(2),
// and a child memory cgroup limited to the budget, which the worker process
// running the workload joins.
//
// Where the cgroup goes: with cgroup v2 (memory listed in
// /sys/fs/cgroup/cgroup.controllers), /sys/fs/cgroup/upager-bench-<pid>
// with memory.max and memory.swap.max = max. With a cgroup v1 memory
// hierarchy (/sys/fs/cgroup/memory, as on hybrid hosts), a child of the
// memory cgroup this process is in, so whoever accounts for this process
// still accounts for the worker, with memory.limit_in_bytes and an
// unlimited memory.memsw.limit_in_bytes. Either way the limit is the only
// thing that differs from the parent.
//
// Everything made is undone by the destructor (the cgroup removed, the swap
// area turned off, the file unlinked), also when creation fails halfway.
// Leftovers of a run that was killed (named after a pid that no longer
// exists) are undone by the next Create.
//
// Needs root (swapon, cgroup writes): Create says exactly what is missing
// (not root, no memory controller, a file system swapon refuses) so the
// benchmark can skip with that reason.
//
// Thread-safety: none; one benchmark thread creates and destroys it.
#ifndef UPAGER_BENCH_KERNEL_SWAP_SANDBOX_H_
#define UPAGER_BENCH_KERNEL_SWAP_SANDBOX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace upager::bench {

class KernelSwapSandbox {
 public:
  struct Options {
    std::string dir;          // where the swap file goes
    uint64_t swap_bytes = 0;  // a multiple of the page size
    uint64_t memory_limit_bytes = 0;
  };

  static absl::StatusOr<std::unique_ptr<KernelSwapSandbox>> Create(
      const Options& options);

  // Requires that no process is left in the cgroup (the worker was
  // reaped). Failures to undo are written to stderr (nothing else can see
  // them) and are retried by the next run's Create.
  ~KernelSwapSandbox();
  KernelSwapSandbox(const KernelSwapSandbox&) = delete;
  KernelSwapSandbox& operator=(const KernelSwapSandbox&) = delete;

  // The file a process writes "0" to, to move itself into the cgroup.
  std::string procs_file() const { return cgroup_dir_ + "/cgroup.procs"; }

  // For the benchmark label, e.g. "cgroup v1 memory limit 256 MiB,
  // swap file 2048 MiB on ext4".
  std::string Describe() const;

  // The cgroup's peak memory use in bytes (memory.peak, or v1
  // memory.max_usage_in_bytes), if the kernel reports it.
  std::optional<uint64_t> PeakBytes() const;

 private:
  KernelSwapSandbox() = default;
  absl::Status MakeCgroup(uint64_t limit_bytes);
  absl::Status MakeSwap(const std::string& dir, uint64_t bytes);

  int cgroup_version_ = 0;  // 1 or 2
  std::string cgroup_dir_;  // non-empty once created
  std::string swap_path_;   // non-empty once the file exists
  std::string fs_name_;     // the swap file's file system
  bool swap_on_ = false;
  uint64_t limit_bytes_ = 0;
  uint64_t swap_bytes_ = 0;
};

}  // namespace upager::bench

#endif  // UPAGER_BENCH_KERNEL_SWAP_SANDBOX_H_
