// Kernel/Swap/*: the OutOfCore/* workloads (out_of_core_workload.h: a 1 GiB
// working set, a 256 MiB budget) served by the kernel's own swap, in the
// same run, as the baseline for upager's numbers.
//
// Setup (KernelSwapSandbox, untimed): a 2 GiB swap file in the directory
// upager's swap file uses ($UPAGER_BENCH_DIR, else /var/tmp), mkswap and
// swapon; a memory cgroup limited to 256 MiB with swap unlimited. A worker
// process forked for the working set moves itself into the cgroup (writes
// its pid to cgroup.procs), maps 1 GiB of private anonymous memory with
// MADV_NOHUGEPAGE (4 KiB pages, as upager) and builds the working set; then
// for each timed part the parent asks for, it runs it, verifies it, and
// sends back over a pipe: its own clock's timing, per-access latencies, the
// swap-ins and swap-outs (/proc/vmstat pswpin/pswpout, machine-wide: no
// other process swaps, the swap area is ours) and its major faults.
//
// The worker and the sandbox live as long as the working set (three
// repetitions; out_of_core_fixture.h), and are undone when it is released:
// the worker is stopped and reaped, the cgroup removed, swapoff, the file
// unlinked; also when anything fails halfway. Without root, a memory
// controller, or a file system swapon accepts, every benchmark here skips
// with the exact reason.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bench/kernel_swap_sandbox.h"
#include "bench/out_of_core_fixture.h"
#include "bench/out_of_core_workload.h"
#include "benchmark/benchmark.h"

namespace upager::bench {
namespace {

constexpr uint64_t kSwapFileBytes = uint64_t{2} << 30;
// Building 1 GiB through the cgroup takes seconds; a worker silent for this
// long is stuck (or thrashing), and is killed.
constexpr int kReplyTimeoutMs = 300'000;

// --- The wire format between the parent and the worker. Both are the same
// binary, so plain structs.

struct Command {
  int32_t slice = 0;
};

struct ReplyHeader {
  int32_t code = 0;  // absl::StatusCode
  uint32_t message_bytes = 0;
  int64_t elapsed_ns = 0;
  uint64_t accesses = 0;
  uint64_t swapins = 0;   // pswpin delta over the timed part
  uint64_t swapouts = 0;  // pswpout delta
  uint64_t major_faults = 0;
  uint64_t latencies = 0;  // int64 samples following the message
};

struct Reply {
  absl::Status status;
  ReplyHeader header;
  std::vector<int64_t> latencies;
};

bool WriteFull(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads exactly n bytes; 0 on success, else an errno (EPIPE for EOF,
// ETIMEDOUT when nothing arrived for timeout_ms; -1: no limit).
int ReadFull(int fd, void* data, size_t n, int timeout_ms) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    if (timeout_ms >= 0) {
      pollfd pfd{fd, POLLIN, 0};
      const int r = poll(&pfd, 1, timeout_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno;
      if (r == 0) return ETIMEDOUT;
    }
    const ssize_t got = read(fd, p, n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return errno;
    if (got == 0) return EPIPE;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return 0;
}

// --- The worker process.

struct SwapCounters {
  uint64_t swapins = 0;
  uint64_t swapouts = 0;
  uint64_t major_faults = 0;
};

SwapCounters ReadSwapCounters() {
  SwapCounters c;
  std::string vmstat;
  const int fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[4096];
    for (;;) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      vmstat.append(buf, static_cast<size_t>(n));
    }
    close(fd);
  }
  for (absl::string_view line : absl::StrSplit(vmstat, '\n')) {
    const std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (kv.first == "pswpin") (void)absl::SimpleAtoi(kv.second, &c.swapins);
    if (kv.first == "pswpout") (void)absl::SimpleAtoi(kv.second, &c.swapouts);
  }
  rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    c.major_faults = static_cast<uint64_t>(ru.ru_majflt);
  }
  return c;
}

void SendReply(int fd, const absl::Status& status, ReplyHeader header,
               const std::vector<int64_t>& latencies) {
  const std::string message(status.message());
  header.code = static_cast<int32_t>(status.code());
  header.message_bytes = static_cast<uint32_t>(message.size());
  header.latencies = latencies.size();
  if (!WriteFull(fd, &header, sizeof(header)) ||
      !WriteFull(fd, message.data(), message.size()) ||
      !WriteFull(fd, latencies.data(), latencies.size() * sizeof(int64_t))) {
    _exit(3);  // the parent is gone
  }
}

// Runs in the forked child; never returns. Replies once after building the
// working set, then once per command, until the command pipe closes.
[[noreturn]] void WorkerMain(int cmd_fd, int reply_fd, pid_t parent,
                             const std::string& procs_file,
                             const OocPlan& plan) {
  // Die with the benchmark, so a killed run leaves no worker holding swap.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(2);
  absl::Status s;
  {
    // "0" moves the writing process (cgroup v1 and v2 alike).
    const int fd = open(procs_file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) {
      s = absl::Status(absl::ErrnoToStatusCode(errno),
                       absl::StrCat("joining the cgroup (write 0 to ",
                                    procs_file, "): ", std::strerror(errno)));
    }
    if (fd >= 0) close(fd);
  }
  std::byte* base = nullptr;
  if (s.ok()) {
    void* p = mmap(nullptr, kOocWorkingSetBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED ||
        madvise(p, kOocWorkingSetBytes, MADV_NOHUGEPAGE) != 0) {
      s = absl::InternalError(absl::StrCat("mmap/madvise(MADV_NOHUGEPAGE): ",
                                           std::strerror(errno)));
    } else {
      base = static_cast<std::byte*>(p);
    }
  }
  if (s.ok()) s = BuildOocWorkingSet(plan, base);
  SendReply(reply_fd, s, {}, {});
  if (!s.ok()) _exit(1);
  Command cmd;
  while (ReadFull(cmd_fd, &cmd, sizeof(cmd), -1) == 0) {
    const SwapCounters before = ReadSwapCounters();
    OocTimed t = RunOocTimed(plan, base, cmd.slice);
    const SwapCounters after = ReadSwapCounters();
    ReplyHeader h;
    h.elapsed_ns = t.elapsed_ns;
    h.accesses = t.accesses;
    h.swapins = after.swapins - before.swapins;
    h.swapouts = after.swapouts - before.swapouts;
    h.major_faults = after.major_faults - before.major_faults;
    absl::Status st = t.status;
    if (st.ok()) st = VerifyOocSlice(plan, base, cmd.slice);
    SendReply(reply_fd, st, h, t.latencies);
  }
  _exit(0);
}

// --- The parent's side.

class KernelWorkingSet : public OocFixture {
 public:
  static absl::StatusOr<std::unique_ptr<KernelWorkingSet>> Build(
      OocWorkload workload, int threads) {
    std::unique_ptr<KernelWorkingSet> ws(
        new KernelWorkingSet(OocTimedParts(workload)));
    // Drawn before the fork: the worker reads the parent's copy.
    ws->plan_ = MakeOocPlan(workload, threads);
    absl::StatusOr<std::unique_ptr<KernelSwapSandbox>> box =
        KernelSwapSandbox::Create({.dir = OocSwapDir(),
                                   .swap_bytes = kSwapFileBytes,
                                   .memory_limit_bytes = kOocBudgetBytes});
    if (!box.ok()) return box.status();
    ws->sandbox_ = std::move(*box);
    if (absl::Status s = ws->StartWorker(); !s.ok()) return s;
    absl::StatusOr<Reply> ready = ws->ReadReply();
    if (!ready.ok()) return ready.status();
    if (!ready->status.ok()) return ready->status;
    return ws;
  }

  // The worker first (closing its command pipe lets it exit), then the
  // sandbox, which needs the cgroup empty.
  ~KernelWorkingSet() override {
    StopWorker();
    sandbox_.reset();
  }

  // Runs timed part `slice` in the worker. The Reply's status is the
  // workload's (wrong bytes); the returned status is the worker's (died,
  // stuck).
  absl::StatusOr<Reply> Run(int slice) {
    const Command cmd{slice};
    if (!SendCommand(cmd)) return WorkerGone("command");
    return ReadReply();
  }

  const KernelSwapSandbox& sandbox() const { return *sandbox_; }

 private:
  explicit KernelWorkingSet(int timed_parts) : OocFixture(timed_parts) {}

  // Writes the command with SIGPIPE blocked, so a dead worker is an error
  // here rather than a signal that kills the benchmark; a SIGPIPE left
  // pending by the failed write is consumed before unblocking.
  bool SendCommand(const Command& cmd) {
    sigset_t pipe_set;
    sigset_t old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    const bool ok = WriteFull(cmd_fd_, &cmd, sizeof(cmd));
    if (!ok && errno == EPIPE) {
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return ok;
  }

  absl::Status StartWorker() {
    int cmd[2];
    int reply[2];
    if (pipe2(cmd, O_CLOEXEC) != 0) {
      return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
    }
    if (pipe2(reply, O_CLOEXEC) != 0) {
      const int err = errno;
      close(cmd[0]);
      close(cmd[1]);
      return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(err)));
    }
    const std::string procs = sandbox_->procs_file();
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      close(cmd[1]);
      close(reply[0]);
      WorkerMain(cmd[0], reply[1], parent, procs, plan_);
    }
    const int err = errno;
    close(cmd[0]);
    close(reply[1]);
    cmd_fd_ = cmd[1];
    reply_fd_ = reply[0];
    if (pid < 0) {
      return absl::InternalError(absl::StrCat("fork: ", std::strerror(err)));
    }
    worker_ = pid;
    return absl::OkStatus();
  }

  void StopWorker() {
    if (cmd_fd_ >= 0) close(cmd_fd_);
    cmd_fd_ = -1;
    if (worker_ > 0) {
      int status;
      // Exiting frees 1 GiB (much of it swap): allow a few seconds.
      bool reaped = false;
      for (int i = 0; i < 500 && !reaped; ++i) {
        reaped = waitpid(worker_, &status, WNOHANG) == worker_;
        if (!reaped) usleep(10'000);
      }
      if (!reaped) {
        kill(worker_, SIGKILL);
        while (waitpid(worker_, &status, 0) < 0 && errno == EINTR) {
        }
      }
      worker_ = -1;
    }
    if (reply_fd_ >= 0) close(reply_fd_);
    reply_fd_ = -1;
  }

  // Why the worker stopped answering, after reaping it.
  absl::Status WorkerGone(const char* during) {
    std::string how = "still running; killed";
    if (worker_ > 0) {
      int status = 0;
      if (waitpid(worker_, &status, WNOHANG) != worker_) {
        kill(worker_, SIGKILL);
        waitpid(worker_, &status, 0);
      } else if (WIFSIGNALED(status)) {
        how = absl::StrCat(
            "killed by signal ", WTERMSIG(status),
            WTERMSIG(status) == SIGKILL ? " (the cgroup's OOM killer?)" : "");
      } else {
        how = absl::StrCat("exited with status ", WEXITSTATUS(status));
      }
      worker_ = -1;
    }
    return absl::InternalError(absl::StrCat(
        "kernel swap worker stopped answering (", during, "): ", how));
  }

  absl::StatusOr<Reply> ReadReply() {
    Reply r;
    const int err =
        ReadFull(reply_fd_, &r.header, sizeof(r.header), kReplyTimeoutMs);
    if (err == ETIMEDOUT) return WorkerGone("no reply in 300 s");
    if (err != 0) return WorkerGone("reply");
    std::string message(r.header.message_bytes, '\0');
    r.latencies.resize(r.header.latencies);
    if (ReadFull(reply_fd_, message.data(), message.size(), kReplyTimeoutMs) !=
            0 ||
        ReadFull(reply_fd_, r.latencies.data(),
                 r.latencies.size() * sizeof(int64_t), kReplyTimeoutMs) != 0) {
      return WorkerGone("reply body");
    }
    r.status =
        absl::Status(static_cast<absl::StatusCode>(r.header.code), message);
    return r;
  }

  OocPlan plan_;
  std::unique_ptr<KernelSwapSandbox> sandbox_;
  pid_t worker_ = -1;
  int cmd_fd_ = -1;
  int reply_fd_ = -1;
};

void BM_KernelSwap(benchmark::State& state, OocWorkload workload, int threads) {
  const std::string key =
      absl::StrFormat("kernel/%d/%d", static_cast<int>(workload), threads);
  int64_t elapsed_ns = 0;
  uint64_t accesses = 0;
  uint64_t swapins = 0;
  uint64_t swapouts = 0;
  uint64_t major_faults = 0;
  std::vector<int64_t> latencies;
  std::string label;
  std::optional<uint64_t> peak;
  for (auto _ : state) {
    absl::StatusOr<KernelWorkingSet*> ws = AcquireOocFixture<KernelWorkingSet>(
        key, [&] { return KernelWorkingSet::Build(workload, threads); });
    if (SkipIfError(state, ws.status())) break;
    const int slice = (*ws)->TakeSlice();
    absl::StatusOr<Reply> r = (*ws)->Run(slice);
    absl::Status s = r.ok() ? r->status : r.status();
    if (s.ok()) {
      label = (*ws)->sandbox().Describe();
      peak = (*ws)->sandbox().PeakBytes();
    }
    if (!s.ok() || (*ws)->exhausted()) ReleaseOocFixture();
    if (SkipIfError(state, s)) break;
    state.SetIterationTime(static_cast<double>(r->header.elapsed_ns) * 1e-9);
    elapsed_ns += r->header.elapsed_ns;
    accesses += r->header.accesses;
    swapins += r->header.swapins;
    swapouts += r->header.swapouts;
    major_faults += r->header.major_faults;
    latencies.insert(latencies.end(), r->latencies.begin(), r->latencies.end());
  }
  if (state.error_occurred() || accesses == 0) return;
  const auto pages = static_cast<double>(accesses);
  state.SetItemsProcessed(static_cast<int64_t>(accesses));
  state.SetBytesProcessed(static_cast<int64_t>(accesses * kPageSize));
  state.counters["ns_per_page"] = static_cast<double>(elapsed_ns) / pages;
  if (!latencies.empty()) {
    state.counters["p50_ns"] = static_cast<double>(Percentile(latencies, 0.50));
    state.counters["p99_ns"] = static_cast<double>(Percentile(latencies, 0.99));
  }
  state.counters["swapins_per_page"] = static_cast<double>(swapins) / pages;
  state.counters["swapouts_per_page"] = static_cast<double>(swapouts) / pages;
  state.counters["majflt_per_page"] = static_cast<double>(major_faults) / pages;
  if (workload == OocWorkload::kHotCold) {
    state.counters["hit_ratio"] =
        std::max(0.0, 1.0 - static_cast<double>(swapins) / pages);
  }
  if (peak.has_value()) {
    state.counters["cgroup_peak_mib"] = static_cast<double>(*peak) / (1 << 20);
  }
  state.SetLabel(label);
}

// Iterations(1): one timed part per repetition (out_of_core_workload.h has
// the sizes); each takes 0.1-3 s.
BENCHMARK_CAPTURE(BM_KernelSwap, seq_write, OocWorkload::kSeqWrite, 1)
    ->Name("Kernel/Swap/SeqWrite")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_KernelSwap, seq_read, OocWorkload::kSeqRead, 1)
    ->Name("Kernel/Swap/SeqRead")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_KernelSwap, rand_read, OocWorkload::kRandRead, 1)
    ->Name("Kernel/Swap/RandRead4K")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_KernelSwap, rand_read2, OocWorkload::kRandRead, 2)
    ->Name("Kernel/Swap/RandRead4K/Threads2")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_KernelSwap, hot_cold, OocWorkload::kHotCold, 1)
    ->Name("Kernel/Swap/HotCold")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace upager::bench
