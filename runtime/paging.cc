// Paging beyond memory: the resident budget, the evictor, swap-out and
// swap-in through the backing store. See runtime/engine.h,
// SYNCHRONIZATION, for the page-state protocol this file follows.
//
// Swap-out, one victim:
//   1. CAS kResident -> kEvicting(slot): the evictor owns the page.
//   2. UFFDIO_MOVE the page out of the region into a staging page. From
//      here a touch of the page is a missing fault, so no write can land
//      while its bytes are copied; the fault sets kWantedBit and waits.
//   3. Write the staging page to the slot.
//   4. On success, CAS kEvicting -> kSwapped(slot) and drop the staging
//      page: only now does the memory go. If a fault wants the page, or the
//      write failed, move the bytes back instead (the write is complete, so
//      the page is no longer pinned), publish kResident and wake.
// Swap-in: CAS kSwapped -> kFilling, read the slot into a buffer, then
// UFFDIO_COPY into the region (which wakes the faulting thread).
// Read-ahead marker (asynchronous read-ahead): a window's marker page, read
// with the window, goes back kFilling -> kSwapped with its bytes held by
// slot (HoldMarker) while the region's sizer still has it armed. Touching
// it then faults: the fault takes the marker (exactly one does), starts the
// next windows, and claims the page like any swapped page, finding its
// bytes held (no read). A fault that took the marker while the page was
// still in flight waits for the read, whose completion then sees the
// marker taken and maps the page; whoever may be waiting on a page being
// held is woken, and faults again on a swapped page.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backing/forwarding_store.h"
#include "runtime/engine.h"
#include "runtime/os/memory.h"
#include "upager/status_macros.h"

namespace upager::internal {
namespace {

// Retry-list entries for a move-back (eviction cancelled) hit by EAGAIN.
constexpr uint64_t kWriteRetryBit = 1ull << 61;

// Set when this thread queued a read a fault waits for; the service loop
// takes it after its batch (Engine::TakeAwaitedReadSubmitted).
thread_local bool t_awaited_read_queued = false;
// Staging pages (writes in flight) and swap-in buffers (reads in flight).
constexpr size_t kStagingPages = 1024;  // 4 MiB
// Two read-ahead windows of fault_around_max_pages (256 by default) in
// flight, with room for demand reads and held markers beside them.
constexpr size_t kReadBuffers = 1024;   // 4 MiB
// Markers held at once: one per stream is all a stream needs.
constexpr size_t kHeldReads = 64;
// Victims picked per evictor round.
constexpr size_t kEvictBatch = 64;
// Staging pages zapped together (Engine::ZapStaging).
constexpr size_t kZapBatch = 32;

// Whether a victim the evictor could not take goes back to the policy. A
// page claimed for a moment (kFilling: a stale missing fault on a present
// page, a copy-aside, a cancelled eviction's move-back) is resident again
// once its claimant is done, and nobody admits it again: left out, it
// would stay resident and never be evicted, a frame lost to the budget for
// good (under a one-page budget, the only one: every later fault then went
// over budget).
bool StaysResident(PageEntry e) {
  return e.state() == PageState::kResident || e.state() == PageState::kFilling;
}

// Forwards to the real store and counts the requests it holds (submitted,
// completion not reaped yet). A store may use a request's buffer until that
// completion (upager/backing_store.h), and the buffers are the Engine's:
// ~Engine waits for the count to reach zero before it frees them
// (Engine::WaitForStoreRequests).
class CountingStore final : public ForwardingStore {
 public:
  CountingStore(std::shared_ptr<BackingStore> real,
                std::atomic<int64_t>* requests,
                absl::AnyInvocable<void(uint64_t)> on_free)
      : ForwardingStore(std::move(real)),
        requests_(requests),
        on_free_(std::move(on_free)) {}

  // Every slot the runtime frees passes here: bytes held for it must go.
  void FreeSlot(uint64_t slot) override {
    on_free_(slot);
    ForwardingStore::FreeSlot(slot);
  }

  absl::Status Submit(absl::Span<const Request> requests) override {
    // Counted first: the completions may be reaped by another thread
    // before Submit returns.
    requests_->fetch_add(static_cast<int64_t>(requests.size()));
    absl::Status s = ForwardingStore::Submit(requests);
    if (!s.ok()) requests_->fetch_sub(static_cast<int64_t>(requests.size()));
    return s;
  }
  size_t Reap(absl::Span<Completion> out) override {
    return Reaped(ForwardingStore::Reap(out));
  }
  size_t Wait(absl::Span<Completion> out, absl::Duration timeout) override {
    return Reaped(ForwardingStore::Wait(out, timeout));
  }

 private:
  size_t Reaped(size_t n) {
    requests_->fetch_sub(static_cast<int64_t>(n));
    return n;
  }

  std::atomic<int64_t>* const requests_;
  absl::AnyInvocable<void(uint64_t)> on_free_;
};

}  // namespace

absl::Status Engine::StartPaging() {
  const uint64_t budget_pages = options_.resident_budget_bytes / page_size_;
  auto p = std::make_unique<Paging>(budget_pages,
                                    options_.high_watermark_percent,
                                    options_.low_watermark_percent);
  if (!uffd_->has(os::uffd_feature::kMove)) {
    return absl::FailedPreconditionError(
        "a resident budget needs UFFDIO_MOVE (Linux 6.8+) to evict pages "
        "without losing concurrent writes; this kernel lacks it");
  }
  if (options_.swap.store != nullptr) {
    p->store = options_.swap.store;
    if (p->store->page_size() != page_size_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SwapOptions.store has page size ", p->store->page_size(),
          ", the runtime ", page_size_));
    }
  } else {
    SwapFileOptions f;
    f.path = options_.swap.path;
    if (f.path.empty()) {
      const char* dir = std::getenv("TMPDIR");
      f.path = absl::StrFormat("%s/upager-%d-%p.swap",
                               dir != nullptr && *dir ? dir : "/var/tmp",
                               owner_pid_, static_cast<void*>(this));
    }
    f.capacity_bytes = options_.swap.capacity_bytes != 0
                           ? options_.swap.capacity_bytes
                           : 4 * budget_pages * page_size_;
    f.direct_io = options_.swap.direct_io;
    UPAGER_ASSIGN_OR_RETURN(std::unique_ptr<BackingStore> store,
                            OpenSwapFile(f));
    p->store = std::move(store);
  }
  p->store = std::make_shared<CountingStore>(
      std::move(p->store), &p->store_requests,
      [this](uint64_t slot) { DropHeld(slot); });
  p->held = std::make_unique<HeldReads>(kHeldReads);
  EvictionPolicy::Options po;
  po.budget_pages = budget_pages;
  UPAGER_RETURN_IF_ERROR(EvictionPolicy::Validate(po));
  p->policy = std::make_unique<EvictionPolicy>(po);

  os::UffdOpenOptions so;
  so.paths = {uffd_->path()};
  so.required_features = os::uffd_feature::kMove;
  UPAGER_ASSIGN_OR_RETURN(p->staging_uffd, os::OpenUffd(so));
  UPAGER_ASSIGN_OR_RETURN(p->staging,
                          PageArena::Create(kStagingPages, page_size_));
  UPAGER_RETURN_IF_ERROR(p->staging_uffd->Register(
      reinterpret_cast<uint64_t>(p->staging->base()), p->staging->bytes(),
      os::kRegisterMissing));
  UPAGER_ASSIGN_OR_RETURN(p->scrap, PageArena::Create(1, page_size_));
  UPAGER_RETURN_IF_ERROR(p->staging_uffd->Register(
      reinterpret_cast<uint64_t>(p->scrap->base()), p->scrap->bytes(),
      os::kRegisterMissing));
  UPAGER_ASSIGN_OR_RETURN(p->buffers,
                          PageArena::Create(kReadBuffers, page_size_));
  // Read buffers are populated once, so the store may pin them (io_uring
  // fixed buffers); staging pages come and go and are never registered.
  UPAGER_RETURN_IF_ERROR(
      os::PopulateWrite(p->buffers->base(), p->buffers->bytes()));
  UPAGER_RETURN_IF_ERROR(
      p->store->RegisterBuffers(p->buffers->base(), p->buffers->bytes()));
  p->writes.resize(kStagingPages);
  p->reads.resize(kReadBuffers);
  UPAGER_ASSIGN_OR_RETURN(os::EventFd wake, os::EventFd::Create());
  p->evictor_wake = std::make_unique<os::EventFd>(std::move(wake));
  paging_ = std::move(p);
  return absl::OkStatus();
}

void Engine::StopPaging() {
  if (paging_ == nullptr || !paging_->evictor.joinable()) return;
  paging_->stopping.store(true);
  (void)paging_->evictor_wake->Signal();
  paging_->evictor.join();
  // Let every write still in flight finish, so no staging page is dropped
  // with the only copy of a page (regions are unregistered after this).
  for (int i = 0; i < 10000 && paging_->staging->in_use() > 0; ++i) {
    DrainCompletions();
    absl::SleepFor(absl::Microseconds(100));
  }
}

bool Engine::MustEvict() const {
  const FrameBudget& b = paging_->budget;
  // Above the low watermark; or a fault waits with every frame taken. The
  // second matters when the low watermark is the budget itself (a one-page
  // budget: low = max(1, 85%) = 1 page, or low_watermark_percent = 100):
  // eviction would never start, and the fault would wait forever. Only a
  // starved fault, not a partial grant, so that a one-page budget does not
  // evict the page the application is writing after every fill.
  return b.AboveLow() ||
         (paging_->fault_starved.load() && b.used() >= b.budget());
}

void Engine::WaitForStoreRequests() {
  // Nothing submits any more; completions are handled as usual (a fill
  // that meets EAGAIN now just stays parked: nobody waits for it).
  while (paging_->store_requests.load() > 0) {
    BackingStore::Completion c[64];
    HandleCompletions(absl::MakeConstSpan(
        c, paging_->store->Wait(absl::MakeSpan(c), absl::Milliseconds(1))));
  }
}

void Engine::KickEvictor() {
  // The fault path calls this on every reservation past the high
  // watermark; while the evictor is already at work, a kick would only
  // cost a system call and a cross-CPU wake-up.
  if (paging_ != nullptr && !paging_->evicting.load()) {
    (void)paging_->evictor_wake->Signal();
  }
}

uint64_t Engine::ReserveFrames(uint64_t want) {
  if (paging_ == nullptr) return want;
  const uint64_t got = paging_->budget.TryReserve(want);
  if (got < want) {
    // Someone will wait (deferred) or make do with fewer: the next freed
    // frame should wake the service threads.
    paging_->frames_wanted.store(true);
    if (got == 0) {
      paging_->fault_starved.store(true);
      counters_.budget_waits.Add();
    }
  }
  if (got < want || paging_->budget.AboveHigh()) KickEvictor();
  return got;
}

void Engine::ReleaseFrames(uint64_t n) {
  if (paging_ == nullptr || n == 0) return;
  paging_->budget.Release(n);
  paging_->fault_starved.store(false);
  // Wake the service threads only if a fault went without a frame since
  // the last wake; every thread polls the kick fd, so an unconditional kick
  // per freed frame would wake all of them for each completed eviction.
  // (Deferred faults also retry on their 1 ms poll timeout.)
  if (service_ != nullptr && paging_->frames_wanted.exchange(false)) {
    service_->Kick();
  }
}

void Engine::AdmitToPolicy(RegionCore* core, PageIndex first, uint64_t count,
                           bool sequential) {
  if (paging_ == nullptr || count == 0) return;
  paging_->policy->Admit({core->id, first.value()}, count,
                         sequential ? AdmitKind::kSequential
                                    : AdmitKind::kDemand);
}

uintptr_t Engine::AddressOf(RegionCore* core, PageIndex page,
                            uint64_t count) const {
  absl::ReaderMutexLock lock(&map_mu_);
  // The interval holding the first page must hold the last one too.
  auto within = [&](const auto& iv, uintptr_t addr) {
    return addr + count * page_size_ <= iv.end ? addr : 0;
  };
  // Common case: the page is where Map put it.
  const uintptr_t guess = core->base + page.value() * page_size_;
  if (auto iv = map_.Find(guess); iv.has_value() && iv->owner == core &&
                                  iv->first_page.value() +
                                          (guess - iv->start) / page_size_ ==
                                      page.value()) {
    return within(*iv, guess);
  }
  for (const auto& iv : map_.IntervalsOf(core)) {
    const uint64_t n = (iv.end - iv.start) / page_size_;
    if (page >= iv.first_page && page.value() < iv.first_page.value() + n) {
      return within(iv, iv.start + (page - iv.first_page) * page_size_);
    }
  }
  return 0;
}

void Engine::EvictorLoop() {
  os::NameCurrentThread("upager-evictor");
  Paging& p = *paging_;
  const int fds[1] = {p.evictor_wake->fd()};
  while (!p.stopping.load()) {
    uint64_t ready = 0;
    // Kicks are skipped while `evicting` is set; clear it before deciding
    // how long to sleep (seq_cst on both sides: a fault that reserves past
    // the high watermark, or starves, after this either sees it clear and
    // kicks, or is seen by the MustEvict() check below).
    p.evicting.store(false);
    // Back under the low watermark (the application freed memory): the
    // store's trouble, if any, no longer matters until eviction is due.
    if (p.budget.blocked() && !p.budget.AboveLow()) p.budget.SetBlocked(false);
    // While blocked (the store cannot take pages), retry at most every
    // 100 ms however often faults kick; otherwise sleep until kicked, or
    // 1 ms while there is work (completions free frames without telling
    // this thread).
    const int timeout = p.budget.blocked() ? 100 : (MustEvict() ? 1 : -1);
    (void)os::PollReadable(fds, timeout, &ready);
    if (p.budget.blocked() && ready != 0) {
      absl::SleepFor(absl::Milliseconds(100));
    }
    (void)p.evictor_wake->Clear();
    p.evicting.store(true);
    int idle_rounds = 0;   // rounds in a row that freed nothing
    int stuck_rounds = 0;  // of those, the last ones in a row that also
                           // had nothing cancelled and no read in flight
    // Progress is pages that left memory, not frames in use: faults may
    // take frames as fast as eviction frees them.
    auto evicted = [&] {
      return counters_.pages_swapped_out.Get() + counters_.clean_drops.Get() +
             counters_.copies_spilled.Get();
    };
    // Pages on their way to the store: their frames come back when their
    // writes complete.
    auto in_flight_pages = [&] {
      return p.staging->in_use() +
             (snaps_ != nullptr ? snaps_->spills_inflight.load() : 0);
    };
    while (MustEvict() && !p.stopping.load()) {
      FreeSpilledMemory();
      const uint64_t before = evicted();
      const uint64_t cancelled_before = counters_.evictions_cancelled.Get();
      const uint64_t write_errors_before = counters_.swap_write_errors.Get();
      // Whether this round freed anything yet; if so, the stuck count
      // starts over.
      auto progressed = [&] {
        if (evicted() == before) return false;
        idle_rounds = 0;
        stuck_rounds = 0;
        if (p.budget.blocked()) p.budget.SetBlocked(false);
        return true;
      };
      // Only as many victims as take the budget back to the low watermark:
      // a fixed batch would overshoot, evicting pages (and spending I/O)
      // that nothing needed the frames of.
      const uint64_t used = p.budget.used();
      const uint64_t excess = used > p.budget.low()       ? used - p.budget.low()
                              : p.fault_starved.load() ? 1
                                                       : 0;
      if (excess == 0) break;
      // Pages in flight count against the excess. Beyond them, start more
      // now, without waiting for the writes already submitted, so the
      // store always has a queue to work on: waiting for each round's
      // writes before picking the next (the old rule) kept ~64 pages in
      // flight and left both CPUs a third idle; page-out went from 0.38x
      // to 0.93x of the kernel's swap (measured here). Staging pages
      // (kStagingPages) bound the queue.
      const uint64_t queued = in_flight_pages();
      if (excess > queued) {
        // Snapshot copies go first: nothing reads them on the fast path.
        const size_t batch = std::min<uint64_t>(kEvictBatch, excess - queued);
        const size_t spills = SpillCopies(batch);
        const size_t started =
            spills + (spills < batch ? EvictBatch(batch - spills) : 0);
        // A store that fails writes gives the pages back at once: starting
        // more would spin on the same victims. Judge the round below
        // instead (it gives up after ~10 ms, letting faults go over budget).
        if (started > 0) {
          DrainCompletions();
          progressed();
          if (counters_.swap_write_errors.Get() == write_errors_before) {
            continue;
          }
        }
      }
      // Nothing more to start: wait for a write in flight to complete
      // before judging the round.
      for (int i = 0; i < 100 && in_flight_pages() > 0; ++i) {
        BackingStore::Completion c[64];
        HandleCompletions(absl::MakeConstSpan(
            c, p.store->Wait(absl::MakeSpan(c), absl::Milliseconds(1))));
        DrainCompletions();
        if (evicted() > before) break;
      }
      if (progressed()) continue;
      // Writes still in flight: the store is slow, not stuck.
      if (in_flight_pages() > 0) continue;
      // Nothing freed. Stuck (nothing evictable, the store full, every
      // write failing), or busy for a moment: the victims' evictions were
      // cancelled because the application touched them while they were
      // written, a swap-in holds frames until its read completes, or a
      // fill holds them for microseconds before the policy hears of its
      // pages. Under a one-page budget those are all the frames there
      // are, and three rounds back to back (the old rule) let the budget
      // grow without bound. So look again 1 ms later; let faults proceed
      // over budget (counted) instead of waiting forever only after ~10 ms
      // of stuck rounds in a row (a fill preempted mid-way must not count),
      // or ~100 ms without progress whatever the reason (an application
      // that keeps every resident page hot).
      const bool busy = counters_.evictions_cancelled.Get() > cancelled_before ||
                        p.buffers->in_use() > p.held->size();
      stuck_rounds = busy ? 0 : stuck_rounds + 1;
      if (stuck_rounds >= 10 || ++idle_rounds >= 100) {
        p.budget.SetBlocked(true);
        service_->Kick();
        break;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
}

size_t Engine::EvictBatch(size_t n) {
  Paging& p = *paging_;
  FlushStagingZaps();  // staging pages freed since are reusable again
  std::vector<PageRef> victims;
  n = std::min(n, p.staging->pages() - p.staging->in_use());
  if (n == 0) return 0;
  p.policy->PickVictims(n, &victims);
  // Victims adjacent in a region leave together: one UFFDIO_MOVE (one TLB
  // flush) per run instead of one per page. The cross-CPU shootdowns of
  // per-page moves were ~40% of the evictor's CPU.
  std::sort(victims.begin(), victims.end(),
            [](const PageRef& a, const PageRef& b) {
              return a.region != b.region ? a.region < b.region
                                          : a.page < b.page;
            });
  std::vector<BackingStore::Request> writes;
  for (size_t i = 0; i < victims.size();) {
    size_t k = 1;
    while (i + k < victims.size() && victims[i + k].region == victims[i].region &&
           victims[i + k].page == victims[i].page + k) {
      ++k;
    }
    EvictRun(victims[i].region, PageIndex(victims[i].page), k, &writes);
    i += k;
  }
  if (writes.empty()) return 0;
  if (absl::Status s = p.store->Submit(writes); !s.ok()) {
    RecordError(s);
    for (const auto& w : writes) OnWriteDone(static_cast<int>(w.tag), EIO);
    return 0;
  }
  if (p.store->completion_fd() < 0) DrainCompletions();
  return writes.size();
}

void Engine::EvictRun(uint32_t region_id, PageIndex first, uint64_t count,
                      std::vector<BackingStore::Request>* writes) {
  Paging& p = *paging_;
  RegionCore* core = nullptr;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    auto it = regions_by_id_.find(region_id);
    if (it != regions_by_id_.end()) core = it->second;
    // The core stays alive while io_inflight > 0 (Unmap waits for it);
    // take the reference under the lock that Unmap's removal needs. One
    // per page: each page's completion drops its own.
    if (core != nullptr) core->io_inflight.fetch_add(count);
  }
  if (core == nullptr) return;
  const uintptr_t base = AddressOf(core, first);
  for (uint64_t i = 0; i < count;) {
    const PageIndex page = first + i;
    PageEntry cur = core->table.Get(page);
    const uintptr_t addr = base == 0 ? 0 : AddressOf(core, page);
    if (cur.state() != PageState::kResident || addr == 0) {
      // The policy tracks fills; the page has moved on since (dropped by
      // the application, or already evicted), or it is unmapped.
      if (StaysResident(cur)) {
        p.policy->CancelEviction({core->id, page.value()});
      }
      core->io_inflight.fetch_sub(1);
      ++i;
      continue;
    }
    // The run from here: resident, adjacent in memory, and all dirty (each
    // needs a slot and a write) or all clean (swapped in and never
    // written, their slots still hold the bytes: moved out, no write can
    // race as they are protected, and dropped without I/O).
    const bool clean = cur.clean();
    uint64_t want = 1;
    while (i + want < count) {
      const PageEntry e = core->table.Get(page + want);
      if (e.state() != PageState::kResident || e.clean() != clean ||
          AddressOf(core, page + want) != addr + want * page_size_) {
        break;
      }
      ++want;
    }
    size_t got = 0;
    const int staging = p.staging->AcquireRun(want, &got);
    if (staging == PageArena::kNone) {
      for (uint64_t j = i; j < count; ++j) {
        p.policy->CancelEviction({core->id, (first + j).value()});
      }
      core->io_inflight.fetch_sub(count - i);
      return;
    }
    // Claim page by page (slot + CAS); the run ends at the first failure.
    std::vector<PageEntry> orig;
    std::vector<uint64_t> slots;
    for (size_t j = 0; j < got; ++j) {
      PageEntry e = core->table.Get(page + j);
      if (e.state() != PageState::kResident || e.clean() != clean) break;
      absl::StatusOr<uint64_t> slot =
          clean ? absl::StatusOr<uint64_t>(e.slot()) : p.store->AllocateSlot();
      if (!slot.ok()) {
        counters_.swap_full.Add();
        RecordError(slot.status());
        break;
      }
      // A snapshot's mark travels with the page (see runtime/engine.h).
      if (!core->table.CompareExchange(
              page + j, &e,
              PageEntry::Of(PageState::kEvicting)
                  .with_slot(*slot)
                  .with_flag(PageEntry::kCapturedBit, e.captured()))) {
        if (!clean) p.store->FreeSlot(*slot);
        break;
      }
      orig.push_back(e);
      slots.push_back(*slot);
    }
    const size_t claimed = orig.size();
    // Move the bytes out of the application's reach. The staging pages
    // are registered with the staging uffd, which is why the ioctl goes
    // there.
    size_t moved = 0;
    os::UffdResult m{os::UffdOutcome::kDone, 0, 0};
    if (claimed > 0) {
      m = p.staging_uffd->Move(
          reinterpret_cast<uint64_t>(p.staging->page(staging)), addr,
          claimed * page_size_, /*wake=*/false, /*allow_src_holes=*/false);
      moved = m.ok() ? claimed : std::min<size_t>(claimed, m.bytes / page_size_);
    }
    for (size_t j = 0; j < moved; ++j) {
      const int st = staging + static_cast<int>(j);
      p.writes[st] = IoOp{core, page + j, slots[j], MonotonicNanos()};
      if (clean) {
        // Complete as if a write had just succeeded: the usual path turns
        // the page into kSwapped(slot), or moves it back if a fault wants
        // it.
        p.writes[st].clean = true;
        FinishWrite(st, 0);
        continue;
      }
      writes->push_back({BackingStore::Request::Op::kWrite, slots[j],
                         p.staging->page(st), static_cast<uint64_t>(st)});
    }
    // Not moved (EBUSY: shared with a fork child or pinned; ENOENT/EAGAIN:
    // the range is changing): keep them resident, and give back what they
    // held. Staging pages never used are empty: released directly.
    if (moved < claimed) counters_.evict_skipped.Add();
    for (size_t j = moved; j < claimed; ++j) {
      (void)core->table.Set(page + j, orig[j]);
      if (!clean) p.store->FreeSlot(slots[j]);
    }
    for (size_t j = moved; j < got; ++j) {
      p.staging->Release(staging + static_cast<int>(j));
    }
    // Pages of this stretch not moved go back to the policy and drop
    // their reference.
    const uint64_t handled = std::max<uint64_t>(claimed, 1);
    for (uint64_t j = moved; j < handled; ++j) {
      if (StaysResident(core->table.Get(page + j))) {
        p.policy->CancelEviction({core->id, (page + j).value()});
      }
      core->io_inflight.fetch_sub(1);
    }
    i += handled;
  }
}

void Engine::HandleCompletions(
    absl::Span<const BackingStore::Completion> done) {
  const Paging& p = *paging_;
  // A successful read continues the run before it when it filled the
  // next buffer with the next page of the same region: a read-ahead
  // window read as one merged I/O completes as one such run.
  auto continues = [&](const BackingStore::Completion& c, int first,
                       size_t k) {
    if (!(c.tag & kReadTagBit) || (c.tag & kSpillTagBit) || c.error != 0) {
      return false;
    }
    const auto b = static_cast<int>(c.tag & ~kReadTagBit);
    const IoOp& head = p.reads[first];
    const IoOp& op = p.reads[b];
    return b == first + static_cast<int>(k) && op.sync_result == nullptr &&
           !op.marker && op.core == head.core && op.page == head.page + k;
  };
  for (size_t i = 0; i < done.size();) {
    const BackingStore::Completion& c = done[i];
    if (c.tag & kSpillTagBit) {
      OnSpillDone(c.tag & ~kSpillTagBit, c.error);
    } else if (c.tag & kReadTagBit) {
      const auto first = static_cast<int>(c.tag & ~kReadTagBit);
      size_t k = 1;
      if (c.error == 0 && p.reads[first].sync_result == nullptr &&
          !p.reads[first].marker) {
        while (i + k < done.size() && continues(done[i + k], first, k)) ++k;
      }
      // A run is consecutive buffers from `first`.
      for (size_t j = 0; j < k; ++j) ReadArrived(first + static_cast<int>(j));
      if (k > 1) {
        OnReadRun(first, k);
      } else {
        OnReadDone(first, c.error);
      }
      i += k;
      continue;
    } else {
      OnWriteDone(static_cast<int>(c.tag), c.error);
    }
    ++i;
  }
  // Signal mode: a thread may wait in its SIGBUS handler for a page these
  // completions filled or moved back.
  if (signal_mode()) SignalWaiters::NotifyIfWaiting();
}

void Engine::DrainCompletions() {
  if (paging_ == nullptr) return;
  BackingStore::Completion done[64];
  for (;;) {
    const size_t n = paging_->store->Reap(absl::MakeSpan(done));
    HandleCompletions(absl::MakeConstSpan(done, n));
    if (n < 64) break;
  }
  FlushStagingZaps();
}

void Engine::ZapStaging(int staging) {
  Paging& p = *paging_;
  bool flush;
  {
    absl::MutexLock lock(&p.zap_mu);
    p.zap.push_back(staging);
    flush = p.zap.size() >= kZapBatch;
  }
  if (flush) FlushStagingZaps();
}

void Engine::FlushStagingZaps() {
  Paging& p = *paging_;
  std::vector<int> zap;
  {
    absl::MutexLock lock(&p.zap_mu);
    if (p.zap.empty()) return;
    zap.swap(p.zap);
  }
  // Staging pages whose bytes are safe in the store (or dropped): one
  // MADV_DONTNEED per run of adjacent pages, one TLB flush for many pages.
  // The staging uffd reads no events, so this raises nothing.
  std::sort(zap.begin(), zap.end());
  for (size_t i = 0; i < zap.size();) {
    size_t j = i + 1;
    while (j < zap.size() && zap[j] == zap[j - 1] + 1) ++j;
    (void)os::AdviseDontNeed(p.staging->page(zap[i]), (j - i) * page_size_);
    i = j;
  }
  for (int st : zap) p.staging->Release(st);
  ReleaseFrames(zap.size());
}

void Engine::OnWriteDone(int staging, int error) {
  Paging& p = *paging_;
  const IoOp& op = p.writes[staging];
  p.swap_out_latency.Record(MonotonicNanos() - op.submit_ns);
  if (error != 0) {
    counters_.swap_write_errors.Add();
    RecordError(absl::Status(
        absl::ErrnoToStatusCode(error),
        absl::StrFormat("swap write of region '%s' page %d to slot %d failed "
                        "(errno %d); the page stays resident",
                        op.core->region->name(), op.page.value(), op.slot,
                        error)));
  }
  FinishWrite(staging, error);
}

void Engine::FinishWrite(int staging, int error) {
  Paging& p = *paging_;
  const IoOp op = p.writes[staging];
  RegionCore* core = op.core;
  PageEntry cur = core->table.Get(op.page);
  if (cur.state() != PageState::kEvicting) {
    // Only this completion moves a page out of kEvicting; anything else is
    // a store delivering a completion twice. Acting on it could drop a
    // staging page that now holds another page's bytes.
    RecordError(absl::InternalError(absl::StrFormat(
        "swap write completion for region '%s' page %d found it %s",
        core->region->name(), op.page.value(), PageStateName(cur.state()))));
    return;
  }
  for (;;) {
    if (cur.discard()) {
      // The application dropped the page (madvise/munmap) while it was
      // written: its bytes are gone by its own request. Free everything;
      // wake anyone who faulted on it since (they refault to a zero page).
      if (!core->table.CompareExchange(op.page, &cur, PageEntry())) continue;
      FinishDroppedWrite(staging, cur, error, /*wake=*/cur.wanted());
      return;
    }
    if (error == 0 && !cur.wanted()) {
      if (core->table.CompareExchange(
              op.page, &cur,
              PageEntry::Of(PageState::kSwapped)
                  .with_slot(op.slot)
                  .with_flag(PageEntry::kCapturedBit, cur.captured()))) {
        // The bytes are safe in the slot: only now let the memory go.
        core->resident.fetch_sub(1, std::memory_order_relaxed);
        core->swapped.fetch_add(1, std::memory_order_relaxed);
        (op.clean ? counters_.clean_drops : counters_.pages_swapped_out).Add();
        ZapStaging(staging);  // and its frame
        core->io_inflight.fetch_sub(1);
        return;
      }
      continue;  // a flag raced in; look again
    }
    break;
  }
  // A fault is waiting for the page, or the write failed: put the bytes
  // back (the move also wakes whoever waits on the page). Claim the entry
  // first, so a discard arriving now is ordered after the move-back, like
  // any fill racing the application's own madvise.
  if (!core->table.CompareExchange(op.page, &cur,
                                   cur.with_state(PageState::kFilling))) {
    return FinishWrite(staging, error);  // a flag raced in: decide again
  }
  p.writes[staging].error = error;
  p.writes[staging].wanted = cur.wanted();
  CompleteMoveBack(staging);
}

void Engine::FinishDroppedWrite(int staging, PageEntry dropped, int error,
                                bool wake) {
  Paging& p = *paging_;
  const IoOp& op = p.writes[staging];
  RegionCore* core = op.core;
  // The application dropped the page (madvise/munmap) while it was being
  // evicted: its bytes are gone by its own request. A snapshot that still
  // needs them gets the slot if the write succeeded, else a copy of the
  // staging page; everything else is freed.
  CopyRef ref{CopyRef::Kind::kLost, 0};
  if (dropped.captured()) {
    absl::StatusOr<CopyRef> r =
        error == 0 ? absl::StatusOr<CopyRef>(
                         CopyRef{CopyRef::Kind::kSlot, op.slot})
                   : CopyBytes(p.staging->page(staging), /*charge=*/true);
    if (!r.ok()) RecordError(r.status());
    if (r.ok()) ref = *r;
    (void)CaptureOrFree(core, op.page, ref);
  }
  if (ref.kind != CopyRef::Kind::kSlot) p.store->FreeSlot(op.slot);
  core->resident.fetch_sub(1, std::memory_order_relaxed);
  // Whoever faulted on it since refaults to a zero page.
  if (wake) {
    if (const uintptr_t addr = AddressOf(core, op.page); addr != 0) {
      (void)uffd_->Wake(addr, page_size_);
    }
  }
  ZapStaging(staging);  // and its frame
  core->io_inflight.fetch_sub(1);
}

void Engine::CompleteMoveBack(int staging) {
  Paging& p = *paging_;
  const IoOp op = p.writes[staging];
  RegionCore* core = op.core;
  std::byte* const bytes = p.staging->page(staging);
  // The page goes back writable: a snapshot that still needs its bytes
  // gets them first, from the staging page (runtime/snapshot_engine.cc).
  absl::ReaderMutexLock snap_lock(&core->snap_mu);
  // No event read between the discard check and the move (see
  // Engine::EventReadsHeld).
  absl::MutexLockMaybe no_reads(EventReadsHeld());
  if (const PageEntry claimed = core->table.Get(op.page); claimed.discard()) {
    // Dropped by the application while claimed for the move-back.
    (void)core->table.Set(op.page, PageEntry());
    FinishDroppedWrite(staging, claimed, op.error, /*wake=*/true);
    return;
  } else if (claimed.captured()) {
    absl::StatusOr<CopyRef> ref = CopyBytes(bytes, /*charge=*/true);
    if (!ref.ok()) {
      RecordError(ref.status());
      ref = CopyRef{CopyRef::Kind::kLost, 0};
    }
    (void)CaptureOrFree(core, op.page, *ref);
    (void)core->table.Set(op.page,
                          claimed.with_flag(PageEntry::kCapturedBit, false));
  }
  const uintptr_t addr = AddressOf(core, op.page);
  os::UffdResult m{os::UffdOutcome::kGone, 0, ENOENT};
  if (addr != 0) {
    m = uffd_->Move(addr, reinterpret_cast<uint64_t>(bytes), page_size_,
                    /*wake=*/true, /*allow_src_holes=*/false);
  }
  if (m.outcome == os::UffdOutcome::kRetry) {
    // An address-space event is pending: the staging page still holds the
    // bytes and the entry stays claimed; retry after the next read.
    absl::MutexLock lock(&p.retry_mu);
    p.retry_tags.push_back(kWriteRetryBit | static_cast<uint64_t>(staging));
    p.retry_pending.store(true);
    return;
  }
  if (m.ok()) {
    (void)core->table.Set(op.page, PageEntry::Of(PageState::kResident));
    p.store->FreeSlot(op.slot);
    counters_.evictions_cancelled.Add(op.wanted ? 1 : 0);
    AdmitToPolicy(core, op.page, 1, false);
  } else if (op.error == 0) {
    // The bytes are safe in the slot; the page cannot go back (unmapped,
    // or the kernel refused): leave it swapped out, and wake anyone
    // waiting so they refault and swap it in.
    if (m.outcome != os::UffdOutcome::kGone) {
      RecordError(m.ToStatus("UFFDIO_MOVE (cancel eviction)"));
    }
    (void)core->table.Set(op.page,
                          PageEntry::Of(PageState::kSwapped).with_slot(op.slot));
    core->resident.fetch_sub(1, std::memory_order_relaxed);
    core->swapped.fetch_add(1, std::memory_order_relaxed);
    if (addr != 0) (void)uffd_->Wake(addr, page_size_);
    ZapStaging(staging);  // and its frame
    core->io_inflight.fetch_sub(1);
    return;
  } else if (m.outcome == os::UffdOutcome::kGone) {
    // Unmapped by the application and never written: the page went with
    // its mapping.
    (void)core->table.Set(op.page, PageEntry());
    p.store->FreeSlot(op.slot);
    core->resident.fetch_sub(1, std::memory_order_relaxed);
    ZapStaging(staging);  // and its frame
    core->io_inflight.fetch_sub(1);
    return;
  } else {
    // The write failed and the bytes cannot go back: the staging page is
    // their only copy. Keep it (never reused), and report the page lost to
    // the application through the sticky status.
    RecordError(absl::DataLossError(absl::StrFormat(
        "region '%s' page %d: swap write failed and the page could not be "
        "restored (%s); its bytes are held in staging page %d",
        core->region->name(), op.page.value(),
        m.ToStatus("UFFDIO_MOVE").ToString(), staging)));
    core->io_inflight.fetch_sub(1);
    return;
  }
  p.staging->Release(staging);
  core->io_inflight.fetch_sub(1);
}

Engine::Served Engine::MarkWanted(const Target& t, PageEntry evicting) {
  // The evictor moves the bytes back when the write completes, which wakes
  // this thread; until then it stays blocked in the kernel.
  PageEntry cur = evicting;
  while (cur.state() == PageState::kEvicting) {
    if (cur.wanted() ||
        t.core->table.CompareExchange(
            t.page, &cur, cur.with_flag(PageEntry::kWantedBit, true))) {
      counters_.faults_on_evicting.Add();
      return Served::kDone;
    }
  }
  // The write completed meanwhile: serve the page in its new state.
  return Served::kRetryLater;
}

Engine::Served Engine::StartSwapIn(const Target& t, PageEntry swapped,
                                   bool at_marker) {
  FaultAroundSizer& sizer = t.core->fault_around;
  StreamReached(t.core, t.page);
  if (!at_marker && sizer.TakeMarker(t.page)) {
    // The stream reached the page its last window held back: it goes on,
    // so the next window starts now, ahead of it.
    ReadAheadNext(t.core, t.page);
    at_marker = true;
  }
  if (at_marker) {
    // Only this page (its bytes are most likely held: no read).
    return SwapInWindow(t.core, t.page, swapped, 1, SwapIn::kMarker,
                        std::nullopt) > 0
               ? Served::kDone
               : Served::kRetryLater;
  }
  // Read-ahead: the fault-around sizer sees the swap-in stream too; a fault
  // that continues one reads the following swapped pages in the same batch
  // (window doubling up to fault_around_max_pages), a random one reads
  // only its page. Pages read ahead are admitted as sequential, so a scan
  // through swapped data displaces only itself. A stream's window holds
  // its second page back as the marker: the application touches it right
  // after the window arrives, and the next window is read while it works
  // through this one.
  const uint32_t window = sizer.WindowFor(t.page);
  const bool sequential = window > sizer.base_pages();
  const uint64_t limit = std::min<uint64_t>(t.page_limit, t.core->pages);
  const uint64_t want =
      sequential ? std::min<uint64_t>(window, limit - t.page.value()) : 1;
  std::optional<PageIndex> marker;
  if (want > 1) marker = t.page + 1;
  return SwapInWindow(t.core, t.page, swapped, want,
                      sequential ? SwapIn::kStream : SwapIn::kRandom,
                      marker) > 0
             ? Served::kDone
             : Served::kRetryLater;
}

void Engine::StreamReached(RegionCore* core, PageIndex page) {
  counters_.read_ahead_hits.Add(core->read_ahead.Reached(
      page, [core](PageIndex q) { return core->table.Get(q).present(); }));
}

void Engine::ReadAheadNext(RegionCore* core, PageIndex at) {
  FaultAroundSizer& sizer = core->fault_around;
  // Keep two windows ahead of the stream: one window ahead left the disk
  // idle while the application worked through the last one (a window's
  // read takes longer than reading its pages from memory), and the
  // application waited at every window.
  for (int started = 0; started < 2; ++started) {
    const PageIndex first = sizer.next();
    if (first.value() >= core->pages || first < at) return;
    const uint64_t window = sizer.GrowWindow();
    if (started > 0 && first.value() - at.value() >= 2 * window) return;
    const uint64_t want =
        std::min<uint64_t>(window, core->pages - first.value());
    const PageEntry e = core->table.Get(first);
    if (e.state() != PageState::kSwapped) return;  // the stream ran out
    // The new window's first page is its marker: reached, it starts the
    // window after (a later window's marker replaces an earlier one's).
    if (SwapInWindow(core, first, e, want, SwapIn::kReadAhead, first) == 0) {
      return;
    }
    counters_.read_ahead_async.Add();
  }
}

uint64_t Engine::SwapInWindow(RegionCore* core, PageIndex first,
                              PageEntry first_entry, uint64_t want,
                              SwapIn kind, std::optional<PageIndex> marker) {
  const bool demand = kind != SwapIn::kReadAhead;  // a fault waits for `first`
  const bool sequential = kind != SwapIn::kRandom;
  const uint64_t frames = ReserveFrames(want);
  if (frames == 0) return 0;
  std::vector<BackingStore::Request> reads;
  std::vector<int> held_hits;
  uint64_t claimed = 0;
  bool marker_claimed = false;
  for (; claimed < frames; ++claimed) {
    const PageIndex page = first + claimed;
    const PageEntry cur = claimed == 0 ? first_entry : core->table.Get(page);
    const bool is_marker = marker.has_value() && *marker == page;
    if (cur.state() != PageState::kSwapped ||
        !QueueSwapIn(core, page, cur, /*readahead=*/!(demand && claimed == 0),
                     sequential, is_marker, &reads, &held_hits)) {
      break;
    }
    marker_claimed |= is_marker;
  }
  if (frames > claimed) ReleaseFrames(frames - claimed);
  if (claimed == 0) return 0;  // changed under us
  // The stream's window moves on; a marker is inside the window already
  // read, and must not pull it back.
  if (kind != SwapIn::kMarker) core->fault_around.Filled(first, claimed);
  if (kind == SwapIn::kStream || kind == SwapIn::kReadAhead) {
    const uint64_t ahead = kind == SwapIn::kStream ? 1 : 0;  // not the fault's
    if (claimed > ahead) {
      counters_.read_ahead_waste.Add(
          core->read_ahead.ReadAhead(first + ahead, claimed - ahead));
    }
  }
  // Armed before the reads start: the marker's completion holds the page
  // back only while it is armed.
  if (marker_claimed) core->fault_around.SetMarker(*marker);
  counters_.pages_read_ahead.Add(claimed - (demand ? 1 : 0));
  SubmitReads(&reads);
  for (int b : held_hits) OnReadDone(b, 0);
  return claimed;
}

Engine::Served Engine::OnFaultAtFilling(const Target& t) {
  counters_.faults_stale.Add();
  if (paging_ == nullptr) return Served::kDone;
  // The stream caught up with a page still being read.
  StreamReached(t.core, t.page);
  if (!t.core->fault_around.TakeMarker(t.page)) {
    // Its claimant wakes the range when it is done.
    return Served::kDone;
  }
  // The stream reached its marker while the marker's read is in flight:
  // its completion sees the marker taken and maps the page. If it has
  // held the page back already, serve it here.
  ReadAheadNext(t.core, t.page);
  const PageEntry e = t.core->table.Get(t.page);
  if (e.state() == PageState::kSwapped) {
    return StartSwapIn(t, e, /*at_marker=*/true);
  }
  return Served::kDone;
}

bool Engine::HoldMarker(int buffer, PageEntry claimed, uintptr_t addr) {
  Paging& p = *paging_;
  const IoOp& op = p.reads[buffer];
  RegionCore* core = op.core;
  FaultAroundSizer& sizer = core->fault_around;
  // Taken already (a fault on it waits for this claim) or replaced by a
  // newer window's: map it as usual.
  if (addr == 0 || !sizer.IsMarker(op.page) || !p.hold_markers.load()) {
    return false;
  }
  // The page goes back to swapped, its slot valid, its bytes held here;
  // touching it faults, starts the next window and takes them.
  if (const int out = p.held->Hold(op.slot, buffer); out != HeldReads::kNone) {
    p.buffers->Release(out);
  }
  PageEntry cur = claimed;
  const PageEntry swapped(
      PageEntry::Of(PageState::kSwapped).with_slot(op.slot).raw() |
      (claimed.captured() ? PageEntry::kCapturedBit : 0));
  if (!core->table.CompareExchange(op.page, &cur, swapped)) {
    // A flag raced in (the application dropped the page): nobody else can
    // claim the page meanwhile, so the held buffer is still this one.
    (void)p.held->Take(op.slot);
    return false;
  }
  ReleaseFrames(1);
  core->io_inflight.fetch_sub(1);
  // A thread may have touched the page while it was claimed, and wait for
  // this claim to end: the fault that took the marker between the check
  // above and the entry's change, or one that found the marker not armed
  // yet (it is armed after its window's pages are claimed). Wake the page
  // unconditionally (one call per window): a woken thread faults again and
  // finds the page swapped and its bytes held.
  (void)uffd_->Wake(addr, page_size_);
  return true;
}

void Engine::DropHeld(uint64_t slot) {
  if (paging_ == nullptr || paging_->held == nullptr) return;
  if (const int b = paging_->held->Take(slot); b != HeldReads::kNone) {
    paging_->buffers->Release(b);
  }
}

bool Engine::QueueSwapIn(RegionCore* core, PageIndex page, PageEntry swapped,
                         bool readahead, bool sequential, bool marker,
                         std::vector<BackingStore::Request>* reads,
                         std::vector<int>* held_hits) {
  Paging& p = *paging_;
  int buffer = p.buffers->Acquire();
  if (buffer == PageArena::kNone) return false;
  PageEntry cur = swapped;
  if (!core->table.CompareExchange(page, &cur,
                                   cur.with_state(PageState::kFilling))) {
    p.buffers->Release(buffer);
    return false;
  }
  core->io_inflight.fetch_add(1);
  // Bytes held for the slot (a marker page): its buffer replaces the read.
  // Only the claimant of the page takes them, so only one does.
  const int held = p.held->Take(swapped.slot());
  if (held != HeldReads::kNone) {
    p.buffers->Release(buffer);
    buffer = held;
  }
  IoOp op{core, page, swapped.slot(), MonotonicNanos()};
  op.readahead = readahead;
  op.sequential = sequential;
  op.marker = marker && held == HeldReads::kNone;
  op.from_held = held != HeldReads::kNone;
  op.awaited = !readahead && !op.from_held;
  if (op.awaited) {
    p.awaited_reads.fetch_add(1, std::memory_order_relaxed);
    t_awaited_read_queued = true;
  }
  p.reads[buffer] = op;
  if (held != HeldReads::kNone) {
    held_hits->push_back(buffer);
    return true;
  }
  reads->push_back({BackingStore::Request::Op::kRead, swapped.slot(),
                    p.buffers->page(buffer),
                    kReadTagBit | static_cast<uint64_t>(buffer)});
  return true;
}

void Engine::SubmitReads(std::vector<BackingStore::Request>* reads) {
  if (reads->empty()) return;
  if (absl::Status s = paging_->store->Submit(*reads); !s.ok()) {
    RecordError(s);
    for (const auto& r : *reads) {
      const auto buffer = static_cast<int>(r.tag & ~kReadTagBit);
      ReadArrived(buffer);
      OnReadDone(buffer, EIO);
    }
  } else if (paging_->store->completion_fd() < 0) {
    DrainCompletions();
  }
  reads->clear();
}

void Engine::Prefetch(RegionCore* core, PageIndex first, uint64_t count) {
  if (paging_ == nullptr) return;
  Paging& p = *paging_;
  std::vector<BackingStore::Request> reads;
  const uint64_t end = std::min<uint64_t>(first.value() + count, core->pages);
  for (PageIndex page = first; page.value() < end; ++page) {
    PageEntry cur = core->table.Get(page);
    // A page still on its way out is wanted back: cancel its eviction, as a
    // fault would (its write's completion moves the bytes back).
    while (cur.state() == PageState::kEvicting && !cur.wanted() &&
           !core->table.CompareExchange(
               page, &cur, cur.with_flag(PageEntry::kWantedBit, true))) {
    }
    if (cur.state() != PageState::kSwapped) continue;
    // The application asked for these pages: give the evictor a moment to
    // free frames (bounded: ~20 ms per page at worst), then give up.
    uint64_t got = ReserveFrames(1);
    for (int wait = 0; got == 0 && wait < 200; ++wait) {
      SubmitReads(&reads);
      absl::SleepFor(absl::Microseconds(100));
      got = ReserveFrames(1);
    }
    if (got == 0) break;
    // Asked for explicitly: admitted as demand, not as a stream's pages
    // (which the policy would evict first). Out of read buffers: submit
    // what is queued, reap what completed, and try the page once more.
    std::vector<int> held_hits;
    bool queued = QueueSwapIn(core, page, cur, /*readahead=*/true,
                              /*sequential=*/false, /*marker=*/false, &reads,
                              &held_hits);
    if (!queued && p.buffers->in_use() == p.buffers->pages()) {
      SubmitReads(&reads);
      DrainCompletions();
      const PageEntry again = core->table.Get(page);
      queued = again.state() == PageState::kSwapped &&
               QueueSwapIn(core, page, again, true, false, false, &reads,
                           &held_hits);
    }
    for (int b : held_hits) OnReadDone(b, 0);
    if (!queued) {
      ReleaseFrames(1);
      continue;
    }
    counters_.pages_read_ahead.Add();
    if (reads.size() == 64) SubmitReads(&reads);
  }
  SubmitReads(&reads);
}

uint64_t Engine::FillFence() const {
  return service_ != nullptr ? service_->QuiesceEvents() : 0;
}

bool Engine::EventsReadDuringFill(uint64_t fence) const {
  if (service_ == nullptr || !service_->EventsReadSince(fence)) return false;
  // Whatever was read by now is applied once this returns: a drop's
  // discard flag is on the (still claimed) entry. Anything read later is
  // zapped by the kernel after the fill landed, the order it expects.
  service_->SyncEvents();
  return true;
}

absl::Mutex* Engine::EventReadsHeld() const {
  return service_ != nullptr ? service_->event_mu() : nullptr;
}

void Engine::RevokeFill(uintptr_t addr) {
  Paging& p = *paging_;
  counters_.fills_revoked.Add();
  absl::MutexLock lock(&p.scrap_mu);
  std::byte* const scratch = p.scrap->base();
  // A hole is fine: the kernel zapped the page after the fill after all.
  const os::UffdResult m =
      p.staging_uffd->Move(reinterpret_cast<uint64_t>(scratch), addr,
                           page_size_, /*wake=*/false,
                           /*allow_src_holes=*/true);
  if (!m.ok() && m.outcome != os::UffdOutcome::kGone) {
    // The page keeps the bytes the application dropped: say so.
    RecordError(m.ToStatus(
        absl::StrFormat("UFFDIO_MOVE (taking back a fill at %#x that the "
                        "application's madvise dropped)",
                        addr)
            .c_str()));
  }
  (void)os::AdviseDontNeed(scratch, page_size_);
}

void Engine::OnReadDone(int buffer, int error) {
  Paging& p = *paging_;
  const IoOp op = p.reads[buffer];
  if (op.sync_result != nullptr) {
    op.sync_result->store(error);  // the reader releases the buffer
    return;
  }
  RegionCore* core = op.core;
  if (!op.from_held) p.swap_in_latency.Record(MonotonicNanos() - op.submit_ns);
  const uint64_t fence = FillFence();  // before the discard check below
  // A snapshot may have marked the claimed page since the read started;
  // every entry published below keeps the mark (the bytes are unchanged).
  absl::ReaderMutexLock snap_lock(&core->snap_mu);
  const PageEntry claimed = core->table.Get(op.page);
  const uint64_t mark = claimed.captured() ? PageEntry::kCapturedBit : 0;
  auto drop_discarded = [&] {
    // The application dropped the page while it was read: it reads as
    // zero now; the slot goes (to a snapshot that still needs it, or free).
    (void)core->table.Set(op.page, PageEntry());
    core->swapped.fetch_sub(1, std::memory_order_relaxed);
    if (mark != 0) {
      (void)CaptureOrFree(core, op.page, {CopyRef::Kind::kSlot, op.slot});
    } else {
      p.store->FreeSlot(op.slot);
    }
    ReleaseFrames(1);
    if (const uintptr_t a = AddressOf(core, op.page); a != 0) {
      (void)uffd_->Wake(a, page_size_);
    }
    p.buffers->Release(buffer);
    core->io_inflight.fetch_sub(1);
  };
  if (claimed.discard()) {
    drop_discarded();
    return;
  }
  auto swapped = [&] {
    return PageEntry(PageEntry::Of(PageState::kSwapped).with_slot(op.slot).raw() |
                     mark);
  };
  // Puts the claimed page back to swapped, its slot still holding the
  // bytes; false if the application's drop raced in (its event sets the
  // discard flag on a claimed page, and a plain store would erase it and
  // give back bytes the application discarded): then it is dropped.
  // (snap_mu, held, keeps the captured mark from changing.)
  auto put_back = [&] {
    PageEntry cur = claimed;
    while (!core->table.CompareExchange(op.page, &cur, swapped())) {
      if (cur.discard()) {
        drop_discarded();
        return false;
      }
    }
    return true;
  };
  const uintptr_t addr = AddressOf(core, op.page);
  auto finish = [&] {
    p.buffers->Release(buffer);
    core->io_inflight.fetch_sub(1);
  };
  if (error != 0 && op.readahead) {
    // No fault asked for a page read ahead: leave it swapped out; a fault
    // on it reads it again (and reports a failure then). One that touched
    // it meanwhile waits for this claim: wake it to fault again.
    if (!put_back()) return;
    ReleaseFrames(1);
    if (addr != 0) (void)uffd_->Wake(addr, page_size_);
    finish();
    return;
  }
  if (op.marker && error == 0 && HoldMarker(buffer, claimed, addr)) return;
  if (error != 0) {
    // Never zero-fill in place of data we could not read: report it, keep
    // the slot (the data may still be readable later), and release the
    // faulting thread with SIGBUS.
    counters_.swap_read_errors.Add();
    RecordError(absl::Status(
        absl::ErrnoToStatusCode(error),
        absl::StrFormat("swap read of region '%s' page %d from slot %d failed "
                        "(errno %d); the faulting thread gets SIGBUS",
                        core->region->name(), op.page.value(), op.slot, error)));
    if (!put_back()) return;  // dropped: it reads as zero, no SIGBUS
    ReleaseFrames(1);
    if (addr != 0) ReleaseWithFailure(addr);
    finish();
    return;
  }
  if (addr == 0) {
    // The application unmapped the page while it was read: nothing to fill.
    if (!put_back()) return;
    ReleaseFrames(1);
    finish();
    return;
  }
  const os::UffdResult r = uffd_->Copy(addr, p.buffers->page(buffer),
                                       page_size_, /*wake=*/true,
                                       /*write_protect=*/track_writes_);
  if (r.outcome == os::UffdOutcome::kRetry) {
    // An address-space event is pending; the service threads retry after
    // reading it. The entry stays kFilling, so faults on it wait.
    absl::MutexLock lock(&p.retry_mu);
    p.retry_tags.push_back(static_cast<uint64_t>(buffer));
    p.retry_pending.store(true);
    return;
  }
  if (r.ok() && EventsReadDuringFill(fence) &&
      core->table.Get(op.page).discard()) {
    RevokeFill(addr);
    drop_discarded();
    return;
  }
  if (r.ok() || r.outcome == os::UffdOutcome::kExists) {
    if (!r.ok()) (void)uffd_->Wake(addr, page_size_);
    PublishSwappedIn(op, mark, /*write_protected=*/r.ok() && track_writes_);
    AdmitToPolicy(core, op.page, 1, op.sequential);
  } else {
    if (!put_back()) return;
    ReleaseFrames(1);
    if (r.outcome == os::UffdOutcome::kFailed) {
      RecordError(r.ToStatus("UFFDIO_COPY (swap-in)"));
      ReleaseWithFailure(addr);
    }
  }
  finish();
}

void Engine::PublishSwappedIn(const IoOp& op, uint64_t mark,
                              bool write_protected) {
  RegionCore* core = op.core;
  if (write_protected) {
    // Mapped write-protected: until the first write the slot still holds
    // these bytes, and eviction can drop the page without I/O.
    (void)core->table.Set(
        op.page, PageEntry(PageEntry::Of(PageState::kResident)
                               .with_flag(PageEntry::kWriteProtectedBit, true)
                               .with_flag(PageEntry::kCleanBit, true)
                               .with_slot(op.slot)
                               .raw() |
                           mark));
  } else {
    (void)core->table.Set(op.page, PageEntry::Of(PageState::kResident));
    if (mark != 0) {
      // Mapped unprotected: a snapshot's version is the slot.
      (void)CaptureOrFree(core, op.page, {CopyRef::Kind::kSlot, op.slot});
    } else {
      paging_->store->FreeSlot(op.slot);
    }
  }
  core->resident.fetch_add(1, std::memory_order_relaxed);
  core->swapped.fetch_sub(1, std::memory_order_relaxed);
  counters_.pages_swapped_in.Add();
}

void Engine::OnReadRun(int first, size_t count) {
  Paging& p = *paging_;
  const IoOp head = p.reads[first];
  RegionCore* core = head.core;
  const int64_t now = MonotonicNanos();
  size_t copied = 0;
  // Pages of the run dropped by the application while the copy went in:
  // taken back, and finished page by page below.
  std::vector<size_t> revoked;
  {
    const uint64_t fence = FillFence();  // before the discard checks below
    absl::ReaderMutexLock snap_lock(&core->snap_mu);
    // One UFFDIO_COPY for the run (one ioctl, and one wake for the
    // faulting thread and whoever touched the window meanwhile) when every
    // page is still claimed for this read and the run is one stretch of
    // the application's mapping; whatever that does not cover goes page by
    // page below, the way OnReadDone handles each case.
    const uintptr_t addr = AddressOf(core, head.page, count);
    bool whole = addr != 0;
    for (size_t i = 0; whole && i < count; ++i) {
      const PageEntry e = core->table.Get(head.page + i);
      whole = e.state() == PageState::kFilling && !e.discard();
    }
    if (whole) {
      const os::UffdResult r =
          uffd_->Copy(addr, p.buffers->page(first), count * page_size_,
                      /*wake=*/true, /*write_protect=*/track_writes_);
      copied = r.ok() ? count : std::min<size_t>(count, r.bytes / page_size_);
      const bool events = EventsReadDuringFill(fence);
      for (size_t i = 0; i < copied; ++i) {
        const IoOp& op = p.reads[first + static_cast<int>(i)];
        const PageEntry claimed = core->table.Get(op.page);
        if (events && claimed.discard()) {
          RevokeFill(addr + i * page_size_);
          revoked.push_back(i);
          continue;
        }
        p.swap_in_latency.Record(now - op.submit_ns);
        PublishSwappedIn(op, claimed.captured() ? PageEntry::kCapturedBit : 0,
                         track_writes_);
        p.buffers->Release(first + static_cast<int>(i));
        // Past a taken-back page (rare), admitted page by page.
        if (!revoked.empty()) AdmitToPolicy(core, op.page, 1, head.sequential);
      }
      if (revoked.empty()) {
        AdmitToPolicy(core, head.page, copied, head.sequential);
      } else {
        // Pages before the first hole were published but not admitted.
        AdmitToPolicy(core, head.page, revoked.front(), head.sequential);
      }
      // The references last: Unmap waits for them before freeing `core`.
      core->io_inflight.fetch_sub(copied - revoked.size());
    }
  }
  // Revoked pages are still claimed and flagged: OnReadDone drops them.
  for (const size_t i : revoked) OnReadDone(first + static_cast<int>(i), 0);
  for (size_t i = copied; i < count; ++i) {
    OnReadDone(first + static_cast<int>(i), 0);
  }
}

void Engine::RetryPendingReads() {
  if (paging_ == nullptr || !paging_->retry_pending.load()) return;
  std::vector<uint64_t> tags;
  {
    absl::MutexLock lock(&paging_->retry_mu);
    tags.swap(paging_->retry_tags);
    paging_->retry_pending.store(false);
  }
  for (uint64_t t : tags) {
    if (t & kWriteRetryBit) {
      CompleteMoveBack(static_cast<int>(t & ~kWriteRetryBit));
    } else {
      OnReadDone(static_cast<int>(t), 0);
    }
  }
}

void Engine::SwapEverythingIn() {
  paging_->budget.SetBlocked(true);  // the application asked for all of it
  // Every page comes in now: a marker held back would stay swapped out.
  paging_->hold_markers.store(false);
  for (int b : paging_->held->TakeAll()) paging_->buffers->Release(b);
  std::vector<std::pair<RegionCore*, PageIndex>> pages;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    for (const auto& entry : regions_) {
      RegionCore* core = entry.second.get();
      core->table.ForEachNonAbsent([&](PageIndex p, PageEntry e) {
        if (e.state() == PageState::kSwapped) pages.emplace_back(core, p);
      });
    }
  }
  for (const auto& [core, page] : pages) {
    // Retried until the read starts: a refusal means every read buffer is
    // busy (a slow store), which lasts as long as the store takes. The
    // sleep makes the bound one of time (5 s or more), not of spins:
    // 100,000 bare spins took ~50 ms, and a page given up on stayed
    // swapped out, reading as zero once the Runtime was gone.
    for (int attempt = 0; attempt < 100000; ++attempt) {
      const PageEntry e = core->table.Get(page);
      if (e.state() != PageState::kSwapped) break;
      Target t;
      t.core = core;
      t.page = page;
      t.page_limit = core->pages;
      t.page_addr = AddressOf(core, page);
      if (t.page_addr == 0) break;
      if (StartSwapIn(t, e) == Served::kDone) break;
      DrainCompletions();
      absl::SleepFor(absl::Microseconds(50));
    }
  }
  while (paging_->buffers->in_use() > 0) {
    DrainCompletions();
    // A marker that got past hold_markers just before it was cleared.
    for (int b : paging_->held->TakeAll()) paging_->buffers->Release(b);
    absl::SleepFor(absl::Microseconds(50));
  }
}

void Engine::ReleaseRegionPaging(RegionCore* core) {
  if (paging_ == nullptr) return;
  // Unmap waited for io_inflight to drain, so no entry is in transit.
  uint64_t resident = 0;
  core->table.ForEachNonAbsent([&](PageIndex, PageEntry e) {
    if (e.state() == PageState::kSwapped) paging_->store->FreeSlot(e.slot());
    if (e.state() == PageState::kResident) {
      ++resident;
      if (e.clean()) paging_->store->FreeSlot(e.slot());
    }
  });
  paging_->policy->ForgetRegion(core->id);
  ReleaseFrames(resident);
}

int Engine::ExtraFd() const {
  return paging_ != nullptr ? paging_->store->completion_fd() : -1;
}

void Engine::OnExtraReady() { DrainCompletions(); }

void Engine::ReadArrived(int buffer) {
  IoOp& op = paging_->reads[buffer];
  if (!op.awaited) return;
  op.awaited = false;
  paging_->awaited_reads.fetch_sub(1, std::memory_order_relaxed);
}

bool Engine::TakeAwaitedReadSubmitted() {
  return std::exchange(t_awaited_read_queued, false);
}

bool Engine::ReadsAwaited() const {
  return paging_ != nullptr &&
         paging_->awaited_reads.load(std::memory_order_relaxed) > 0;
}

}  // namespace upager::internal
