// Signal mode (FaultMode::kSignal): the faulting thread resolves its own
// fault inside a SIGBUS handler. See upager/options.h for the contract and
// runtime/engine.h, SYNCHRONIZATION, for how the handler shares pages with
// the service threads.
//
// Why: a userfaultfd round trip through a service thread costs a wake-up of
// another thread (measured here: ~7 us on the same CPU, 15-40 us across
// CPUs), while the fill itself is an ioctl of ~1-2 us. The handler runs on
// the faulting thread with its caches warm and wakes nobody.
//
// What the handler may do: read SignalRegistry and the lock-free page
// table, claim absent pages by CAS (CompareExchangeNoAlloc: malloc is off
// limits), fill them with UFFDIO_ZEROPAGE/UFFDIO_COPY, bump relaxed
// counters, push to the HandoffQueue, write an eventfd and wait on a futex.
// Everything else (a swap-in, a page being evicted, copy-on-write for a
// snapshot, a budget frame, a saved-snapshot source, a missing page-table
// node, an error to record) is handed to a service thread, which serves it
// exactly as it would serve the fault read from the userfaultfd; the
// faulting thread sleeps on SignalWaiters meanwhile and, woken, returns
// from the handler so the access is retried (and faults again if the page
// is still not there, which just repeats the exchange).
#include <algorithm>
#include <optional>

#include "pager/fault_around.h"
#include "runtime/engine.h"

namespace upager::internal {
namespace {

// How long a handler sleeps before retrying the access anyway. Wake-ups
// normally come from SignalWaiters::NotifyIfWaiting well before; the
// timeout only bounds the cost of a path that does not notify.
constexpr uint64_t kWaitTimeoutNs = 2'000'000;

// The last address this thread found in no region (see OnSigbus).
// initial-exec: no lazy allocation on first use inside the handler.
__attribute__((tls_model("initial-exec"))) thread_local uintptr_t
    t_unknown_address = 0;

// This thread's hand-off completion word: 0 while its hand-off waits to be
// served, 1 once served (Engine::CompleteHandoff). A thread has at most one
// hand-off in the queue: it sleeps on this word until the service is done
// with it, whatever else wakes it. (Returning early, on a timeout or on
// another fault's notify, used to retry the access and hand the fault over
// again; the duplicate was served after the thread had moved on, possibly
// after a snapshot began, by code that assumed the faulting thread was
// still blocked on that fault.)
__attribute__((tls_model("initial-exec"))) thread_local std::atomic<uint32_t>
    t_handoff_done{1};

bool OnSigbus(const os::SigbusFault& f) {
  Engine::SignalOutcome outcome;
  // Registered only when the fault waits (a shared write per fault would
  // bounce a cache line between CPUs).
  std::optional<SignalWaiters::Waiter> waiter;
  {
    SignalRegistry::Reader reader;
    const SignalRegistry::Entry* entry = reader.Find(f.address);
    if (entry == nullptr) {
      // Not ours, unless the layout is changing under us (an mremap whose
      // REMAP event is being applied, an Unmap about to unregister) or
      // changed between the fault and this handler (the region left the
      // registry after its range was unregistered): retrying the access
      // once tells, since an unregistered range no longer raises SIGBUS.
      // Only the same address failing twice in a row is passed on.
      if (SignalRegistry::LayoutChanging()) {
        outcome = Engine::SignalOutcome::kRetry;
      } else if (t_unknown_address != f.address) {
        t_unknown_address = f.address;
        return true;
      } else {
        t_unknown_address = 0;
        return false;
      }
    } else {
      outcome = entry->engine->ResolveSignalFault(*entry, f, &waiter);
    }
  }
  if (outcome == Engine::SignalOutcome::kPassOn) return false;
  // The reader is gone: from here on nothing of the Engine is touched (it
  // may be destroyed while we sleep).
  switch (outcome) {
    case Engine::SignalOutcome::kDone:
    case Engine::SignalOutcome::kPassOn:
      break;
    case Engine::SignalOutcome::kRetry:
      os::YieldCpu();
      break;
    case Engine::SignalOutcome::kWait:
      waiter->Wait(kWaitTimeoutNs);
      break;
    case Engine::SignalOutcome::kHandedOff:
      // The futex re-checks the word, so a completion between the load
      // and the sleep is not lost; the timeout only bounds the cost of a
      // lost wake-up, it never ends the wait.
      while (t_handoff_done.load(std::memory_order_acquire) == 0) {
        os::FutexWait(&t_handoff_done, 0, kWaitTimeoutNs);
      }
      break;
  }
  return true;
}


}  // namespace

absl::Status Engine::StartSignalMode() {
  handoffs_ = std::make_unique<HandoffQueue>();
  auto fd = os::EventFd::Create();
  if (!fd.ok()) return fd.status();
  handoff_fd_ = std::make_unique<os::EventFd>(std::move(*fd));
  return os::InstallSigbusHandler(&OnSigbus);
}

int Engine::HandoffFd() const {
  return handoff_fd_ != nullptr ? handoff_fd_->fd() : -1;
}

void Engine::TakeHandoffs(std::vector<os::UffdEvent>* out) {
  if (handoffs_ == nullptr) return;
  // Clear first: a hand-off pushed after the Pop loop below then leaves
  // the eventfd readable for the next poll.
  (void)handoff_fd_->Clear();
  Handoff h;
  while (handoffs_->Pop(&h)) {
    os::UffdEvent e;
    e.kind = os::UffdEvent::Kind::kPageFault;
    e.address = h.address;
    e.write = h.write;
    e.wp = h.wp;
    e.handoff = reinterpret_cast<uint64_t>(h.done);
    out->push_back(e);
  }
}

void Engine::CompleteHandoff(const os::UffdEvent& e) {
  if (e.handoff == 0) return;
  auto* done = reinterpret_cast<std::atomic<uint32_t>*>(e.handoff);
  done->store(1, std::memory_order_release);
  // The thread may have seen the store, returned and even exited by now:
  // a futex wake only hashes the address (a private futex never reads
  // it), so at worst it is a spurious wake-up of whoever reuses it, which
  // every futex user tolerates.
  os::FutexWakeAll(done);
}

void Engine::AbandonHandoffs() {
  if (handoffs_ == nullptr) return;
  std::vector<os::UffdEvent> left;
  TakeHandoffs(&left);
  for (const os::UffdEvent& e : left) CompleteHandoff(e);
}

void Engine::EventsBegin() {
  if (signal_mode()) SignalRegistry::BeginLayoutChange();
}

void Engine::EventsEnd() {
  if (signal_mode()) SignalRegistry::EndLayoutChange();
}

void Engine::AfterBatch() {
  // Fills parked by EAGAIN wait for the event that caused it to be read,
  // which may be all this batch did: retry them after every batch, not
  // only in Serve (which runs when there are faults). A read-ahead or a
  // copy-on-write put-back nobody waits for (and, in signal mode, any:
  // its faults are not deferred) otherwise stayed parked, holding its
  // buffer, until some fault came; ~Engine waiting for the buffers hung.
  RetryPendingReads();
  RetryPendingFills();
  if (signal_mode()) SignalWaiters::NotifyIfWaiting();
}

void Engine::PublishSignalRegions() {
  if (!signal_mode()) return;
  // O(regions) per change, in address order: 10,000 regions map in well
  // under a second.
  std::vector<SignalRegistry::Entry> entries;
  for (const auto& iv : map_.Intervals()) {
    entries.push_back(
        {iv.start, iv.end, iv.first_page.value(), iv.owner, this});
  }
  SignalRegistry::Replace(this, entries);
}

Engine::SignalOutcome Engine::ResolveSignalFault(
    const SignalRegistry::Entry& entry, const os::SigbusFault& f,
    std::optional<SignalWaiters::Waiter>* waiter) {
  const uint64_t start_ns = MonotonicNanos();
  const uintptr_t addr = f.address & ~(uintptr_t{page_size_} - 1);
  RegionCore* const core = entry.core;
  const PageIndex page(entry.first_page + (addr - entry.start) / page_size_);
  const uint64_t limit = std::min<uint64_t>(
      entry.first_page + (entry.end - entry.start) / page_size_, core->pages);
  // Without the error code (not x86-64) a fault is served as a write: a
  // private zero page is right for a read too, it only costs memory.
  const bool write = f.write || !f.known;
  // A protection fault on a write: userfaultfd write-protect.
  const bool wp = f.known && f.present && f.write;

  if (failed_count_.load(std::memory_order_acquire) != 0 &&
      TakeFailedPage(addr)) {
    return SignalOutcome::kPassOn;
  }
  PageEntry cur = core->table.Get(page);
  switch (cur.state()) {
    case PageState::kFilling:
      // Its claimant (a service thread or another handler) fills it and
      // notifies; look again once registered, or its notify may be gone.
      waiter->emplace();
      if (core->table.Get(page).state() != PageState::kFilling) {
        return SignalOutcome::kDone;
      }
      counters_.signal_waits.Add();
      return SignalOutcome::kWait;
    case PageState::kEvicting:
      // The evictor moves the bytes back once its write is done if a fault
      // wants the page (Engine::MarkWanted, lock-free), then notifies.
      waiter->emplace();
      while (cur.state() == PageState::kEvicting) {
        if (cur.wanted() ||
            core->table.CompareExchange(
                page, &cur, cur.with_flag(PageEntry::kWantedBit, true))) {
          counters_.faults_on_evicting.Add();
          counters_.signal_waits.Add();
          return SignalOutcome::kWait;
        }
      }
      return SignalOutcome::kRetry;
    default:
      break;
  }
  if (!wp && cur.raw() == 0) {
    switch (FillInHandler(core, page, limit, addr, write)) {
      case HandlerFill::kDone:
        counters_.fault_latency.Record(MonotonicNanos() - start_ns);
        return SignalOutcome::kDone;
      case HandlerFill::kRetry:
        return SignalOutcome::kRetry;
      case HandlerFill::kHandOff:
        break;
    }
  }
  return HandOff(addr, write, wp);
}

void Engine::NoteFailedPage(uintptr_t addr) {
  for (std::atomic<uint64_t>& slot : failed_pages_) {
    uint64_t expected = 0;
    if (slot.load(std::memory_order_relaxed) == addr) break;
    if (slot.compare_exchange_strong(expected, addr)) {
      failed_count_.fetch_add(1, std::memory_order_release);
      break;
    }
  }
  // More failed pages than slots (threads that never retried): this one's
  // thread retries, its fault is served again, fails again and is noted
  // again once a slot is free. Each failure is in Stats already.
  SignalWaiters::NotifyIfWaiting();
}

bool Engine::TakeFailedPage(uintptr_t addr) {
  for (std::atomic<uint64_t>& slot : failed_pages_) {
    uint64_t expected = addr;
    if (slot.compare_exchange_strong(expected, 0)) {
      failed_count_.fetch_sub(1, std::memory_order_release);
      return true;
    }
  }
  return false;
}

Engine::SignalOutcome Engine::HandOff(uintptr_t addr, bool write, bool wp) {
  // Armed before the push: the service may complete it at once.
  t_handoff_done.store(0, std::memory_order_relaxed);
  // A full queue: retry the access (it faults again and pushes again).
  if (!handoffs_->Push({addr, write, wp, &t_handoff_done})) {
    t_handoff_done.store(1, std::memory_order_relaxed);
    return SignalOutcome::kRetry;
  }
  counters_.faults_handed_off.Add();
  (void)handoff_fd_->Signal();
  return SignalOutcome::kHandedOff;
}

Engine::HandlerFill Engine::FillInHandler(RegionCore* core, PageIndex page,
                                          uint64_t page_limit, uintptr_t addr,
                                          bool write) {
  // Saved-snapshot regions verify checksums and may record errors; they
  // take the service path.
  if (core->snapshot_source != nullptr) return HandlerFill::kHandOff;
  const std::byte* const file_src =
      core->source != nullptr ? core->source + page.value() * page_size_
                              : nullptr;
  const bool private_fill = write || file_src != nullptr;
  // A private page under a budget needs a frame and a place in the
  // eviction policy, which takes a lock.
  if (private_fill && paging_ != nullptr) return HandlerFill::kHandOff;

  core->signal_fills.fetch_add(1, std::memory_order_seq_cst);
  struct Leave {
    RegionCore* core;
    ~Leave() { core->signal_fills.fetch_sub(1, std::memory_order_release); }
  } leave{core};
  if (core->sweeping.load(std::memory_order_seq_cst)) {
    return HandlerFill::kHandOff;
  }

  PageTable& table = core->table;
  PageEntry absent;
  if (!table.CompareExchangeNoAlloc(page, &absent,
                                    PageEntry::Of(PageState::kFilling))) {
    // No leaf yet (the service thread allocates it), or the page changed
    // since we looked: retry and look again.
    return absent.raw() == 0 ? HandlerFill::kHandOff : HandlerFill::kRetry;
  }
  const uint32_t want = core->fault_around.WindowFor(page);
  const PageRange window =
      FaultAroundWindow(page, page_limit, want, [&](PageIndex p) {
        if (p == page) return true;
        PageEntry a;
        return table.CompareExchangeNoAlloc(p, &a,
                                            PageEntry::Of(PageState::kFilling));
      });
  const uint64_t n = window.count;
  const uint64_t len = n * page_size_;
  core->fault_around.Filled(page, n);
  // Nobody sleeps in the kernel on a signal-mode fault: no wake needed.
  const os::UffdResult r =
      file_src != nullptr
          ? uffd_->Copy(addr, file_src, len, /*wake=*/false,
                        /*write_protect=*/false)
      : write ? FillZeroPages(addr, n, /*wake=*/false)  // the pool: lock-free
              : uffd_->ZeroPage(addr, len, /*wake=*/false);
  const uint64_t done =
      r.ok() ? n : std::min<uint64_t>(n, r.bytes / page_size_);
  const PageState filled =
      private_fill ? PageState::kResident : PageState::kZero;
  // The claimed leaves exist, so none of these Sets allocates.
  for (uint64_t i = 0; i < done; ++i) {
    (void)table.Set(page + i, PageEntry::Of(filled));
  }
  core->CountPresent(filled, static_cast<int64_t>(done));
  uint64_t first_unclaimed = done;
  if (r.outcome == os::UffdOutcome::kExists) {
    // Page `done` is mapped already though we saw it absent (as in
    // HandleMissing): present, kind unknown.
    (void)table.Set(page + done, PageEntry::Of(PageState::kResident));
    core->CountPresent(PageState::kResident, +1);
    ++first_unclaimed;
    counters_.fill_exists.Add();
  }
  for (uint64_t i = first_unclaimed; i < n; ++i) {
    (void)table.Set(page + i, PageEntry());
  }
  if (done > 0) {
    (write ? counters_.faults_missing_write : counters_.faults_missing_read)
        .Add();
    counters_.faults_on_thread.Add();
    (file_src != nullptr ? counters_.pages_file_filled
     : write             ? counters_.pages_zero_filled
                         : counters_.pages_zero_mapped)
        .Add(done);
    if (done > 1) counters_.pages_fault_around.Add(done - 1);
    // Other threads may wait on pages of this window.
    SignalWaiters::NotifyIfWaiting();
  }
  switch (r.outcome) {
    case os::UffdOutcome::kDone:
    case os::UffdOutcome::kExists:
      return HandlerFill::kDone;
    case os::UffdOutcome::kRetry:
      // An address-space event must be read first (a service thread does).
      counters_.fill_retries.Add();
      return HandlerFill::kRetry;
    case os::UffdOutcome::kGone:
      // Unregistered under us (Unmap, exit): the retried access is plain
      // memory now, or no longer mapped at all.
      counters_.fill_gone.Add();
      return HandlerFill::kDone;
    case os::UffdOutcome::kFailed:
      // The service thread tries again and reports the error.
      return HandlerFill::kHandOff;
  }
  return HandlerFill::kDone;
}

}  // namespace upager::internal
