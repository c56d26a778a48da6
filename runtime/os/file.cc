#include "runtime/os/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_format.h"
#include "runtime/os/errno_status.h"

namespace upager::internal::os {
namespace {

std::string FlagNames(int flags) {
  std::string s = "O_RDWR";
  if (flags & O_CREAT) s += "|O_CREAT";
  if (flags & O_EXCL) s += "|O_EXCL";
  if (flags & O_DIRECT) s += "|O_DIRECT";
  return s;
}

absl::Status OpenError(int err, const std::string& path, int flags) {
  return ErrnoToStatus(
      err, absl::StrFormat("open(\"%s\", %s)", path, FlagNames(flags)));
}

// open(2), retried on EINTR (opening a file on a network file system can
// be interrupted). Returns the descriptor, or -1 with errno set.
int OpenRetrying(const std::string& path, int flags) {
  int fd;
  do {
    fd = open(path.c_str(), flags, 0600);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

}  // namespace

absl::StatusOr<File> File::Open(const std::string& path,
                                const FileOpenOptions& options) {
  if (path.empty()) {
    return absl::InvalidArgumentError("file path is empty");
  }
  bool direct = options.direct_io;
  bool created = false;
  const int base = O_RDWR | O_CLOEXEC;
  for (;;) {
    const int dflag = direct ? O_DIRECT : 0;
    int flags = base | dflag;
    int fd = -1;
    if (options.create) {
      // O_EXCL first tells us whether we created the file, so a caller that
      // fails later can remove only what it made.
      flags |= O_CREAT | O_EXCL;
      fd = OpenRetrying(path, flags);
      if (fd >= 0) created = true;
      if (fd < 0 && errno == EEXIST) {
        flags &= ~O_EXCL;
        fd = OpenRetrying(path, flags);
      }
    } else {
      fd = OpenRetrying(path, flags);
    }
    if (fd >= 0) return File(fd, path, direct, created);
    const int err = errno;
    // EINVAL with O_DIRECT is the file system refusing direct I/O (ramfs,
    // some FUSE and network file systems): buffered I/O still works.
    if (err == EINVAL && direct) {
      direct = false;
      continue;
    }
    return OpenError(err, path, flags);
  }
}

File::File(File&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      direct_io_(other.direct_io_),
      created_(other.created_) {}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    direct_io_ = other.direct_io_;
    created_ = other.created_;
  }
  return *this;
}

File::~File() {
  if (fd_ >= 0) close(fd_);
}

absl::Status File::SetSize(uint64_t bytes, bool* allocated) {
  if (allocated != nullptr) *allocated = false;
  // ftruncate first: it also shrinks a longer file, which fallocate never
  // does.
  if (ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
    return ErrnoToStatus(
        errno, absl::StrFormat("ftruncate(\"%s\", %d)", path_, bytes));
  }
  if (bytes == 0) return absl::OkStatus();
  int rc;
  do {
    rc = fallocate(fd_, 0, 0, static_cast<off_t>(bytes));
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) {
    if (allocated != nullptr) *allocated = true;
    return absl::OkStatus();
  }
  const int err = errno;
  // No fallocate on this file system: the ftruncate above already gave the
  // file its size, sparse.
  if (err == EOPNOTSUPP || err == ENOSYS) return absl::OkStatus();
  return ErrnoToStatus(
      err, absl::StrFormat("fallocate(\"%s\", len=%d)", path_, bytes));
}

absl::StatusOr<uint64_t> File::Size() const {
  struct stat st;
  if (fstat(fd_, &st) != 0) {
    return ErrnoToStatus(errno, absl::StrFormat("fstat(\"%s\")", path_));
  }
  return static_cast<uint64_t>(st.st_size);
}

absl::Status File::Close() {
  if (fd_ < 0) return absl::OkStatus();
  const int fd = std::exchange(fd_, -1);
  // close(2) releases the descriptor even when it reports an error, so it
  // is never retried.
  if (close(fd) != 0) {
    return ErrnoToStatus(errno, absl::StrFormat("close(\"%s\")", path_));
  }
  return absl::OkStatus();
}

absl::Status UnlinkFile(const std::string& path) {
  if (unlink(path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrFormat("unlink(\"%s\")", path));
  }
  return absl::OkStatus();
}

}  // namespace upager::internal::os
