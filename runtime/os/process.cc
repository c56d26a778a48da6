#include "runtime/os/process.h"

#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/os/errno_status.h"

extern char** environ;

namespace upager::internal::os {
namespace {

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

}  // namespace

std::string ExitStatus::ToString() const {
  if (exited) return absl::StrCat("exit code ", code);
  return absl::StrCat("killed by signal ", signal, " (", strsignal(signal),
                      ")");
}

absl::StatusOr<ExitStatus> RunProcess(const std::vector<std::string>& argv,
                                      const RunOptions& options) {
  if (argv.empty() || argv[0].empty()) {
    return absl::InvalidArgumentError("RunProcess: no program to run");
  }
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  if (int err = posix_spawn_file_actions_init(&actions); err != 0) {
    return ErrnoToStatus(err, "posix_spawn_file_actions_init");
  }
  int err = 0;
  if (!options.stdout_path.empty()) {
    err = posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO,
                                           options.stdout_path.c_str(),
                                           O_WRONLY | O_CREAT | O_TRUNC, 0644);
  } else if (options.stdout_to_stderr) {
    err = posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO,
                                           STDOUT_FILENO);
  }
  pid_t pid = -1;
  if (err == 0) {
    // posix_spawnp reports a program that cannot be executed (missing, not
    // executable) through its return value: glibc waits for the exec.
    err = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  }
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    return ErrnoToStatus(err, absl::StrCat("posix_spawn(", Quoted(argv[0]),
                                           options.stdout_path.empty()
                                               ? ""
                                               : absl::StrCat(", stdout=",
                                                              Quoted(options.stdout_path)),
                                           ")"));
  }
  int wstatus = 0;
  pid_t got;
  do {
    got = waitpid(pid, &wstatus, 0);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    return ErrnoToStatus(errno, absl::StrCat("waitpid(", pid, ")"));
  }
  ExitStatus status;
  if (WIFEXITED(wstatus)) {
    status.exited = true;
    status.code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    status.signal = WTERMSIG(wstatus);
  }
  return status;
}

absl::StatusOr<std::string> ExecutablePath() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf));
  if (n < 0) return ErrnoToStatus(errno, "readlink(\"/proc/self/exe\")");
  if (static_cast<size_t>(n) == sizeof(buf)) {
    return ErrnoToStatus(ENAMETOOLONG, "readlink(\"/proc/self/exe\")");
  }
  return std::string(buf, static_cast<size_t>(n));
}

absl::StatusOr<std::string> MakeTempDirectory(absl::string_view prefix,
                                              const std::string& parent) {
  std::string dir = parent;
  if (dir.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    dir = tmpdir != nullptr && tmpdir[0] != '\0' ? tmpdir : "/var/tmp";
  }
  const std::string pattern = absl::StrCat(dir, "/", prefix, "XXXXXX");
  std::string templ = pattern;  // mkdtemp fills in the X's
  if (mkdtemp(templ.data()) == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("mkdtemp(", Quoted(pattern), ")"));
  }
  return templ;
}

absl::Status MakeDirectories(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("mkdir: empty path");
  // Every prefix ending before a '/', then the whole path.
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i < path.size() && path[i] != '/') continue;
    const std::string prefix = path.substr(0, i);
    if (mkdir(prefix.c_str(), 0755) == 0) continue;
    const int err = errno;
    if (err != EEXIST) {
      return ErrnoToStatus(err, absl::StrCat("mkdir(", Quoted(prefix), ")"));
    }
    struct stat st;
    if (stat(prefix.c_str(), &st) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("stat(", Quoted(prefix), ")"));
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::AlreadyExistsError(
          absl::StrCat("mkdir(", Quoted(prefix), "): exists and is not a directory"));
    }
  }
  return absl::OkStatus();
}

namespace {

// nftw's callback cannot carry state; the first failure is kept here.
// RemoveTree holds no lock: nftw runs on the caller's thread, and the only
// state is this thread_local.
thread_local int remove_errno = 0;
thread_local char remove_failed_path[PATH_MAX];

int RemoveOne(const char* path, const struct stat*, int type, struct FTW*) {
  const int rc = type == FTW_DP ? rmdir(path) : unlink(path);
  if (rc != 0 && remove_errno == 0) {
    remove_errno = errno;
    std::strncpy(remove_failed_path, path, sizeof(remove_failed_path) - 1);
    remove_failed_path[sizeof(remove_failed_path) - 1] = '\0';
  }
  return 0;  // keep going: remove as much as possible
}

}  // namespace

absl::Status RemoveTree(const std::string& path) {
  remove_errno = 0;
  if (nftw(path.c_str(), RemoveOne, 16, FTW_DEPTH | FTW_PHYS) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("nftw(", Quoted(path), ")"));
  }
  if (remove_errno != 0) {
    return ErrnoToStatus(remove_errno,
                         absl::StrCat("remove(", Quoted(remove_failed_path), ")"));
  }
  return absl::OkStatus();
}

absl::Status WriteStringToFile(const std::string& path,
                               absl::string_view contents) {
  int fd;
  do {
    fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return ErrnoToStatus(errno, absl::StrCat("open(", Quoted(path),
                                             ", O_WRONLY|O_CREAT|O_TRUNC)"));
  }
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return ErrnoToStatus(err, absl::StrCat("write(", Quoted(path), ")"));
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("close(", Quoted(path), ")"));
  }
  return absl::OkStatus();
}

bool StderrIsTerminal() { return isatty(STDERR_FILENO) == 1; }

}  // namespace upager::internal::os
