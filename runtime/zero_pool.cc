// See runtime/zero_pool.h for the protocol every function here follows.
#include "runtime/zero_pool.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/os/memory.h"
#include "upager/status_macros.h"

namespace upager::internal {
namespace {

// How long the refill thread waits before trying again when the budget
// has no room for a chunk or MADV_POPULATE_WRITE failed: nothing signals
// either condition's end, and a fault never waits for the pool.
constexpr int kBackoffMs = 10;

// Monotonic nanoseconds (clock_gettime through the vDSO: no system call,
// async-signal-safe).
uint64_t NowNanos() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

}  // namespace

absl::StatusOr<std::unique_ptr<ZeroPool>> ZeroPool::Create(
    const Options& options) {
  if (options.pages == 0 || options.page_size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ZeroPool: ", options.pages, " pages of ",
                     options.page_size, " bytes is not a pool"));
  }
  const uint64_t chunk = std::min(options.pages, kChunkPages);
  const uint64_t pages = options.pages / chunk * chunk;
  const size_t bytes = pages * options.page_size;
  UPAGER_ASSIGN_OR_RETURN(void* mem,
                          os::MapAnonymous(bytes, os::Protection::kReadWrite));
  auto fail = [&](const absl::Status& s) {
    (void)os::Unmap(mem, bytes);
    return s;
  };
  if (absl::Status s = os::AdviseNoHugePage(mem, bytes); !s.ok()) {
    return fail(s);
  }
  if (absl::Status s = os::AdviseWipeOnFork(mem, bytes); !s.ok()) {
    return fail(s);
  }
  absl::StatusOr<os::EventFd> wake = os::EventFd::Create();
  if (!wake.ok()) return fail(wake.status());
  std::unique_ptr<ZeroPool> pool(new ZeroPool(
      options, static_cast<std::byte*>(mem), pages, chunk, std::move(*wake)));
  ZeroPool* raw = pool.get();
  pool->refill_ = std::thread([raw] { raw->RefillLoop(); });
  return pool;
}

ZeroPool::ZeroPool(const Options& options, std::byte* base, uint64_t pages,
                   uint64_t chunk_pages, os::EventFd wake)
    : base_(base),
      pages_(pages),
      chunk_pages_(chunk_pages),
      chunks_(pages / chunk_pages),
      page_size_(options.page_size),
      budget_(options.budget),
      idle_priority_(options.idle_priority),
      quiet_ns_(options.quiet_ns),
      wake_(std::move(wake)),
      finished_(new std::atomic<uint64_t>[chunks_]),
      kept_(new std::atomic<uint64_t>[chunks_]) {
  for (uint64_t c = 0; c < chunks_; ++c) {
    finished_[c].store(chunk_pages_, std::memory_order_relaxed);
    kept_[c].store(0, std::memory_order_relaxed);
  }
}

ZeroPool::~ZeroPool() {
  stopping_.store(true);
  if (refill_.joinable()) {
    if (abandoned_) {
      refill_.detach();
    } else {
      (void)wake_.Signal();
      refill_.join();
    }
  }
  ReleaseCharge(charged_.load());
  (void)os::Unmap(base_, pages_ * page_size_);
}

void ZeroPool::AbandonAfterFork() { abandoned_ = true; }

uint64_t ZeroPool::Ready() const {
  // taken_ first: it never passes ready_, so the difference cannot wrap.
  const uint64_t t = taken_.load(std::memory_order_relaxed);
  const uint64_t r = ready_.load(std::memory_order_relaxed);
  return r > t ? r - t : 0;
}

void ZeroPool::Wake() {
  // The plain load keeps the common case (the thread is awake) free of
  // writes to a line every consumer shares.
  if (sleeping_.load() && sleeping_.exchange(false)) (void)wake_.Signal();
}

ZeroPool::Lease ZeroPool::Take(uint64_t max_pages) {
  if (max_pages == 0 || disabled_.load(std::memory_order_relaxed)) return {};
  if (quiet_ns_ != 0) {
    last_take_ns_.store(NowNanos(), std::memory_order_relaxed);
  }
  uint64_t t = taken_.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t r = ready_.load(std::memory_order_acquire);
    if (t >= r) {
      Wake();
      return {};
    }
    const uint64_t slot = t % pages_;
    const uint64_t k = std::min({max_pages, r - t, pages_ - slot});
    if (taken_.compare_exchange_weak(t, t + k)) {
      Wake();
      return {reinterpret_cast<uintptr_t>(base_ + slot * page_size_), k, t};
    }
  }
}

void ZeroPool::Finish(const Lease& lease, uint64_t moved) {
  if (lease.pages == 0) return;
  moved = std::min(moved, lease.pages);
  ReleaseCharge(moved);
  bool completed = false;
  uint64_t seq = lease.seq;
  uint64_t left = lease.pages;
  uint64_t moved_left = moved;
  // A lease may span chunks; moved pages are its prefix (a move stops at
  // its first failure).
  while (left > 0) {
    const uint64_t slot = seq % pages_;
    const uint64_t c = slot / chunk_pages_;
    const uint64_t n = std::min(left, chunk_pages_ - slot % chunk_pages_);
    const uint64_t m = std::min(moved_left, n);
    // kept_ before finished_: the refill thread reads kept_ only after it
    // has seen the chunk finished.
    if (n > m) kept_[c].fetch_add(n - m, std::memory_order_relaxed);
    if (finished_[c].fetch_add(n) + n == chunk_pages_) completed = true;
    seq += n;
    left -= n;
    moved_left -= m;
  }
  if (completed) Wake();
}

void ZeroPool::Disable(int error) {
  int none = 0;
  disable_error_.compare_exchange_strong(none, error);
  disabled_.store(true);
  Wake();  // to drain
}

void ZeroPool::ReleaseCharge(uint64_t pages) {
  // Never below zero: after a Drain, a lease handed out before it may
  // still report pages it moved (see Disable in the header).
  uint64_t cur = charged_.load();
  uint64_t take = 0;
  do {
    take = std::min(pages, cur);
    if (take == 0) return;
  } while (!charged_.compare_exchange_weak(cur, cur - take));
  if (budget_ != nullptr) budget_->Release(take);
}

bool ZeroPool::FillChunk(uint64_t c, bool* backoff) {
  std::byte* const addr = base_ + c * chunk_pages_ * page_size_;
  const size_t bytes = chunk_pages_ * page_size_;
  const uint64_t want = chunk_pages_ - kept_[c].load(std::memory_order_relaxed);
  if (budget_ != nullptr && want > 0) {
    if (budget_->limited() && budget_->used() + want > budget_->low()) {
      *backoff = true;
      return false;
    }
    const uint64_t got = budget_->TryReserve(want);
    if (got < want) {
      budget_->Release(got);
      *backoff = true;
      return false;
    }
  }
  charged_.fetch_add(want);
  if (want > 0) {
    const uint64_t cpu0 = os::CurrentThreadCpuNanos();
    const absl::Status s = os::PopulateWrite(addr, bytes);
    refill_cpu_ns_.fetch_add(os::CurrentThreadCpuNanos() - cpu0,
                             std::memory_order_relaxed);
    if (!s.ok()) {
      // Perhaps partly populated: start the chunk over from nothing, so
      // that what it holds and what it is charged for agree again.
      (void)os::AdviseDontNeed(addr, bytes);
      kept_[c].store(0, std::memory_order_relaxed);
      ReleaseCharge(chunk_pages_);
      populate_failures_.fetch_add(1, std::memory_order_relaxed);
      *backoff = true;
      return false;
    }
  }
  kept_[c].store(0, std::memory_order_relaxed);
  // Published to consumers by the release store of ready_ that follows.
  finished_[c].store(0, std::memory_order_relaxed);
  pages_populated_.fetch_add(want, std::memory_order_relaxed);
  return true;
}

void ZeroPool::Drain() {
  (void)os::AdviseDontNeed(base_, pages_ * page_size_);
  ReleaseCharge(charged_.load());
}

void ZeroPool::RefillLoop() {
  os::NameCurrentThread("upager-zeropool");
  if (idle_priority_) (void)os::SetCurrentThreadIdlePriority();
  bool drained = false;
  int timeout_ms = -1;
  bool wait = true;  // asleep until the first Take (sleeping_ starts true)
  for (;;) {
    if (wait) {
      const int fds[] = {wake_.fd()};
      uint64_t ready = 0;
      (void)os::PollReadable(fds, timeout_ms, &ready);
      (void)wake_.Clear();
      sleeping_.store(false);
      wait = false;
    }
    if (stopping_.load()) return;
    const bool disabled = disabled_.load();
    if (disabled && !drained) {
      Drain();
      drained = true;
    }
    if (!disabled && quiet_ns_ != 0) {
      // Faults are streaming in: leave the CPU and the allocator to them,
      // and look again once they may have stopped.
      const uint64_t last = last_take_ns_.load(std::memory_order_relaxed);
      const uint64_t now = NowNanos();
      const uint64_t since = now > last ? now - last : 0;
      if (since < quiet_ns_) {
        wait = true;
        timeout_ms = static_cast<int>((quiet_ns_ - since + 999'999) / 1'000'000);
        continue;
      }
    }
    const uint64_t next = ready_.load(std::memory_order_relaxed);
    const uint64_t c = (next % pages_) / chunk_pages_;
    bool backoff = false;
    if (!disabled && finished_[c].load() == chunk_pages_ &&
        FillChunk(c, &backoff)) {
      ready_.store(next + chunk_pages_, std::memory_order_release);
      continue;
    }
    // Nothing to do now: the pool is full, its oldest chunk is not all
    // taken and handed back yet, the budget has no room, or the kernel
    // refused. Announce the sleep, then look once more: a Finish that
    // completed the chunk before the announcement did not wake us.
    sleeping_.store(true);
    if (!backoff && !disabled && !disabled_.load() &&
        finished_[c].load() == chunk_pages_) {
      sleeping_.store(false);
      continue;
    }
    wait = true;
    timeout_ms = backoff ? kBackoffMs : -1;
  }
}

ZeroPool::Stats ZeroPool::stats() const {
  Stats s;
  s.capacity_pages = pages_;
  s.ready_pages = disabled_.load() ? 0 : Ready();
  s.pages_populated = pages_populated_.load(std::memory_order_relaxed);
  s.refill_cpu_ns = refill_cpu_ns_.load(std::memory_order_relaxed);
  s.populate_failures = populate_failures_.load(std::memory_order_relaxed);
  s.disabled = disabled_.load();
  s.disable_error = disable_error_.load();
  return s;
}

}  // namespace upager::internal
