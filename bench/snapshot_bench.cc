// Snapshot/*: what a point-in-time copy of populated memory costs, with
// fork() as the baseline in the same run (how Redis BGSAVE gets one: the
// child holds the old pages and the kernel copies on the parent's writes)
// against upager's Region::TakeSnapshot (write-protect sweep; the first
// write to a page copies it aside through the service thread).
//
//   Snapshot/Pause/{fork,upager}: the pause to snapshot 1 GiB of written
//     memory: the fork() call, or TakeSnapshot.
//   Snapshot/FirstWrite/{Sequential,Random}/{fork,upager}: the cost of each
//     page's first write after the snapshot, in order or in a fixed random
//     permutation (each write timed on its own there).
//   Snapshot/Incremental/1pct: the pause of a second snapshot of 1 GiB
//     while the first is live and 1% of the pages changed since.
//
// Pauses report pause_ms (wall, = the manual time) and pause_cpu_ms (the
// calling thread's CPU time, which preemption on a shared machine does not
// inflate). Every benchmark checks its data after the timed part: the live
// memory holds the new bytes, and the snapshot (Snapshot::Read /
// ForEachPage, or the fork child reading its own view) still holds the old
// ones. Manual time: the snapshot, the fork child's exit and the unmapping
// are outside the timed part, so the names end in "/manual_time".
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "upager/region.h"
#include "upager/snapshot.h"
#include "upager/stats.h"

namespace upager::bench {
namespace {

constexpr uint64_t kGiBPages = (uint64_t{1} << 30) / kPageSize;
constexpr uint64_t kSeqPages = (uint64_t{256} << 20) / kPageSize;
constexpr uint64_t kRandPages = (uint64_t{64} << 20) / kPageSize;
constexpr uint64_t kRandSeed = 0x5eed'c0'0f;
constexpr uint64_t kDirtySeed = 0x5eed'd1'47;
// One page in this many is compared in full (the rest of it zero); the
// others only at byte 0. Prime, so it does not line up with copy runs.
constexpr size_t kFullCheckStride = 1021;

// Byte 0 of page `page` in generation `gen`: never zero (so an unwritten or
// lost page fails), varies by page (so a page served in the wrong place
// fails), and differs between consecutive generations of every page (7 is
// prime to 255), so old and new bytes cannot be confused.
inline uint8_t GenValue(uint64_t page, uint64_t gen) {
  return static_cast<uint8_t>((page + 7 * gen) % 255 + 1);
}

// One store per page through a volatile pointer, as TouchPage does.
inline void WritePage(std::byte* base, uint64_t page, uint8_t value) {
  *reinterpret_cast<volatile uint8_t*>(base + page * kPageSize) = value;
}

void WriteAll(std::byte* base, uint64_t pages, uint64_t gen) {
  for (uint64_t page = 0; page < pages; ++page) {
    WritePage(base, page, GenValue(page, gen));
  }
}

// Checks one page's bytes: `want0` at byte 0 and, if `full`, zero in the
// rest. `where` names the view (live region, snapshot, fork child).
absl::Status CheckPageBytes(const std::byte* bytes, uint64_t page,
                            uint8_t want0, bool full, const char* where) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes);
  if (p[0] != want0) {
    return absl::DataLossError(absl::StrFormat(
        "%s: page %d byte 0 reads %#x, want %#x", where, page, p[0], want0));
  }
  if (!full) return absl::OkStatus();
  for (size_t i = 1; i < kPageSize; ++i) {
    if (p[i] != 0) {
      return absl::DataLossError(absl::StrFormat(
          "%s: page %d byte %d reads %#x, want 0", where, page, i, p[i]));
    }
  }
  return absl::OkStatus();
}

// Every page of the live memory holds generation `gen`.
absl::Status VerifyLive(const std::byte* base, uint64_t pages, uint64_t gen) {
  for (uint64_t page = 0; page < pages; ++page) {
    if (absl::Status s =
            CheckPageBytes(base + page * kPageSize, page, GenValue(page, gen),
                           page % kFullCheckStride == 0, "live region");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// Every page of `snap` holds generation `gen`: byte 0 of each through
// ForEachPage, and the stride pages in full through Read as well.
absl::Status VerifySnapshot(const Snapshot& snap, uint64_t pages,
                            uint64_t gen) {
  uint64_t seen = 0;
  absl::Status s = snap.ForEachPage(
      [&](uint64_t page, const std::byte* bytes) -> absl::Status {
        if (page >= pages) return absl::OkStatus();
        ++seen;
        if (bytes == nullptr) {
          return absl::DataLossError(absl::StrFormat(
              "snapshot ForEachPage: page %d reported zero, want byte 0 %#x",
              page, GenValue(page, gen)));
        }
        return CheckPageBytes(bytes, page, GenValue(page, gen),
                              page % kFullCheckStride == 0,
                              "snapshot ForEachPage");
      });
  if (!s.ok()) return s;
  if (seen != pages) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot ForEachPage visited %d of %d pages", seen, pages));
  }
  std::vector<std::byte> buf(kPageSize);
  for (uint64_t page = 0; page < pages; page += kFullCheckStride) {
    if (absl::Status r = snap.Read(page * kPageSize, absl::MakeSpan(buf));
        !r.ok()) {
      return r;
    }
    if (absl::Status c = CheckPageBytes(buf.data(), page, GenValue(page, gen),
                                        /*full=*/true, "snapshot Read");
        !c.ok()) {
      return c;
    }
  }
  return absl::OkStatus();
}

// CPU time of the calling thread, ns. On this shared VM a pause's wall
// time includes being preempted by other processes; its CPU time does not.
// Both fork() (copying the page tables) and TakeSnapshot (the sweep) do
// their work in the calling thread, so the two compare.
int64_t ThreadCpuNanos() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// One pause: wall and calling-thread CPU time, ns.
struct PauseTime {
  int64_t wall_ns = 0;
  int64_t cpu_ns = 0;

  PauseTime& operator+=(const PauseTime& o) {
    wall_ns += o.wall_ns;
    cpu_ns += o.cpu_ns;
    return *this;
  }
};

// Runs fn() (the pause) and returns how long it took.
template <typename Fn>
PauseTime TimePause(Fn&& fn) {
  const int64_t cpu_start = ThreadCpuNanos();
  const int64_t start = NowNanos();
  fn();
  const int64_t end = NowNanos();
  return {end - start, ThreadCpuNanos() - cpu_start};
}

absl::Status ErrnoError(int err, const char* what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, ": ", std::strerror(err)));
}

// What a fork child sends back after its check.
struct ChildReport {
  static constexpr uint64_t kAllGood = ~uint64_t{0};
  uint64_t bad_page = kAllGood;
  uint8_t got = 0;
  uint8_t want = 0;
};

// What the child checks once released: pages [0, pages) of `base` hold
// generation `gen` in its own view. pages == 0: no check.
struct ChildCheck {
  const std::byte* base = nullptr;
  uint64_t pages = 0;
  uint64_t gen = 0;
};

// The child's whole life: only async-signal-safe calls (the parent has
// threads), no allocation, no return.
[[noreturn]] void ChildMain(int go_fd, int report_fd, ChildCheck check) {
  char c;
  while (read(go_fd, &c, 1) < 0 && errno == EINTR) {
  }
  ChildReport r;
  for (uint64_t page = 0; page < check.pages; ++page) {
    const uint8_t got = *reinterpret_cast<const volatile uint8_t*>(
        check.base + page * kPageSize);
    const uint8_t want = GenValue(page, check.gen);
    if (got != want) {
      r = {page, got, want};
      break;
    }
  }
  ssize_t n;
  do {
    n = write(report_fd, &r, sizeof(r));
  } while (n < 0 && errno == EINTR);
  _exit(n == static_cast<ssize_t>(sizeof(r)) ? 0 : 1);
}

// A fork() child that keeps the parent's memory as it was at the fork (so
// the parent's writes copy on write), blocked on a pipe until Finish.
class ForkedChild {
 public:
  // Forks. *pause is the time from the fork() call until it returned in
  // the parent; the pipes are made before it.
  static absl::StatusOr<ForkedChild> Fork(ChildCheck check, PauseTime* pause) {
    int go[2];
    int report[2];
    if (pipe2(go, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
    if (pipe2(report, O_CLOEXEC) != 0) {
      const int err = errno;
      close(go[0]);
      close(go[1]);
      return ErrnoError(err, "pipe2");
    }
    pid_t pid;
    const PauseTime t = TimePause([&] { pid = fork(); });
    if (pid == 0) {
      close(go[1]);
      close(report[0]);
      ChildMain(go[0], report[1], check);
    }
    const int err = errno;
    close(go[0]);
    close(report[1]);
    if (pid < 0) {
      close(go[1]);
      close(report[0]);
      return ErrnoError(err, "fork");
    }
    *pause = t;
    return ForkedChild(pid, go[1], report[0]);
  }

  ForkedChild(ForkedChild&& o) noexcept
      : pid_(std::exchange(o.pid_, -1)),
        go_fd_(std::exchange(o.go_fd_, -1)),
        report_fd_(std::exchange(o.report_fd_, -1)) {}
  ForkedChild& operator=(ForkedChild&&) = delete;
  ForkedChild(const ForkedChild&) = delete;
  ForkedChild& operator=(const ForkedChild&) = delete;
  ~ForkedChild() { (void)Finish(); }

  // Releases the child, waits for its report and reaps it. DataLoss naming
  // the first page whose old bytes the child did not see.
  absl::Status Finish() {
    if (pid_ < 0) return absl::OkStatus();
    const pid_t pid = std::exchange(pid_, -1);
    (void)!write(go_fd_, "g", 1);
    close(std::exchange(go_fd_, -1));
    ChildReport r;
    size_t got = 0;
    while (got < sizeof(r)) {
      const ssize_t n =
          read(report_fd_, reinterpret_cast<char*>(&r) + got, sizeof(r) - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    close(std::exchange(report_fd_, -1));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != sizeof(r) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::InternalError(absl::StrFormat(
          "fork child: report of %d bytes, wait status %#x", got, status));
    }
    if (r.bad_page != ChildReport::kAllGood) {
      return absl::DataLossError(
          absl::StrFormat("fork child: page %d byte 0 reads %#x, want %#x",
                          r.bad_page, r.got, r.want));
    }
    return absl::OkStatus();
  }

 private:
  ForkedChild(pid_t pid, int go_fd, int report_fd)
      : pid_(pid), go_fd_(go_fd), report_fd_(report_fd) {}

  pid_t pid_;      // -1 once reaped
  int go_fd_;      // write end: one byte releases the child
  int report_fd_;  // read end: the child's ChildReport
};

// Stats deltas of the shared Runtime around one benchmark.
struct SnapTally {
  uint64_t copies = 0;  // versions recorded on first writes
  uint64_t marked = 0;  // pages marked by TakeSnapshot sweeps
};

SnapTally TallySnapshots() {
  absl::StatusOr<Runtime*> rt = SharedRuntime(Pager::kUpager);
  if (!rt.ok()) return {};
  const Stats s = (*rt)->stats();
  return {s.snapshot_copies + s.snapshot_zero_copies + s.snapshot_slot_copies,
          s.pages_protected};
}

void SetPauseCounters(benchmark::State& state, const PauseTime& total,
                      uint64_t pages) {
  const auto n = static_cast<int64_t>(state.iterations());
  state.counters["pause_ms"] = static_cast<double>(total.wall_ns) / n * 1e-6;
  state.counters["pause_cpu_ms"] = static_cast<double>(total.cpu_ns) / n * 1e-6;
  state.SetItemsProcessed(n);  // snapshots
  state.SetBytesProcessed(n * static_cast<int64_t>(pages * kPageSize));
}

// --- Snapshot/Pause: 1 GiB, every page written.
//
// Between iterations every page is rewritten (the workload goes on between
// snapshots); for fork this also makes the parent's pages its own and
// writable again, as they were before the first fork.

void BM_PauseFork(benchmark::State& state) {
  if (SkipIfError(state, WarmHostMemory(kGiBPages * kPageSize))) return;
  absl::StatusOr<FreshMemory> mem =
      FreshMemory::Map(Pager::kKernel, kGiBPages * kPageSize, std::nullopt);
  if (SkipIfError(state, mem.status())) return;
  uint64_t gen = 0;
  WriteAll(mem->data(), kGiBPages, gen);
  PauseTime total;
  for (auto _ : state) {
    PauseTime pause;
    absl::StatusOr<ForkedChild> child = ForkedChild::Fork({}, &pause);
    if (SkipIfError(state, child.status())) break;
    state.SetIterationTime(static_cast<double>(pause.wall_ns) * 1e-9);
    total += pause;
    if (SkipIfError(state, child->Finish())) break;
    WriteAll(mem->data(), kGiBPages, ++gen);
  }
  if (state.error_occurred() || state.iterations() == 0) return;
  if (SkipIfError(state, VerifyLive(mem->data(), kGiBPages, gen)) ||
      SkipIfError(state, mem->Release())) {
    return;
  }
  SetPauseCounters(state, total, kGiBPages);
}

void BM_PauseUpager(benchmark::State& state) {
  if (SkipIfNoRuntime(state, Pager::kUpager)) return;
  if (SkipIfError(state, WarmHostMemory(kGiBPages * kPageSize))) return;
  absl::StatusOr<FreshMemory> mem =
      FreshMemory::Map(Pager::kUpager, kGiBPages * kPageSize, std::nullopt);
  if (SkipIfError(state, mem.status())) return;
  uint64_t gen = 0;
  WriteAll(mem->data(), kGiBPages, gen);
  const SnapTally before = TallySnapshots();
  PauseTime total;
  std::vector<std::byte> buf(kPageSize);
  for (auto _ : state) {
    absl::StatusOr<std::unique_ptr<Snapshot>> snap;
    const PauseTime pause =
        TimePause([&] { snap = mem->region()->TakeSnapshot(); });
    if (SkipIfError(state, snap.status())) break;
    state.SetIterationTime(static_cast<double>(pause.wall_ns) * 1e-9);
    total += pause;
    // A sample of the snapshot (nothing was written since: no copies).
    absl::Status s;
    for (uint64_t page = 0; s.ok() && page < kGiBPages;
         page += kFullCheckStride) {
      s = (*snap)->Read(page * kPageSize, absl::MakeSpan(buf));
      if (s.ok()) {
        s = CheckPageBytes(buf.data(), page, GenValue(page, gen), true,
                           "snapshot Read");
      }
    }
    if (SkipIfError(state, s) || SkipIfError(state, (*snap)->Release())) break;
    WriteAll(mem->data(), kGiBPages, ++gen);
  }
  if (state.error_occurred() || state.iterations() == 0) return;
  const SnapTally delta = TallySnapshots();
  if (SkipIfError(state, VerifyLive(mem->data(), kGiBPages, gen)) ||
      SkipIfError(state, mem->PagerStatus()) ||
      SkipIfError(state, mem->Release())) {
    return;
  }
  SetPauseCounters(state, total, kGiBPages);
  const auto n = static_cast<double>(state.iterations());
  state.counters["pages_marked"] =
      static_cast<double>(delta.marked - before.marked) / n;
  // Rewrites after Release must not copy: the last Release unprotects.
  state.counters["copies"] = static_cast<double>(delta.copies - before.copies);
}

// --- Snapshot/FirstWrite: after the snapshot, every page written once.
//
// fork: the child stays alive (blocked on a pipe) until the parent's timed
// writes are done, so each one is a kernel copy-on-write fault; the child
// then checks it still sees the old bytes. upager: each is a write-protect
// fault served by a service thread (copy-aside by UFFDIO_MOVE); afterwards
// the snapshot must still read the old bytes.

enum class Order { kSequential, kRandom };

void BM_FirstWrite(benchmark::State& state, Pager pager, Order order) {
  if (SkipIfNoRuntime(state, pager)) return;
  const uint64_t pages = order == Order::kSequential ? kSeqPages : kRandPages;
  // The written pages and, after the snapshot, their copies.
  if (SkipIfError(state, WarmHostMemory(2 * pages * kPageSize))) return;
  absl::StatusOr<FreshMemory> mem =
      FreshMemory::Map(pager, pages * kPageSize, std::nullopt);
  if (SkipIfError(state, mem.status())) return;
  std::byte* const base = mem->data();
  std::vector<uint64_t> sequence;
  if (order == Order::kSequential) {
    sequence.resize(pages);
    std::iota(sequence.begin(), sequence.end(), uint64_t{0});
  } else {
    sequence = ShuffledDistinctPages(pages, pages, kRandSeed);
  }
  // Sized up front: an allocation inside the timed loop would be measured.
  std::vector<int64_t> latencies;
  if (order == Order::kRandom) {
    latencies.resize(static_cast<size_t>(state.max_iterations) * pages);
  }
  size_t recorded = 0;
  uint64_t gen = 0;
  WriteAll(base, pages, gen);
  const SnapTally before = IsUpager(pager) ? TallySnapshots() : SnapTally{};
  int64_t timed_ns = 0;
  for (auto _ : state) {
    std::optional<ForkedChild> child;
    std::unique_ptr<Snapshot> snap;
    if (IsUpager(pager)) {
      absl::StatusOr<std::unique_ptr<Snapshot>> s =
          mem->region()->TakeSnapshot();
      if (SkipIfError(state, s.status())) break;
      snap = std::move(*s);
    } else {
      PauseTime pause;
      absl::StatusOr<ForkedChild> c =
          ForkedChild::Fork({base, pages, gen}, &pause);
      if (SkipIfError(state, c.status())) break;
      child.emplace(std::move(*c));
    }
    const uint64_t old_gen = gen++;

    const int64_t start = NowNanos();
    int64_t end;
    if (order == Order::kSequential) {
      for (const uint64_t page : sequence) {
        WritePage(base, page, GenValue(page, gen));
      }
      end = NowNanos();
    } else {
      // One clock read per write, as in FirstTouch/Random: the intervals
      // add up to the iteration's time exactly.
      int64_t prev = start;
      for (const uint64_t page : sequence) {
        WritePage(base, page, GenValue(page, gen));
        const int64_t now = NowNanos();
        latencies[recorded++] = now - prev;
        prev = now;
      }
      end = prev;
    }

    state.SetIterationTime(static_cast<double>(end - start) * 1e-9);
    timed_ns += end - start;
    const absl::Status old_view = snap != nullptr
                                      ? VerifySnapshot(*snap, pages, old_gen)
                                      : child->Finish();
    if (SkipIfError(state, old_view) ||
        SkipIfError(state, VerifyLive(base, pages, gen)) ||
        (snap != nullptr && SkipIfError(state, snap->Release()))) {
      break;
    }
  }
  if (state.error_occurred() || state.iterations() == 0) return;
  const SnapTally after = IsUpager(pager) ? TallySnapshots() : SnapTally{};
  if (SkipIfError(state, mem->PagerStatus()) ||
      SkipIfError(state, mem->Release())) {
    return;
  }
  const auto written = static_cast<int64_t>(state.iterations() * pages);
  state.SetItemsProcessed(written);
  state.SetBytesProcessed(written * static_cast<int64_t>(kPageSize));
  state.counters["ns_per_page"] = static_cast<double>(timed_ns) / written;
  if (order == Order::kRandom && recorded > 0) {
    latencies.resize(recorded);
    state.counters["p50_ns"] = static_cast<double>(Percentile(latencies, 0.50));
    state.counters["p99_ns"] = static_cast<double>(Percentile(latencies, 0.99));
  }
  if (IsUpager(pager)) {
    // 1 when every first write recorded exactly one version.
    state.counters["copies_per_page"] =
        static_cast<double>(after.copies - before.copies) / written;
  }
}

// --- Snapshot/Incremental/1pct: snapshot S1 of 1 GiB (every page written)
// stays live, 1% of the pages (a fresh random set each iteration) are
// written, and S2 is timed. Then S1 must read the old bytes of those pages,
// S2 and the region the new ones, and S2 must report them changed since S1.

void BM_Incremental(benchmark::State& state) {
  if (SkipIfNoRuntime(state, Pager::kUpager)) return;
  constexpr uint64_t kPages = kGiBPages;
  constexpr uint64_t kDirty = kPages / 100;
  if (SkipIfError(state, WarmHostMemory(kPages * kPageSize))) return;
  absl::StatusOr<FreshMemory> mem =
      FreshMemory::Map(Pager::kUpager, kPages * kPageSize, std::nullopt);
  if (SkipIfError(state, mem.status())) return;
  std::byte* const base = mem->data();
  Region* const region = mem->region();
  // Byte 0 of every page as it should read now.
  std::vector<uint8_t> shadow(kPages);
  for (uint64_t page = 0; page < kPages; ++page) {
    shadow[page] = GenValue(page, 0);
    WritePage(base, page, shadow[page]);
  }
  const SnapTally before = TallySnapshots();
  PauseTime total;
  PauseTime first_total;
  uint64_t changed_reported = 0;
  uint64_t gen = 0;
  std::vector<std::byte> buf(kPageSize);
  for (auto _ : state) {
    absl::StatusOr<std::unique_ptr<Snapshot>> s1;
    first_total += TimePause([&] { s1 = region->TakeSnapshot(); });
    if (SkipIfError(state, s1.status())) break;
    const std::vector<uint8_t> at_s1 = shadow;
    ++gen;
    const std::vector<uint64_t> dirty =
        ShuffledDistinctPages(kPages, kDirty, kDirtySeed + gen);
    for (const uint64_t page : dirty) {
      shadow[page] = GenValue(page, gen);
      WritePage(base, page, shadow[page]);
    }

    absl::StatusOr<std::unique_ptr<Snapshot>> s2;
    const PauseTime pause = TimePause([&] { s2 = region->TakeSnapshot(); });
    if (SkipIfError(state, s2.status())) break;
    state.SetIterationTime(static_cast<double>(pause.wall_ns) * 1e-9);
    total += pause;

    // The dirtied pages in S1 (old), S2 and the region (new); a stride
    // sample of the rest in S2 in full.
    absl::Status s;
    auto check_snap = [&](const Snapshot& snap, uint64_t page, uint8_t want,
                          bool full, const char* where) {
      if (!s.ok()) return;
      s = snap.Read(page * kPageSize, absl::MakeSpan(buf));
      if (s.ok()) s = CheckPageBytes(buf.data(), page, want, full, where);
    };
    for (const uint64_t page : dirty) {
      check_snap(**s1, page, at_s1[page], false, "S1 Read");
      check_snap(**s2, page, shadow[page], false, "S2 Read");
      if (s.ok()) {
        s = CheckPageBytes(base + page * kPageSize, page, shadow[page], false,
                           "live region");
      }
    }
    for (uint64_t page = 0; page < kPages; page += kFullCheckStride) {
      check_snap(**s2, page, shadow[page], true, "S2 Read");
    }
    std::vector<bool> changed(kPages, false);
    uint64_t n_changed = 0;
    if (s.ok()) {
      s = (*s2)->ForEachChangedSince(**s1, [&](uint64_t page) {
        if (page < kPages) changed[page] = true;
        ++n_changed;
      });
    }
    for (const uint64_t page : dirty) {
      if (s.ok() && !changed[page]) {
        s = absl::DataLossError(absl::StrFormat(
            "S2.ForEachChangedSince(S1) misses written page %d", page));
      }
    }
    changed_reported += n_changed;
    if (SkipIfError(state, s) || SkipIfError(state, (*s2)->Release()) ||
        SkipIfError(state, (*s1)->Release())) {
      break;
    }
  }
  if (state.error_occurred() || state.iterations() == 0) return;
  const SnapTally after = TallySnapshots();
  for (uint64_t page = 0; page < kPages; ++page) {
    if (SkipIfError(state, CheckPageBytes(
                               base + page * kPageSize, page, shadow[page],
                               page % kFullCheckStride == 0, "live region"))) {
      return;
    }
  }
  if (SkipIfError(state, mem->PagerStatus()) ||
      SkipIfError(state, mem->Release())) {
    return;
  }
  SetPauseCounters(state, total, kPages);
  const auto n = static_cast<double>(state.iterations());
  // S1's pause (nothing protected before it), for comparison.
  state.counters["full_pause_ms"] =
      static_cast<double>(first_total.wall_ns) / n * 1e-6;
  state.counters["full_pause_cpu_ms"] =
      static_cast<double>(first_total.cpu_ns) / n * 1e-6;
  state.counters["dirty_pages"] = static_cast<double>(kDirty);
  state.counters["changed_pages"] = static_cast<double>(changed_reported) / n;
  // Pages both sweeps marked, per iteration (S1 + S2).
  state.counters["pages_marked"] =
      static_cast<double>(after.marked - before.marked) / n;
}

// fork first, then upager, so the console shows each pair together. Fixed
// iteration counts keep the family under a minute: one iteration is 1 ms
// to 1 s, and its untimed setup (rewrites, checks, the fork child's exit)
// often costs more than the timed part.
BENCHMARK(BM_PauseFork)
    ->Name("Snapshot/Pause/fork")
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PauseUpager)
    ->Name("Snapshot/Pause/upager")
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstWrite, seq_fork, Pager::kKernel, Order::kSequential)
    ->Name("Snapshot/FirstWrite/Sequential/fork")
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstWrite, seq_upager, Pager::kUpager, Order::kSequential)
    ->Name("Snapshot/FirstWrite/Sequential/upager")
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstWrite, rand_fork, Pager::kKernel, Order::kRandom)
    ->Name("Snapshot/FirstWrite/Random/fork")
    ->UseManualTime()
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FirstWrite, rand_upager, Pager::kUpager, Order::kRandom)
    ->Name("Snapshot/FirstWrite/Random/upager")
    ->UseManualTime()
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Incremental)
    ->Name("Snapshot/Incremental/1pct")
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace upager::bench
