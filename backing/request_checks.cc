#include "backing/request_checks.h"

#include "absl/strings/str_format.h"

namespace upager::internal {
namespace {

bool Aligned(const std::byte* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

}  // namespace

absl::Status CheckCapacity(uint64_t capacity_bytes, size_t page_size) {
  if (capacity_bytes == 0 || capacity_bytes % page_size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "capacity_bytes=%d: must be a non-zero multiple of the page size (%d)",
        capacity_bytes, page_size));
  }
  return absl::OkStatus();
}

absl::Status CheckRequests(absl::Span<const BackingStore::Request> requests,
                           size_t page_size, const SlotAllocator& slots) {
  using Op = BackingStore::Request::Op;
  for (size_t i = 0; i < requests.size(); ++i) {
    const BackingStore::Request& r = requests[i];
    if (r.op != Op::kRead && r.op != Op::kWrite) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "request %d: op %d is neither kRead nor kWrite", i,
          static_cast<int>(r.op)));
    }
    if (r.slot >= slots.capacity()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "request %d: slot %d is out of range (capacity %d slots)", i, r.slot,
          slots.capacity()));
    }
    if (r.buffer == nullptr || !Aligned(r.buffer, page_size)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "request %d: buffer %p is not aligned to the page size (%d)", i,
          static_cast<const void*>(r.buffer), page_size));
    }
    if (!slots.IsAllocated(r.slot)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "request %d: slot %d is not allocated", i, r.slot));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBufferRegion(const std::byte* base, size_t len,
                               size_t page_size) {
  if (base == nullptr || !Aligned(base, page_size) || len == 0 ||
      len % page_size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "buffer region base=%p len=%d: must be non-empty, aligned to the page "
        "size (%d) and a multiple of it",
        static_cast<const void*>(base), len, page_size));
  }
  return absl::OkStatus();
}

}  // namespace upager::internal
