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
    : base_(base), pages_(pages), page_size_(page_size) {
  free_.reserve(pages);
  // Lowest index on top: reuse stays within few pages when load is light.
  for (size_t i = pages; i > 0; --i) free_.push_back(static_cast<int>(i - 1));
}

PageArena::~PageArena() { (void)os::Unmap(base_, pages_ * page_size_); }

int PageArena::Acquire() {
  absl::MutexLock lock(&mu_);
  if (free_.empty()) return kNone;
  const int i = free_.back();
  free_.pop_back();
  return i;
}

void PageArena::Release(int index) {
  absl::MutexLock lock(&mu_);
  free_.push_back(index);
}

size_t PageArena::in_use() const {
  absl::MutexLock lock(&mu_);
  return pages_ - free_.size();
}

}  // namespace upager::internal
