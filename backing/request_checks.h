// Argument checks every store applies before accepting anything, so that a
// bad request is refused with the same message whichever store gets it.
//
// Thread-safety: the functions are thread-safe (they only read the
// allocator through its own lock).
#ifndef UPAGER_BACKING_REQUEST_CHECKS_H_
#define UPAGER_BACKING_REQUEST_CHECKS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "backing/slot_allocator.h"
#include "upager/backing_store.h"

namespace upager::internal {

// InvalidArgument naming the value unless `capacity_bytes` is a non-zero
// multiple of `page_size`.
absl::Status CheckCapacity(uint64_t capacity_bytes, size_t page_size);

// For each request: InvalidArgument for an unknown op, a slot at or past
// the capacity, or a buffer that is null or not aligned to `page_size`;
// FailedPrecondition for a slot that is not allocated (reading or writing
// one means two owners disagree about it). The message names the request's
// index and the offending value.
absl::Status CheckRequests(absl::Span<const BackingStore::Request> requests,
                           size_t page_size, const SlotAllocator& slots);

// InvalidArgument unless [base, base + len) is non-empty, page-aligned and a
// whole number of pages.
absl::Status CheckBufferRegion(const std::byte* base, size_t len,
                               size_t page_size);

}  // namespace upager::internal

#endif  // UPAGER_BACKING_REQUEST_CHECKS_H_
