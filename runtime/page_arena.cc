#include "runtime/page_arena.h"

#include "runtime/os/memory.h"

namespace upager::internal {

absl::StatusOr<std::unique_ptr<PageArena>> PageArena::Create(size_t pages,
                                                             size_t page_size) {
  auto mem = os::MapAnonymous(pages * page_size, os::Protection::kReadWrite);
  if (!mem.ok()) return mem.status();
  return std::unique_ptr<PageArena>(
      new PageArena(static_cast<std::byte*>(*mem), pages, page_size));
}

PageArena::PageArena(std::byte* base, size_t pages, size_t page_size)
    : base_(base), pages_(pages), page_size_(page_size), used_(pages, false) {}

PageArena::~PageArena() { (void)os::Unmap(base_, pages_ * page_size_); }

int PageArena::Acquire() {
  size_t got = 0;
  return AcquireRun(1, &got);
}

int PageArena::AcquireRun(size_t max, size_t* got) {
  absl::MutexLock lock(&mu_);
  *got = 0;
  if (in_use_ == pages_ || max == 0) return kNone;
  for (size_t scanned = 0; scanned < pages_; ++scanned) {
    const size_t i = (hint_ + scanned) % pages_;
    if (used_[i]) continue;
    size_t n = 0;
    while (n < max && i + n < pages_ && !used_[i + n]) {
      used_[i + n] = true;
      ++n;
    }
    in_use_ += n;
    hint_ = (i + n) % pages_;
    *got = n;
    return static_cast<int>(i);
  }
  return kNone;
}

void PageArena::Release(int index) {
  absl::MutexLock lock(&mu_);
  used_[static_cast<size_t>(index)] = false;
  --in_use_;
}

size_t PageArena::in_use() const {
  absl::MutexLock lock(&mu_);
  return in_use_;
}

}  // namespace upager::internal
