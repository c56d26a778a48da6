// The in-memory store behind NewMemoryStore: slot i is the page at offset
// i * page_size() of one private anonymous mapping (reserved with
// MAP_NORESERVE, so an unused capacity costs address space only).
//
// Every request completes inside Submit: its bytes are copied before Submit
// returns and its completion waits in a queue for Reap/Wait. completion_fd()
// is an eventfd that is readable exactly while that queue is non-empty, so
// the runtime can poll it as it polls the swap file's. A freed slot's page
// is returned to the kernel (MADV_DONTNEED): the store's footprint follows
// the slots in use, and a reallocated slot reads as zero until written.
//
// This is also the model for an application's own store: the argument
// checks in backing/request_checks.h, a SlotAllocator, and a completion
// queue are all a store needs.
//
// SYNCHRONIZATION
// - mu_ guards the completion queue, the eventfd's state and the counters.
//   Page copies run outside it: requests on different slots never touch
//   the same bytes, and the caller keeps at most one request in flight per
//   slot (as for any store).
// - The slot allocator has its own lock, never taken with mu_ held except
//   from stats().
#ifndef UPAGER_BACKING_MEMORY_STORE_H_
#define UPAGER_BACKING_MEMORY_STORE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "backing/slot_allocator.h"
#include "runtime/os/wakeup.h"
#include "upager/backing_store.h"

namespace upager::internal {

class MemoryStore final : public BackingStore {
 public:
  // InvalidArgument unless `capacity_bytes` is a non-zero multiple of the
  // page size; the error of mmap or eventfd otherwise.
  static absl::StatusOr<std::unique_ptr<MemoryStore>> Create(
      uint64_t capacity_bytes);

  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;
  ~MemoryStore() override;  // unmaps the slots

  size_t page_size() const override { return page_size_; }
  uint64_t capacity_slots() const override { return slots_.capacity(); }

  absl::StatusOr<uint64_t> AllocateSlot() override;
  void FreeSlot(uint64_t slot) override;
  // Checks the region and otherwise ignores it: a memcpy needs no
  // registration (stats().registered_buffers stays false).
  absl::Status RegisterBuffers(std::byte* base, size_t len) override;
  absl::Status Submit(absl::Span<const Request> requests) override;
  size_t Reap(absl::Span<Completion> out) override;
  // Returns at once when completions are queued; otherwise waits for
  // another thread's Submit, up to `timeout`.
  size_t Wait(absl::Span<Completion> out, absl::Duration timeout) override;
  int completion_fd() const override { return ready_fd_.fd(); }
  BackingStoreStats stats() const override;

 private:
  MemoryStore(std::byte* base, uint64_t capacity_bytes, size_t page_size,
              os::EventFd ready_fd);

  bool HasReady() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !ready_.empty();
  }
  size_t ReapLocked(absl::Span<Completion> out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::byte* const base_;         // the mapping: capacity_bytes_ long
  const uint64_t capacity_bytes_;
  const size_t page_size_;        // bytes per slot
  SlotAllocator slots_;
  os::EventFd ready_fd_;  // readable while ready_ is non-empty

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  std::deque<Completion> ready_ ABSL_GUARDED_BY(mu_);
  BackingStoreStats counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace upager::internal

#endif  // UPAGER_BACKING_MEMORY_STORE_H_
