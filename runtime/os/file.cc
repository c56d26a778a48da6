#include "runtime/os/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <utility>

#include "absl/strings/str_format.h"
#include "runtime/os/errno_status.h"

namespace upager::internal::os {
namespace {

std::string FlagNames(int flags) {
  std::string s = (flags & O_ACCMODE) == O_RDONLY ? "O_RDONLY" : "O_RDWR";
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
  if (options.read_only && (options.create || options.direct_io)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "open(\"%s\"): read_only excludes create and direct_io", path));
  }
  bool direct = options.direct_io;
  bool created = false;
  const int base = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
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

absl::Status File::Truncate(uint64_t bytes) {
  if (bytes > static_cast<uint64_t>(LLONG_MAX)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ftruncate(\"%s\", %d): larger than off_t", path_, bytes));
  }
  int rc;
  do {
    rc = ftruncate(fd_, static_cast<off_t>(bytes));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    return ErrnoToStatus(
        errno, absl::StrFormat("ftruncate(\"%s\", %d)", path_, bytes));
  }
  return absl::OkStatus();
}

absl::Status File::Sync() {
  if (fsync(fd_) != 0) {
    return ErrnoToStatus(errno, absl::StrFormat("fsync(\"%s\")", path_));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> File::ReadAt(uint64_t offset,
                                    absl::Span<std::byte> out) const {
  size_t done = 0;
  while (done < out.size()) {
    if (offset + done > static_cast<uint64_t>(LLONG_MAX)) break;
    const ssize_t n = pread(fd_, out.data() + done, out.size() - done,
                            static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(
          errno, absl::StrFormat("pread(\"%s\", offset=%d, len=%d)", path_,
                                 offset + done, out.size() - done));
    }
    if (n == 0) break;  // end of file
    done += static_cast<size_t>(n);
  }
  return done;
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

absl::Status RenameFile(const std::string& from, const std::string& to) {
  if (rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoToStatus(errno,
                         absl::StrFormat("rename(\"%s\", \"%s\")", from, to));
  }
  return absl::OkStatus();
}

absl::Status SyncDirectory(const std::string& dir) {
  int fd;
  do {
    fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return ErrnoToStatus(
        errno, absl::StrFormat("open(\"%s\", O_RDONLY|O_DIRECTORY)", dir));
  }
  absl::Status s;
  if (fsync(fd) != 0) {
    s = ErrnoToStatus(errno, absl::StrFormat("fsync(\"%s\")", dir));
  }
  close(fd);
  return s;
}

absl::StatusOr<std::string> CurrentDirectory() {
  std::string buf(PATH_MAX, '\0');
  if (getcwd(buf.data(), buf.size()) == nullptr) {
    return ErrnoToStatus(errno, "getcwd");
  }
  buf.resize(std::char_traits<char>::length(buf.c_str()));
  return buf;
}

}  // namespace upager::internal::os
