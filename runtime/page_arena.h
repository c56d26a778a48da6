// A fixed set of page-sized buffers with a free list: the staging pages
// eviction moves victims into, and the buffers swap-in reads land in.
//
// Thread-safety: Acquire/Release may be called from any thread.
#ifndef UPAGER_RUNTIME_PAGE_ARENA_H_
#define UPAGER_RUNTIME_PAGE_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace upager::internal {

class PageArena {
 public:
  static constexpr int kNone = -1;

  // Maps `pages` pages of private anonymous memory (not populated).
  static absl::StatusOr<std::unique_ptr<PageArena>> Create(size_t pages,
                                                           size_t page_size);
  ~PageArena();
  PageArena(const PageArena&) = delete;
  PageArena& operator=(const PageArena&) = delete;

  // A free buffer index, or kNone when all are in use.
  int Acquire();
  // The first index of a run of up to `max` adjacent free buffers (the
  // longest the first free stretch allows), with its length in *got; kNone
  // when all are in use. Batch moves need adjacent destinations.
  int AcquireRun(size_t max, size_t* got);
  void Release(int index);

  std::byte* page(int index) const { return base_ + index * page_size_; }
  std::byte* base() const { return base_; }
  size_t pages() const { return pages_; }
  size_t bytes() const { return pages_ * page_size_; }
  size_t in_use() const;

 private:
  PageArena(std::byte* base, size_t pages, size_t page_size);

  std::byte* const base_;
  const size_t pages_;
  const size_t page_size_;
  mutable absl::Mutex mu_;
  std::vector<bool> used_ ABSL_GUARDED_BY(mu_);
  size_t in_use_ ABSL_GUARDED_BY(mu_) = 0;
  // Where the next search starts: allocation sweeps the arena round-robin,
  // so freed stretches coalesce behind it.
  size_t hint_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_PAGE_ARENA_H_
