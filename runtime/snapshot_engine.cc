// Copy-on-write snapshots: the TakeSnapshot sweep, copy-aside on the first
// write, point-in-time reads, Restore and Release. The model (which
// snapshot needs which version of a page) is pager/snapshot_book.h; the
// locking is in runtime/engine.h, SYNCHRONIZATION, "Snapshots".
//
// TakeSnapshot: under snap_mu (exclusive) mark every non-absent page
// captured, write-protect the present ones that are not protected yet (one
// UFFDIO_WRITEPROTECT per run; absent pages need nothing: their first
// touch is a missing fault we serve anyway, and the snapshot records them
// as zero, so a run may span them), and record the present set. No byte is
// copied, so the pause is the sweep: on a large region two threads share
// it, and the kernel's page-table walk dominates it.
//
// Copy-aside, one run of captured pages (CopyAside), on a write fault:
//   1. CAS each page kResident/kZero(captured) -> kFilling: ours.
//   2. UFFDIO_MOVE the run out of the region into staging pages (one
//      ioctl). A touch of the run is now a missing fault that waits (it
//      sees kFilling) until step 4 wakes it.
//   3. Copy each page into the pool (a zero page is noted, not copied; a
//      clean page's swap slot already holds it), and record the version.
//   4. UFFDIO_MOVE the run back: writable, unprotected; the move wakes the
//      writer. 5. Publish the entries, dirty and no longer captured.
// Why move the pages instead of reading them where they are: a service
// thread must never touch registered memory. The application may drop or
// unmap a page at any moment, and the thread would then fault on its own
// userfaultfd, or crash. A moved-out page is ours until we move it back.
// The run grows while writes stream through the region (copy_around), so
// a sequential writer pays one round trip per up to 256 pages.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runtime/engine.h"
#include "runtime/os/memory.h"
#include "upager/status_macros.h"

namespace upager::internal {
namespace {

// The sweep's units of work (a thread marks a chunk's pages and builds its
// runs), by guided self-scheduling: each chunk is a quarter of the pages
// left, at least kMinSweepChunkPages. The first chunks are long and the
// last short, so the two threads finish together (with fixed 32 MiB chunks
// the calling thread idled up to 0.3 ms of a ~6 ms 1 GiB sweep waiting for
// the helper's last chunk), and a thread makes few UFFDIO_WRITEPROTECT
// calls, each of whose TLB flushes interrupts the other, busy, CPU (8 MiB
// chunks cost ~4 ms more CPU per GiB than 32 MiB ones, measured here).
// A 1 GiB region is 14 chunks, a 1 TiB one 38: the bookkeeping stays small.
constexpr uint64_t kMinSweepChunkPages = 4096;

// Chunk c covers pages [bounds[c], bounds[c + 1]).
std::vector<uint64_t> SweepChunkBounds(uint64_t pages) {
  std::vector<uint64_t> bounds{0};
  for (uint64_t at = 0; at < pages;) {
    const uint64_t left = pages - at;
    at += std::min(left, std::max(kMinSweepChunkPages, left / 4));
    bounds.push_back(at);
  }
  return bounds;
}

// A chunk's runs are write-protected at once, by the thread that built
// them, when they average at least this many pages; shorter runs wait for
// the calling thread alone, after the helper has finished. Every
// UFFDIO_WRITEPROTECT ends with a TLB flush that must interrupt each other
// CPU running this mm: measured on this 2-vCPU VM, a call costs ~1 us with
// the other vCPU idle and ~19 us while a thread of this process runs there.
// Protecting in parallel pays off only when half a run's page-table walk
// (~30 ns a page) saves more than that: runs of ~600 pages and up.
constexpr uint64_t kParallelRunPages = 512;

void AppendPage(std::vector<PageRun>* runs, uint64_t p) {
  if (!runs->empty() && runs->back().first + runs->back().count == p) {
    ++runs->back().count;
  } else {
    runs->push_back({p, 1});
  }
}

// The write-protect runs of one sweep chunk, built from its pages in
// order. With `bridge_holes` a run spans the absent pages between pages to
// protect: the kernel skips a page without a PTE for next to nothing, and
// every call saved is ~1 us here. Any other page between them ends the
// run. (Spanning present pages that are protected already was measured
// too: re-walking them cost more than the calls it saved, at 1% of a
// region written.)
class RunBuilder {
 public:
  explicit RunBuilder(bool bridge_holes) : bridge_holes_(bridge_holes) {}

  // Page `p`, above every page passed so far, must be protected.
  void Protect(uint64_t p) {
    ++pages_;
    if (!runs_.empty() && !broken_ &&
        (bridge_holes_ || runs_.back().first + runs_.back().count == p)) {
      runs_.back().count = p + 1 - runs_.back().first;
      return;
    }
    runs_.push_back({p, 1});
    broken_ = false;
  }
  // Page `p`, above the last Protect()ed one, is not absent and must not be
  // protected (or has no PTE the table can vouch for): no run spans it.
  void Break() { broken_ = true; }

  uint64_t pages() const { return pages_; }  // pages passed to Protect
  std::vector<PageRun> Take() { return std::move(runs_); }

 private:
  const bool bridge_holes_;
  std::vector<PageRun> runs_;
  uint64_t pages_ = 0;
  bool broken_ = false;  // Break() since the last Protect
};

// One more thread for a sweep. It runs `work` once if it starts before the
// SweepHelper is destroyed; a helper the scheduler has not run by then (a
// loaded machine) is withdrawn instead of waited for. `work` takes its
// chunks from a shared cursor, so the calling thread has done them all.
class SweepHelper {
 public:
  explicit SweepHelper(std::function<void()> work)
      : state_(std::make_shared<State>()) {
    state_->work = std::move(work);
    try {
      std::thread([s = state_] { s->Run(); }).detach();
    } catch (const std::system_error&) {
      // No thread: the calling thread does all the work.
      absl::MutexLock lock(&state_->mu);
      state_->phase = Phase::kWithdrawn;
    }
  }
  // Returns once the helper can no longer call `work`.
  ~SweepHelper() {
    absl::MutexLock lock(&state_->mu);
    if (state_->phase == Phase::kWaiting) {
      state_->phase = Phase::kWithdrawn;
      return;
    }
    state_->mu.Await(absl::Condition(
        +[](Phase* p) { return *p != Phase::kRunning; }, &state_->phase));
  }
  SweepHelper(const SweepHelper&) = delete;
  SweepHelper& operator=(const SweepHelper&) = delete;

 private:
  enum class Phase { kWaiting, kRunning, kDone, kWithdrawn };
  // Shared with the thread, which may outlive the SweepHelper (withdrawn).
  struct State {
    absl::Mutex mu;
    Phase phase ABSL_GUARDED_BY(mu) = Phase::kWaiting;
    std::function<void()> work;

    void Run() {
      {
        absl::MutexLock lock(&mu);
        if (phase != Phase::kWaiting) return;
        phase = Phase::kRunning;
      }
      work();
      absl::MutexLock lock(&mu);
      phase = Phase::kDone;
    }
  };
  std::shared_ptr<State> state_;
};

bool AllZero(const std::byte* p, size_t n) {
  // Word at a time; a page with data usually differs in its first words.
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < n / sizeof(uint64_t); ++i) {
    if (w[i] != 0) return false;
  }
  return true;
}

}  // namespace

absl::Status Engine::StartSnapshots() {
  // Copy-on-write needs synchronous write-protect faults on anonymous
  // memory, and UFFDIO_MOVE to take a page out of the application's reach
  // while it is copied.
  std::vector<std::string> missing;
  if (!uffd_->has(os::uffd_feature::kPagefaultFlagWp)) {
    missing.push_back("UFFD_FEATURE_PAGEFAULT_FLAG_WP (Linux 5.7+)");
  }
  if (!uffd_->has(os::uffd_feature::kMove)) {
    missing.push_back("UFFD_FEATURE_MOVE (Linux 6.8+)");
  }
  if (!missing.empty()) {
    snapshots_missing_ = absl::StrJoin(missing, " and ");
    return absl::OkStatus();
  }
  auto s = std::make_unique<Snapshots>(page_size_);
  os::UffdOpenOptions so;
  so.paths = {uffd_->path()};
  so.required_features = os::uffd_feature::kMove;
  UPAGER_ASSIGN_OR_RETURN(s->uffd, os::OpenUffd(so));
  std::unique_ptr<PageArena> staging;
  UPAGER_ASSIGN_OR_RETURN(
      staging, PageArena::Create(RegionCore::kMaxCopyAroundPages, page_size_));
  UPAGER_RETURN_IF_ERROR(s->uffd->Register(
      reinterpret_cast<uint64_t>(staging->base()), staging->bytes(),
      os::kRegisterMissing));
  {
    absl::MutexLock lock(&s->copy_mu);
    s->staging = std::move(staging);
  }
  snaps_ = std::move(s);
  return absl::OkStatus();
}

RegionCore* Engine::PinRegion(uint32_t region_id) {
  absl::ReaderMutexLock lock(&map_mu_);
  auto it = regions_by_id_.find(region_id);
  if (it == regions_by_id_.end()) return nullptr;
  it->second->io_inflight.fetch_add(1);
  return it->second;
}

void Engine::Unpin(RegionCore* core) { core->io_inflight.fetch_sub(1); }

absl::StatusOr<CopyRef> Engine::CopyBytes(const std::byte* bytes,
                                          bool charge) {
  if (AllZero(bytes, page_size_)) {
    return CopyRef{CopyRef::Kind::kZero, 0};
  }
  UPAGER_ASSIGN_OR_RETURN(const uint64_t index, snaps_->pool.Allocate());
  std::memcpy(snaps_->pool.page(index), bytes, page_size_);
  if (charge && paging_ != nullptr) {
    paging_->budget.Charge(1);
    if (paging_->budget.AboveHigh()) KickEvictor();
  }
  return CopyRef{CopyRef::Kind::kMemory, index};
}

bool Engine::CaptureOrFree(RegionCore* core, PageIndex page, CopyRef ref) {
  bool kept;
  {
    absl::MutexLock lock(&core->book_mu);
    kept = core->book.Capture(page.value(), ref);
  }
  if (!kept) {
    FreeCopies({ref});
    return false;
  }
  if (ref.kind == CopyRef::Kind::kMemory && paging_ != nullptr) {
    absl::MutexLock lock(&snaps_->spill_mu);
    snaps_->spill_queue.push_back({core->id, nullptr, page.value(), ref.handle});
  }
  switch (ref.kind) {
    case CopyRef::Kind::kMemory: counters_.copies_memory.Add(); break;
    case CopyRef::Kind::kZero: counters_.copies_zero.Add(); break;
    case CopyRef::Kind::kSlot: counters_.copies_slot.Add(); break;
    case CopyRef::Kind::kLost: counters_.pages_lost.Add(); break;
  }
  return true;
}

void Engine::FreeCopies(const std::vector<CopyRef>& refs) {
  std::vector<uint64_t> frames;
  for (const CopyRef& r : refs) {
    if (r.kind == CopyRef::Kind::kMemory) frames.push_back(r.handle);
    if (r.kind == CopyRef::Kind::kSlot && paging_ != nullptr) {
      paging_->store->FreeSlot(r.handle);
    }
  }
  const uint64_t n = frames.size();
  if (n == 0) return;
  snaps_->pool.Free(std::move(frames));
  ReleaseFrames(n);
}

uint64_t Engine::CopyAside(RegionCore* core, PageIndex first, uint64_t max,
                           uintptr_t addr, bool* retry) {
  PageTable& table = core->table;
  auto captured_present = [](PageEntry e) {
    return e.captured() && e.present();
  };
  {
    // A mark left behind by snapshots released since: nothing to copy.
    absl::MutexLock lock(&core->book_mu);
    if (!core->book.Needs(first.value())) {
      PageEntry cur = table.Get(first);
      while (cur.captured() &&
             !table.CompareExchange(first, &cur,
                                    cur.with_flag(PageEntry::kCapturedBit,
                                                  false))) {
      }
      return 0;
    }
  }
  absl::MutexLock copy_lock(&snaps_->copy_mu);
  PageArena& staging = *snaps_->staging;
  max = std::clamp<uint64_t>(max, 1, staging.pages());
  // Frames for the copies, reserved up front so the fault waits for the
  // evictor (deferred) rather than pushing the region over its budget.
  const uint64_t frames = ReserveFrames(max);
  if (frames == 0) {
    *retry = true;
    return 0;
  }
  std::vector<PageEntry> orig;
  orig.reserve(frames);
  for (uint64_t i = 0; i < frames; ++i) {
    PageEntry cur = table.Get(first + i);
    bool claimed = false;
    while (captured_present(cur)) {
      if (table.CompareExchange(first + i, &cur,
                                cur.with_state(PageState::kFilling))) {
        claimed = true;
        break;
      }
    }
    if (!claimed) break;
    orig.push_back(cur);
  }
  const uint64_t n = orig.size();
  if (n == 0) {
    ReleaseFrames(frames);
    return 0;  // changed under us; the caller looks again
  }
  auto unclaim = [&](uint64_t from) {
    for (uint64_t i = from; i < n; ++i) (void)table.Set(first + i, orig[i]);
  };
  const auto stage = reinterpret_cast<uint64_t>(staging.base());
  const os::UffdResult out = snaps_->uffd->Move(
      stage, addr, n * page_size_, /*wake=*/false, /*allow_src_holes=*/false);
  const uint64_t moved =
      out.ok() ? n : std::min<uint64_t>(n, out.bytes / page_size_);
  unclaim(moved);  // the rest stay protected and fault on their own
  if (moved == 0) {
    ReleaseFrames(frames);
    if (out.outcome == os::UffdOutcome::kRetry) {
      *retry = true;  // an address-space event is pending
      return 0;
    }
    if (out.error == EBUSY) {
      // Shared with a fork() child (or pinned): the kernel will not move
      // it. It is mapped, so copy it where it is: the one place a service
      // thread reads registered memory, and only a page the kernel just
      // reported present and busy.
      (void)table.Set(first, orig[0].with_state(PageState::kFilling));
      absl::StatusOr<CopyRef> ref =
          orig[0].clean()
              ? absl::StatusOr<CopyRef>(CopyRef{CopyRef::Kind::kSlot,
                                                orig[0].slot()})
              : CopyBytes(reinterpret_cast<const std::byte*>(addr), true);
      if (!ref.ok()) {
        RecordError(ref.status());
        ref = CopyRef{CopyRef::Kind::kLost, 0};
      }
      (void)CaptureOrFree(core, first, *ref);
      (void)table.Set(first, PageEntry::Of(orig[0].state())
                                 .with_flag(PageEntry::kDirtyBit, true));
      const os::UffdResult u = uffd_->WriteProtect(addr, page_size_, false, true);
      if (!u.ok()) (void)uffd_->Wake(addr, page_size_);
      return 1;
    }
    // ENOENT: the page is gone (the application dropped or unmapped it;
    // its event is on its way). Its bytes went with it.
    (void)table.Set(first, PageEntry());
    if (orig[0].state() == PageState::kResident) {
      core->resident.fetch_sub(1, std::memory_order_relaxed);
      ReleaseFrames(1);
    } else {
      core->zero_mapped.fetch_sub(1, std::memory_order_relaxed);
    }
    if (orig[0].clean()) {
      (void)CaptureOrFree(core, first, {CopyRef::Kind::kSlot, orig[0].slot()});
    } else {
      (void)CaptureOrFree(core, first, {CopyRef::Kind::kLost, 0});
    }
    if (out.outcome != os::UffdOutcome::kGone) {
      RecordError(out.ToStatus("UFFDIO_MOVE (copy-on-write)"));
    }
    (void)uffd_->Wake(addr, page_size_);
    return 1;
  }

  // Copy each page aside. Frames not used by a memory copy go back.
  uint64_t used = 0;
  for (uint64_t i = 0; i < moved; ++i) {
    const PageEntry o = orig[i];
    CopyRef ref{CopyRef::Kind::kSlot, o.slot()};
    if (!o.clean()) {
      absl::StatusOr<CopyRef> c =
          CopyBytes(staging.page(static_cast<int>(i)), /*charge=*/false);
      if (!c.ok()) {
        RecordError(c.status());
        c = CopyRef{CopyRef::Kind::kLost, 0};
      }
      ref = *c;
      if (ref.kind == CopyRef::Kind::kMemory) ++used;
    }
    // Not kept (no snapshot needed it after all): a memory copy is freed
    // with its frame, a slot is freed as the page is dirty now.
    if (!CaptureOrFree(core, first + i, ref) &&
        ref.kind == CopyRef::Kind::kMemory) {
      --used;
    }
  }
  if (frames > used) ReleaseFrames(frames - used);

  auto published = [&](uint64_t i) {
    return PageEntry::Of(orig[i].state()).with_flag(PageEntry::kDirtyBit, true);
  };
  // A put-back that failed (EAGAIN: an event is pending; or an error): the
  // staging pages hold the only copy of the application's bytes. Keep them
  // aside and fill them back after the next read (RetryPendingFills); the
  // pages stay claimed, so faults on them wait.
  auto defer = [&](uint64_t from, uint64_t to) {
    counters_.copies_deferred.Add(to - from);
    absl::MutexLock lock(&snaps_->pending_mu);
    for (uint64_t i = from; i < to; ++i) {
      PendingFill f;
      f.core = core;
      f.page = first + i;
      f.publish = published(i);
      f.bytes.reset(new std::byte[page_size_]);
      std::memcpy(f.bytes.get(), staging.page(static_cast<int>(i)), page_size_);
      core->io_inflight.fetch_add(1);
      snaps_->pending.push_back(std::move(f));
    }
    snaps_->pending_any.store(true);
    (void)os::AdviseDontNeed(staging.page(static_cast<int>(from)),
                             (to - from) * page_size_);
  };
  // Put them back, writable: the move wakes whoever waits on the run.
  // Pages the application dropped meanwhile stay dropped (their old bytes
  // are the snapshots' versions now): the run goes back up to the first.
  // No event read between the discard checks and the moves (see
  // Engine::EventReadsHeld).
  absl::MutexLockMaybe no_reads(EventReadsHeld());
  uint64_t keep = moved;
  for (uint64_t i = 0; i < moved; ++i) {
    if (table.Get(first + i).discard()) {
      keep = i;
      break;
    }
  }
  auto drop = [&](uint64_t i) {
    (void)table.Set(first + i, PageEntry());
    if (orig[i].state() == PageState::kResident) {
      core->resident.fetch_sub(1, std::memory_order_relaxed);
      ReleaseFrames(1);
    } else {
      core->zero_mapped.fetch_sub(1, std::memory_order_relaxed);
    }
    (void)os::AdviseDontNeed(staging.page(static_cast<int>(i)), page_size_);
    (void)uffd_->Wake(addr + i * page_size_, page_size_);
  };
  for (uint64_t i = keep; i < moved; ++i) {
    if (table.Get(first + i).discard()) drop(i);
  }
  // The rest after the first dropped page go back one by one.
  for (uint64_t i = keep; i < moved; ++i) {
    if (table.Get(first + i).state() != PageState::kFilling) continue;
    const os::UffdResult one = uffd_->Move(
        addr + i * page_size_, stage + i * page_size_, page_size_,
        /*wake=*/true, /*allow_src_holes=*/false);
    if (one.ok()) {
      (void)table.Set(first + i, published(i));
    } else {
      defer(i, i + 1);  // like a failed run below
    }
  }
  const uint64_t run_back = keep;
  const os::UffdResult back =
      run_back == 0 ? os::UffdResult{os::UffdOutcome::kDone, 0, 0}
                 : uffd_->Move(addr, stage, run_back * page_size_, /*wake=*/true,
                               /*allow_src_holes=*/false);
  const uint64_t returned =
      back.ok() ? run_back
                : std::min<uint64_t>(run_back, back.bytes / page_size_);
  for (uint64_t i = 0; i < returned; ++i) {
    (void)table.Set(first + i, published(i));
  }
  if (returned < run_back) {
    defer(returned, run_back);
    if (back.outcome != os::UffdOutcome::kRetry &&
        back.outcome != os::UffdOutcome::kGone) {
      RecordError(back.ToStatus("UFFDIO_MOVE (copy-on-write put-back)"));
    }
  }
  return moved;
}

size_t Engine::SpillCopies(size_t n) {
  if (snaps_ == nullptr || paging_ == nullptr) return 0;
  Snapshots& sn = *snaps_;
  std::vector<BackingStore::Request> writes;
  while (writes.size() < n) {
    Snapshots::Spill s;
    {
      absl::MutexLock lock(&sn.spill_mu);
      if (sn.spill_queue.empty()) break;
      s = sn.spill_queue.front();
      sn.spill_queue.pop_front();
    }
    s.core = PinRegion(s.region_id);
    if (s.core == nullptr) continue;  // unmapped: its copies are gone
    bool held;
    {
      absl::MutexLock lock(&s.core->book_mu);
      held = s.core->book.Holds(s.page, {CopyRef::Kind::kMemory, s.handle});
    }
    if (!held) {  // released since
      Unpin(s.core);
      continue;
    }
    absl::StatusOr<uint64_t> slot = paging_->store->AllocateSlot();
    if (!slot.ok()) {
      Unpin(s.core);
      absl::MutexLock lock(&sn.spill_mu);
      sn.spill_queue.push_front({s.region_id, nullptr, s.page, s.handle});
      break;
    }
    s.slot = *slot;
    uint64_t index;
    {
      absl::MutexLock lock(&sn.spill_mu);
      if (sn.spill_free_ops.empty()) {
        index = sn.spill_ops.size();
        sn.spill_ops.push_back(s);
      } else {
        index = sn.spill_free_ops.back();
        sn.spill_free_ops.pop_back();
        sn.spill_ops[index] = s;
      }
    }
    writes.push_back({BackingStore::Request::Op::kWrite, s.slot,
                      sn.pool.page(s.handle), kSpillTagBit | index});
  }
  if (writes.empty()) return 0;
  sn.spills_inflight.fetch_add(static_cast<int64_t>(writes.size()));
  if (absl::Status st = paging_->store->Submit(writes); !st.ok()) {
    RecordError(st);
    for (const auto& w : writes) OnSpillDone(w.tag & ~kSpillTagBit, EIO);
    return 0;
  }
  if (paging_->store->completion_fd() < 0) DrainCompletions();
  return writes.size();
}

void Engine::OnSpillDone(uint64_t index, int error) {
  Snapshots& sn = *snaps_;
  Snapshots::Spill s;
  {
    absl::MutexLock lock(&sn.spill_mu);
    s = sn.spill_ops[index];
    sn.spill_free_ops.push_back(index);
  }
  sn.spills_inflight.fetch_sub(1);
  bool replaced = false;
  if (error == 0) {
    absl::MutexLock lock(&s.core->book_mu);
    replaced = s.core->book.Replace(s.page, {CopyRef::Kind::kMemory, s.handle},
                                    {CopyRef::Kind::kSlot, s.slot});
  }
  if (!replaced) {
    // Failed (the copy stays in memory; it may be tried again) or released
    // meanwhile (its memory went with it).
    paging_->store->FreeSlot(s.slot);
    if (error != 0) {
      absl::MutexLock lock(&sn.spill_mu);
      sn.spill_queue.push_back({s.region_id, nullptr, s.page, s.handle});
    }
    Unpin(s.core);
    return;
  }
  counters_.copies_spilled.Add();
  absl::MutexLock lock(&sn.spill_mu);
  sn.spilled.push_back(s);  // freed by FreeSpilledMemory, region pinned
}

void Engine::FreeSpilledMemory() {
  if (snaps_ == nullptr) return;
  std::vector<Snapshots::Spill> ready;
  {
    absl::MutexLock lock(&snaps_->spill_mu);
    auto& v = snaps_->spilled;
    auto keep = std::partition(v.begin(), v.end(), [](const auto& s) {
      return s.core->snap_readers.load() > 0;
    });
    ready.assign(keep, v.end());
    v.erase(keep, v.end());
  }
  if (ready.empty()) return;
  std::vector<uint64_t> frames;
  for (const auto& s : ready) frames.push_back(s.handle);
  snaps_->pool.Free(std::move(frames));
  ReleaseFrames(ready.size());
  for (const auto& s : ready) Unpin(s.core);
}

absl::Status Engine::CopyAsideRange(RegionCore* core, PageIndex first,
                                    uint64_t count) {
  for (int attempt = 0;; ++attempt) {
    bool retry = false;
    {
      absl::ReaderMutexLock snap_lock(&core->snap_mu);
      {
        absl::MutexLock lock(&core->book_mu);
        if (!core->book.any_live()) return absl::OkStatus();
      }
      for (uint64_t i = 0; i < count && !retry;) {
        const PageIndex p = first + i;
        const PageEntry e = core->table.Get(p);
        const uintptr_t addr = AddressOf(core, p);
        if (!e.captured() || !e.present() || addr == 0) {
          ++i;
          continue;
        }
        // The run CopyAside may take: contiguous in the address space too.
        uint64_t run = 1;
        while (run < RegionCore::kMaxCopyAroundPages && i + run < count &&
               AddressOf(core, p + run) == addr + run * page_size_) {
          ++run;
        }
        i += std::max<uint64_t>(1, CopyAside(core, p, run, addr, &retry));
      }
    }
    if (!retry) return absl::OkStatus();
    if (attempt >= 10000) {
      return absl::UnavailableError(absl::StrFormat(
          "could not copy pages of region '%s' aside for its snapshots "
          "(no frame free, or the address space keeps changing)",
          core->region->name()));
    }
    // An event is pending (the service threads apply it) or no frame is
    // free (the evictor makes one).
    service_->SyncEvents();
    absl::SleepFor(absl::Microseconds(100));
  }
}

void Engine::RetryPendingFills() {
  if (snaps_ == nullptr || !snaps_->pending_any.load()) return;
  std::vector<PendingFill> fills;
  {
    absl::MutexLock lock(&snaps_->pending_mu);
    fills.swap(snaps_->pending);
    snaps_->pending_any.store(false);
  }
  std::vector<PendingFill> again;
  for (PendingFill& f : fills) {
    RegionCore* core = f.core;
    absl::ReaderMutexLock snap_lock(&core->snap_mu);
    // No event read between the discard check and the copy (see
    // Engine::EventReadsHeld).
    absl::MutexLockMaybe no_reads(EventReadsHeld());
    // A snapshot taken meanwhile marked the claimed page: fill it
    // protected and keep the mark (its version is these very bytes).
    const PageEntry claimed = core->table.Get(f.page);
    const bool captured = claimed.captured();
    const uintptr_t addr = AddressOf(core, f.page);
    os::UffdResult r{os::UffdOutcome::kGone, 0, ENOENT};
    if (claimed.discard()) {
      // The application dropped it meanwhile: leave it dropped (below).
    } else if (addr != 0) {
      r = uffd_->Copy(addr, f.bytes.get(), page_size_, /*wake=*/true,
                      /*write_protect=*/captured);
    }
    if (r.outcome == os::UffdOutcome::kRetry ||
        r.outcome == os::UffdOutcome::kFailed) {
      if (r.outcome == os::UffdOutcome::kFailed) {
        RecordError(r.ToStatus("UFFDIO_COPY (copy-on-write put-back)"));
      }
      again.push_back(std::move(f));
      continue;
    }
    if (r.ok() || r.outcome == os::UffdOutcome::kExists) {
      if (!r.ok()) (void)uffd_->Wake(addr, page_size_);
      (void)core->table.Set(
          f.page, captured ? f.publish.with_flag(PageEntry::kCapturedBit, true)
                               .with_flag(PageEntry::kWriteProtectedBit, true)
                           : f.publish);
    } else {
      // Unmapped meanwhile: the page went with its mapping.
      (void)core->table.Set(f.page, PageEntry());
      if (f.publish.state() == PageState::kResident) {
        core->resident.fetch_sub(1, std::memory_order_relaxed);
        ReleaseFrames(1);
      } else {
        core->zero_mapped.fetch_sub(1, std::memory_order_relaxed);
      }
      if (addr != 0) (void)uffd_->Wake(addr, page_size_);
    }
    core->io_inflight.fetch_sub(1);
  }
  if (!again.empty()) {
    absl::MutexLock lock(&snaps_->pending_mu);
    for (PendingFill& f : again) snaps_->pending.push_back(std::move(f));
    snaps_->pending_any.store(true);
  }
}

absl::StatusOr<std::unique_ptr<Snapshot>> Engine::TakeSnapshot(
    Region* region) {
  if (InForkChild()) {
    return absl::FailedPreconditionError(
        "Region::TakeSnapshot called in a fork() child");
  }
  if (snaps_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshots need userfaultfd write-protect and UFFDIO_MOVE; this "
        "kernel lacks ",
        snapshots_missing_));
  }
  const uint64_t start = MonotonicNanos();
  // An application munmap/madvise that returned must be reflected first.
  service_->SyncEvents();
  RegionCore* core = nullptr;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    auto it = regions_.find(region);
    if (it == regions_.end()) {
      return absl::NotFoundError(absl::StrFormat(
          "Region::TakeSnapshot: %p is not a live region of this runtime",
          region));
    }
    core = it->second.get();
    core->io_inflight.fetch_add(1);
  }
  uint64_t epoch;
  {
    absl::MutexLock lock(&core->book_mu);
    epoch = core->book.BeginPending();
  }
  // The sweep. The page range is cut into chunks that the calling thread
  // and, on a large region, one helper thread take in turn from a shared
  // cursor: each marks its chunk's pages and builds the chunk's
  // write-protect runs (RunBuilder). Long runs are protected at once by
  // whichever thread built them (the kernel takes mmap_lock shared for
  // UFFDIO_WRITEPROTECT, so two page-table walks run in parallel); short
  // ones wait for the calling thread alone, after the helper has finished
  // (kParallelRunPages says why).
  struct Chunk {
    std::vector<PageRun> present;  // non-absent pages: the snapshot's set
    std::vector<PageRun> protect;  // runs left for the calling thread
    uint64_t marked = 0;
    bool again = false;
    os::UffdResult failure{os::UffdOutcome::kDone, 0, 0};
  };
  // A run may span absent pages only if the kernel leaves them alone. With
  // WP_UNPOPULATED (which WantedFeatures does not request, but a caller may
  // hand Engine::Create a descriptor that has it) it puts a uffd-wp marker
  // in each. A touch of a marker is a missing fault, and UFFDIO_ZEROPAGE,
  // unlike UFFDIO_COPY, refuses to replace a marker (EEXIST), so a reader
  // of the page would fault forever (see SnapshotSweepTest).
  const bool bridge_holes = !uffd_->has(os::uffd_feature::kWpUnpopulated);
  std::vector<PageRun> present;
  uint64_t marked = 0;
  // Set after an attempt that stopped at kRetry: it may have marked pages
  // write-protected in the table and stopped before their ioctl, so the
  // next attempt protects every present page, not only the unmarked ones.
  bool retrying = false;
  for (;;) {
    std::vector<AddressMap<RegionCore*>::Interval> intervals;
    {
      absl::ReaderMutexLock lock(&map_mu_);
      intervals = map_.IntervalsOf(core);
    }
    // By first page, so a run finds the intervals that map it.
    std::sort(intervals.begin(), intervals.end(),
              [](const auto& a, const auto& b) {
                return a.first_page.value() < b.first_page.value();
              });
    // Protects `run` where the region is mapped now. Pages without a PTE
    // (absent, swapped, in flight) are skipped by the kernel; they come
    // back protected (swap-in) or are captured by whoever completes them.
    // Stops at kRetry (the sweep starts over) and kFailed; a part unmapped
    // meanwhile (kGone) is skipped, its UNMAP event is on its way.
    auto protect = [&](const PageRun& run) -> os::UffdResult {
      auto it = std::upper_bound(
          intervals.begin(), intervals.end(), run.first,
          [](uint64_t p, const auto& iv) { return p < iv.first_page.value(); });
      if (it != intervals.begin()) --it;
      for (; it != intervals.end(); ++it) {
        const uint64_t iv_first = it->first_page.value();
        if (iv_first >= run.first + run.count) break;
        const uint64_t iv_end = iv_first + (it->end - it->start) / page_size_;
        const uint64_t a = std::max(run.first, iv_first);
        const uint64_t b = std::min(run.first + run.count, iv_end);
        if (a >= b) continue;
        const os::UffdResult r = uffd_->WriteProtect(
            it->start + (a - iv_first) * page_size_, (b - a) * page_size_,
            /*protect=*/true, /*wake=*/false);
        if (r.outcome == os::UffdOutcome::kRetry ||
            r.outcome == os::UffdOutcome::kFailed) {
          return r;
        }
      }
      return {os::UffdOutcome::kDone, 0, 0};
    };
    // Records a stopping outcome in `c`; true if it was one.
    auto stopped = [](Chunk* c, const os::UffdResult& r) {
      if (r.outcome == os::UffdOutcome::kRetry) c->again = true;
      if (r.outcome == os::UffdOutcome::kFailed) c->failure = r;
      return !r.ok();
    };
    const std::vector<uint64_t> bounds = SweepChunkBounds(core->pages);
    const uint64_t n_chunks = bounds.size() - 1;
    std::vector<Chunk> chunks(n_chunks);
    std::atomic<uint64_t> cursor{0};
    auto sweep = [&] {
      for (uint64_t c = cursor.fetch_add(1); c < n_chunks;
           c = cursor.fetch_add(1)) {
        Chunk& chunk = chunks[c];
        const uint64_t first = bounds[c];
        RunBuilder runs(bridge_holes);
        // Filled here, stored once: chunks next to each other in `chunks`
        // belong to the two threads (a counter bumped per page there made
        // them fight over one cache line and doubled the marking time).
        std::vector<PageRun> present_runs;
        uint64_t marked_pages = 0;
        core->table.ForEachNonAbsentInRangeInline(
            PageIndex(first), bounds[c + 1] - first,
            [&](PageIndex p, PageEntry cur, PageTable::EntryRef ref) {
              bool protect = false;
              for (;;) {
                // A page the application dropped while it was in flight
                // is absent to the snapshot: its claimant only finishes
                // the drop.
                if (cur.state() == PageState::kAbsent || cur.discard()) {
                  runs.Break();
                  return;
                }
                // A page still protected from an earlier snapshot (never
                // written since) needs no second ioctl: an incremental
                // snapshot costs what was written since the last one.
                protect =
                    cur.present() && (retrying || !cur.write_protected());
                PageEntry want = cur.with_flag(PageEntry::kCapturedBit, true);
                if (cur.present()) {
                  want = want.with_flag(PageEntry::kWriteProtectedBit, true);
                }
                if (want == cur || ref.CompareExchange(&cur, want)) break;
              }
              AppendPage(&present_runs, p.value());
              if (protect) {
                runs.Protect(p.value());
              } else {
                runs.Break();
              }
              ++marked_pages;
            });
        chunk.present = std::move(present_runs);
        chunk.marked = marked_pages;
        chunk.protect = runs.Take();
        if (runs.pages() < kParallelRunPages * chunk.protect.size()) continue;
        for (const PageRun& run : chunk.protect) {
          if (stopped(&chunk, protect(run))) break;
        }
        chunk.protect.clear();
      }
    };
    bool again = false;
    {
      absl::MutexLock snap_lock(&core->snap_mu);
      SignalFillFence fence(core);
      {
        // Up to 32 MiB a second thread costs more than it saves.
        std::optional<SweepHelper> helper;
        if (core->pages > 2 * kMinSweepChunkPages) helper.emplace(sweep);
        sweep();
      }
      // The short runs, now that the helper is idle: one call after another,
      // no CPU left to interrupt (kParallelRunPages).
      bool stop = false;
      for (Chunk& chunk : chunks) {
        stop |= chunk.again || chunk.failure.outcome != os::UffdOutcome::kDone;
        for (size_t i = 0; !stop && i < chunk.protect.size(); ++i) {
          stop = stopped(&chunk, protect(chunk.protect[i]));
        }
      }
      present.clear();
      marked = 0;
      for (const Chunk& chunk : chunks) {
        again |= chunk.again;
        marked += chunk.marked;
        for (const PageRun& r : chunk.present) {
          if (!present.empty() &&
              present.back().first + present.back().count == r.first) {
            present.back().count += r.count;
          } else {
            present.push_back(r);
          }
        }
        if (chunk.failure.outcome == os::UffdOutcome::kFailed) {
          const os::UffdResult& r = chunk.failure;
          RecordError(r.ToStatus("UFFDIO_WRITEPROTECT (snapshot)"));
          std::vector<CopyRef> freed;
          {
            absl::MutexLock lock(&core->book_mu);
            core->book.Release(epoch, &freed);
          }
          FreeCopies(freed);
          Unpin(core);
          return r.ToStatus(absl::StrFormat(
              "write-protecting region '%s' for a snapshot",
              core->region->name()).c_str());
        }
      }
      if (!again) {
        absl::MutexLock lock(&core->book_mu);
        core->book.SetPresent(epoch, present);
      }
    }
    if (!again) break;
    // An address-space event is pending: let the service threads apply it
    // (they may need snap_mu), then sweep again; marks are idempotent.
    retrying = true;
    service_->SyncEvents();
  }
  counters_.snapshots_taken.Add();
  counters_.pages_protected.Add(marked);
  counters_.snapshot_pause.Record(MonotonicNanos() - start);
  auto snap = std::unique_ptr<Snapshot>(
      new Snapshot(link_, core->id, epoch, core->size, page_size_));
  Unpin(core);
  return snap;
}

absl::Status Engine::ReadSlot(uint64_t slot, std::byte* out) {
  if (paging_ == nullptr) {
    return absl::FailedPreconditionError("no swap store to read a slot from");
  }
  Paging& p = *paging_;
  int buffer = PageArena::kNone;
  for (int i = 0; buffer == PageArena::kNone; ++i) {
    buffer = p.buffers->Acquire();
    if (buffer == PageArena::kNone) {
      if (i > 100000) {
        return absl::UnavailableError("no swap-in buffer free for 10 s");
      }
      DrainCompletions();
      absl::SleepFor(absl::Microseconds(100));
    }
  }
  // The completion comes back through HandleCompletions like any read;
  // IoOp::sync_result marks it synchronous (OnReadDone only stores the
  // result). Completions are reaped here too: a store without a
  // completion fd has nobody else to reap them.
  std::atomic<int> done{-1};
  IoOp op;
  op.slot = slot;
  op.submit_ns = MonotonicNanos();
  op.sync_result = &done;
  p.reads[buffer] = op;
  std::vector<BackingStore::Request> reads{
      {BackingStore::Request::Op::kRead, slot, p.buffers->page(buffer),
       kReadTagBit | static_cast<uint64_t>(buffer)}};
  if (absl::Status s = p.store->Submit(reads); !s.ok()) {
    p.buffers->Release(buffer);
    return s;
  }
  // Spin on the completion for a moment (a read from the page cache or a
  // fast device completes in tens of microseconds; a sleep tick costs more
  // here), then back off. Another thread may reap it: `done` tells.
  for (int spins = 0; done.load() == -1; ++spins) {
    DrainCompletions();
    if (done.load() != -1) break;
    if (spins < 200) {
      std::this_thread::yield();
    } else {
      absl::SleepFor(absl::Microseconds(20));
    }
  }
  const int error = done.load();
  if (error == 0) std::memcpy(out, p.buffers->page(buffer), page_size_);
  p.buffers->Release(buffer);
  if (error != 0) {
    return absl::DataLossError(absl::StrFormat(
        "reading swap slot %d for a snapshot failed (errno %d)", slot, error));
  }
  return absl::OkStatus();
}

absl::Status Engine::ReadSnapshotPage(RegionCore* core, uint64_t epoch,
                                      PageIndex page, std::byte* out,
                                      bool* zero) {
  *zero = false;
  auto find = [&](SnapshotBook::Found* f) -> absl::Status {
    absl::MutexLock lock(&core->book_mu);
    if (!core->book.live(epoch)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "snapshot %d of region '%s' was released", epoch,
          core->region->name()));
    }
    *f = core->book.Find(epoch, page.value());
    return absl::OkStatus();
  };
  auto read_copy = [&](CopyRef ref) -> absl::Status {
    switch (ref.kind) {
      case CopyRef::Kind::kZero:
        *zero = true;
        return absl::OkStatus();
      case CopyRef::Kind::kMemory:
        std::memcpy(out, snaps_->pool.page(ref.handle), page_size_);
        return absl::OkStatus();
      case CopyRef::Kind::kSlot:
        return ReadSlot(ref.handle, out);
      case CopyRef::Kind::kLost:
        break;
    }
    return absl::DataLossError(absl::StrFormat(
        "page %d of region '%s' was discarded by the application (madvise or "
        "munmap) while snapshot %d still needed it",
        page.value(), core->region->name(), epoch));
  };
  SnapshotBook::Found f;
  UPAGER_RETURN_IF_ERROR(find(&f));
  if (f.where == SnapshotBook::Found::Where::kAbsent) {
    *zero = true;
    return absl::OkStatus();
  }
  if (f.where == SnapshotBook::Found::Where::kCopy) return read_copy(f.ref);
  // Unchanged since the snapshot: the live page, or its swap slot (which a
  // captured page keeps until a version takes it over).
  const PageEntry cur = core->table.Get(page);
  if (cur.state() == PageState::kSwapped) {
    UPAGER_RETURN_IF_ERROR(ReadSlot(cur.slot(), out));
  } else if (cur.state() == PageState::kAbsent) {
    // Dropped since; the drop recorded a version, found below.
    std::memset(out, 0, page_size_);
  } else {
    const uintptr_t addr = AddressOf(core, page);
    if (addr == 0) {
      std::memset(out, 0, page_size_);  // unmapped: its version is below
    } else {
      // This thread is the application's: touching the region is allowed
      // (a fault here is served like any other).
      std::memcpy(out, reinterpret_cast<const void*>(addr), page_size_);
    }
  }
  // Any change is preceded by its capture, so if the page still has no
  // version for this snapshot, what we read is the point-in-time bytes.
  UPAGER_RETURN_IF_ERROR(find(&f));
  if (f.where == SnapshotBook::Found::Where::kCopy) return read_copy(f.ref);
  return absl::OkStatus();
}

absl::Status Engine::ReadSnapshot(uint32_t region_id, uint64_t epoch,
                                  size_t offset, absl::Span<std::byte> out) {
  RegionCore* core = PinRegion(region_id);
  if (core == nullptr) {
    return absl::FailedPreconditionError(
        "Snapshot::Read: the snapshot's region was unmapped");
  }
  absl::Status result;
  {
    ReaderPin reader(core);
    if (offset > core->size || out.size() > core->size - offset) {
      result = absl::InvalidArgumentError(absl::StrFormat(
          "Snapshot::Read: [offset=%d, length=%d) is outside the snapshot of "
          "region '%s' (%d bytes)",
          offset, out.size(), core->region->name(), core->size));
    }
    std::unique_ptr<std::byte[]> page_buf(new std::byte[page_size_]);
    size_t done = 0;
    while (result.ok() && done < out.size()) {
      const size_t at = offset + done;
      const size_t in_page = at % page_size_;
      const size_t n = std::min(out.size() - done, page_size_ - in_page);
      bool zero = false;
      result = ReadSnapshotPage(core, epoch, PageIndex(at / page_size_),
                                page_buf.get(), &zero);
      if (!result.ok()) break;
      if (zero) {
        std::memset(out.data() + done, 0, n);
      } else {
        std::memcpy(out.data() + done, page_buf.get() + in_page, n);
      }
      done += n;
    }
  }
  Unpin(core);
  return result;
}

absl::Status Engine::ForEachSnapshotPage(
    uint32_t region_id, uint64_t epoch,
    const std::function<absl::Status(uint64_t, const std::byte*)>& fn) {
  RegionCore* core = PinRegion(region_id);
  if (core == nullptr) {
    return absl::FailedPreconditionError(
        "Snapshot::ForEachPage: the snapshot's region was unmapped");
  }
  absl::Status result;
  {
    ReaderPin reader(core);
    std::vector<PageRun> present;
    {
      absl::MutexLock lock(&core->book_mu);
      if (core->book.live(epoch)) present = core->book.present(epoch);
    }
    std::unique_ptr<std::byte[]> buf(new std::byte[page_size_]);
    size_t next_run = 0;
    for (uint64_t p = 0; p < core->pages && result.ok(); ++p) {
      while (next_run < present.size() &&
             present[next_run].first + present[next_run].count <= p) {
        ++next_run;
      }
      const bool in_run =
          next_run < present.size() && present[next_run].first <= p;
      bool zero = true;
      if (in_run || p == 0) {  // page 0 also checks the snapshot is live
        result = ReadSnapshotPage(core, epoch, PageIndex(p), buf.get(), &zero);
        if (!result.ok()) break;
      }
      result = fn(p, zero ? nullptr : buf.get());
    }
  }
  Unpin(core);
  return result;
}

absl::Status Engine::ForEachChanged(uint32_t region_id, uint64_t base,
                                    uint64_t epoch,
                                    const std::function<void(uint64_t)>& fn) {
  RegionCore* core = PinRegion(region_id);
  if (core == nullptr) {
    return absl::FailedPreconditionError(
        "Snapshot::ForEachChangedSince: the snapshot's region was unmapped");
  }
  std::vector<uint64_t> pages;
  absl::Status result;
  {
    absl::MutexLock lock(&core->book_mu);
    if (!core->book.live(base) || !core->book.live(epoch)) {
      result = absl::FailedPreconditionError(absl::StrFormat(
          "Snapshot::ForEachChangedSince: snapshot %d or %d of region '%s' "
          "was released",
          base, epoch, core->region->name()));
    } else {
      core->book.ForEachChanged(base, epoch,
                                [&](uint64_t p) { pages.push_back(p); });
    }
  }
  Unpin(core);
  if (result.ok()) {
    for (uint64_t p : pages) fn(p);
  }
  return result;
}

bool Engine::SnapshotLive(uint32_t region_id, uint64_t epoch) {
  RegionCore* core = PinRegion(region_id);
  if (core == nullptr) return false;
  bool live;
  {
    absl::MutexLock lock(&core->book_mu);
    live = core->book.live(epoch);
  }
  Unpin(core);
  return live;
}

void Engine::Unprotect(RegionCore* core) {
  // Clear the marks first: a page whose protection cannot be lifted here
  // (an event pending) just takes one write fault that lifts it then.
  std::vector<PageRun> runs;
  core->table.ForEachNonAbsent([&](PageIndex p, PageEntry cur) {
    while (cur.captured()) {
      PageEntry want = cur.with_flag(PageEntry::kCapturedBit, false);
      // A clean page stays protected: its protection tracks writes for
      // the clean drop (runtime/paging.cc).
      const bool lift = cur.present() && !cur.clean();
      if (lift) want = want.with_flag(PageEntry::kWriteProtectedBit, false);
      if (core->table.CompareExchange(p, &cur, want)) {
        if (!lift) break;
        if (!runs.empty() && runs.back().first + runs.back().count == p.value()) {
          ++runs.back().count;
        } else {
          runs.push_back({p.value(), 1});
        }
        break;
      }
    }
  });
  for (const PageRun& r : runs) {
    for (uint64_t i = 0; i < r.count;) {
      const uintptr_t addr = AddressOf(core, PageIndex(r.first + i));
      uint64_t n = 1;
      while (i + n < r.count &&
             AddressOf(core, PageIndex(r.first + i + n)) == addr + n * page_size_) {
        ++n;
      }
      if (addr != 0) {
        (void)uffd_->WriteProtect(addr, n * page_size_, /*protect=*/false,
                                  /*wake=*/true);
      }
      i += n;
    }
  }
}

absl::Status Engine::ReleaseSnapshot(uint32_t region_id, uint64_t epoch) {
  RegionCore* core = PinRegion(region_id);
  if (core == nullptr) return absl::OkStatus();  // unmapped: all freed
  std::vector<CopyRef> freed;
  bool released = false;
  {
    absl::MutexLock snap_lock(&core->snap_mu);
    bool none_left;
    {
      absl::MutexLock lock(&core->book_mu);
      released = core->book.live(epoch);
      core->book.Release(epoch, &freed);
      none_left = !core->book.any_live();
    }
    if (released && none_left) Unprotect(core);
  }
  // Readers that found a version before the release finish with it.
  while (core->snap_readers.load() > 0) absl::SleepFor(absl::Microseconds(20));
  FreeCopies(freed);
  if (released) counters_.snapshots_released.Add();
  Unpin(core);
  return absl::OkStatus();
}

absl::Status Engine::Restore(Region* region, const Snapshot& snapshot) {
  if (InForkChild()) {
    return absl::FailedPreconditionError(
        "Region::Restore called in a fork() child");
  }
  if (snapshot.link_ != link_) {
    return absl::InvalidArgumentError(
        "Region::Restore: the snapshot belongs to another Runtime");
  }
  if (snapshot.size() != region->size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Region::Restore: snapshot of %d bytes does not fit region '%s' of "
        "%d bytes",
        snapshot.size(), region->name(), region->size()));
  }
  service_->SyncEvents();
  RegionCore* core = PinRegion(snapshot.region_id_);
  if (core == nullptr || core->region != region) {
    if (core != nullptr) Unpin(core);
    return absl::InvalidArgumentError(absl::StrFormat(
        "Region::Restore: snapshot %d was taken of another region than '%s' "
        "(or that region was unmapped)",
        snapshot.id(), region->name()));
  }
  const uint64_t epoch = snapshot.id();
  // The pages to rewrite: those with a version for this snapshot (changed
  // since), and those present now that were absent then.
  std::vector<uint64_t> now;  // non-absent pages
  core->table.ForEachNonAbsent(
      [&](PageIndex p, PageEntry) { now.push_back(p.value()); });
  std::vector<uint64_t> pages;
  absl::Status result;
  {
    absl::MutexLock lock(&core->book_mu);
    if (!core->book.live(epoch)) {
      result = absl::FailedPreconditionError(absl::StrFormat(
          "Region::Restore: snapshot %d of region '%s' was released", epoch,
          region->name()));
    } else {
      core->book.ForEachVersion([&](uint64_t p, SnapshotBook::Epoch lo,
                                    SnapshotBook::Epoch hi, CopyRef) {
        if (lo <= epoch && epoch <= hi) pages.push_back(p);
      });
      for (uint64_t p : now) {
        if (!core->book.Present(epoch, p)) pages.push_back(p);
      }
    }
  }
  std::sort(pages.begin(), pages.end());
  pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
  {
    ReaderPin reader(core);
    std::unique_ptr<std::byte[]> buf(new std::byte[page_size_]);
    uint64_t restored = 0;
    for (uint64_t p : pages) {
      if (!result.ok()) break;
      bool zero = false;
      result = ReadSnapshotPage(core, epoch, PageIndex(p), buf.get(), &zero);
      if (!result.ok()) break;
      const uintptr_t addr = AddressOf(core, PageIndex(p));
      if (addr == 0) continue;  // the application unmapped it
      auto* dst = reinterpret_cast<std::byte*>(addr);
      // Written from this (application) thread: a page a newer snapshot
      // still needs is copied aside by the write fault like any write.
      if (zero) {
        if (core->table.Get(PageIndex(p)).state() == PageState::kAbsent ||
            AllZero(dst, page_size_)) {
          continue;
        }
        std::memset(dst, 0, page_size_);
      } else {
        std::memcpy(dst, buf.get(), page_size_);
      }
      ++restored;
    }
    counters_.restore_pages.Add(restored);
  }
  Unpin(core);
  return result;
}

}  // namespace upager::internal
