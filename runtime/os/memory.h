// Address-space calls: reserve, release and advise ranges.
//
// Contract: addresses and lengths are page-aligned unless a function says
// otherwise; each returns OkStatus or a status naming the call, its
// arguments and the errno. Thread-safety: all functions are thread-safe.
#ifndef UPAGER_RUNTIME_OS_MEMORY_H_
#define UPAGER_RUNTIME_OS_MEMORY_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace upager::internal::os {

// The base page size (sysconf(_SC_PAGESIZE)), cached.
size_t PageSize();

enum class Protection { kNone, kRead, kReadWrite };

// Maps `len` bytes of private anonymous memory with MAP_NORESERVE (address
// space only until touched). With `fixed` non-null, maps exactly there and
// fails with AlreadyExists if anything is mapped in the range
// (MAP_FIXED_NOREPLACE).
absl::StatusOr<void*> MapAnonymous(size_t len, Protection prot,
                                   void* fixed = nullptr);
absl::Status Unmap(void* addr, size_t len);

// A read-only private mapping of `len` bytes of the file at `path` from
// byte `offset` (page-aligned). Fails with the open/stat error naming the
// path, InvalidArgument if the file is shorter than offset + len or is not
// a regular file. The mapping is the source of UFFDIO_COPY fills; the
// caller unmaps it with Unmap(addr, len).
struct FileMapping {
  void* addr = nullptr;
  uint64_t len = 0;
  uint64_t file_size = 0;
};
absl::StatusOr<FileMapping> MapFileReadOnly(const char* path, uint64_t offset,
                                            uint64_t len);

// MADV_NOHUGEPAGE: keeps faults at base-page granularity.
absl::Status AdviseNoHugePage(void* addr, size_t len);
// MADV_DONTNEED: drops the pages (a registered range raises REMOVE).
absl::Status AdviseDontNeed(void* addr, size_t len);
// MADV_POPULATE_WRITE: pre-faults private pages (Linux 5.14+), each a
// fresh zeroed page of its own (not the shared zero page).
absl::Status PopulateWrite(void* addr, size_t len);
// MADV_WIPEONFORK: a fork() child sees the range as fresh zero-fill memory
// instead of sharing its pages copy-on-write, so the parent's pages stay
// exclusively its own (UFFDIO_MOVE refuses shared pages with EBUSY).
absl::Status AdviseWipeOnFork(void* addr, size_t len);

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_MEMORY_H_
