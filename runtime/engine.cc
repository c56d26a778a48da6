#include "runtime/engine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/option_checks.h"
#include "runtime/os/errno_status.h"
#include "runtime/os/memory.h"
#include "runtime/os/wakeup.h"
#include "upager/status_macros.h"

namespace upager::internal {
namespace {

std::vector<os::UffdOpenPath> OpenPaths(UffdOpenMode mode) {
  switch (mode) {
    case UffdOpenMode::kSyscall:
      return {os::UffdOpenPath::kSyscall};
    case UffdOpenMode::kDevice:
      return {os::UffdOpenPath::kDevice};
    case UffdOpenMode::kUserModeOnly:
      return {os::UffdOpenPath::kSyscallUserModeOnly};
    case UffdOpenMode::kAuto:
      break;
  }
  return {os::UffdOpenPath::kSyscall, os::UffdOpenPath::kDevice,
          os::UffdOpenPath::kSyscallUserModeOnly};
}

LatencySummary ToSummary(const LatencyHistogram& h) {
  const LatencySnapshot l = h.Summarize();
  return {l.count, l.p50_ns, l.p90_ns, l.p99_ns, l.max_ns,
          l.count ? static_cast<double>(l.sum_ns) / l.count : 0.0};
}

}  // namespace

// Holds every live Engine's locks across fork(), so that a child never
// inherits one locked by a parent thread that does not exist there (a
// service thread applying a large REMOVE, say): the child may then still
// call stats() and destroy the Runtime. The forking thread takes
// registry -> map_mu_ -> error_mu_, the one lock order used anywhere.
struct ForkGuard {
  static absl::Mutex mu;
  static std::vector<Engine*>* live ABSL_GUARDED_BY(mu);

  static void Register(Engine* e) {
    static const int registered = os::AtFork(&Prepare, &Release, &Release);
    (void)registered;
    absl::MutexLock lock(&mu);
    if (live == nullptr) live = new std::vector<Engine*>();
    live->push_back(e);
  }
  static void Unregister(Engine* e) {
    absl::MutexLock lock(&mu);
    live->erase(std::find(live->begin(), live->end(), e));
  }
  static void Prepare() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    mu.Lock();
    if (live == nullptr) return;
    for (Engine* e : *live) {
      e->map_mu_.Lock();
      e->error_mu_.Lock();
    }
  }
  static void Release() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (live != nullptr) {
      for (Engine* e : *live) {
        e->error_mu_.Unlock();
        e->map_mu_.Unlock();
      }
    }
    mu.Unlock();
  }
};
ABSL_CONST_INIT absl::Mutex ForkGuard::mu(absl::kConstInit);
std::vector<Engine*>* ForkGuard::live = nullptr;

uint64_t Engine::WantedFeatures() {
  namespace f = os::uffd_feature;
  // EVENT_FORK is deliberately not requested: a fork() child then gets a
  // plain private copy of every region (see README, "fork()"). SIGBUS and
  // WP_ASYNC change fault semantics for the whole descriptor and are only
  // for the modes that use them. WP_UNPOPULATED is not requested either:
  // upager's page table already knows which pages were never touched, and
  // with it the kernel puts a uffd-wp marker in every PTE-less page a
  // UFFDIO_WRITEPROTECT range covers (allocating page tables for the whole
  // range). A touch of a marker is a missing fault, and UFFDIO_ZEROPAGE
  // (unlike COPY) refuses to replace a marker: EEXIST, so a reader of such
  // a page would fault forever.
  return f::kEventRemove | f::kEventUnmap | f::kEventRemap | f::kThreadId |
         f::kPagefaultFlagWp | f::kPoison | f::kMove;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(
    const RuntimeOptions& options, std::unique_ptr<os::Uffd> uffd) {
  UPAGER_RETURN_IF_ERROR(CheckRuntimeOptions(options, os::PageSize()));
  const bool signal = options.fault_mode == FaultMode::kSignal;
  if (uffd == nullptr) {
    os::UffdOpenOptions open;
    open.paths = OpenPaths(options.uffd_open);
    open.wanted_features =
        WantedFeatures() | (signal ? os::uffd_feature::kSigbus : 0);
    if (signal) open.required_features = os::uffd_feature::kSigbus;
    UPAGER_ASSIGN_OR_RETURN(uffd, os::OpenUffd(open));
  }
  if (signal && !uffd->has(os::uffd_feature::kSigbus)) {
    return absl::FailedPreconditionError(
        "RuntimeOptions.fault_mode = kSignal needs UFFD_FEATURE_SIGBUS, "
        "which this userfaultfd did not grant");
  }
  // UFFDIO_COPY reads its source with copy_from_user; an untouched
  // read-only anonymous mapping reads as zeros and costs no memory.
  UPAGER_ASSIGN_OR_RETURN(
      void* zero, os::MapAnonymous(RuntimeOptions::kMaxFaultAroundPages *
                                       os::PageSize(),
                                   os::Protection::kRead));
  std::unique_ptr<Engine> e(new Engine(options, std::move(uffd), zero));
  {
    absl::MutexLock lock(&e->link_->mu);
    e->link_->engine = e.get();
  }
  // Regions are registered for write-protect whenever the kernel has it:
  // snapshots and clean-page tracking both need it, and a range's modes are
  // fixed at registration.
  e->track_writes_ = e->uffd_->has(os::uffd_feature::kPagefaultFlagWp);
  UPAGER_RETURN_IF_ERROR(e->StartSnapshots());
  if (signal) UPAGER_RETURN_IF_ERROR(e->StartSignalMode());
  // Paging first: the service threads poll the store's completion fd.
  if (options.resident_budget_bytes != 0) {
    UPAGER_RETURN_IF_ERROR(e->StartPaging());
  }
  e->StartZeroPool();  // after paging: it charges the budget
  const std::vector<int> cpus = os::AllowedCpus();
  const int threads =
      options.service_threads > 0
          ? options.service_threads
          : std::clamp<int>(static_cast<int>(cpus.size()), 1,
                            RuntimeOptions::kAutoServiceThreads);
  FaultService::Config config;
  config.threads = threads;
  config.batch = options.max_events_per_read;
  if (options.pin_service_threads) config.cpus = cpus;
  config.idle_priority = options.service_idle_priority;
  config.spin_ns = options.service_spin_ns;
  config.read_spin_ns = options.swap_in_spin_ns;
  auto service = FaultService::Start(e->uffd_.get(), e.get(), std::move(config));
  if (!service.ok()) return service.status();
  e->service_ = std::move(*service);
  if (e->paging_ != nullptr) {
    Engine* raw = e.get();
    e->paging_->evictor = std::thread([raw] { raw->EvictorLoop(); });
  }
  ForkGuard::Register(e.get());
  return e;
}

void Engine::StartZeroPool() {
  // Unset: on without a budget, off with one (see RuntimeOptions).
  const uint64_t bytes = options_.zero_pool_bytes.value_or(
      options_.resident_budget_bytes == 0
          ? RuntimeOptions::kDefaultZeroPoolBytes
          : 0);
  if (bytes == 0) {
    zero_pool_off_ = options_.zero_pool_bytes.has_value()
                         ? "RuntimeOptions.zero_pool_bytes = 0"
                         : "the default with a resident budget";
    return;
  }
  if (!uffd_->has(os::uffd_feature::kMove)) {
    zero_pool_off_ = "this kernel lacks UFFDIO_MOVE (Linux 6.8+); write "
                     "faults copy";
    return;
  }
  ZeroPool::Options po;
  po.pages = bytes / page_size_;
  po.page_size = page_size_;
  po.budget = paging_ != nullptr ? &paging_->budget : nullptr;
  absl::StatusOr<std::unique_ptr<ZeroPool>> pool = ZeroPool::Create(po);
  if (!pool.ok()) {
    // An optimization that cannot start is no reason to fail the Runtime.
    zero_pool_off_ = std::string(pool.status().message());
    return;
  }
  zero_pool_ = std::move(*pool);
}

Engine::Engine(const RuntimeOptions& options, std::unique_ptr<os::Uffd> uffd,
               void* zero_source)
    : options_(options),
      page_size_(os::PageSize()),
      owner_pid_(os::CurrentProcessId()),
      uffd_(std::move(uffd)),
      zero_source_(zero_source),
      map_(page_size_) {}

bool Engine::InForkChild() const {
  return os::CurrentProcessId() != owner_pid_;
}

Engine::~Engine() {
  {
    // Snapshots still held by the application fail cleanly from here on.
    absl::MutexLock lock(&link_->mu);
    link_->engine = nullptr;
  }
  const bool child = InForkChild();
  if (service_ != nullptr) ForkGuard::Unregister(this);
  if (zero_pool_ != nullptr && child) zero_pool_->AbandonAfterFork();
  if (!child && !options_.unmap_regions_on_destroy) EndSnapshotsForTeardown();
  {
    std::vector<RegionCore*> cores;
    {
      absl::ReaderMutexLock lock(&map_mu_);
      for (auto& [region, core] : regions_) cores.push_back(core.get());
    }
    for (RegionCore* core : cores) {
      StopPrefetch(core);
      // A snapshot-mapped region that outlives the Runtime must hold its
      // bytes: fill what was never touched from the file while the
      // service can still fill.
      if (!child && !options_.unmap_regions_on_destroy &&
          core->snapshot_source != nullptr) {
        if (paging_ != nullptr) paging_->budget.SetBlocked(true);
        PrefetchLoop(core, /*until_done=*/true);
      }
    }
  }
  if (paging_ != nullptr) {
    if (child) {
      if (paging_->evictor.joinable()) paging_->evictor.detach();
    } else {
      StopPaging();
      // Regions left mapped must hold every byte: read back what was
      // paged out while the service can still fill.
      if (!options_.unmap_regions_on_destroy) SwapEverythingIn();
    }
  }
  if (service_ != nullptr) {
    if (child) {
      service_->AbandonAfterFork();
    } else {
      service_->Stop();
    }
  }
  // Swap-ins, evictions and spills still in flight (read-ahead nobody
  // waits for, or everything with unmap_regions_on_destroy): the store may
  // use their buffers until they complete, and the buffers go with
  // paging_ and snaps_. Returning with them in flight let a store write
  // into freed memory.
  if (paging_ != nullptr && !child) WaitForStoreRequests();
  absl::MutexLock lock(&map_mu_);
  for (auto& [region, core] : regions_) {
    for (const auto& iv : map_.IntervalsOf(core.get())) {
      // In a fork child the descriptor still names the parent's context:
      // an ioctl here would unregister the parent's ranges. The child's
      // copies are plain memory already.
      if (!child) {
        // Wakes any thread blocked in a fault here; the kernel then serves
        // it as ordinary anonymous memory.
        (void)uffd_->Unregister(iv.start, iv.end - iv.start);
      }
    }
  }
  // Signal mode: only now that no access can raise our SIGBUS any more do
  // the regions leave the handler's view (a fault in between would
  // otherwise reach the application's previous handler); after the grace
  // period no handler uses a RegionCore below.
  if (signal_mode()) {
    SignalRegistry::Replace(this, {});
    // Hand-offs pushed after the service stopped: their threads retry
    // (plain memory now).
    AbandonHandoffs();
  }
  // No fault can take pool pages any more: the service threads are
  // stopped and, in signal mode, no handler can still be filling (the
  // regions are unregistered and gone from the registry; before that a
  // handler fill used a destroyed pool). Stops the refill thread (after
  // the chunk it may be populating) and gives back its frames.
  zero_pool_.reset();
  for (auto& [region, core] : regions_) {
    for (const auto& iv : map_.IntervalsOf(core.get())) {
      if (options_.unmap_regions_on_destroy) {
        (void)os::Unmap(reinterpret_cast<void*>(iv.start), iv.end - iv.start);
      }
    }
    if (core->source != nullptr) {
      (void)os::Unmap(const_cast<std::byte*>(core->source), core->size);
    }
    UnmapSnapshotSource(core.get());
    delete region;
  }
  regions_.clear();
  (void)os::Unmap(zero_source_,
                  RuntimeOptions::kMaxFaultAroundPages * page_size_);
}

void Engine::EndSnapshotsForTeardown() {
  if (snaps_ == nullptr) return;
  std::vector<RegionCore*> cores;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    for (auto& [region, core] : regions_) cores.push_back(core.get());
  }
  // With no snapshot left, a write to a captured page copies nothing: its
  // fault only lifts the protection.
  for (RegionCore* core : cores) EndRegionSnapshots(core);
  // Put-backs deferred by EAGAIN hold the only copy of their pages, which
  // stay claimed until filled: fill them while the service threads still
  // read the events that cause the EAGAIN. Left for after they stop, they
  // were never filled, and once the regions were unregistered those pages
  // read as zero (bytes the application had written, lost).
  for (int i = 0; i < 200000 && snaps_->pending_any.load(); ++i) {
    RetryPendingFills();
    if (!snaps_->pending_any.load()) break;
    service_->SyncEvents();
    absl::SleepFor(absl::Microseconds(50));
  }
}

void Engine::EndRegionSnapshots(RegionCore* core) {
  std::vector<CopyRef> freed;
  {
    // snap_mu waits out copy-asides that found a snapshot still live.
    absl::MutexLock snap_lock(&core->snap_mu);
    absl::MutexLock lock(&core->book_mu);
    // Counted released, or Stats::snapshots_live would report them forever.
    counters_.snapshots_released.Add(core->book.live_count());
    core->book.ReleaseAll(&freed);
  }
  FreeCopies(freed);
}

absl::StatusOr<Region*> Engine::Map(
    const RegionOptions& o, std::unique_ptr<SnapshotSource> snapshot_source) {
  if (InForkChild()) {
    return absl::FailedPreconditionError(
        "Runtime::Map called in a fork() child; a Runtime serves only the "
        "process that created it");
  }
  UPAGER_ASSIGN_OR_RETURN(
      const RegionShape shape,
      CheckRegionOptions(o, page_size_, options_.fault_around_pages));
  const uint64_t pages = shape.pages;
  const uint32_t fault_around = shape.fault_around_pages;
  const auto fixed = reinterpret_cast<uintptr_t>(o.fixed_address);
  os::FileMapping source;
  if (!o.source_path.empty()) {
    auto m = os::MapFileReadOnly(o.source_path.c_str(), o.source_offset,
                                 o.size);
    if (!m.ok()) {
      return absl::Status(m.status().code(),
                          absl::StrCat("mapping region '", o.name,
                                       "': ", m.status().message()));
    }
    source = *m;
  }
  auto unmap_source = [&] {
    if (source.addr != nullptr) (void)os::Unmap(source.addr, source.len);
  };
  absl::StatusOr<void*> mapped =
      os::MapAnonymous(o.size, os::Protection::kReadWrite, o.fixed_address);
  if (!mapped.ok()) unmap_source();
  if (!mapped.ok()) {
    if (absl::IsAlreadyExists(mapped.status())) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "RegionOptions.fixed_address = %#x (size %#x) for region '%s' "
          "overlaps %s",
          fixed, o.size, o.name, DescribeOccupant(fixed, o.size)));
    }
    // Name the region, as every other Map error does (ENOMEM alone does not
    // say which of many regions ran out of address space).
    return absl::Status(mapped.status().code(),
                        absl::StrCat("mapping region '", o.name,
                                     "': ", mapped.status().message()));
  }
  void* const mem = *mapped;
  const auto base = reinterpret_cast<uintptr_t>(mem);
  auto fail = [&](absl::Status s) {
    (void)os::Unmap(mem, o.size);
    unmap_source();
    return absl::Status(s.code(),
                        absl::StrCat("mapping region '", o.name, "': ",
                                     s.message()));
  };
  // uffd-registered anonymous memory is served page by page; keeping THP
  // off makes the kernel's view and the page table agree on page size.
  if (absl::Status s = os::AdviseNoHugePage(mem, o.size); !s.ok()) {
    return fail(s);
  }
  if (absl::Status s = uffd_->Register(
          base, o.size,
          os::kRegisterMissing |
              (track_writes_ ? uint32_t{os::kRegisterWriteProtect} : 0u));
      !s.ok()) {
    return fail(s);
  }
  auto core = std::make_unique<RegionCore>(
      base, o.size, page_size_, fault_around,
      std::max(fault_around, options_.fault_around_max_pages));
  // Signal mode: the SIGBUS handler cannot allocate page-table nodes, and a
  // fault whose node is missing goes to a service thread. Regions up to
  // kSignalReserveBytes get every node now (8 bytes per page, 0.2% of the
  // region) so that their faults all stay on the faulting thread; larger
  // ones grow their table on demand, one hand-off per 2 MiB first touched.
  if (signal_mode() && o.size <= kSignalReserveBytes &&
      !core->table.Reserve(PageIndex(0), pages)) {
    return fail(absl::ResourceExhaustedError(absl::StrCat(
        "allocating the page table of ", pages, " pages")));
  }
  core->source = static_cast<const std::byte*>(source.addr);
  core->snapshot_source = std::move(snapshot_source);
  auto* region = new Region(static_cast<std::byte*>(mem), o.size, page_size_,
                            o.name, core.get());
  core->region = region;
  core->engine = this;
  RegionCore* raw = core.get();
  for (int attempt = 0;; ++attempt) {
    {
      absl::MutexLock lock(&map_mu_);
      if (attempt > 0) {
        // Still there after quiescence: the stale interval is certainly
        // dead; drop it.
        for (const auto& iv : map_.Erase(base, base + o.size)) {
          DropPages(iv.owner, iv.first_page, (iv.end - iv.start) / page_size_);
        }
      }
      if (map_.Insert(base, base + o.size, PageIndex(0), raw).ok()) {
        raw->id = next_region_id_++;
        regions_by_id_[raw->id] = raw;
        regions_.emplace(region, std::move(core));
        PublishSignalRegions();
        return region;
      }
    }
    // The kernel just gave us this range, so whatever the map still holds
    // there was munmapped by the application and its UNMAP event is read
    // but not yet applied. Wait until it is, then retry.
    service_->SyncEvents();
  }
}

std::string Engine::DescribeOccupant(uintptr_t start, uint64_t size) const {
  absl::ReaderMutexLock lock(&map_mu_);
  if (auto iv = map_.FirstOverlap(start, start + size); iv.has_value()) {
    return absl::StrFormat("region '%s' at [%#x, %#x)",
                           iv->owner->region->name(), iv->start, iv->end);
  }
  return "an existing mapping";
}

absl::Status Engine::Unmap(Region* region) {
  if (InForkChild()) {
    return absl::FailedPreconditionError(
        "Runtime::Unmap called in a fork() child; a Runtime serves only the "
        "process that created it");
  }
  // An application munmap of part of this region may have returned with
  // its UNMAP event read but not yet applied: apply it first, or the hole
  // (and whatever the application mapped there since) would be unmapped
  // below as if it were still ours.
  service_->SyncEvents();
  std::unique_ptr<RegionCore> core;
  std::vector<AddressMap<RegionCore*>::Interval> intervals;
  {
    absl::MutexLock lock(&map_mu_);
    auto it = regions_.find(region);
    if (it == regions_.end()) {
      return absl::NotFoundError(absl::StrFormat(
          "Runtime::Unmap: %p is not a live region of this runtime", region));
    }
    core = std::move(it->second);
    regions_.erase(it);
    // From here nothing new pins the region (PinRegion finds it by id).
    regions_by_id_.erase(core->id);
  }
  // Store I/O naming the region (an eviction or swap-in in flight), and
  // snapshot reads, pin it (io_inflight); they must finish before its
  // memory and metadata go.
  auto wait_for_pins = [&] {
    while (core->io_inflight.load() > 0) {
      DrainCompletions();
      FreeSpilledMemory();  // spilled copies pin their region
      absl::SleepFor(absl::Microseconds(50));
    }
  };
  // First while the region is still in the address map: a snapshot read
  // finds the live pages it copies there, and one that found the region
  // gone read them as unmapped, returning zeros as the snapshot's bytes
  // with OK (a Read racing with Unmap).
  wait_for_pins();
  {
    absl::MutexLock lock(&map_mu_);
    intervals = map_.EraseOwner(core.get());
    // Signal mode: an access racing with Unmap (an application bug, but
    // thread mode serves it as plain memory until the munmap) finds no
    // region between here and the Unregister below; the handler retries
    // such faults while a layout change is announced instead of passing
    // them to the application's previous handler.
    if (signal_mode()) SignalRegistry::BeginLayoutChange();
    PublishSignalRegions();
  }
  absl::Status result;
  StopPrefetch(core.get());
  for (const auto& iv : intervals) {
    // Unregister before munmap: munmap of a registered range would wait for
    // its UNMAP event to be read, and a fill racing with us now fails with
    // ENOENT instead of landing in memory a later mmap may reuse.
    if (absl::Status s = uffd_->Unregister(iv.start, iv.end - iv.start);
        !s.ok() && result.ok()) {
      result = s;
    }
  }
  if (signal_mode()) SignalRegistry::EndLayoutChange();
  service_->WaitForQuiescence();
  // Again: I/O started since by faults that still found the region.
  wait_for_pins();
  // The region's live snapshots end with it (their Release() is a no-op
  // from now on).
  if (snaps_ != nullptr) EndRegionSnapshots(core.get());
  ReleaseRegionPaging(core.get());
  for (const auto& iv : intervals) {
    if (absl::Status s =
            os::Unmap(reinterpret_cast<void*>(iv.start), iv.end - iv.start);
        !s.ok() && result.ok()) {
      result = s;
    }
  }
  if (core->source != nullptr) {
    (void)os::Unmap(const_cast<std::byte*>(core->source), core->size);
  }
  UnmapSnapshotSource(core.get());
  delete region;
  return result;
}

absl::Status Engine::Advise(Region* region, size_t offset, size_t length,
                            Runtime::Advice advice) {
  if (InForkChild()) {
    return absl::FailedPreconditionError(
        "Runtime::Advise called in a fork() child");
  }
  RegionCore* core = nullptr;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    auto it = regions_.find(region);
    if (it == regions_.end()) {
      return absl::NotFoundError(absl::StrFormat(
          "Runtime::Advise: %p is not a live region of this runtime", region));
    }
    core = it->second.get();
  }
  if (offset % page_size_ != 0 || length % page_size_ != 0 ||
      offset > core->size || length > core->size - offset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Runtime::Advise: range [offset=%d, length=%d) is not page-aligned "
        "or not inside region '%s' of %d bytes",
        offset, length, region->name(), core->size));
  }
  const PageIndex first(offset / page_size_);
  const uint64_t pages = length / page_size_;
  switch (advice) {
    case Runtime::Advice::kNormal:
      core->fault_around.set_mode(FaultAroundSizer::Mode::kAdaptive);
      return absl::OkStatus();
    case Runtime::Advice::kSequential:
      core->fault_around.set_mode(FaultAroundSizer::Mode::kSequential);
      return absl::OkStatus();
    case Runtime::Advice::kRandom:
      core->fault_around.set_mode(FaultAroundSizer::Mode::kRandom);
      return absl::OkStatus();
    case Runtime::Advice::kWillNeed:
      Prefetch(core, first, pages);
      return absl::OkStatus();
    case Runtime::Advice::kDontNeed: {
      // Snapshots that still need these pages get their bytes first (a raw
      // madvise could not offer that: see upager/snapshot.h).
      if (snaps_ != nullptr) {
        UPAGER_RETURN_IF_ERROR(CopyAsideRange(core, first, pages));
      }
      // The application's own madvise, page by page where the region is
      // mapped now (mremap may have moved parts); its REMOVE events free
      // the pages, swap slots and policy state.
      for (uint64_t i = 0; i < pages; ++i) {
        const uintptr_t addr = AddressOf(core, first + i);
        if (addr == 0) continue;
        uint64_t run = 1;
        while (i + run < pages &&
               AddressOf(core, first + i + run) == addr + run * page_size_) {
          ++run;
        }
        UPAGER_RETURN_IF_ERROR(
            os::AdviseDontNeed(reinterpret_cast<void*>(addr), run * page_size_));
        i += run - 1;
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("Runtime::Advise: unknown advice");
}

Region* Engine::FindRegion(const void* addr) const {
  // Reflect every munmap/mremap that has returned to the application.
  if (!InForkChild()) service_->SyncEvents();
  absl::ReaderMutexLock lock(&map_mu_);
  const auto iv = map_.Find(reinterpret_cast<uintptr_t>(addr));
  return iv.has_value() ? iv->owner->region : nullptr;
}

bool Engine::Resolve(uintptr_t addr, Target* t) const {
  absl::ReaderMutexLock lock(&map_mu_);
  const auto iv = map_.Find(addr);
  if (!iv.has_value()) return false;
  t->core = iv->owner;
  t->page = iv->first_page + (addr - iv->start) / page_size_;
  t->page_limit = iv->first_page.value() + (iv->end - iv->start) / page_size_;
  t->page_addr = addr;
  return true;
}

void Engine::ApplyEvents(absl::Span<const os::UffdEvent> fresh) {
  counters_.reads.Add();
  counters_.events_read.Add(fresh.size());
  for (const os::UffdEvent& e : fresh) {
    switch (e.kind) {
      case os::UffdEvent::Kind::kPageFault:
        break;
      case os::UffdEvent::Kind::kRemove:
        HandleRemove(e.address, e.arg2);
        break;
      case os::UffdEvent::Kind::kUnmap:
        HandleUnmap(e.address, e.arg2);
        break;
      case os::UffdEvent::Kind::kRemap:
        HandleRemap(e.address, e.arg2, e.arg3);
        break;
      case os::UffdEvent::Kind::kFork:
        // Not requested (see WantedFeatures); never keep a child's context.
        os::CloseFd(static_cast<int>(e.address));
        counters_.events_unknown.Add();
        break;
      case os::UffdEvent::Kind::kUnknown:
        counters_.events_unknown.Add();
        break;
    }
  }
}

void Engine::Serve(absl::Span<const os::UffdEvent> fresh, uint64_t read_ns,
                   std::vector<os::UffdEvent>* deferred) {
  // The batch's address-space events were applied already (ApplyEvents),
  // so a fault is resolved against the layout the application sees: a
  // fault on a range just removed gets a fresh zero page, which is what
  // the application's madvise promised.
  RetryPendingReads();
  RetryPendingFills();
  std::vector<os::UffdEvent> retry;
  retry.swap(*deferred);
  // A fault handed over in signal mode is deferred like any other; its
  // thread sleeps until the hand-off completes (once served, or abandoned
  // by a stopping service thread), so it is never handed over twice.
  auto serve = [&](const os::UffdEvent& e) {
    if (HandlePageFault(e, read_ns) == Served::kRetryLater) {
      deferred->push_back(e);
    } else {
      CompleteHandoff(e);
    }
  };
  for (const os::UffdEvent& e : fresh) {
    if (e.kind == os::UffdEvent::Kind::kPageFault) serve(e);
  }
  for (const os::UffdEvent& e : retry) serve(e);
}

void Engine::Abandon(absl::Span<const os::UffdEvent> deferred) {
  // The thread retries its access; after ~Engine unregistered the range
  // that is plain memory, before it the fault is handed over again and
  // completed by AbandonHandoffs.
  for (const os::UffdEvent& e : deferred) CompleteHandoff(e);
}

void Engine::OnServiceError(absl::Status status) { RecordError(status); }

void Engine::RecordError(const absl::Status& s) {
  counters_.errors.Add();
  absl::MutexLock lock(&error_mu_);
  if (first_error_.ok()) first_error_ = s;
}

absl::Status Engine::status() const {
  absl::MutexLock lock(&error_mu_);
  return first_error_;
}

Stats Engine::stats() const {
  if (!InForkChild()) service_->SyncEvents();
  Stats s;
  s.uffd_mode = uffd_->user_mode_only() ? "user-mode-only" : "full";
  s.uffd_open_path = os::UffdOpenPathName(uffd_->path());
  s.kernel_faults_served = !uffd_->user_mode_only();
  s.uffd_features = uffd_->features();
  s.uffd_feature_names = os::UffdFeatureNames(uffd_->features());
  s.service_threads = service_ != nullptr ? service_->threads() : 0;
  if (service_ != nullptr) {
    s.service_cpus = service_->cpus();
    s.service_guard = service_->has_guard();
    s.guard_batches = service_->guard_batches();
  }
  const Counters& c = counters_;
  s.faults_missing_read = c.faults_missing_read.Get();
  s.faults_missing_write = c.faults_missing_write.Get();
  s.faults_write_protect = c.faults_write_protect.Get();
  s.faults_minor = c.faults_minor.Get();
  s.faults_foreign = c.faults_foreign.Get();
  s.faults_stale = c.faults_stale.Get();
  s.fault_mode = signal_mode() ? "signal" : "thread";
  s.faults_on_thread = c.faults_on_thread.Get();
  s.faults_handed_off = c.faults_handed_off.Get();
  s.signal_waits = c.signal_waits.Get();
  s.pages_zero_filled = c.pages_zero_filled.Get();
  s.pages_zero_mapped = c.pages_zero_mapped.Get();
  s.pages_file_filled = c.pages_file_filled.Get();
  s.pages_fault_around = c.pages_fault_around.Get();
  s.zero_pool_hits = c.zero_pool_hits.Get();
  s.zero_pool_misses = c.zero_pool_misses.Get();
  s.zero_pool_move_failures = c.zero_pool_move_failures.Get();
  if (zero_pool_ != nullptr) {
    const ZeroPool::Stats p = zero_pool_->stats();
    s.zero_pool_state =
        p.disabled ? absl::StrCat("disabled: moves kept failing (",
                                  os::ErrnoToStatus(p.disable_error, "UFFDIO_MOVE")
                                      .message(),
                                  "); write faults copy")
                   : "on";
    s.zero_pool_pages = p.capacity_pages;
    s.zero_pool_ready_pages = p.ready_pages;
    s.zero_pool_pages_populated = p.pages_populated;
    s.zero_pool_refill_cpu_ns = p.refill_cpu_ns;
  } else {
    s.zero_pool_state = absl::StrCat("off: ", zero_pool_off_);
  }
  s.fill_exists = c.fill_exists.Get();
  s.fill_retries = c.fill_retries.Get();
  s.fill_gone = c.fill_gone.Get();
  s.fills_revoked = c.fills_revoked.Get();
  s.events_remove = c.events_remove.Get();
  s.events_unmap = c.events_unmap.Get();
  s.events_remap = c.events_remap.Get();
  s.events_unknown = c.events_unknown.Get();
  s.reads = c.reads.Get();
  s.events_read = c.events_read.Get();
  s.budget_waits = c.budget_waits.Get();
  s.pages_swapped_out = c.pages_swapped_out.Get();
  s.pages_swapped_in = c.pages_swapped_in.Get();
  s.pages_read_ahead = c.pages_read_ahead.Get();
  s.read_ahead_async = c.read_ahead_async.Get();
  s.read_ahead_hits = c.read_ahead_hits.Get();
  s.read_ahead_waste = c.read_ahead_waste.Get();
  s.clean_drops = c.clean_drops.Get();
  s.pages_dirtied = c.pages_dirtied.Get();
  s.swap_write_errors = c.swap_write_errors.Get();
  s.swap_read_errors = c.swap_read_errors.Get();
  s.swap_full = c.swap_full.Get();
  s.evictions_skipped = c.evict_skipped.Get();
  s.evictions_cancelled = c.evictions_cancelled.Get();
  s.faults_on_evicting = c.faults_on_evicting.Get();
  if (paging_ != nullptr) {
    s.budget_pages = paging_->budget.budget();
    s.budget_used_pages = paging_->budget.used();
    s.over_budget_pages = paging_->budget.over_budget_grants();
    s.eviction_blocked = paging_->budget.blocked();
    s.store = paging_->store->stats();
    s.policy = paging_->policy->stats().ToString();
    s.swap_in_latency = ToSummary(paging_->swap_in_latency);
    s.swap_out_latency = ToSummary(paging_->swap_out_latency);
  }
  s.errors = c.errors.Get();
  s.threads_poisoned = c.threads_poisoned.Get();
  {
    absl::ReaderMutexLock lock(&map_mu_);
    s.regions = regions_.size();
    for (const auto& [region, core] : regions_) {
      s.reserved_bytes += core->size;
      s.resident_pages += static_cast<uint64_t>(
          std::max<int64_t>(0, core->resident.load(std::memory_order_relaxed)));
      s.zero_mapped_pages += static_cast<uint64_t>(std::max<int64_t>(
          0, core->zero_mapped.load(std::memory_order_relaxed)));
      s.metadata_bytes += core->table.MetadataBytes();
      s.swapped_pages += static_cast<uint64_t>(std::max<int64_t>(
          0, core->swapped.load(std::memory_order_relaxed)));
    }
  }
  s.fault_latency = ToSummary(c.fault_latency);
  s.snapshots_taken = c.snapshots_taken.Get();
  s.snapshots_live = s.snapshots_taken - c.snapshots_released.Get();
  s.pages_protected = c.pages_protected.Get();
  s.snapshot_copies = c.copies_memory.Get();
  s.snapshot_zero_copies = c.copies_zero.Get();
  s.snapshot_slot_copies = c.copies_slot.Get();
  s.snapshot_lost_pages = c.pages_lost.Get();
  s.snapshot_spilled_copies = c.copies_spilled.Get();
  s.restore_pages = c.restore_pages.Get();
  s.snapshot_pause = ToSummary(c.snapshot_pause);
  if (snaps_ != nullptr) s.snapshot_bytes = snaps_->pool.in_use() * page_size_;
  s.save_bytes = c.save_bytes.Get();
  if (c.save_ns.Get() != 0) {
    s.save_mb_per_s = c.save_bytes.Get() * 1e3 / c.save_ns.Get();
  }
  {
    absl::MutexLock lock(&error_mu_);
    if (!first_error_.ok()) s.first_error = first_error_.ToString();
  }
  return s;
}

}  // namespace upager::internal
