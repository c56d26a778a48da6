#include "bench/kernel_swap_sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace upager::bench {
namespace {

constexpr char kCgroupRoot[] = "/sys/fs/cgroup";
constexpr char kCgroupV1Memory[] = "/sys/fs/cgroup/memory";
constexpr char kCgroupPrefix[] = "upager-bench-";
constexpr char kSwapPrefix[] = "upager-kswap-";
constexpr char kSwapSuffix[] = ".swap";

absl::Status ErrnoStatus(int err, absl::string_view what) {
  return absl::Status(
      absl::ErrnoToStatusCode(err),
      absl::StrCat(what, ": ", std::strerror(err), " (errno ", err, ")"));
}

// A small kernel file (sysfs, procfs) in full, or nullopt if unreadable.
std::optional<std::string> ReadSmallFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

absl::Status WriteSmallFile(const std::string& path, const std::string& value) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open(", path, ")"));
  const ssize_t n = write(fd, value.data(), value.size());
  const int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return ErrnoStatus(n < 0 ? err : EIO,
                       absl::StrCat("write \"", value, "\" to ", path));
  }
  return absl::OkStatus();
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// The pid in "<prefix><pid><suffix>", or 0.
pid_t PidIn(absl::string_view name, absl::string_view prefix,
            absl::string_view suffix) {
  if (!absl::ConsumePrefix(&name, prefix) ||
      !absl::ConsumeSuffix(&name, suffix)) {
    return 0;
  }
  int pid = 0;
  return absl::SimpleAtoi(name, &pid) && pid > 0 ? pid : 0;
}

// A leftover of another run that no longer exists (kill(2) finds no such
// process). A reused pid only delays the cleanup.
bool IsStale(pid_t pid) {
  return pid != 0 && pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH;
}

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* e = readdir(d)) names.emplace_back(e->d_name);
  closedir(d);
  return names;
}

// Undoes what killed runs left behind: swap areas, swap files, cgroups.
void RemoveStaleLeftovers(const std::string& swap_dir,
                          const std::string& cgroup_parent) {
  std::vector<std::string> active;
  if (std::optional<std::string> swaps = ReadSmallFile("/proc/swaps")) {
    for (absl::string_view line : absl::StrSplit(*swaps, '\n')) {
      const std::string path(line.substr(0, line.find_first_of(" \t")));
      const size_t slash = path.rfind('/');
      const std::string name =
          path.substr(slash == std::string::npos ? 0 : slash + 1);
      if (IsStale(PidIn(name, kSwapPrefix, kSwapSuffix))) {
        if (swapoff(path.c_str()) != 0) {
          active.push_back(name);
          continue;
        }
        (void)unlink(path.c_str());
      } else if (!path.empty()) {
        active.push_back(name);
      }
    }
  }
  for (const std::string& name : DirEntries(swap_dir)) {
    if (IsStale(PidIn(name, kSwapPrefix, kSwapSuffix)) &&
        std::find(active.begin(), active.end(), name) == active.end()) {
      (void)unlink(absl::StrCat(swap_dir, "/", name).c_str());
    }
  }
  for (const std::string& name : DirEntries(cgroup_parent)) {
    if (IsStale(PidIn(name, kCgroupPrefix, ""))) {
      (void)rmdir(absl::StrCat(cgroup_parent, "/", name).c_str());
    }
  }
}

std::string FileSystemName(const std::string& dir) {
  struct statfs st;
  if (statfs(dir.c_str(), &st) != 0) return "unknown file system";
  switch (static_cast<uint64_t>(st.f_type)) {
    case 0xEF53:
      return "ext4";
    case 0x01021994:
      return "tmpfs";
    case 0x858458f6:
      return "ramfs";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x794c7630:
      return "overlayfs";
    case 0x6969:
      return "nfs";
    default:
      return absl::StrFormat("file system type %#x",
                             static_cast<uint64_t>(st.f_type));
  }
}

// Runs `argv` (argv[0] a path), stdin from /dev/null, stdout and stderr
// captured; a failure's status carries the tool's output.
absl::Status RunTool(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  const int err =
      posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (err != 0) {
    close(out[0]);
    return ErrnoStatus(err, absl::StrCat("posix_spawn(", argv[0], ")"));
  }
  std::string output;
  char buf[1024];
  for (;;) {
    const ssize_t n = read(out[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(
      absl::StrJoin(argv, " "), " failed (",
      WIFEXITED(status) ? absl::StrCat("exit ", WEXITSTATUS(status))
                        : absl::StrCat("signal ", WTERMSIG(status)),
      "): ", absl::StripAsciiWhitespace(output)));
}

absl::Status MkSwap(const std::string& path) {
  for (const char* tool :
       {"/usr/sbin/mkswap", "/sbin/mkswap", "/usr/bin/mkswap"}) {
    if (access(tool, X_OK) == 0) return RunTool({tool, path});
  }
  return absl::FailedPreconditionError(
      "mkswap (util-linux) not found in /usr/sbin, /sbin or /usr/bin");
}

// Writes zeros over the whole file: for file systems whose preallocated
// (unwritten) extents swapon refuses.
absl::Status ZeroFill(const std::string& path, uint64_t bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open(", path, ")"));
  std::vector<char> zeros(size_t{1} << 20);
  absl::Status s;
  for (uint64_t off = 0; off < bytes && s.ok();) {
    const size_t n = std::min<uint64_t>(zeros.size(), bytes - off);
    const ssize_t w = pwrite(fd, zeros.data(), n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      s = ErrnoStatus(w < 0 ? errno : EIO, absl::StrCat("pwrite(", path, ")"));
    else
      off += static_cast<uint64_t>(w);
  }
  if (s.ok() && fsync(fd) != 0)
    s = ErrnoStatus(errno, absl::StrCat("fsync(", path, ")"));
  close(fd);
  return s;
}

// The memory cgroup's version and the directory to create ours in.
absl::StatusOr<std::pair<int, std::string>> FindMemoryCgroup() {
  const std::optional<std::string> v2 =
      ReadSmallFile(absl::StrCat(kCgroupRoot, "/cgroup.controllers"));
  if (v2.has_value()) {
    for (absl::string_view c : absl::StrSplit(*v2, absl::ByAnyChar(" \n"))) {
      if (c == "memory") return std::make_pair(2, std::string(kCgroupRoot));
    }
  }
  if (Exists(absl::StrCat(kCgroupV1Memory, "/memory.limit_in_bytes"))) {
    // This process's own memory cgroup, from "N:memory:/path" (the
    // controller list may name several).
    const std::optional<std::string> self = ReadSmallFile("/proc/self/cgroup");
    for (absl::string_view line :
         absl::StrSplit(self.value_or(""), '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f =
          absl::StrSplit(line, absl::MaxSplits(':', 2));
      if (f.size() != 3) continue;
      for (absl::string_view c : absl::StrSplit(f[1], ',')) {
        if (c == "memory") {
          return std::make_pair(1,
                                std::string(absl::StripSuffix(
                                    absl::StrCat(kCgroupV1Memory, f[2]), "/")));
        }
      }
    }
    return std::make_pair(1, std::string(kCgroupV1Memory));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "no memory cgroup controller: ", kCgroupRoot, "/cgroup.controllers ",
      v2.has_value()
          ? absl::StrCat("lists \"", absl::StripAsciiWhitespace(*v2), "\"")
          : "does not exist",
      " and there is no cgroup v1 memory hierarchy at ", kCgroupV1Memory));
}

}  // namespace

absl::StatusOr<std::unique_ptr<KernelSwapSandbox>> KernelSwapSandbox::Create(
    const Options& options) {
  if (geteuid() != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the kernel swap baseline needs root (swapon(2), cgroup writes); "
        "running as uid ",
        geteuid()));
  }
  absl::StatusOr<std::pair<int, std::string>> cg = FindMemoryCgroup();
  if (!cg.ok()) return cg.status();
  RemoveStaleLeftovers(options.dir, cg->second);
  std::unique_ptr<KernelSwapSandbox> box(new KernelSwapSandbox);
  box->cgroup_version_ = cg->first;
  box->cgroup_dir_ = absl::StrCat(cg->second, "/", kCgroupPrefix, getpid());
  if (mkdir(box->cgroup_dir_.c_str(), 0755) != 0) {
    const int err = errno;
    const std::string dir = std::move(box->cgroup_dir_);
    box->cgroup_dir_.clear();  // not ours to remove
    return ErrnoStatus(err, absl::StrCat("mkdir(", dir, ")"));
  }
  if (absl::Status s = box->MakeCgroup(options.memory_limit_bytes); !s.ok()) {
    return s;
  }
  if (absl::Status s = box->MakeSwap(options.dir, options.swap_bytes);
      !s.ok()) {
    return s;
  }
  return box;
}

absl::Status KernelSwapSandbox::MakeCgroup(uint64_t limit_bytes) {
  limit_bytes_ = limit_bytes;
  const std::string limit = absl::StrCat(limit_bytes);
  if (cgroup_version_ == 2) {
    if (!Exists(cgroup_dir_ + "/memory.max")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the memory controller is not enabled for children of ", kCgroupRoot,
          " (", kCgroupRoot, "/cgroup.subtree_control lacks \"memory\")"));
    }
    if (absl::Status s = WriteSmallFile(cgroup_dir_ + "/memory.max", limit);
        !s.ok()) {
      return s;
    }
    // Absent without swap accounting: swap is then not limited anyway.
    if (Exists(cgroup_dir_ + "/memory.swap.max")) {
      return WriteSmallFile(cgroup_dir_ + "/memory.swap.max", "max");
    }
    return absl::OkStatus();
  }
  if (absl::Status s =
          WriteSmallFile(cgroup_dir_ + "/memory.limit_in_bytes", limit);
      !s.ok()) {
    return s;
  }
  if (Exists(cgroup_dir_ + "/memory.memsw.limit_in_bytes")) {
    return WriteSmallFile(cgroup_dir_ + "/memory.memsw.limit_in_bytes", "-1");
  }
  return absl::OkStatus();
}

absl::Status KernelSwapSandbox::MakeSwap(const std::string& dir,
                                         uint64_t bytes) {
  swap_bytes_ = bytes;
  fs_name_ = FileSystemName(dir);
  const std::string path =
      absl::StrCat(dir, "/", kSwapPrefix, getpid(), kSwapSuffix);
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("create ", path));
  swap_path_ = path;
  bool preallocated = true;
  absl::Status s;
  if (fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0) {
    if (errno == EOPNOTSUPP) {
      preallocated = false;
    } else {
      s = ErrnoStatus(errno,
                      absl::StrCat("fallocate(", path, ", ", bytes, ")"));
    }
  }
  close(fd);
  if (!s.ok()) return s;
  if (!preallocated) {
    if (absl::Status z = ZeroFill(path, bytes); !z.ok()) return z;
  }
  if (absl::Status m = MkSwap(path); !m.ok()) return m;
  if (swapon(path.c_str(), 0) != 0) {
    int err = errno;
    // Some file systems refuse preallocated (unwritten) extents: write the
    // blocks and try once more.
    if (err == EINVAL && preallocated) {
      if (absl::Status z = ZeroFill(path, bytes); !z.ok()) return z;
      if (absl::Status m = MkSwap(path); !m.ok()) return m;
      err = swapon(path.c_str(), 0) == 0 ? 0 : errno;
    }
    if (err != 0) {
      return ErrnoStatus(err, absl::StrCat("swapon(", path, ") on ", fs_name_));
    }
  }
  swap_on_ = true;
  return absl::OkStatus();
}

KernelSwapSandbox::~KernelSwapSandbox() {
  auto warn = [](const std::string& what) {
    std::fprintf(stderr, "kernel swap baseline cleanup: %s: %s\n", what.c_str(),
                 std::strerror(errno));
  };
  if (!cgroup_dir_.empty()) {
    // A reaped worker may still be leaving the cgroup for a moment.
    int tries = 0;
    while (rmdir(cgroup_dir_.c_str()) != 0) {
      if (errno != EBUSY || ++tries == 100) {
        warn("rmdir " + cgroup_dir_);
        break;
      }
      usleep(10'000);
    }
  }
  if (swap_on_ && swapoff(swap_path_.c_str()) != 0) {
    warn("swapoff " + swap_path_);
    return;  // an active swap file must stay; the next run retries
  }
  if (!swap_path_.empty() && unlink(swap_path_.c_str()) != 0) {
    warn("unlink " + swap_path_);
  }
}

std::string KernelSwapSandbox::Describe() const {
  return absl::StrFormat(
      "cgroup v%d memory limit %d MiB, swap file %d MiB on %s", cgroup_version_,
      limit_bytes_ >> 20, swap_bytes_ >> 20, fs_name_);
}

std::optional<uint64_t> KernelSwapSandbox::PeakBytes() const {
  const std::optional<std::string> s = ReadSmallFile(
      cgroup_dir_ +
      (cgroup_version_ == 2 ? "/memory.peak" : "/memory.max_usage_in_bytes"));
  uint64_t v = 0;
  if (!s.has_value() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*s), &v)) {
    return std::nullopt;
  }
  return v;
}

}  // namespace upager::bench
