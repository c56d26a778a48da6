#include "runtime/copy_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/os/memory.h"

namespace upager::internal {

CopyPool::CopyPool(size_t page_size)
    : page_size_(page_size),
      chunks_(new std::atomic<std::byte*>[kMaxChunks]()) {}

CopyPool::~CopyPool() {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < chunk_count_; ++i) {
    (void)os::Unmap(chunks_[i].load(), kChunkPages * page_size_);
  }
}

absl::StatusOr<uint64_t> CopyPool::Allocate() {
  absl::MutexLock lock(&mu_);
  if (free_.empty()) {
    if (chunk_count_ == kMaxChunks) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "snapshot copy pool is full (", kMaxChunks * kChunkPages,
          " pages)"));
    }
    absl::StatusOr<void*> m = os::MapAnonymous(kChunkPages * page_size_,
                                               os::Protection::kReadWrite,
                                               nullptr);
    if (!m.ok()) return m.status();
    const uint64_t base = chunk_count_ * kChunkPages;
    chunks_[chunk_count_++].store(static_cast<std::byte*>(*m),
                                  std::memory_order_release);
    // Hand out low indices first: frees then tend to form runs.
    for (uint64_t i = kChunkPages; i-- > 0;) free_.push_back(base + i);
  }
  const uint64_t index = free_.back();
  free_.pop_back();
  in_use_.fetch_add(1, std::memory_order_relaxed);
  return index;
}

void CopyPool::Free(std::vector<uint64_t> indices) {
  if (indices.empty()) return;
  std::sort(indices.begin(), indices.end());
  // One madvise per run of adjacent frames in one chunk.
  for (size_t i = 0; i < indices.size();) {
    size_t j = i + 1;
    while (j < indices.size() && indices[j] == indices[j - 1] + 1 &&
           indices[j] % kChunkPages != 0) {
      ++j;
    }
    (void)os::AdviseDontNeed(page(indices[i]), (j - i) * page_size_);
    i = j;
  }
  in_use_.fetch_sub(indices.size(), std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  free_.insert(free_.end(), indices.rbegin(), indices.rend());
}

}  // namespace upager::internal
