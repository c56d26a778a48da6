// Page faults: lazy zero-fill with fault-around. See runtime/engine.h,
// SYNCHRONIZATION, for the claim protocol this file follows.
#include <algorithm>
#include <vector>

#include "absl/strings/str_format.h"
#include "pager/fault_around.h"
#include "runtime/engine.h"

namespace upager::internal {
namespace {

PageState FilledState(bool write) {
  return write ? PageState::kResident : PageState::kZero;
}


}  // namespace

Engine::Served Engine::HandlePageFault(const os::UffdEvent& e,
                                       uint64_t read_ns) {
  const uintptr_t addr = e.address & ~(uintptr_t{page_size_} - 1);
  Served served = Served::kDone;
  if (e.wp) {
    counters_.faults_write_protect.Add();
    served = HandleWriteProtect(addr);
  } else if (e.minor) {
    counters_.faults_minor.Add();
    (void)uffd_->Wake(addr, page_size_);
  } else {
    (e.write ? counters_.faults_missing_write : counters_.faults_missing_read)
        .Add();
    served = HandleMissing(e, addr);
  }
  if (served == Served::kDone) {
    const uint64_t now = MonotonicNanos();
    counters_.fault_latency.Record(now > read_ns ? now - read_ns : 0);
  }
  return served;
}

Engine::Served Engine::HandleWriteProtect(uintptr_t addr) {
  // Two kinds of protected page land here (a page may be both):
  // - captured by a snapshot: its bytes are copied aside before the write
  //   goes through (CopyAside, runtime/snapshot_engine.cc);
  // - clean: swapped in and never written (runtime/paging.cc, clean
  //   drop). The first write makes it dirty, and the slot is freed
  //   *before* the protection is lifted, so a page that still has its
  //   slot was never written.
  // A page being evicted stays protected: lifting it before the move-out
  // could let a write land in a page about to be dropped as clean; the
  // thread waits for the eviction to finish or be cancelled.
  // The un-protect at the end stays under snap_mu too: a sweep between the
  // entry update below and the ioctl would protect and capture the page,
  // and the ioctl would then lift that new protection behind the
  // snapshot's back. (Signal mode made this reachable: a thread that
  // retried its write meanwhile leaves a duplicate hand-off behind, which
  // may be served after the thread has moved on and a snapshot began.)
  auto unprotect = [&] {
    const os::UffdResult r =
        uffd_->WriteProtect(addr, page_size_, false, true);
    return r.outcome == os::UffdOutcome::kRetry ? Served::kRetryLater
                                                : Served::kDone;
  };
  Target t;
  if (!Resolve(addr, &t)) return unprotect();
  {
    RegionCore* core = t.core;
    absl::ReaderMutexLock snap_lock(&core->snap_mu);
    PageEntry cur = core->table.Get(t.page);
    if (cur.state() == PageState::kEvicting) return MarkWanted(t, cur);
    // A fill wakes the faulting thread before it publishes the entry; a
    // write right after a write-protected swap-in can get here first. Wait
    // for the entry: un-protecting now would let the write land in a page
    // about to be published as clean (or captured).
    if (cur.state() == PageState::kFilling) return Served::kRetryLater;
    if (cur.captured() && cur.present() && snaps_ != nullptr) {
      bool retry = false;
      const uint64_t limit = std::min<uint64_t>(t.page_limit, core->pages);
      const uint64_t window = std::min<uint64_t>(
          core->copy_around.WindowFor(t.page), limit - t.page.value());
      const uint64_t n = CopyAside(core, t.page, window, addr, &retry);
      if (n > 0) {
        core->copy_around.Filled(t.page, n);
        return Served::kDone;
      }
      if (retry) return Served::kRetryLater;
      cur = core->table.Get(t.page);  // a stale mark, cleared: go on
      if (cur.state() == PageState::kFilling) return Served::kRetryLater;
    }
    while (cur.state() == PageState::kResident && cur.clean()) {
      const PageEntry dirty =
          PageEntry::Of(PageState::kResident).with_flag(PageEntry::kDirtyBit, true);
      if (core->table.CompareExchange(t.page, &cur, dirty)) {
        if (paging_ != nullptr) paging_->store->FreeSlot(cur.slot());
        counters_.pages_dirtied.Add();
        break;
      }
    }
    while (cur.write_protected() && !cur.captured() &&
           !core->table.CompareExchange(
               t.page, &cur,
               cur.with_flag(PageEntry::kWriteProtectedBit, false))) {
    }
    return unprotect();
  }
}

Engine::Served Engine::HandleMissing(const os::UffdEvent& e, uintptr_t addr) {
  Target t;
  if (!Resolve(addr, &t)) return ServeForeign(addr, e.write);
  PageTable& table = t.core->table;

  // Claim the faulting page. A page we believe present can still take a
  // missing fault: either the message is stale (two threads faulted on the
  // same page and the first fill already mapped it: the fill below then
  // fails with EEXIST and we only wake), or the kernel dropped the page
  // after we mapped it (a fill raced with the application's MADV_DONTNEED:
  // the fill below then succeeds and repairs it). Only a page another
  // thread is filling right now is left alone: its claimant wakes everyone
  // waiting on the range when it is done.
  PageEntry prev = table.Get(t.page);
  // Paged-out pages come back from the store; a page being paged out waits
  // for its write (see runtime/paging.cc).
  if (prev.state() == PageState::kSwapped) return StartSwapIn(t, prev);
  if (prev.state() == PageState::kEvicting) return MarkWanted(t, prev);
  // Being filled (a read-ahead window still in flight, a fault-around
  // claim): its claimant wakes the range. Answered before the sizer hears
  // of it: an application that outruns a window's fill touches its pages
  // out of the stream's order, and counting those as stream breaks kept
  // sequential swap-in windows at ~12 pages instead of growing.
  if (prev.state() == PageState::kFilling) return OnFaultAtFilling(t);
  // A snapshot sweep must not see this fill's claim half done. (Taken
  // after the dispatch above: a swap-in may complete inline, and its
  // completion takes snap_mu itself.)
  absl::ReaderMutexLock snap_lock(&t.core->snap_mu);
  prev = table.Get(t.page);

  // A region mapped from a saved snapshot fills from the snapshot file's
  // run that holds the page: its data, or private zero pages for a zero run.
  const SnapshotSource* const snap_src = t.core->snapshot_source.get();
  ResolvedRun run;
  if (snap_src != nullptr) run = snap_src->chain.RunAt(t.page.value());
  const std::byte* const file_src =
      t.core->source != nullptr
          ? t.core->source + t.page.value() * page_size_
      : snap_src != nullptr && run.file != nullptr
          ? snap_src->Bytes(run) + (t.page.value() - run.first_page) * page_size_
          : nullptr;
  const bool from_file = file_src != nullptr;
  const bool private_fill = e.write || from_file;
  // Frames for the fill: a private fill (write fault or file) needs one per
  // page under a budget; the shared zero page needs none. No frame: the
  // fault waits (deferred) while the evictor frees some.
  const uint32_t want = t.core->fault_around.WindowFor(t.page);
  const uint64_t frames = private_fill ? ReserveFrames(want) : 0;
  if (private_fill && frames == 0) return Served::kRetryLater;
  const uint64_t window_pages = private_fill ? frames : want;
  uint64_t frames_used = 0;

  for (;;) {
    if (prev.state() == PageState::kFilling ||
        prev.state() == PageState::kSwapped ||
        prev.state() == PageState::kEvicting) {
      // Someone else owns the page now (its claimant wakes the range), or
      // it changed state under us: serve this fault again later if needed.
      ReleaseFrames(frames);
      if (prev.state() != PageState::kFilling) return Served::kRetryLater;
      counters_.faults_stale.Add();
      return Served::kDone;
    }
    bool alloc_failed = false;
    if (table.CompareExchange(t.page, &prev,
                              prev.with_state(PageState::kFilling),
                              &alloc_failed)) {
      break;
    }
    if (alloc_failed) {
      RecordError(absl::ResourceExhaustedError(absl::StrFormat(
          "page table node allocation failed for fault at %#x", addr)));
      ReleaseFrames(frames);
      ReleaseWithFailure(addr);
      return Served::kDone;
    }
  }

  // Fault-around: claim the absent pages that follow, up to the window.
  uint64_t limit = std::min<uint64_t>(t.page_limit, t.core->pages);
  if (snap_src != nullptr) {
    limit = std::min<uint64_t>(limit, run.first_page + run.count);
  }
  const PageRange window = FaultAroundWindow(
      t.page, limit, window_pages, [&](PageIndex p) {
        if (p == t.page) return true;
        PageEntry absent;  // raw 0: absent, no flags
        return table.CompareExchange(p, &absent,
                                     PageEntry::Of(PageState::kFilling));
      });
  uint64_t n = window.count;
  if (snap_src != nullptr && run.file != nullptr) {
    // Never serve bytes that fail their checksum: the faulting page gets
    // SIGBUS (a read error, as the kernel reports one); a bad page later
    // in the window just ends the window, and faults on its own.
    for (uint64_t i = 0; i < n; ++i) {
      absl::Status v =
          run.file->VerifyPage(t.page.value() + i, file_src + i * page_size_);
      if (v.ok()) continue;
      for (uint64_t j = i; j < n; ++j) {
        (void)table.Set(t.page + j, j == 0 ? prev : PageEntry());
      }
      n = i;
      if (i == 0) {
        RecordError(v);
        ReleaseFrames(frames);
        ReleaseWithFailure(addr);
        return Served::kDone;
      }
      break;
    }
  }
  const uint64_t len = n * page_size_;
  // Record the stream before the fill: the fill wakes the faulting thread,
  // whose next fault (the next page of a sequential stream) may be read by
  // another service thread before this one gets past the ioctl.
  t.core->fault_around.Filled(t.page, n);

  // A file-backed region copies its pages from a read-only mapping of the
  // file (the kernel reads what is not cached yet, inside the ioctl). A
  // zero-filled region gives a write fault private zeroed pages (moved in
  // from the zero-page pool, or copied from an untouched read-only
  // mapping) and a read fault the shared zero page, which costs no memory
  // until written, exactly as the kernel does for anonymous memory.
  const os::UffdResult r =
      from_file ? uffd_->Copy(addr, file_src, len, /*wake=*/true,
                              /*write_protect=*/false)
      : e.write ? FillZeroPages(addr, n, /*wake=*/true)
                : uffd_->ZeroPage(addr, len, /*wake=*/true);
  const PageState filled = FilledState(private_fill);
  const uint64_t done =
      r.ok() ? n : std::min<uint64_t>(n, r.bytes / page_size_);

  // Publish the pages that were filled; the faulting page's previous
  // state (normally absent) leaves the counters.
  t.core->CountPresent(prev.state(), -1);
  // A page we believed present and captured that the fill just replaced
  // was zapped by the application's own madvise: its bytes are gone.
  // The fill put a fresh page there: none of the old entry's protection,
  // clean-slot or capture marks describe it any more.
  PageEntry first_base = prev;
  if (done > 0 && prev.present()) {
    if (prev.captured() && snaps_ != nullptr) {
      (void)CaptureOrFree(t.core, t.page, {CopyRef::Kind::kLost, 0});
    }
    if (prev.clean() && paging_ != nullptr) {
      paging_->store->FreeSlot(prev.slot());
    }
    first_base = PageEntry();
  }
  for (uint64_t i = 0; i < done; ++i) {
    const PageEntry base = i == 0 ? first_base : PageEntry();
    if (!table.Set(t.page + i, base.with_state(filled))) {
      RecordError(absl::InternalError("page table Set failed on a claimed page"));
    }
  }
  t.core->CountPresent(filled, static_cast<int64_t>(done));
  if (private_fill && done > 0) {
    frames_used = done - (prev.state() == PageState::kResident ? 1 : 0);
    AdmitToPolicy(t.core, t.page, done,
                  /*sequential=*/n > t.core->fault_around.base_pages());
  }
  // Frames reserved for pages the window did not get (clipped, or not
  // filled) go back now.
  auto release_unused = [&] {
    if (frames > frames_used) ReleaseFrames(frames - frames_used);
  };
  (from_file ? counters_.pages_file_filled
   : e.write ? counters_.pages_zero_filled
             : counters_.pages_zero_mapped)
      .Add(done);
  if (done > 1) counters_.pages_fault_around.Add(done - 1);
  release_unused();
  if (r.ok()) return Served::kDone;

  // Partial or failed fill: settle every claimed page that was not filled.
  auto restore_from = [&](uint64_t first) {
    for (uint64_t i = first; i < n; ++i) {
      const PageEntry back = i == 0 ? prev : PageEntry();
      (void)table.Set(t.page + i, back);
      if (i == 0) t.core->CountPresent(prev.state(), +1);
    }
  };
  switch (r.outcome) {
    case os::UffdOutcome::kDone:
      break;
    case os::UffdOutcome::kExists: {
      // Page `done` is mapped already. If it is the faulting page this was
      // a stale fault; otherwise someone mapped a page we thought absent.
      // Either way the kernel did not wake anyone (the ioctl failed), so
      // wake the window ourselves.
      counters_.fill_exists.Add();
      if (done == 0) counters_.faults_stale.Add();
      const PageEntry existing =
          done == 0 && prev.present()
              ? prev
              : PageEntry::Of(PageState::kResident);  // present, kind unknown
      (void)table.Set(t.page + done, existing);
      t.core->CountPresent(existing.state(), +1);
      restore_from(done + 1);
      (void)uffd_->Wake(addr, len);
      return Served::kDone;
    }
    case os::UffdOutcome::kRetry:
      // EAGAIN: an address-space event (REMOVE, UNMAP, REMAP) is pending and
      // must be read before the kernel accepts fills again. Give the claims
      // back and retry the whole fault after the next read.
      //
      // Wake the rest of the window too: a thread that faulted on one of
      // its pages while we held the claim found it kFilling and left it to
      // us (faults_stale), and a short fill may have let the faulting
      // thread run on into it. Woken, such a thread faults again and is
      // served then. Only the faulting page stays asleep when nothing was
      // filled: its fault is the one retried.
      counters_.fill_retries.Add();
      restore_from(done);
      if (done > 0) {
        (void)uffd_->Wake(addr, len);
      } else if (n > 1) {
        (void)uffd_->Wake(addr + page_size_, len - page_size_);
      }
      return done > 0 ? Served::kDone : Served::kRetryLater;
    case os::UffdOutcome::kGone:
      // The range was unregistered or unmapped under us (Unmap, munmap, or
      // process exit); whoever faulted was or will be woken by that. The
      // wake covers the window for the same reason as under kRetry.
      counters_.fill_gone.Add();
      restore_from(done);
      (void)uffd_->Wake(addr, len);
      return Served::kDone;
    case os::UffdOutcome::kFailed:
      restore_from(done);
      // Waiters on the rest of the window (see kRetry) fault again.
      if (n > 1) (void)uffd_->Wake(addr + page_size_, len - page_size_);
      RecordError(r.ToStatus(absl::StrFormat(
                                 "%s(dst=%#x, len=%#x) for region '%s'",
                                 e.write || from_file ? "UFFDIO_COPY"
                                                      : "UFFDIO_ZEROPAGE",
                                 addr, len, t.core->region->name())
                                 .c_str()));
      ReleaseWithFailure(addr);
      return Served::kDone;
  }
  return Served::kDone;
}

os::UffdResult Engine::FillZeroPages(uintptr_t addr, uint64_t n, bool wake) {
  // Moves hard-failing this many times in a row disable the pool: the
  // regions' mappings no longer match the pool's (an mlock or mprotect of
  // theirs, a seccomp filter), and every fault would pay for a failed
  // ioctl before its copy.
  constexpr uint32_t kMaxMoveFailuresInARow = 16;
  // A move has a fixed cost a copy does not (measured here with the
  // faulting thread waiting: one page moved 9 us against 2 us copied, 8
  // pages even, 16 pages 7 us against 21 us), so fewer pages than this
  // are copied, pool or not: they are neither hits nor misses.
  constexpr uint64_t kMinMovePages = 16;
  // Waiters are woken once the whole range is filled, never part of it
  // first: a thread woken early runs on into pages still being filled,
  // and its fault there (stale) would cost a round trip and reset the
  // region's fault-around stream. A single ioctl that fills the whole
  // range wakes it itself; a range filled in parts gets one Wake at the
  // end. (On failure the caller wakes the range, as it does for a copy.)
  uint64_t done = 0;  // pages filled: always a prefix of the range
  ZeroPool* const pool = n >= kMinMovePages ? zero_pool_.get() : nullptr;
  if (pool != nullptr) {
    while (n - done >= kMinMovePages) {
      const ZeroPool::Lease lease = pool->Take(n - done);
      if (lease.pages == 0) break;  // empty: copy the rest
      const bool whole = done == 0 && lease.pages == n;
      const os::UffdResult r =
          uffd_->Move(addr + done * page_size_, lease.addr,
                      lease.pages * page_size_, wake && whole,
                      /*allow_src_holes=*/false);
      const uint64_t moved =
          r.ok() ? lease.pages : std::min(lease.pages, r.bytes / page_size_);
      pool->Finish(lease, moved);
      counters_.zero_pool_hits.Add(moved);
      done += moved;
      if (r.ok()) {
        if (move_failures_in_a_row_.load(std::memory_order_relaxed) != 0) {
          move_failures_in_a_row_.store(0, std::memory_order_relaxed);
        }
        if (whole) return r;
        continue;
      }
      // EEXIST and EAGAIN say the same about the destination as they would
      // for a copy (a page there already; an address-space event pending):
      // the caller handles them as it handles a copy's.
      if (r.outcome == os::UffdOutcome::kExists ||
          r.outcome == os::UffdOutcome::kRetry) {
        return {r.outcome, done * page_size_, r.error};
      }
      // Anything else may be the source's fault, and a copy needs no
      // source page: EBUSY (a pool page shared after all, e.g. pinned),
      // ENOENT (a hole in the pool: the same errno as a destination that
      // went away, which the copy then reports again), EINVAL (the two
      // mappings no longer match). Copy the rest.
      counters_.zero_pool_move_failures.Add();
      if (r.outcome == os::UffdOutcome::kFailed &&
          move_failures_in_a_row_.fetch_add(1, std::memory_order_relaxed) +
                  1 >= kMaxMoveFailuresInARow) {
        pool->Disable(r.error);
      }
      break;
    }
  }
  os::UffdResult r{os::UffdOutcome::kDone, 0, 0};
  if (done < n) {
    r = uffd_->Copy(addr + done * page_size_, zero_source_,
                    (n - done) * page_size_, wake && done == 0,
                    /*write_protect=*/false);
    if (pool != nullptr) counters_.zero_pool_misses.Add(r.bytes / page_size_);
    if (done == 0) return r;
    r.bytes += done * page_size_;
  } else {
    r.bytes = n * page_size_;
  }
  if (r.ok() && wake) (void)uffd_->Wake(addr, n * page_size_);
  return r;
}

Engine::Served Engine::ServeForeign(uintptr_t addr, bool write) {
  // No region owns this address: a region being unmapped (its range is
  // unregistered next, which wakes the thread anyway), or the part of a
  // region an application mremap grew. Serve it as the anonymous memory it
  // is, one page, untracked.
  counters_.faults_foreign.Add();
  const os::UffdResult r =
      write ? uffd_->Copy(addr, zero_source_, page_size_, true, false)
            : uffd_->ZeroPage(addr, page_size_, true);
  if (r.outcome == os::UffdOutcome::kRetry) return Served::kRetryLater;
  if (!r.ok()) (void)uffd_->Wake(addr, page_size_);
  return Served::kDone;
}

void Engine::ReleaseWithFailure(uintptr_t addr) {
  if (signal_mode()) {
    // The faulting thread waits in the SIGBUS handler, not in the kernel:
    // its retried access raises SIGBUS again, which the handler now passes
    // to the application (a poison marker would do no better: the handler
    // would see its SIGBUS too, and a fill may overwrite the marker).
    NoteFailedPage(addr);
    counters_.threads_poisoned.Add();
    return;
  }
  // The faulting thread must not stay blocked forever. With UFFDIO_POISON
  // its retry gets SIGBUS, the same failure the kernel reports for memory
  // it cannot provide; without it, waking makes it fault again, and the
  // error stays recorded in Stats.
  if (uffd_->has(os::uffd_feature::kPoison)) {
    const os::UffdResult r = uffd_->Poison(addr, page_size_, true);
    if (r.ok()) {
      counters_.threads_poisoned.Add();
      return;
    }
  }
  (void)uffd_->Wake(addr, page_size_);
}

}  // namespace upager::internal
