// A pool of populated, zeroed private pages for zero-fill write faults.
//
// Why: a write fault on a zero-filled region used to be resolved with
// UFFDIO_COPY from a zero mapping, which makes the kernel allocate, zero
// and copy a page inside the fault (about 1.5 us a page here). The pool
// allocates and zeroes pages ahead of time on a background thread
// (MADV_POPULATE_WRITE, a chunk at a time), and the fault moves finished
// pages into the region with UFFDIO_MOVE, which only rewrites page-table
// entries (0.1-0.2 us a page in large batches).
//
// Memory: one private anonymous read-write area, registered with no
// userfaultfd (UFFDIO_MOVE needs only its destination registered; its
// source must be private anonymous memory with the destination's access
// flags and protection, which a region's are: see the kernel's
// validate_move_areas). MADV_NOHUGEPAGE: a move out of a huge page would
// have to split it first. MADV_WIPEONFORK: a fork() child gets fresh
// zero-fill there instead of sharing the pages copy-on-write, which would
// leave them shared in the parent too and make every move of them fail
// with EBUSY. Nothing ever writes the area, so every page in it reads as
// zero, including the pages a failed move leaves behind.
//
// PROTOCOL. Pages are numbered by a 64-bit sequence s that never wraps;
// page s lives at slot s % pages() of the area, which is cut into chunks
// of chunk_pages() pages.
// - ready_: every page s < ready_ is populated. Only the refill thread
//   advances it, one chunk at a time, with a release store after
//   MADV_POPULATE_WRITE returned for the chunk.
// - taken_: pages s < taken_ belong to consumers. Take claims a run
//   [taken_, taken_ + k) with one CAS, k <= ready_ - taken_, never across
//   the end of the area (one move needs contiguous addresses). Every
//   claimed page is handed back exactly once, by Finish.
// - finished_[c]: pages of chunk c's current round handed back by Finish.
//   The refill thread populates chunk c again only once all of them are,
//   so it never touches a page a consumer is still moving, and a consumer
//   never sees a page being populated. (Chunks start out finished.)
// - kept_[c]: of those, pages Finish reported as not moved (the move
//   failed or stopped early). They stay in the area, populated and zero;
//   the refill neither zeroes nor charges them again.
// - Wake-ups: the refill thread, finding nothing to do, sets sleeping_,
//   checks once more, then blocks on an eventfd. Take, and a Finish that
//   completes a chunk, swap sleeping_ to false and write the eventfd only
//   if it was set: one write(2) per sleep, none while the thread is awake.
//   A refill can only be waiting for a chunk to complete, and the Finish
//   completing it and the thread's last look before sleeping are both
//   sequentially consistent, so that wake-up cannot be missed. The
//   thread starts asleep: a Runtime whose application never write-faults
//   a zero page never pays for the pool.
// - Idle time only: Take stamps last_take_ns_, and the refill thread
//   populates a chunk only once no Take has come for quiet_ns, then fills
//   the pool up. A fault stream takes the stock, then copies; the pool
//   refills when it stops. Measured here (README, "Benchmarks"), a refill
//   running beside a fault stream slowed the stream more than its pages
//   sped it up (1.4-1.5 us a page against 1.16 without a pool, with 35-40%
//   of the pages moved), the two CPUs then contending in the kernel's
//   page allocator and each move sending a TLB-flush IPI to the CPU that
//   populates. So a long stream runs at the copy's speed, and a burst up
//   to the pool's size at the move's.
// - Budget: with a FrameBudget, the refill reserves a frame for each page
//   it populates, and only while the budget stays at or below its low
//   watermark, so the pool never pushes the runtime into eviction. Finish
//   releases one frame per page moved out: the fault that used the page
//   reserved its own frame for it.
// - Disable(): Take hands out nothing from then on; the refill thread
//   drops the area's pages and its frames. A consumer still holding a
//   lease then finds holes (its move fails with ENOENT and it falls back),
//   never a non-zero page.
//
// Thread-safety: Take, Finish and Disable are lock-free and
// async-signal-safe (atomics, a vDSO clock read, at most one write(2);
// errno preserved): any thread may call them, a signal handler included.
// stats from any thread; Create and the destructor from the owner.
#ifndef UPAGER_RUNTIME_ZERO_POOL_H_
#define UPAGER_RUNTIME_ZERO_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "pager/frame_budget.h"
#include "runtime/os/wakeup.h"

namespace upager::internal {

class ZeroPool {
 public:
  // Pages populated per MADV_POPULATE_WRITE call: big enough that the call
  // overhead vanishes (~1 us against ~30 us of zeroing), small enough that
  // a chunk comes back into use soon after a fault moved it out.
  static constexpr uint64_t kChunkPages = 64;

  struct Options {
    // Capacity in pages; above kChunkPages it is rounded down to whole
    // chunks. At least 1.
    uint64_t pages = 0;
    size_t page_size = 0;
    // Charged for the pages the pool holds; null without a budget. Must
    // outlive the pool.
    FrameBudget* budget = nullptr;
    // Refill at SCHED_IDLE: populate only on CPUs that have nothing else
    // to do (the pool empties, and faults fall back to copying, when
    // none does).
    bool idle_priority = true;
    // Refill only after this long without a Take (see "Idle time only").
    // 0: refill whenever there is room (tests of the protocol).
    uint64_t quiet_ns = kDefaultQuietNs;
  };
  static constexpr uint64_t kDefaultQuietNs = 1'000'000;

  // A run of populated zero pages handed out by Take. Move them out, then
  // hand the run back with Finish.
  struct Lease {
    uintptr_t addr = 0;  // first page; 0 with pages == 0 (pool empty)
    uint64_t pages = 0;
    uint64_t seq = 0;    // sequence number of the first page
  };

  struct Stats {
    uint64_t capacity_pages = 0;
    uint64_t ready_pages = 0;      // populated and not handed out, now
    uint64_t pages_populated = 0;  // by the refill thread, ever
    uint64_t refill_cpu_ns = 0;    // its CPU time in MADV_POPULATE_WRITE
    uint64_t populate_failures = 0;
    bool disabled = false;
    int disable_error = 0;  // the errno Disable was given
  };

  // Maps the area and starts the refill thread (asleep until the first
  // Take). Fails with the mmap/madvise/eventfd error.
  static absl::StatusOr<std::unique_ptr<ZeroPool>> Create(
      const Options& options);
  // Stops the refill thread (it finishes the chunk it is populating) and
  // unmaps the area. No Take or Finish may be running or follow.
  ~ZeroPool();
  ZeroPool(const ZeroPool&) = delete;
  ZeroPool& operator=(const ZeroPool&) = delete;

  // Claims up to `max_pages` contiguous populated pages (fewer at the end
  // of the area or when fewer are ready; none when the pool is empty or
  // disabled). Lock-free, async-signal-safe.
  [[nodiscard]] Lease Take(uint64_t max_pages);
  // Hands back a lease whose first `moved` pages were moved out (the rest
  // stay in the area). Lock-free, async-signal-safe.
  void Finish(const Lease& lease, uint64_t moved);
  // Stops handing out pages for good, e.g. because moves keep failing
  // (`error` is kept for Stats). Async-signal-safe.
  void Disable(int error);
  // In a fork() child: the refill thread does not exist there; let the
  // destructor skip joining it.
  void AbandonAfterFork();

  Stats stats() const;
  uint64_t pages() const { return pages_; }
  uint64_t chunk_pages() const { return chunk_pages_; }

 private:
  ZeroPool(const Options& options, std::byte* base, uint64_t pages,
           uint64_t chunk_pages, os::EventFd wake);

  void RefillLoop();
  // Populates chunk `c` (whose previous round is finished) and charges it;
  // false if the budget or the kernel refused (*backoff then set).
  bool FillChunk(uint64_t c, bool* backoff);
  // Drops every page and frame (Disable, seen by the refill thread).
  void Drain();
  void ReleaseCharge(uint64_t pages);
  // Wakes the refill thread if it sleeps.
  void Wake();
  uint64_t Ready() const;

  std::byte* const base_;
  const uint64_t pages_;
  const uint64_t chunk_pages_;
  const uint64_t chunks_;
  const size_t page_size_;
  FrameBudget* const budget_;
  const bool idle_priority_;
  const uint64_t quiet_ns_;
  os::EventFd wake_;

  // The protocol above. Sequence numbers in pages.
  std::atomic<uint64_t> ready_{0};
  std::atomic<uint64_t> taken_{0};
  std::unique_ptr<std::atomic<uint64_t>[]> finished_;  // by chunk
  std::unique_ptr<std::atomic<uint64_t>[]> kept_;      // by chunk
  std::atomic<bool> sleeping_{true};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> disabled_{false};
  std::atomic<int> disable_error_{0};
  std::atomic<uint64_t> charged_{0};  // frames held, pages
  std::atomic<uint64_t> last_take_ns_{0};  // monotonic clock

  // Written by the refill thread only; read by stats().
  std::atomic<uint64_t> pages_populated_{0};
  std::atomic<uint64_t> refill_cpu_ns_{0};
  std::atomic<uint64_t> populate_failures_{0};

  bool abandoned_ = false;
  std::thread refill_;
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_ZERO_POOL_H_
