// Address-space events the application causes on a region: madvise
// (REMOVE), munmap (UNMAP), mremap (REMAP). Each keeps the page table and
// the address map true. See runtime/engine.h, SYNCHRONIZATION.
//
// Ordering: the kernel completes such an event (lets the application's
// call continue) as soon as a service thread has *read* it, and only then
// zaps the pages. Events are applied in read order, under the fault
// service's event mutex, before any later-read fault is served (see
// FaultService, "Event order"); so a page the application touches after
// its madvise returned is never dropped by that madvise's late REMOVE, and
// mremap's REMAP is applied before the UNMAP of the old range that follows
// it. A fill that was in flight can therefore land before the
// zap and be dropped by it; the page table then says present while the
// kernel has nothing, and the next touch takes a missing fault that
// HandleMissing serves as a fresh zero page (what the application's
// madvise/munmap promised). Fills that start after the event was read but
// before it is handled here see the old layout; for REMOVE that is the
// same zero content, for UNMAP the fill fails with ENOENT. The exception
// is a fill that puts a page's old bytes back (a swap-in, a cancelled
// eviction's move-back, a copy-on-write put-back): landing after the zap,
// it would resurrect bytes the application dropped. Writable fills hold
// event reads off meanwhile; swap-ins are fenced against them and taken
// back when one happened (Engine::EventReadsHeld, Engine::FillFence).
#include <vector>

#include "runtime/engine.h"

namespace upager::internal {

void Engine::DropPages(RegionCore* core, PageIndex first, uint64_t count) {
  PageTable& table = core->table;
  uint64_t frames = 0;
  table.ForEachNonAbsentInRange(first, count, [&](PageIndex p, PageEntry cur) {
    while (cur.raw() != 0) {
      if (cur.state() == PageState::kEvicting ||
          cur.state() == PageState::kFilling) {
        // Its bytes are in flight: a staging page on its way to the store
        // (the write's completion frees everything, runtime/paging.cc), or
        // a fill whose claimant must not put them back (a swap-in landing
        // after the kernel zapped the page would resurrect old bytes).
        if (cur.discard() ||
            table.CompareExchange(p, &cur,
                                  cur.with_flag(PageEntry::kDiscardBit, true))) {
          return;
        }
        continue;
      }
      if (table.CompareExchange(p, &cur, PageEntry())) {
        // A snapshot that still needs the page gets what survives of it:
        // a slot, the knowledge that it was zero, or the fact that the
        // application's own madvise/munmap discarded it (the kernel zaps
        // the page as soon as the event is read: too late to copy).
        const bool captured = cur.captured() && snaps_ != nullptr;
        switch (cur.state()) {
          case PageState::kResident:
            core->resident.fetch_sub(1, std::memory_order_relaxed);
            ++frames;
            // A clean page (swapped in, never written) still holds a slot.
            if (captured) {
              (void)CaptureOrFree(
                  core, p,
                  cur.clean() ? CopyRef{CopyRef::Kind::kSlot, cur.slot()}
                              : CopyRef{CopyRef::Kind::kLost, 0});
            } else if (cur.clean() && paging_ != nullptr) {
              paging_->store->FreeSlot(cur.slot());
            }
            break;
          case PageState::kZero:
            core->zero_mapped.fetch_sub(1, std::memory_order_relaxed);
            if (captured) {
              (void)CaptureOrFree(core, p, {CopyRef::Kind::kZero, 0});
            }
            break;
          case PageState::kSwapped:
            core->swapped.fetch_sub(1, std::memory_order_relaxed);
            if (captured) {
              (void)CaptureOrFree(core, p, {CopyRef::Kind::kSlot, cur.slot()});
            } else if (paging_ != nullptr) {
              paging_->store->FreeSlot(cur.slot());
            }
            break;
          default:
            break;
        }
        return;
      }
    }
  });
  if (paging_ != nullptr) {
    paging_->policy->Forget({core->id, first.value()}, count);
    ReleaseFrames(frames);
  }
}

void Engine::HandleRemove(uintptr_t start, uintptr_t end) {
  counters_.events_remove.Add();
  absl::ReaderMutexLock lock(&map_mu_);
  for (uintptr_t a = start; a < end;) {
    const auto iv = map_.Find(a);
    if (!iv.has_value()) {
      a += page_size_;  // a hole (foreign memory); keep scanning
      continue;
    }
    const uintptr_t stop = std::min<uintptr_t>(end, iv->end);
    DropPages(iv->owner, iv->first_page + (a - iv->start) / page_size_,
              (stop - a) / page_size_);
    a = stop;
  }
}

void Engine::HandleUnmap(uintptr_t start, uintptr_t end) {
  counters_.events_unmap.Add();
  absl::MutexLock lock(&map_mu_);
  for (const auto& iv : map_.Erase(start, end)) {
    DropPages(iv.owner, iv.first_page, (iv.end - iv.start) / page_size_);
  }
  PublishSignalRegions();
}

void Engine::HandleRemap(uintptr_t from, uintptr_t to, uint64_t len) {
  counters_.events_remap.Add();
  // The pages moved with their PTEs and the registration moved with the
  // VMA; only the address -> region page translation changes. A grown tail
  // (len is the old length) is not in the map and is served as foreign
  // anonymous memory; a shrunk tail arrives as its own UNMAP.
  absl::MutexLock lock(&map_mu_);
  // MREMAP_FIXED over another region replaces its pages: drop them before
  // the move overwrites their map entries.
  for (const auto& iv : map_.Erase(to, to + len)) {
    DropPages(iv.owner, iv.first_page, (iv.end - iv.start) / page_size_);
  }
  map_.Move(from, to, len);
  PublishSignalRegions();
}

}  // namespace upager::internal
