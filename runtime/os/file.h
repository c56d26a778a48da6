// Regular files for the backing stores: open or create (with O_DIRECT where
// the file system allows it), size, read, sync, close, unlink, rename.
//
// Contract: every status names the call and the path, e.g.
// `open("/var/tmp/a.swap", O_RDWR|O_CREAT|O_DIRECT): Permission denied
// (errno 13)`, so an application that passed a bad swap path sees which.
//
// Thread-safety: a File is not synchronized; one owner opens, sizes and
// closes it. Its descriptor may be used for I/O from any thread meanwhile.
#ifndef UPAGER_RUNTIME_OS_FILE_H_
#define UPAGER_RUNTIME_OS_FILE_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace upager::internal::os {

struct FileOpenOptions {
  // Create the file (mode 0600: it will hold the application's memory) when
  // missing.
  bool create = true;
  // Ask for O_DIRECT. A file system that refuses it (EINVAL at open, e.g.
  // ramfs) gets the file opened buffered instead: see File::direct_io().
  bool direct_io = false;
  // Open O_RDONLY (snapshot files being read). Requires create == false
  // and direct_io == false.
  bool read_only = false;
};

class File {
 public:
  // Opens `path` read-write, close-on-exec.
  static absl::StatusOr<File> Open(const std::string& path,
                                   const FileOpenOptions& options);

  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  // Closes the descriptor, ignoring errors (use Close to see them).
  ~File();

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // Whether the descriptor has O_DIRECT.
  bool direct_io() const { return direct_io_; }
  // Whether Open created the file (it did not exist before).
  bool created() const { return created_; }

  // Makes the file exactly `bytes` long and, where the file system supports
  // fallocate, reserves its blocks, so that writing any offset below
  // `bytes` later cannot fail with ENOSPC. File systems without fallocate
  // get a sparse file of that size (ftruncate). Sets *allocated (if
  // non-null) to whether the blocks were reserved. ResourceExhausted when
  // the file system has no room.
  absl::Status SetSize(uint64_t bytes, bool* allocated = nullptr);
  // The current size in bytes (fstat).
  absl::StatusOr<uint64_t> Size() const;
  // ftruncate(2) alone: the file becomes exactly `bytes` long, a longer
  // one sparse (no blocks reserved, unlike SetSize).
  absl::Status Truncate(uint64_t bytes);
  // fsync(2): the file's data and metadata reach stable storage.
  absl::Status Sync();
  // pread(2) from `offset` until `out` is full or the file ends, retried on
  // EINTR and continued after short reads. Returns the bytes read: fewer
  // than out.size() only at the end of the file. Thread-safe (pread has no
  // file position).
  absl::StatusOr<size_t> ReadAt(uint64_t offset,
                                absl::Span<std::byte> out) const;

  // Closes now and reports failure. After Close, fd() is -1.
  absl::Status Close();

 private:
  File(int fd, std::string path, bool direct_io, bool created)
      : fd_(fd), path_(std::move(path)), direct_io_(direct_io),
        created_(created) {}

  int fd_ = -1;
  std::string path_;
  bool direct_io_ = false;
  bool created_ = false;
};

// Removes `path` (unlink(2)).
absl::Status UnlinkFile(const std::string& path);

// rename(2): atomically replaces `to` (if it exists) with `from`.
absl::Status RenameFile(const std::string& from, const std::string& to);

// fsync(2) on the directory `dir`, so that entries created or renamed in it
// survive a crash.
absl::Status SyncDirectory(const std::string& dir);

// getcwd(3): the absolute path of the working directory.
absl::StatusOr<std::string> CurrentDirectory();

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_FILE_H_
