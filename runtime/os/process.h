// Processes and scratch files for the `upager` tool: run another program
// and wait for it, find this executable, create and remove a directory of
// scratch files, write a small file whole, ask whether stderr is a
// terminal. The tool itself makes no system calls; these are its only way
// to the OS besides the library.
//
// Contract: every status names the call and the path or program, e.g.
// `posix_spawn("/x/upager_bench"): No such file or directory (errno 2)`.
// Thread-safety: every function is thread-safe (no shared state), but
// RunProcess's child inherits the caller's descriptors 0-2 and the
// environment as they are at the call.
#ifndef UPAGER_RUNTIME_OS_PROCESS_H_
#define UPAGER_RUNTIME_OS_PROCESS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace upager::internal::os {

// How a child process ended.
struct ExitStatus {
  bool exited = false;  // it called exit; `code` is its exit code
  int code = 0;
  int signal = 0;  // otherwise: the signal that killed it
  bool ok() const { return exited && code == 0; }
  // "exit code 3" or "killed by signal 9 (Killed)".
  std::string ToString() const;
};

struct RunOptions {
  // Where the child's stdout goes: the caller's stdout (default), the
  // caller's stderr (so a program's chatter does not mix with the
  // caller's own output), or a file created or truncated at this path.
  bool stdout_to_stderr = false;
  std::string stdout_path;
};

// Runs argv[0] (a path, or a name looked up in PATH) with `argv`, and waits
// for it to end (waitpid, retried on EINTR). stdin and stderr are the
// caller's. NotFound / PermissionDenied when the program cannot be
// started, naming it; the child's own failure is in the ExitStatus.
absl::StatusOr<ExitStatus> RunProcess(const std::vector<std::string>& argv,
                                      const RunOptions& options = {});

// The absolute path of the running executable (/proc/self/exe).
absl::StatusOr<std::string> ExecutablePath();

// Creates a new, empty directory `<parent>/<prefix>XXXXXX` (mode 0700,
// mkdtemp) and returns its path. `parent` empty: $TMPDIR, else /var/tmp
// (a disk, unlike a tmpfs /tmp, for files that may be large).
absl::StatusOr<std::string> MakeTempDirectory(absl::string_view prefix,
                                              const std::string& parent = "");

// mkdir -p: creates `path` and any missing parents (mode 0755). OK if it
// already exists as a directory; AlreadyExists if it is something else.
absl::Status MakeDirectories(const std::string& path);

// Removes `path` and everything under it, without following symlinks
// (rm -r). For directories the caller created; NotFound if it is missing.
absl::Status RemoveTree(const std::string& path);

// Creates or truncates `path` (mode 0644) and writes `contents` to it.
absl::Status WriteStringToFile(const std::string& path,
                               absl::string_view contents);

// Whether the process's stderr is a terminal (isatty(2)), e.g. for a
// progress line rewritten in place with '\r'.
bool StderrIsTerminal();

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_PROCESS_H_
