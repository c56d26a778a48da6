// Saved snapshots: Snapshot::SaveTo writes a snapshot (full, or the pages
// changed since a saved base) in the format of backing/snapshot_file.h;
// Runtime::MapSnapshot maps a saved chain into a new region that fills
// lazily from the files, optionally prefetching in the background.
#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backing/snapshot_file.h"
#include "runtime/engine.h"
#include "runtime/option_checks.h"
#include "runtime/os/memory.h"
#include "upager/status_macros.h"

namespace upager::internal {

absl::Status Engine::SaveSnapshot(uint32_t region_id, uint64_t epoch,
                                  const std::string& path,
                                  uint64_t base_epoch,
                                  const std::string& base_path) {
  const uint64_t start = MonotonicNanos();
  RegionCore* core = PinRegion(region_id);
  if (core == nullptr) {
    return absl::FailedPreconditionError(
        "Snapshot::SaveTo: the snapshot's region was unmapped");
  }
  const bool delta = !base_path.empty();
  SnapshotFileWriter::Options wo;
  wo.page_size = page_size_;
  wo.page_count = core->pages;
  wo.kind = delta ? SnapshotKind::kDelta : SnapshotKind::kFull;
  wo.base_path = base_path;
  absl::Status result;
  uint64_t bytes = 0;
  {
    auto writer = SnapshotFileWriter::Create(path, wo);
    if (!writer.ok()) {
      Unpin(core);
      return writer.status();
    }
    auto add = [&](uint64_t p, const std::byte* page) -> absl::Status {
      if (page == nullptr) {
        // A full file stores nothing for a zero page (holes read as
        // zero); a delta records that the page became zero.
        return delta ? (*writer)->AddZero(p, 1) : absl::OkStatus();
      }
      bytes += page_size_;
      return (*writer)->AddData(p, absl::MakeConstSpan(page, page_size_));
    };
    if (!delta) {
      result = ForEachSnapshotPage(region_id, epoch, add);
    } else {
      std::vector<uint64_t> changed;
      result = ForEachChanged(region_id, base_epoch, epoch,
                              [&](uint64_t p) { changed.push_back(p); });
      std::unique_ptr<std::byte[]> buf(new std::byte[page_size_]);
      ReaderPin reader(core);
      for (uint64_t p : changed) {
        if (!result.ok()) break;
        bool zero = false;
        result = ReadSnapshotPage(core, epoch, PageIndex(p), buf.get(), &zero);
        if (result.ok()) result = add(p, zero ? nullptr : buf.get());
      }
    }
    // Without Commit the writer removes its temporary file: a failed save
    // leaves nothing that looks like a snapshot.
    if (result.ok()) result = (*writer)->Commit();
  }
  Unpin(core);
  if (result.ok()) {
    counters_.save_bytes.Add(bytes);
    counters_.save_ns.Add(MonotonicNanos() - start);
  }
  return result;
}

absl::StatusOr<Region*> Engine::MapSnapshot(const std::string& path,
                                            const MapSnapshotOptions& o) {
  UPAGER_RETURN_IF_ERROR(CheckMapSnapshotOptions(o));
  UPAGER_ASSIGN_OR_RETURN(SnapshotChain chain, SnapshotChain::Open(path));
  UPAGER_ASSIGN_OR_RETURN(
      const RegionOptions ro,
      SnapshotRegionOptions(o, path, chain.page_size(), chain.page_count(),
                            page_size_));
  auto source = std::make_unique<SnapshotSource>(std::move(chain));
  for (const auto& file : source->chain.files()) {
    auto m = os::MapFileReadOnly(file->path().c_str(), 0,
                                 file->info().file_size);
    if (!m.ok()) {
      return absl::Status(m.status().code(),
                          absl::StrCat("Runtime::MapSnapshot: mapping '",
                                       file->path(), "': ", m.status().message()));
    }
    source->maps.push_back(static_cast<const std::byte*>(m->addr));
    source->map_lengths.push_back(m->len);
  }
  SnapshotSource* raw = source.get();
  absl::StatusOr<Region*> region = Map(ro, std::move(source));
  if (!region.ok()) return region.status();  // the source unmapped itself
  if (o.prefetch) {
    RegionCore* core = (*region)->core_;
    raw->prefetch = std::thread([this, core] { PrefetchLoop(core, false); });
  }
  return region;
}

void Engine::PrefetchLoop(RegionCore* core, bool until_done) {
  if (!until_done) os::NameCurrentThread("upager-prefetch");
  SnapshotSource& src = *core->snapshot_source;
  constexpr uint64_t kBatch = 64;
  for (uint64_t page = 0; page < core->pages;) {
    if (!until_done && src.stop_prefetch.load()) return;
    const ResolvedRun run = src.chain.RunAt(page);
    const uint64_t run_end = std::min(run.first_page + run.count, core->pages);
    if (run.file == nullptr) {
      page = run_end;  // zero runs fault in for free
      continue;
    }
    // Stay out of the application's way under a budget: prefetching past
    // the high watermark would only make the evictor throw pages out.
    if (!until_done && paging_ != nullptr && paging_->budget.AboveHigh()) {
      return;
    }
    const uint64_t want = std::min<uint64_t>(kBatch, run_end - page);
    const uint64_t frames = ReserveFrames(want);
    if (frames == 0) {
      absl::SleepFor(absl::Milliseconds(1));
      continue;
    }
    uint64_t n = 0;
    {
      absl::ReaderMutexLock snap_lock(&core->snap_mu);
      // Claim the absent pages from `page` on (anything else was touched).
      for (; n < frames; ++n) {
        PageEntry absent;
        if (!core->table.CompareExchange(PageIndex(page + n), &absent,
                                         PageEntry::Of(PageState::kFilling))) {
          break;
        }
      }
      const std::byte* bytes =
          src.Bytes(run) + (page - run.first_page) * page_size_;
      for (uint64_t i = 0; i < n; ++i) {
        if (!run.file->VerifyPage(page + i, bytes + i * page_size_).ok()) {
          // Left for the fault path, which reports it to the thread.
          for (uint64_t j = i; j < n; ++j) {
            (void)core->table.Set(PageIndex(page + j), PageEntry());
          }
          if (const uintptr_t a = AddressOf(core, PageIndex(page + i)); a != 0) {
            (void)uffd_->Wake(a, (n - i) * page_size_);
          }
          n = i;
          break;
        }
      }
      const uintptr_t addr = n > 0 ? AddressOf(core, PageIndex(page)) : 0;
      uint64_t done = 0;
      if (addr != 0) {
        const os::UffdResult r = uffd_->Copy(addr, bytes, n * page_size_,
                                             /*wake=*/true,
                                             /*write_protect=*/false);
        done = r.ok() ? n : std::min<uint64_t>(n, r.bytes / page_size_);
      }
      for (uint64_t i = 0; i < n; ++i) {
        (void)core->table.Set(PageIndex(page + i),
                              i < done ? PageEntry::Of(PageState::kResident)
                                       : PageEntry());
      }
      // A fault on a claimed page waited for this claimant: wake the ones
      // that were given back unfilled, so they fault again.
      if (addr != 0 && done < n) {
        (void)uffd_->Wake(addr + done * page_size_, (n - done) * page_size_);
      }
      core->resident.fetch_add(static_cast<int64_t>(done),
                               std::memory_order_relaxed);
      counters_.pages_file_filled.Add(done);
      AdmitToPolicy(core, PageIndex(page), done, /*sequential=*/true);
      ReleaseFrames(frames - done);
      if (n > done) n = done + 1;  // skip a page the kernel refused
    }
    page += std::max<uint64_t>(n, 1);
  }
}

void Engine::StopPrefetch(RegionCore* core) {
  SnapshotSource* src = core->snapshot_source.get();
  if (src == nullptr || !src->prefetch.joinable()) return;
  src->stop_prefetch.store(true);
  if (InForkChild()) {
    src->prefetch.detach();  // the thread exists only in the parent
  } else {
    src->prefetch.join();
  }
}

void Engine::UnmapSnapshotSource(RegionCore* core) {
  // The file mappings go with the RegionCore; only the thread must stop
  // before the region does.
  StopPrefetch(core);
}

}  // namespace upager::internal
