// The public Snapshot handle and Region's snapshot methods: thin wrappers
// that reach the Engine through its EngineLink (runtime/engine.h).
#include "upager/snapshot.h"

#include "absl/strings/str_cat.h"
#include "runtime/engine.h"
#include "runtime/region_core.h"
#include "upager/region.h"

namespace upager {
namespace {

absl::Status Gone() {
  return absl::FailedPreconditionError(
      "the snapshot's Runtime was destroyed");
}

// A fork() child has a copy of the Runtime, but its userfaultfd (and swap
// store) are the parent's: a Release there lifted the parent's write
// protection (the parent's later writes went uncopied and its snapshot
// read them), and a read could take the parent's store completions.
absl::Status InForkChild() {
  return absl::FailedPreconditionError(
      "Snapshot used in a fork() child; a Runtime and its snapshots serve "
      "only the process that created them");
}

}  // namespace

Snapshot::Snapshot(std::shared_ptr<internal::EngineLink> link,
                   uint32_t region_id, uint64_t epoch, size_t size,
                   size_t page_size)
    : link_(std::move(link)),
      region_id_(region_id),
      epoch_(epoch),
      size_(size),
      page_size_(page_size) {}

Snapshot::~Snapshot() { (void)Release(); }

bool Snapshot::released() const {
  absl::ReaderMutexLock lock(&link_->mu);
  return link_->engine == nullptr ||
         !link_->engine->SnapshotLive(region_id_, epoch_);
}

absl::Status Snapshot::Read(size_t offset, absl::Span<std::byte> out) const {
  absl::ReaderMutexLock lock(&link_->mu);
  if (link_->engine == nullptr) return Gone();
  if (link_->engine->InForkChild()) return InForkChild();
  return link_->engine->ReadSnapshot(region_id_, epoch_, offset, out);
}

absl::Status Snapshot::ForEachPage(
    const std::function<absl::Status(uint64_t, const std::byte*)>& fn) const {
  absl::ReaderMutexLock lock(&link_->mu);
  if (link_->engine == nullptr) return Gone();
  if (link_->engine->InForkChild()) return InForkChild();
  return link_->engine->ForEachSnapshotPage(region_id_, epoch_, fn);
}

absl::Status Snapshot::ForEachChangedSince(
    const Snapshot& base, const std::function<void(uint64_t)>& fn) const {
  if (base.link_ != link_ || base.region_id_ != region_id_ ||
      base.epoch_ >= epoch_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Snapshot::ForEachChangedSince: base snapshot ", base.epoch_,
        " is not an older snapshot of the same region as snapshot ", epoch_));
  }
  absl::ReaderMutexLock lock(&link_->mu);
  if (link_->engine == nullptr) return Gone();
  if (link_->engine->InForkChild()) return InForkChild();
  return link_->engine->ForEachChanged(region_id_, base.epoch_, epoch_, fn);
}

absl::Status Snapshot::SaveTo(const std::string& path,
                              const Snapshot* base) const {
  std::string base_path;
  if (base != nullptr) {
    if (base->link_ != link_ || base->region_id_ != region_id_ ||
        base->epoch_ >= epoch_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Snapshot::SaveTo: base snapshot ", base->epoch_,
          " is not an older snapshot of the same region as snapshot ",
          epoch_));
    }
    base_path = base->saved_path();
    if (base_path.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Snapshot::SaveTo: base snapshot ", base->epoch_,
          " was never saved; save it first (a delta names its base file)"));
    }
  }
  absl::ReaderMutexLock lock(&link_->mu);
  if (link_->engine == nullptr) return Gone();
  if (link_->engine->InForkChild()) return InForkChild();
  absl::Status s = link_->engine->SaveSnapshot(
      region_id_, epoch_, path, base != nullptr ? base->epoch_ : 0, base_path);
  if (s.ok()) {
    absl::MutexLock save_lock(&save_mu_);
    saved_path_ = path;
  }
  return s;
}

std::string Snapshot::saved_path() const {
  absl::MutexLock lock(&save_mu_);
  return saved_path_;
}

absl::Status Snapshot::Release() {
  absl::ReaderMutexLock lock(&link_->mu);
  if (link_->engine == nullptr) return absl::OkStatus();  // all freed
  // The parent's snapshot: nothing of it is the child's to free.
  if (link_->engine->InForkChild()) return absl::OkStatus();
  return link_->engine->ReleaseSnapshot(region_id_, epoch_);
}

absl::StatusOr<std::unique_ptr<Snapshot>> Region::TakeSnapshot() {
  return core_->engine->TakeSnapshot(this);
}

absl::Status Region::Restore(const Snapshot& snapshot) {
  return core_->engine->Restore(this, snapshot);
}

}  // namespace upager
