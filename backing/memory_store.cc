#include "backing/memory_store.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "backing/request_checks.h"
#include "runtime/os/memory.h"
#include "upager/status_macros.h"

namespace upager::internal {

absl::StatusOr<std::unique_ptr<MemoryStore>> MemoryStore::Create(
    uint64_t capacity_bytes) {
  const size_t page_size = os::PageSize();
  UPAGER_RETURN_IF_ERROR(CheckCapacity(capacity_bytes, page_size));
  UPAGER_ASSIGN_OR_RETURN(os::EventFd ready_fd, os::EventFd::Create());
  UPAGER_ASSIGN_OR_RETURN(
      void* base,
      os::MapAnonymous(capacity_bytes, os::Protection::kReadWrite));
  return std::unique_ptr<MemoryStore>(
      new MemoryStore(static_cast<std::byte*>(base), capacity_bytes, page_size,
                      std::move(ready_fd)));
}

MemoryStore::MemoryStore(std::byte* base, uint64_t capacity_bytes,
                         size_t page_size, os::EventFd ready_fd)
    : base_(base),
      capacity_bytes_(capacity_bytes),
      page_size_(page_size),
      slots_(capacity_bytes / page_size),
      ready_fd_(std::move(ready_fd)) {
  absl::MutexLock lock(&mu_);
  counters_.capacity_slots = slots_.capacity();
}

MemoryStore::~MemoryStore() { (void)os::Unmap(base_, capacity_bytes_); }

absl::StatusOr<uint64_t> MemoryStore::AllocateSlot() {
  if (std::optional<uint64_t> slot = slots_.Allocate()) return *slot;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "memory store is full: all %d slots (capacity_bytes=%d) are in use",
      slots_.capacity(), capacity_bytes_));
}

void MemoryStore::FreeSlot(uint64_t slot) {
  // Give the page back to the kernel *before* the slot can be allocated
  // again: once Free returns, another thread may write a page into it, and
  // a later DONTNEED would wipe those bytes. (Failure only means the
  // memory stays in use until the slot is rewritten.)
  // Only an allocated slot: a double free must not wipe the page of
  // whoever allocated the slot since (the caller owns an allocated slot,
  // so the check cannot go stale before the Free below).
  if (slots_.IsAllocated(slot)) {
    (void)os::AdviseDontNeed(base_ + slot * page_size_, page_size_);
  }
  (void)slots_.Free(slot);
}

absl::Status MemoryStore::RegisterBuffers(std::byte* base, size_t len) {
  return CheckBufferRegion(base, len, page_size_);
}

absl::Status MemoryStore::Submit(absl::Span<const Request> requests) {
  UPAGER_RETURN_IF_ERROR(CheckRequests(requests, page_size_, slots_));
  if (requests.empty()) return absl::OkStatus();
  uint64_t reads = 0;
  for (const Request& r : requests) {
    std::byte* page = base_ + r.slot * page_size_;
    if (r.op == Request::Op::kRead) {
      std::memcpy(r.buffer, page, page_size_);
      ++reads;
    } else {
      std::memcpy(page, r.buffer, page_size_);
    }
  }
  absl::MutexLock lock(&mu_);
  for (const Request& r : requests) {
    ready_.push_back(Completion{.tag = r.tag, .error = 0});
  }
  counters_.reads += reads;
  counters_.writes += requests.size() - reads;
  ++counters_.submits;
  (void)ready_fd_.Signal();
  return absl::OkStatus();
}

size_t MemoryStore::ReapLocked(absl::Span<Completion> out) {
  size_t n = 0;
  while (n < out.size() && !ready_.empty()) {
    out[n++] = ready_.front();
    ready_.pop_front();
  }
  if (ready_.empty()) (void)ready_fd_.Clear();
  return n;
}

size_t MemoryStore::Reap(absl::Span<Completion> out) {
  if (out.empty()) return 0;
  absl::MutexLock lock(&mu_);
  return ReapLocked(out);
}

size_t MemoryStore::Wait(absl::Span<Completion> out, absl::Duration timeout) {
  if (out.empty()) return 0;
  mu_.LockWhenWithTimeout(absl::Condition(this, &MemoryStore::HasReady),
                          timeout);
  const size_t n = ReapLocked(out);
  mu_.Unlock();
  return n;
}

BackingStoreStats MemoryStore::stats() const {
  absl::MutexLock lock(&mu_);
  BackingStoreStats s = counters_;
  s.used_slots = slots_.used();
  return s;
}

}  // namespace upager::internal

namespace upager {

absl::StatusOr<std::unique_ptr<BackingStore>> NewMemoryStore(
    uint64_t capacity_bytes) {
  UPAGER_ASSIGN_OR_RETURN(std::unique_ptr<internal::MemoryStore> store,
                          internal::MemoryStore::Create(capacity_bytes));
  return std::unique_ptr<BackingStore>(std::move(store));
}

}  // namespace upager
