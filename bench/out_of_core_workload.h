// The out-of-core workloads (a 1 GiB working set paged through a 256 MiB
// budget), written once and run by both pagers: by upager in process
// (bench/out_of_core_bench.cc, OutOfCore/*) and by the kernel's own swap in a
// child process confined to a memory cgroup (bench/kernel_swap_bench.cc,
// Kernel/Swap/*). Same page orders (fixed seeds), same bytes, same checks,
// so the two sides differ only in who pages.
//
// Sizes. Building the working set (writing 1 GiB, 768 MiB of which must go
// out to disk) takes seconds, so one working set serves several timed parts
// (OocTimedParts): the repetitions of one benchmark (Google Benchmark calls
// the function once per repetition; out_of_core_fixture.h keeps the working
// set between calls). Each timed part touches pages that are on disk at its
// start and that no earlier timed part touched:
//   SeqWrite  256 MiB (the budget) written while building, so the budget is
//             full; the timed part writes the next 256 MiB of never-touched
//             pages: every page costs one page-out (the steady state of a
//             1 GiB write; the rest of the 1 GiB region stays untouched,
//             which keeps a repetition at ~1-3 s). One timed part per
//             working set: the check after it reads the pages back, which
//             makes the kernel write out the next part's victims early (the
//             next part then measured ~1% of its page-outs), so a second
//             part on the same working set would not measure page-out.
//   SeqRead   the whole 1 GiB is written while building (the first 768 MiB
//             end up on disk); timed part k reads 256 MiB slice k of them,
//             so three parts are one sequential pass over what is on disk.
//   RandRead  the whole 1 GiB written; timed part k reads kOocRandReads
//             distinct random pages of the first 768 MiB, none read before.
//   HotCold   the whole 1 GiB written, then the hot tenth read once and one
//             untimed round of the access mix run, so the hot set has a
//             history; timed part k is kOocHotColdAccesses accesses, 90% to
//             the hot 10% of pages, 10% to the other 90%.
//
// Every page carries its index pattern in every 8-byte word (OocWord).
// Timed reads load every word of the page they touch and compare the sum
// (the cost of a 4 KiB read, the same on both sides), and after each timed
// part VerifyOocSlice checks the first word of every page the part touched
// and every word of one in kOocFullCheckStride of them.
//
// Thread-safety: the functions keep no state; RunOocTimed starts and joins
// its own threads. Safe in the fork() child of a multi-threaded process:
// they take no lock but malloc's, which glibc makes fork-safe.
#ifndef UPAGER_BENCH_OUT_OF_CORE_WORKLOAD_H_
#define UPAGER_BENCH_OUT_OF_CORE_WORKLOAD_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/bench_util.h"

namespace upager::bench {

inline constexpr uint64_t kOocWorkingSetBytes = uint64_t{1} << 30;
inline constexpr uint64_t kOocBudgetBytes = uint64_t{256} << 20;
inline constexpr uint64_t kOocPages = kOocWorkingSetBytes / kPageSize;
inline constexpr uint64_t kOocSlicePages = kOocBudgetBytes / kPageSize;
// Timed parts one working set serves, but for SeqWrite (OocTimedParts):
// the default run's 3 repetitions.
inline constexpr int kOocSlices = 3;
// Pages that are surely on disk once the working set is written: all but
// the last budget's worth.
inline constexpr uint64_t kOocColdPrefixPages = kOocPages - kOocSlicePages;
// Per timed part. RandRead: ~0.5-1 s at a device read per page;
// HotCold: its ~6.5k cold accesses likewise.
inline constexpr uint64_t kOocRandReads = 8192;
inline constexpr uint64_t kOocHotColdAccesses = 65536;
inline constexpr uint64_t kOocHotPages = kOocPages / 10;
// Prime, so the full checks do not line up with fault-around windows.
inline constexpr size_t kOocFullCheckStride = 61;

// Where swap files go, upager's and the kernel's: $UPAGER_BENCH_DIR, else
// /var/tmp (a local disk; the Device/* rows measure the same directory).
std::string OocSwapDir();

enum class OocWorkload { kSeqWrite, kSeqRead, kRandRead, kHotCold };

// What one working set's timed parts will touch, drawn once (fixed seeds)
// before anything is timed, and before a kernel-side worker is forked, so
// the child reads the parent's copy and allocates nothing for it.
struct OocPlan {
  OocWorkload workload = OocWorkload::kSeqRead;
  int threads = 1;  // kRandRead: threads sharing each timed part
  // kRandRead: kOocSlices * kOocRandReads distinct pages of the cold
  // prefix, in random order; part k reads block k.
  // kHotCold: (kOocSlices + 1) blocks of kOocHotColdAccesses accesses; block
  // 0 is the untimed warm-up round, part k runs block k + 1.
  std::vector<uint64_t> pages;
  std::vector<uint64_t> hot;  // kHotCold: the hot pages
};

OocPlan MakeOocPlan(OocWorkload workload, int threads);

// How many timed parts one working set of `workload` serves (see "Sizes").
inline int OocTimedParts(OocWorkload workload) {
  return workload == OocWorkload::kSeqWrite ? 1 : kOocSlices;
}

// The pattern: the page index and the word index, tagged so that no word of
// a written page is zero.
inline uint64_t OocWord(uint64_t page, uint64_t word) {
  return (uint64_t{0xA5} << 56) | (page << 9) | word;
}

// Untimed: writes the working set into `base` (kOocPages pages, never
// touched before) as the plan's workload needs it, and for kHotCold warms
// the hot set. DataLoss if a page read back during the warm-up is wrong.
absl::Status BuildOocWorkingSet(const OocPlan& plan, std::byte* base);

// The result of one timed part.
struct OocTimed {
  int64_t elapsed_ns = 0;  // wall time of the timed part
  uint64_t accesses = 0;   // pages written or read
  // kRandRead: one per access, from the end of the thread's previous
  // access to the end of this one (so they sum to each thread's time).
  std::vector<int64_t> latencies;
  // DataLoss naming the first page a timed read found wrong.
  absl::Status status;
};

// Timed part `slice` (0..OocTimedParts()-1) of the plan.
OocTimed RunOocTimed(const OocPlan& plan, std::byte* base, int slice);

// After timed part `slice`: every page it touched holds its pattern at word
// 0, and one in kOocFullCheckStride in every word. DataLoss naming the
// first wrong word.
absl::Status VerifyOocSlice(const OocPlan& plan, const std::byte* base,
                            int slice);

}  // namespace upager::bench

#endif  // UPAGER_BENCH_OUT_OF_CORE_WORKLOAD_H_
