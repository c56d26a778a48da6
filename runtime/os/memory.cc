#include "runtime/os/memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_format.h"
#include "runtime/os/errno_status.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

namespace upager::internal::os {

size_t PageSize() {
  static const size_t kPageSize = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return kPageSize;
}

absl::StatusOr<void*> MapAnonymous(size_t len, Protection prot, void* fixed) {
  int p = PROT_NONE;
  if (prot == Protection::kRead) p = PROT_READ;
  if (prot == Protection::kReadWrite) p = PROT_READ | PROT_WRITE;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (fixed != nullptr) flags |= MAP_FIXED_NOREPLACE;
  void* addr = mmap(fixed, len, p, flags, -1, 0);
  if (addr == MAP_FAILED) {
    return ErrnoToStatus(errno, absl::StrFormat("mmap(addr=%p, len=%#x)",
                                                fixed, len));
  }
  // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and may place the
  // mapping elsewhere; treat that as the conflict it is.
  if (fixed != nullptr && addr != fixed) {
    munmap(addr, len);
    return ErrnoToStatus(EEXIST, absl::StrFormat("mmap(addr=%p, len=%#x)",
                                                 fixed, len));
  }
  return addr;
}

absl::StatusOr<FileMapping> MapFileReadOnly(const char* path, uint64_t offset,
                                            uint64_t len) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoToStatus(errno, absl::StrFormat("open(\"%s\")", path));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoToStatus(err, absl::StrFormat("fstat(\"%s\")", path));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrFormat("source file \"%s\" is not a regular file", path));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (offset > size || size - offset < len) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrFormat(
        "source file \"%s\" has %d bytes; the region needs %d bytes from "
        "offset %d",
        path, size, len, offset));
  }
  void* addr = mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd,
                    static_cast<off_t>(offset));
  const int err = errno;
  close(fd);  // the mapping keeps the file open
  if (addr == MAP_FAILED) {
    return ErrnoToStatus(err, absl::StrFormat("mmap(\"%s\", offset=%d, len=%#x)",
                                              path, offset, len));
  }
  return FileMapping{addr, len, size};
}

absl::Status Unmap(void* addr, size_t len) {
  if (munmap(addr, len) != 0) {
    return ErrnoToStatus(errno,
                         absl::StrFormat("munmap(addr=%p, len=%#x)", addr, len));
  }
  return absl::OkStatus();
}

namespace {
absl::Status Advise(void* addr, size_t len, int advice, const char* name) {
  if (madvise(addr, len, advice) != 0) {
    return ErrnoToStatus(
        errno, absl::StrFormat("madvise(addr=%p, len=%#x, %s)", addr, len, name));
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status AdviseNoHugePage(void* addr, size_t len) {
  return Advise(addr, len, MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE");
}

absl::Status AdviseDontNeed(void* addr, size_t len) {
  return Advise(addr, len, MADV_DONTNEED, "MADV_DONTNEED");
}

absl::Status PopulateWrite(void* addr, size_t len) {
  return Advise(addr, len, MADV_POPULATE_WRITE, "MADV_POPULATE_WRITE");
}

absl::Status AdviseWipeOnFork(void* addr, size_t len) {
  return Advise(addr, len, MADV_WIPEONFORK, "MADV_WIPEONFORK");
}

}  // namespace upager::internal::os
