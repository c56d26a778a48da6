#include "bench/bench_util.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace upager::bench {
namespace {

// Holds the Runtime (or why it could not be created) until exit. A
// function-local static makes creation thread-safe and lazy, so a filtered
// run of kernel-only benchmarks never opens a userfaultfd. Deliberately
// never destroyed (Google style for statics): exit reclaims the descriptor,
// the service thread and any region, and there is nothing to flush.
absl::StatusOr<std::unique_ptr<Runtime>>& RuntimeSlot(Pager pager) {
  // The variants of kUpagerCopy keep the pool off too, so that each
  // differs from it in one thing only.
  if (pager == Pager::kUpagerIdlePriority) {
    static auto* slot = new absl::StatusOr<std::unique_ptr<Runtime>>(
        Runtime::Create(
            {.service_idle_priority = true, .zero_pool_bytes = 0}));
    return *slot;
  }
  if (pager == Pager::kUpagerSpin) {
    static auto* slot = new absl::StatusOr<std::unique_ptr<Runtime>>(
        Runtime::Create({.service_spin_ns = 50'000}));
    return *slot;
  }
  if (pager == Pager::kUpagerSignal) {
    static auto* slot = new absl::StatusOr<std::unique_ptr<Runtime>>(
        Runtime::Create({.fault_mode = FaultMode::kSignal}));
    return *slot;
  }
  if (pager == Pager::kUpagerUnpinned) {
    static auto* slot = new absl::StatusOr<std::unique_ptr<Runtime>>(
        Runtime::Create({.service_threads = 1,
                         .pin_service_threads = false,
                         .zero_pool_bytes = 0}));
    return *slot;
  }
  if (pager == Pager::kUpagerCopy) {
    static auto* slot = new absl::StatusOr<std::unique_ptr<Runtime>>(
        Runtime::Create({.zero_pool_bytes = 0}));
    return *slot;
  }
  if (pager == Pager::kUpagerPoolBurst) {
    static auto* slot = new absl::StatusOr<std::unique_ptr<Runtime>>(
        Runtime::Create({.zero_pool_bytes = kBurstZeroPoolBytes}));
    return *slot;
  }
  if (pager == Pager::kUpagerPool) {
    static auto* slot = new absl::StatusOr<std::unique_ptr<Runtime>>(
        Runtime::Create(
            {.zero_pool_bytes = RuntimeOptions::kDefaultZeroPoolBytes}));
    return *slot;
  }
  static auto* slot = new absl::StatusOr<std::unique_ptr<Runtime>>(
      Runtime::Create(RuntimeOptions{}));
  return *slot;
}

absl::Status ErrnoError(int err, const char* what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, ": ", std::strerror(err)));
}

// Checks one page against "TouchValue(page) at offset 0 (if `written`),
// zero everywhere else"; `full` compares every byte, otherwise only the
// first.
absl::Status CheckPage(const std::byte* base, uint64_t page, bool written,
                       bool full) {
  const auto* p = reinterpret_cast<const uint8_t*>(base + page * kPageSize);
  const uint8_t want0 = written ? TouchValue(page) : 0;
  if (p[0] != want0) {
    return absl::DataLossError(absl::StrFormat(
        "page %d byte 0 reads %#x, want %#x", page, p[0], want0));
  }
  if (!full) return absl::OkStatus();
  for (size_t i = 1; i < kPageSize; ++i) {
    if (p[i] != 0) {
      return absl::DataLossError(
          absl::StrFormat("page %d byte %d reads %#x, want 0", page, i, p[i]));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Runtime*> SharedRuntime(Pager pager) {
  auto& slot = RuntimeSlot(pager);
  if (!slot.ok()) return slot.status();
  return slot->get();
}

absl::StatusOr<FreshMemory> FreshMemory::Map(
    Pager pager, size_t bytes, std::optional<uint32_t> fault_around_pages) {
  if (bytes == 0 || bytes % kPageSize != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("FreshMemory::Map: size ", bytes,
                     " is not a non-zero multiple of ", kPageSize));
  }
  if (pager == Pager::kKernel) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return ErrnoError(errno, "mmap");
    // THP would turn 512 first touches into one 2 MiB fault; upager
    // regions get the same advice, so both sides fault 4 KiB at a time.
    if (madvise(p, bytes, MADV_NOHUGEPAGE) != 0) {
      const int err = errno;
      munmap(p, bytes);
      return ErrnoError(err, "madvise(MADV_NOHUGEPAGE)");
    }
    return FreshMemory(nullptr, static_cast<std::byte*>(p), bytes, nullptr);
  }
  absl::StatusOr<Runtime*> rt = SharedRuntime(pager);
  if (!rt.ok()) return rt.status();
  return Map(*rt, bytes, fault_around_pages);
}

absl::StatusOr<FreshMemory> FreshMemory::Map(
    Runtime* runtime, size_t bytes,
    std::optional<uint32_t> fault_around_pages) {
  RegionOptions o;
  o.size = bytes;
  o.name = "bench";
  o.fault_around_pages = fault_around_pages;
  absl::StatusOr<Region*> region = runtime->Map(o);
  if (!region.ok()) return region.status();
  return FreshMemory(runtime, (*region)->data(), bytes, *region);
}

FreshMemory::FreshMemory(FreshMemory&& other) noexcept
    : runtime_(other.runtime_),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      region_(std::exchange(other.region_, nullptr)) {}

FreshMemory::~FreshMemory() { (void)Release(); }

absl::Status FreshMemory::Release() {
  if (data_ == nullptr) return absl::OkStatus();
  std::byte* const data = std::exchange(data_, nullptr);
  const size_t size = std::exchange(size_, 0);
  if (runtime_ == nullptr) {
    if (munmap(data, size) != 0) return ErrnoError(errno, "munmap");
    return absl::OkStatus();
  }
  Region* const region = std::exchange(region_, nullptr);
  return runtime_->Unmap(region);
}

absl::Status FreshMemory::PagerStatus() const {
  if (runtime_ == nullptr) return absl::OkStatus();
  if (absl::Status s = runtime_->status(); !s.ok()) return s;
  const Stats stats = runtime_->stats();
  if (stats.threads_poisoned != 0) {
    return absl::InternalError(absl::StrCat(stats.threads_poisoned,
                                            " faulting threads were poisoned"));
  }
  return absl::OkStatus();
}

absl::Status WarmHostMemory(size_t bytes) {
  // MAP_POPULATE faults every page in from the kernel in one call, the
  // fastest way to get the host to back them; munmap returns them to the
  // guest's free lists, where the next allocations find them.
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return ErrnoError(errno, "mmap(MAP_POPULATE)");
  if (munmap(p, bytes) != 0) return ErrnoError(errno, "munmap");
  return absl::OkStatus();
}

std::vector<uint64_t> ShuffledDistinctPages(uint64_t total_pages,
                                            uint64_t count, uint64_t seed) {
  count = std::min(count, total_pages);
  std::vector<uint64_t> pages(total_pages);
  std::iota(pages.begin(), pages.end(), uint64_t{0});
  // A partial Fisher-Yates: the first `count` slots become a uniform random
  // sample in random order. std::shuffle's output is not specified across
  // standard libraries; this is, given mt19937_64.
  std::mt19937_64 rng(seed);
  for (uint64_t i = 0; i < count; ++i) {
    std::uniform_int_distribution<uint64_t> pick(i, total_pages - 1);
    std::swap(pages[i], pages[pick(rng)]);
  }
  pages.resize(count);
  return pages;
}

int64_t TouchEachTimed(std::byte* base, absl::Span<const uint64_t> order,
                       std::vector<int64_t>& latencies, size_t* recorded) {
  const int64_t start = NowNanos();
  int64_t prev = start;
  for (const uint64_t page : order) {
    TouchPage(base, page);
    const int64_t now = NowNanos();
    latencies[(*recorded)++] = now - prev;
    prev = now;
  }
  return prev - start;
}

int64_t Percentile(std::vector<int64_t>& samples, double q) {
  if (samples.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const auto rank = static_cast<size_t>(q * (samples.size() - 1) + 0.5);
  std::nth_element(samples.begin(), samples.begin() + rank, samples.end());
  return samples[rank];
}

absl::Status VerifyTouched(const std::byte* base,
                           absl::Span<const uint64_t> touched,
                           size_t full_check_stride, uint64_t untouched) {
  for (size_t i = 0; i < touched.size(); ++i) {
    if (absl::Status s = CheckPage(base, touched[i], /*written=*/true,
                                   i % full_check_stride == 0);
        !s.ok()) {
      return s;
    }
  }
  return CheckPage(base, untouched, /*written=*/false, /*full=*/true);
}

absl::Status VerifyTouchedRange(const std::byte* base, uint64_t first,
                                uint64_t count, size_t full_check_stride,
                                uint64_t untouched) {
  for (uint64_t i = 0; i < count; ++i) {
    if (absl::Status s = CheckPage(base, first + i, /*written=*/true,
                                   i % full_check_stride == 0);
        !s.ok()) {
      return s;
    }
  }
  return CheckPage(base, untouched, /*written=*/false, /*full=*/true);
}

bool SkipIfError(benchmark::State& state, const absl::Status& s) {
  if (s.ok()) return false;
  state.SkipWithError(s.ToString().c_str());
  return true;
}

bool SkipIfNoRuntime(benchmark::State& state, Pager pager) {
  if (!IsUpager(pager)) return false;
  return SkipIfError(state, SharedRuntime(pager).status());
}

UpagerTally& UpagerTally::operator+=(const UpagerTally& o) {
  faults += o.faults;
  served += o.served;
  service_ns += o.service_ns;
  pool_hits += o.pool_hits;
  pool_misses += o.pool_misses;
  return *this;
}

UpagerTally UpagerTally::operator-(const UpagerTally& o) const {
  return {faults - o.faults, served - o.served, service_ns - o.service_ns,
          pool_hits - o.pool_hits, pool_misses - o.pool_misses};
}

UpagerTally TallyUpager(Pager pager) {
  if (!IsUpager(pager)) return {};
  absl::StatusOr<Runtime*> rt = SharedRuntime(pager);
  if (!rt.ok()) return {};
  return TallyUpager(*rt);
}

UpagerTally TallyUpager(Runtime* runtime) {
  if (runtime == nullptr) return {};
  const Stats s = runtime->stats();
  // Stats gives the mean, not the sum; mean * count recovers the sum to
  // within double rounding, which is far below a nanosecond per fault.
  return {s.faults_missing_read + s.faults_missing_write, s.fault_latency.count,
          s.fault_latency.mean_ns * static_cast<double>(s.fault_latency.count),
          s.zero_pool_hits, s.zero_pool_misses};
}

// runtime/zero_pool.h, ZeroPool::kChunkPages.
constexpr uint64_t kPoolChunkPages = 64;

int64_t WaitForFullZeroPool(Runtime* runtime, absl::Duration timeout) {
  const int64_t cpu0 = ThreadCpuNanos();
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const Stats s = runtime->stats();
    // Full but for the chunk the last stream ended in: its untaken pages
    // stay ready, and the pool refills a chunk only once all of it was
    // taken (ZeroPool::kChunkPages, 64 pages), so exactly full may never
    // come back (the wait then ran into its timeout every iteration).
    if (s.zero_pool_ready_pages + kPoolChunkPages >= s.zero_pool_pages ||
        s.zero_pool_state != "on" || absl::Now() > deadline) {
      break;
    }
    // Stats costs microseconds; polling every 2 ms keeps the wait's own
    // CPU time small next to the refill it waits for.
    absl::SleepFor(absl::Milliseconds(2));
  }
  return ThreadCpuNanos() - cpu0;
}

absl::Status WarmZeroPool(Pager pager) {
  if (!IsUpager(pager)) return absl::OkStatus();
  absl::StatusOr<Runtime*> rt = SharedRuntime(pager);
  if (!rt.ok()) return rt.status();
  if ((*rt)->stats().zero_pool_pages == 0) return absl::OkStatus();
  // A 16-page window: smaller ones are copied without asking the pool.
  absl::StatusOr<FreshMemory> mem = FreshMemory::Map(*rt, 16 * kPageSize, 16);
  if (!mem.ok()) return mem.status();
  TouchPage(mem->data(), 0);
  (void)WaitForFullZeroPool(*rt, absl::Seconds(30));
  return mem->Release();
}

void SetUpagerCounters(benchmark::State& state, Pager pager,
                       const UpagerTally& tally, int64_t pages) {
  if (!IsUpager(pager) || pages <= 0) return;
  state.counters["faults_per_page"] =
      static_cast<double>(tally.faults) / static_cast<double>(pages);
  if (tally.served > 0) {
    state.counters["service_ns"] =
        tally.service_ns / static_cast<double>(tally.served);
  }
  if (tally.pool_hits + tally.pool_misses > 0) {
    state.counters["pool_hit_ratio"] =
        static_cast<double>(tally.pool_hits) /
        static_cast<double>(tally.pool_hits + tally.pool_misses);
  }
}

}  // namespace upager::bench
