// Memory for copy-on-write copies: page-sized frames carved from 2 MiB
// chunks of private anonymous memory that is never registered with a
// userfaultfd, so service threads may read and write it freely.
//
// Freed frames go back to the kernel (MADV_DONTNEED, one call per
// contiguous run) so a released snapshot returns its memory.
//
// Thread-safety: every method may be called from any thread; page() is
// lock-free (chunk pointers are published once and never move).
#ifndef UPAGER_RUNTIME_COPY_POOL_H_
#define UPAGER_RUNTIME_COPY_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace upager::internal {

class CopyPool {
 public:
  static constexpr size_t kChunkPages = 512;
  static constexpr size_t kMaxChunks = 1 << 17;  // 256 GiB of 4 KiB copies

  explicit CopyPool(size_t page_size);
  ~CopyPool();
  CopyPool(const CopyPool&) = delete;
  CopyPool& operator=(const CopyPool&) = delete;

  // A free frame's index; ResourceExhausted when the address space or
  // kMaxChunks runs out.
  absl::StatusOr<uint64_t> Allocate();
  // Frees frames (any order, no duplicates) and returns their memory.
  void Free(std::vector<uint64_t> indices);
  std::byte* page(uint64_t index) const {
    return chunks_[index / kChunkPages].load(std::memory_order_acquire) +
           (index % kChunkPages) * page_size_;
  }
  uint64_t in_use() const { return in_use_.load(std::memory_order_relaxed); }

 private:
  const size_t page_size_;
  std::unique_ptr<std::atomic<std::byte*>[]> chunks_;
  std::atomic<uint64_t> in_use_{0};
  absl::Mutex mu_;
  size_t chunk_count_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_COPY_POOL_H_
