// `upager tour`: a guided run over everything upager does, on one region
// larger than its resident budget, with every byte checked against a
// shadow of what the tour wrote:
//   1. paging beyond memory: write a pattern to every page, read it back;
//   2. a snapshot taken while writer threads keep writing (paused for the
//      TakeSnapshot call only, per upager/snapshot.h), read back while the
//      region keeps changing;
//   3. Restore to the snapshot;
//   4. the snapshot saved to a file, then an incremental one, mapped back
//      lazily with Runtime::MapSnapshot.
// The shadow is one generation number per page (0: zero page); a page's
// bytes are a function of its index and generation, so checking a page
// regenerates it instead of keeping a copy of the region.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runtime/cli/command.h"
#include "runtime/cli/format.h"
#include "runtime/cli/progress.h"
#include "runtime/os/process.h"
#include "upager/snapshot.h"
#include "upager/status_macros.h"
#include "upager/upager.h"

ABSL_FLAG(uint64_t, region_mib, 128,
          "Size of the region the tour pages through, in MiB (1..65536)");
ABSL_FLAG(uint64_t, budget_mib, 32,
          "Resident budget in MiB: at most this much of the region stays in "
          "memory, the rest goes to the swap file (1..65536)");
ABSL_FLAG(int32_t, writers, 2,
          "Writer threads that keep writing around the snapshot (1..64)");
ABSL_FLAG(std::string, dir, "",
          "Where to create the scratch directory for the swap file and the "
          "snapshot files (default: $TMPDIR, else /var/tmp)");
ABSL_FLAG(bool, keep, false,
          "Keep the scratch directory and its snapshot files at the end "
          "(to try 'upager snapshot inspect' on them)");
ABSL_FLAG(bool, inject_error, false,
          "For testing the tour itself: change one byte of the region behind "
          "the tour's back, so that the first read-back check must fail");

namespace upager::cli {
namespace {

namespace os = ::upager::internal::os;

constexpr char kName[] = "tour";

// --- The pattern: page `page` at generation `gen`.

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x += 0x9e3779b97f4a7c15;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

// Generation 0 is a zero page (never written, or dropped).
void FillPage(std::byte* out, size_t page_size, uint64_t page, uint32_t gen) {
  if (gen == 0) {
    std::memset(out, 0, page_size);
    return;
  }
  const uint64_t base = Mix((page << 24) ^ gen);
  for (size_t i = 0; i < page_size / 8; ++i) {
    const uint64_t w = base + i * 0x9e3779b97f4a7c15;
    std::memcpy(out + i * 8, &w, 8);
  }
}

// Counts pages that differ from the shadow, describes the first (and which
// generation of the page it holds instead, if any), and lists the first few.
class Checker {
 public:
  explicit Checker(size_t page_size) : page_size_(page_size), want_(page_size) {}

  // `got` nullptr: a page the snapshot reports as zero.
  void Check(const std::byte* got, uint64_t page, uint32_t gen) {
    ++pages_;
    FillPage(want_.data(), page_size_, page, gen);
    if (got == nullptr) {
      if (gen == 0) return;
      Mismatch(page, gen, 0, "reads as an all-zero page");
      return;
    }
    if (std::memcmp(got, want_.data(), page_size_) == 0) return;
    size_t i = 0;
    while (got[i] == want_[i]) ++i;
    std::string what = absl::StrFormat("byte %d is 0x%02x, expected 0x%02x", i,
                                       static_cast<int>(got[i]),
                                       static_cast<int>(want_[i]));
    if (bad_ == 0) {
      // Which version is it? (Stale bytes point at a lost write or a lost
      // drop; bytes of no generation at all at corruption.)
      std::vector<std::byte> other(page_size_);
      for (uint32_t g = 0; g <= gen + 64; ++g) {
        if (g == gen) continue;
        FillPage(other.data(), page_size_, page, g);
        if (std::memcmp(got, other.data(), page_size_) == 0) {
          absl::StrAppendFormat(&what, "; the page holds generation %d", g);
          break;
        }
      }
    }
    Mismatch(page, gen, i, what);
  }

  uint64_t pages() const { return pages_; }
  uint64_t bad_pages() const { return bad_; }
  // The first bad page, then up to 8 bad page numbers.
  std::string first() const {
    return absl::StrCat(first_, "; bad pages: ", absl::StrJoin(bad_list_, ", "),
                        bad_ > bad_list_.size() ? ", ..." : "");
  }

 private:
  void Mismatch(uint64_t page, uint32_t gen, size_t byte,
                const std::string& what) {
    if (bad_++ == 0) {
      first_ = absl::StrFormat(
          "page %d (offset 0x%x, generation %d): %s", page,
          page * page_size_ + byte, gen, what);
    }
    if (bad_list_.size() < 8) bad_list_.push_back(page);
  }

  const size_t page_size_;
  std::vector<std::byte> want_;
  uint64_t pages_ = 0;
  uint64_t bad_ = 0;
  std::string first_;
  std::vector<uint64_t> bad_list_;
};

// Writer threads over disjoint slices of the region: each writes runs of
// 1-64 pages at random places in its slice, bumping each page's generation.
// Between runs a writer may be parked (Pause) or stopped; the shadow
// (`gen`) may be read by the caller only while every writer is parked or
// after Stop.
class Writers {
 public:
  Writers(std::byte* data, size_t page_size, std::vector<uint32_t>* gen,
          int threads)
      : data_(data), page_size_(page_size), gen_(gen) {
    const uint64_t pages = gen->size();
    for (int t = 0; t < threads; ++t) {
      const uint64_t lo = pages * t / threads;
      const uint64_t hi = pages * (t + 1) / threads;
      if (lo < hi) threads_.emplace_back([this, t, lo, hi] { Run(t, lo, hi); });
    }
  }
  ~Writers() { Stop(); }

  uint64_t written() const { return written_.load(std::memory_order_relaxed); }

  // Returns once every writer is parked between two pages.
  void Pause() {
    absl::MutexLock l(&mu_);
    pause_ = true;
    const int n = static_cast<int>(threads_.size());
    const auto all_parked = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return parked_ == n;
    };
    mu_.Await(absl::Condition(&all_parked));
  }
  void Resume() {
    absl::MutexLock l(&mu_);
    pause_ = false;
  }
  void Stop() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Run(int t, uint64_t lo, uint64_t hi) {
    std::mt19937_64 rng(t + 1);
    std::vector<std::byte> buf(page_size_);
    uint64_t run = 0;
    for (;;) {
      {
        absl::MutexLock l(&mu_);
        written_.fetch_add(run, std::memory_order_relaxed);
        if (pause_ && !stop_) {
          ++parked_;
          const auto go = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            return !pause_ || stop_;
          };
          mu_.Await(absl::Condition(&go));
          --parked_;
        }
        if (stop_) return;
      }
      const uint64_t first = lo + rng() % (hi - lo);
      run = std::min<uint64_t>(1 + rng() % 64, hi - first);
      for (uint64_t p = first; p < first + run; ++p) {
        const uint32_t g = ++(*gen_)[p];
        FillPage(buf.data(), page_size_, p, g);
        std::memcpy(data_ + p * page_size_, buf.data(), page_size_);
      }
    }
  }

  std::byte* const data_;
  const size_t page_size_;
  std::vector<uint32_t>* const gen_;  // each writer touches its slice only
  std::atomic<uint64_t> written_{0};  // changed under mu_, read anywhere
  absl::Mutex mu_;
  bool pause_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int parked_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

// The scratch directory, removed (with whatever is left in it) at the end
// unless --keep.
class ScratchDir {
 public:
  ScratchDir(std::string path, bool keep) : path_(std::move(path)), keep_(keep) {}
  ~ScratchDir() { Remove(); }
  const std::string& path() const { return path_; }

  // Removes it now (unless kept). Idempotent; a failure is reported on
  // stderr only: the tour's verdict is about upager, not the file system.
  void Remove() {
    if (keep_ || removed_) return;
    removed_ = true;
    if (absl::Status s = os::RemoveTree(path_); !s.ok()) {
      std::fprintf(stderr, "upager %s: could not remove the scratch directory: %s\n",
                   kName, std::string(s.message()).c_str());
    }
  }

 private:
  const std::string path_;
  const bool keep_;
  bool removed_ = false;
};

// The tour's state and its steps. Every step prints what it did; a failed
// check is reported and counted, and the tour goes on; an API error ends
// it (the status is returned).
class Tour {
 public:
  Tour(Runtime* rt, uint64_t region_bytes, std::string dir)
      : rt_(rt),
        ps_(rt->page_size()),
        region_bytes_(region_bytes),
        pages_(region_bytes / ps_),
        dir_(std::move(dir)),
        gen_(pages_, 0) {}

  absl::Status PageBeyondMemory(uint64_t budget_bytes, bool inject_error);
  absl::Status SnapshotUnderWriters(int writers);
  absl::Status RestoreToSnapshot();
  absl::Status SaveAndMapBack();
  absl::Status Finish();

  int checks() const { return checks_; }
  int failed() const { return failed_; }

 private:
  // Checks every page of `data` (a mapping of pages_ pages) against
  // `gen`; prints the verdict after `label`.
  void CheckRegion(const std::byte* data, const std::vector<uint32_t>& gen,
                   const std::string& label);
  void Verdict(const Checker& c, absl::Duration took, const std::string& label);

  Runtime* const rt_;
  const size_t ps_;
  const uint64_t region_bytes_;
  const uint64_t pages_;
  const std::string dir_;
  Region* region_ = nullptr;
  std::vector<uint32_t> gen_;       // the live region's shadow
  std::vector<uint32_t> snap_gen_;  // the first snapshot's
  std::unique_ptr<Snapshot> snap_;
  uint64_t restored_ = 0;  // pages Restore rewrote
  int checks_ = 0;
  int failed_ = 0;
};

void Tour::Verdict(const Checker& c, absl::Duration took,
                   const std::string& label) {
  ++checks_;
  if (c.bad_pages() == 0) {
    std::printf("   %s: %s pages, every byte as expected (%s)   OK\n",
                label.c_str(), HumanCount(c.pages()).c_str(),
                HumanDuration(took).c_str());
  } else {
    ++failed_;
    std::printf("   %s: %s of %s pages WRONG; first: %s   FAILED\n",
                label.c_str(), HumanCount(c.bad_pages()).c_str(),
                HumanCount(c.pages()).c_str(), c.first().c_str());
  }
  std::fflush(stdout);
}

void Tour::CheckRegion(const std::byte* data, const std::vector<uint32_t>& gen,
                       const std::string& label) {
  Checker c(ps_);
  Progress progress(label, region_bytes_);
  for (uint64_t p = 0; p < pages_; ++p) {
    c.Check(data + p * ps_, p, gen[p]);
    if (p % 256 == 0) progress.Set(p * ps_);
  }
  Verdict(c, progress.Finish(), label);
}

absl::Status Tour::PageBeyondMemory(uint64_t budget_bytes, bool inject_error) {
  std::printf("\n1. Paging beyond memory\n");
  UPAGER_ASSIGN_OR_RETURN(region_, rt_->Map({.size = region_bytes_, .name = "tour"}));
  std::printf("   mapped a %s region (%s pages of %s); resident budget %s%s\n",
              HumanBytes(region_bytes_).c_str(), HumanCount(pages_).c_str(),
              HumanBytes(ps_).c_str(), HumanBytes(budget_bytes).c_str(),
              budget_bytes < region_bytes_
                  ? absl::StrFormat(": %.1fx oversubscribed",
                                    static_cast<double>(region_bytes_) / budget_bytes)
                        .c_str()
                  : " (the region fits: nothing will be paged out)");
  const Stats before = rt_->stats();
  std::byte* const data = region_->data();
  {
    Progress progress("writing a pattern to every page", region_bytes_);
    for (uint64_t p = 0; p < pages_; ++p) {
      gen_[p] = 1;
      FillPage(data + p * ps_, ps_, p, 1);
      if (p % 256 == 0) progress.Set(p * ps_);
    }
    const absl::Duration took = progress.Finish();
    std::printf("   wrote a pattern to every page: %s in %s (%s)\n",
                HumanBytes(region_bytes_).c_str(), HumanDuration(took).c_str(),
                HumanRate(region_bytes_, took).c_str());
  }
  // Behind the shadow's back: the read-back must catch it. Undone after
  // the check, so that only this check fails.
  std::byte* const injected = data + (pages_ / 3) * ps_ + 100;
  if (inject_error) {
    *injected ^= std::byte{0x40};
    std::printf("   (--inject_error: flipped a bit of page %s)\n",
                HumanCount(pages_ / 3).c_str());
  }
  const Stats mid = rt_->stats();
  std::printf("   pages written out to the swap file meanwhile: %s (%s)\n",
              HumanCount(mid.pages_swapped_out - before.pages_swapped_out).c_str(),
              HumanBytes((mid.pages_swapped_out - before.pages_swapped_out) * ps_).c_str());
  CheckRegion(data, gen_, "read back and checked");
  if (inject_error) *injected ^= std::byte{0x40};
  const Stats after = rt_->stats();
  std::printf(
      "   paging: %s pages swapped in (%s of them read ahead of a fault, %s "
      "reached by their stream, %s wasted), %s swapped out, %s dropped "
      "clean (no write: the swap copy was current)\n",
      HumanCount(after.pages_swapped_in - before.pages_swapped_in).c_str(),
      HumanCount(after.pages_read_ahead - before.pages_read_ahead).c_str(),
      HumanCount(after.read_ahead_hits - before.read_ahead_hits).c_str(),
      HumanCount(after.read_ahead_waste - before.read_ahead_waste).c_str(),
      HumanCount(after.pages_swapped_out - before.pages_swapped_out).c_str(),
      HumanCount(after.clean_drops - before.clean_drops).c_str());
  std::printf("   in memory now: %s of the %s budget; in the swap file: %s\n",
              HumanBytes(after.budget_used_pages * ps_).c_str(),
              HumanBytes(after.budget_pages * ps_).c_str(),
              HumanBytes(after.swapped_pages * ps_).c_str());
  return absl::OkStatus();
}

absl::Status Tour::SnapshotUnderWriters(int writers) {
  std::printf("\n2. A snapshot while writers keep writing\n");
  const uint64_t warm = std::max<uint64_t>(1, pages_ / 8);
  const uint64_t after_snap = std::max<uint64_t>(1, pages_ / 4);
  const Stats before = rt_->stats();
  Writers w(region_->data(), ps_, &gen_, writers);
  {
    Progress progress("writers running", warm * ps_);
    while (w.written() < warm) {
      progress.Set(w.written() * ps_);
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  // The contract (upager/snapshot.h): a write racing with TakeSnapshot
  // lands on either side, page by page; for one consistent view the
  // writers are parked for the call, and only for the call.
  const absl::Time pause_start = absl::Now();
  w.Pause();
  const absl::Time parked = absl::Now();
  absl::StatusOr<std::unique_ptr<Snapshot>> snap = region_->TakeSnapshot();
  const absl::Time taken = absl::Now();
  if (snap.ok()) snap_gen_ = gen_;  // the point in time, while parked
  w.Resume();
  const absl::Time resumed = absl::Now();
  if (!snap.ok()) return snap.status();
  snap_ = std::move(*snap);
  const uint64_t at_snapshot = w.written();
  std::printf(
      "   %d writer thread(s) rewrote %s pages at random, in runs of 1-64 "
      "pages\n",
      writers, HumanCount(at_snapshot).c_str());
  std::printf(
      "   paused them for TakeSnapshot: writers stopped for %s, of which "
      "the snapshot took %s (no copy: a write-protect sweep)\n",
      HumanDuration(resumed - pause_start).c_str(),
      HumanDuration(taken - parked).c_str());
  {
    Progress progress("writers running after the snapshot", after_snap * ps_);
    while (w.written() < at_snapshot + after_snap) {
      progress.Set((w.written() - at_snapshot) * ps_);
      absl::SleepFor(absl::Milliseconds(20));
    }
    w.Stop();
    const absl::Duration took = progress.Finish();
    std::printf("   writers went on at full speed: %s more pages in %s, then stopped\n",
                HumanCount(w.written() - at_snapshot).c_str(),
                HumanDuration(took).c_str());
  }
  uint64_t changed = 0;
  for (uint64_t p = 0; p < pages_; ++p) changed += gen_[p] != snap_gen_[p];
  const Stats mid = rt_->stats();
  std::printf(
      "   copy-on-write: %s pages differ from the snapshot now; their old "
      "bytes were copied aside on first write (%s copies, %s of them "
      "spilled to swap)\n",
      HumanCount(changed).c_str(),
      HumanCount((mid.snapshot_copies - before.snapshot_copies) +
                  (mid.snapshot_slot_copies - before.snapshot_slot_copies))
          .c_str(),
      HumanCount(mid.snapshot_spilled_copies - before.snapshot_spilled_copies)
          .c_str());
  {
    Checker c(ps_);
    Progress progress("reading the snapshot", region_bytes_);
    absl::Status s = snap_->ForEachPage(
        [&](uint64_t page, const std::byte* bytes) -> absl::Status {
          c.Check(bytes, page, snap_gen_[page]);
          if (page % 256 == 0) progress.Set(page * ps_);
          return absl::OkStatus();
        });
    const absl::Duration took = progress.Finish();
    UPAGER_RETURN_IF_ERROR(s);
    Verdict(c, took, "snapshot reads the point-in-time bytes");
  }
  CheckRegion(region_->data(), gen_, "live region holds the newest bytes");
  return absl::OkStatus();
}

absl::Status Tour::RestoreToSnapshot() {
  std::printf("\n3. Restore\n");
  const Stats before = rt_->stats();
  Progress progress("Region::Restore");
  UPAGER_RETURN_IF_ERROR(region_->Restore(*snap_));
  const absl::Duration took = progress.Finish();
  gen_ = snap_gen_;
  const Stats after = rt_->stats();
  restored_ = after.restore_pages - before.restore_pages;
  std::printf(
      "   rolled the region back in place: %s pages rewritten (only those "
      "changed since the snapshot) in %s\n",
      HumanCount(restored_).c_str(),
      HumanDuration(took).c_str());
  CheckRegion(region_->data(), gen_, "region equals the snapshot");
  return absl::OkStatus();
}

absl::Status Tour::SaveAndMapBack() {
  std::printf("\n4. Saved snapshots, mapped back lazily\n");
  const std::string full = absl::StrCat(dir_, "/tour.0.snap");
  const std::string delta = absl::StrCat(dir_, "/tour.1.snap");
  {
    const Stats before = rt_->stats();
    Progress progress("Snapshot::SaveTo (full)");
    UPAGER_RETURN_IF_ERROR(snap_->SaveTo(full));
    const absl::Duration took = progress.Finish();
    const uint64_t bytes = rt_->stats().save_bytes - before.save_bytes;
    std::printf("   saved the snapshot to tour.0.snap: %s of pages in %s (%s), "
                "one CRC32C per page\n",
                HumanBytes(bytes).c_str(),
                HumanDuration(took).c_str(), HumanRate(bytes, took).c_str());
  }
  // Change a little: rewrite every 16th page, drop a 1/64 range to zero.
  uint64_t rewritten = 0;
  std::vector<std::byte> buf(ps_);
  for (uint64_t p = 0; p < pages_; p += 16) {
    FillPage(buf.data(), ps_, p, ++gen_[p]);
    std::memcpy(region_->data() + p * ps_, buf.data(), ps_);
    ++rewritten;
  }
  const uint64_t drop_first = pages_ / 2;
  const uint64_t drop_pages = std::max<uint64_t>(1, pages_ / 64);
  UPAGER_RETURN_IF_ERROR(rt_->Advise(region_, drop_first * ps_,
                                     drop_pages * ps_,
                                     Runtime::Advice::kDontNeed));
  for (uint64_t p = drop_first; p < drop_first + drop_pages; ++p) gen_[p] = 0;
  UPAGER_ASSIGN_OR_RETURN(std::unique_ptr<Snapshot> snap2, region_->TakeSnapshot());
  const std::vector<uint32_t> snap2_gen = gen_;
  std::printf("   then rewrote %s pages, dropped %s (Advise kDontNeed) and "
              "took snapshot #2\n",
              HumanCount(rewritten).c_str(), HumanCount(drop_pages).c_str());
  // The pages the shadow says changed between #1 and #2: #2 must read
  // them as they are now, and ForEachChangedSince (what the delta file
  // stores) must name every one.
  std::vector<bool> reported(pages_, false);
  uint64_t changed = 0;
  UPAGER_RETURN_IF_ERROR(snap2->ForEachChangedSince(*snap_, [&](uint64_t p) {
    if (p < pages_) reported[p] = true;
    ++changed;
  }));
  {
    Checker read(ps_);
    const absl::Time read_start = absl::Now();
    uint64_t missing = 0;
    std::vector<uint64_t> missing_list;
    for (uint64_t p = 0; p < pages_; ++p) {
      if (snap2_gen[p] == snap_gen_[p]) continue;
      UPAGER_RETURN_IF_ERROR(snap2->Read(p * ps_, absl::MakeSpan(buf)));
      read.Check(buf.data(), p, snap2_gen[p]);
      if (!reported[p] && missing++ < 8) missing_list.push_back(p);
    }
    Verdict(read, absl::Now() - read_start,
            "snapshot #2 reads the rewritten and dropped pages (Snapshot::Read)");
    ++checks_;
    if (missing == 0) {
      std::printf("   #2 changed %s pages since #1 by ForEachChangedSince, "
                  "every change included (the %s pages Restore rewrote count "
                  "as changes too)   OK\n",
                  HumanCount(changed).c_str(), HumanCount(restored_).c_str());
    } else {
      ++failed_;
      std::printf("   #2 changed %s pages since #1 by ForEachChangedSince, "
                  "but %s changed pages are MISSING: %s%s   FAILED\n",
                  HumanCount(changed).c_str(), HumanCount(missing).c_str(),
                  absl::StrJoin(missing_list, ", ").c_str(),
                  missing > missing_list.size() ? ", ..." : "");
    }
  }
  {
    const Stats before = rt_->stats();
    Progress progress("Snapshot::SaveTo (incremental)");
    UPAGER_RETURN_IF_ERROR(snap2->SaveTo(delta, snap_.get()));
    const absl::Duration took = progress.Finish();
    const uint64_t bytes = rt_->stats().save_bytes - before.save_bytes;
    std::printf("   saved #2 incrementally to tour.1.snap: %s (only the changed "
                "pages) in %s; its base is tour.0.snap\n",
                HumanBytes(bytes).c_str(),
                HumanDuration(took).c_str());
  }
  // Let go of the live region, so what is checked next can only come from
  // the files.
  UPAGER_RETURN_IF_ERROR(snap2->Release());
  UPAGER_RETURN_IF_ERROR(snap_->Release());
  snap2.reset();
  snap_.reset();
  UPAGER_RETURN_IF_ERROR(rt_->Unmap(region_));
  region_ = nullptr;

  const Stats before = rt_->stats();
  const absl::Time map_start = absl::Now();
  UPAGER_ASSIGN_OR_RETURN(Region * back, rt_->MapSnapshot(delta));
  const absl::Duration map_took = absl::Now() - map_start;
  std::printf("   unmapped the region; Runtime::MapSnapshot(\"tour.1.snap\") "
              "mapped %s in %s with %s pages in memory\n",
              HumanBytes(back->size()).c_str(), HumanDuration(map_took).c_str(),
              HumanCount(back->resident_pages()).c_str());
  // Touch three pages: only they (and their fault-around window) load.
  volatile std::byte sink{};
  for (uint64_t p : {uint64_t{0}, pages_ / 2 + pages_ / 4, pages_ - 1}) {
    sink = back->data()[p * ps_];
  }
  (void)sink;
  // Stats trail a fill by microseconds (upager/stats.h): wait for them.
  uint64_t loaded = 0;
  for (int i = 0; i < 100; ++i) {
    loaded = rt_->stats().pages_file_filled - before.pages_file_filled;
    if (loaded >= 3) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::printf("   read 3 bytes on 3 pages: %s pages loaded from the files (lazy: "
              "a first touch fills its page and a few after it, each checked "
              "against its CRC32C)\n",
              HumanCount(loaded).c_str());
  CheckRegion(back->data(), snap2_gen, "mapped snapshot #2 (base + delta) reads back");
  std::printf("   pages loaded from the two files: %s\n",
              HumanCount(rt_->stats().pages_file_filled - before.pages_file_filled).c_str());
  return rt_->Unmap(back);
}

absl::Status Tour::Finish() {
  const Stats s = rt_->stats();
  std::printf("\nStats (Runtime::stats().ToString())\n");
  std::string text = s.ToString();
  // Indent for the section layout.
  std::string indented = "   ";
  for (char c : text) {
    indented += c;
    if (c == '\n') indented += "   ";
  }
  while (!indented.empty() && indented.back() == ' ') indented.pop_back();
  std::printf("%s", indented.c_str());
  ++checks_;
  if (absl::Status st = rt_->status(); !st.ok()) {
    ++failed_;
    std::printf("   Runtime::status(): %s   FAILED\n", st.ToString().c_str());
  }
  return absl::OkStatus();
}

// One line on stderr, like every subcommand's failure: the message only
// (it names the path or the option; the status code would add noise such
// as "INTERNAL: " in front of an errno text).
int Fail(const std::string& what, const absl::Status& s) {
  std::fflush(stdout);
  std::fprintf(stderr, "upager %s: %s: %s\n", kName, what.c_str(),
               std::string(s.message()).c_str());
  return kExitFailure;
}

int RunTour(const std::vector<std::string>& args) {
  if (!args.empty()) {
    return UsageError(kName, absl::StrCat("unexpected argument '", args[0], "'"));
  }
  const uint64_t region_mib = absl::GetFlag(FLAGS_region_mib);
  const uint64_t budget_mib = absl::GetFlag(FLAGS_budget_mib);
  const int writers = absl::GetFlag(FLAGS_writers);
  if (region_mib < 1 || region_mib > 65536) {
    return UsageError(kName, absl::StrCat("--region_mib=", region_mib,
                                          " is outside [1, 65536]"));
  }
  if (budget_mib < 1 || budget_mib > 65536) {
    return UsageError(kName, absl::StrCat("--budget_mib=", budget_mib,
                                          " is outside [1, 65536]"));
  }
  if (writers < 1 || writers > 64) {
    return UsageError(kName,
                      absl::StrCat("--writers=", writers, " is outside [1, 64]"));
  }
  const uint64_t region_bytes = region_mib << 20;
  const uint64_t budget_bytes = budget_mib << 20;
  const absl::Time start = absl::Now();

  absl::StatusOr<std::string> dir =
      os::MakeTempDirectory("upager-tour-", absl::GetFlag(FLAGS_dir));
  if (!dir.ok()) return Fail("cannot create the scratch directory", dir.status());
  const bool keep = absl::GetFlag(FLAGS_keep);
  ScratchDir scratch(*dir, keep);

  RuntimeOptions o;
  o.resident_budget_bytes = budget_bytes;
  o.swap.path = absl::StrCat(scratch.path(), "/tour.swap");
  // The region, plus the snapshot copies that spill (at most what the
  // writers rewrite), plus room to spare.
  o.swap.capacity_bytes = 2 * region_bytes + budget_bytes;
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(o);
  if (!rt.ok()) {
    return Fail("cannot start a Runtime ('upager probe' shows what this "
                "kernel allows)",
                rt.status());
  }
  const Stats s0 = (*rt)->stats();
  std::printf(
      "upager tour: every capability on one %s region, %s of it in memory at "
      "most\n",
      HumanBytes(region_bytes).c_str(), HumanBytes(budget_bytes).c_str());
  std::printf("   userfaultfd: %s mode via %s; %d service thread(s)\n",
              s0.uffd_mode.c_str(), s0.uffd_open_path.c_str(),
              s0.service_threads);
  std::printf("   scratch directory: %s (swap file, snapshot files; %s at the end)\n",
              scratch.path().c_str(), keep ? "kept" : "removed");
  std::fflush(stdout);

  Tour tour(rt->get(), region_bytes, scratch.path());
  const struct {
    const char* what;
    std::function<absl::Status()> step;
  } steps[] = {
      {"paging", [&] { return tour.PageBeyondMemory(budget_bytes, absl::GetFlag(FLAGS_inject_error)); }},
      {"snapshot", [&] { return tour.SnapshotUnderWriters(writers); }},
      {"restore", [&] { return tour.RestoreToSnapshot(); }},
      {"saved snapshots", [&] { return tour.SaveAndMapBack(); }},
      {"stats", [&] { return tour.Finish(); }},
  };
  for (const auto& step : steps) {
    if (absl::Status s = step.step(); !s.ok()) {
      return Fail(absl::StrCat("step '", step.what, "' failed"), s);
    }
  }
  // Cleaning up is part of the run: the Runtime removes its swap file.
  rt->reset();
  scratch.Remove();
  const absl::Duration took = absl::Now() - start;
  if (tour.failed() != 0) {
    std::printf("\nFAILED: %d of %d checks failed (see above); %s\n",
                tour.failed(), tour.checks(), HumanDuration(took).c_str());
    return kExitFailure;
  }
  std::printf("\nOK: all %d checks passed in %s\n", tour.checks(),
              HumanDuration(took).c_str());
  if (keep) {
    std::printf("   the snapshot files are kept: try 'upager snapshot inspect "
                "%s/tour.1.snap'\n",
                scratch.path().c_str());
  }
  return kExitOk;
}

}  // namespace

UPAGER_CLI_COMMAND(
    tour,
    {.name = "tour",
     .summary = "a guided run over everything upager does, every byte "
                "checked (start here)",
     .usage =
         "[--region_mib=128] [--budget_mib=32] [--writers=2] [--dir=DIR] "
         "[--keep]\n\n"
         "Maps a region larger than its resident budget and walks through "
         "upager's\ncapabilities on it, printing what happens:\n"
         "  1. paging beyond memory: a pattern written to every page and "
         "read back;\n"
         "  2. a copy-on-write snapshot taken while writer threads keep "
         "writing\n     (paused for the TakeSnapshot call only), read back "
         "at its point in time;\n"
         "  3. the region restored to the snapshot;\n"
         "  4. the snapshot saved to a file, then an incremental one, and "
         "the pair\n     mapped back lazily with Runtime::MapSnapshot;\n"
         "then the Runtime's Stats. Every byte is checked against what the "
         "tour wrote.\nThe swap file and the snapshot files go to a scratch "
         "directory, removed at\nthe end unless --keep. Progress goes to "
         "stderr for steps over a second.\nExit code 0 when every check "
         "passed; 1 when one failed or upager reported an\nerror (one line "
         "on stderr); 2 for a bad command line.",
     .run = RunTour});

}  // namespace upager::cli
