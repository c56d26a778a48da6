// `upager probe`: what this kernel and this user let upager do, and what
// each missing piece disables. Everything is tried for real (descriptors
// opened, features negotiated, a ring created, a region paged through a
// budget), not inferred from the kernel version.
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "runtime/cli/command.h"
#include "runtime/cli/json.h"
#include "runtime/os/errno_status.h"
#include "runtime/os/probe.h"
#include "runtime/os/userfaultfd.h"
#include "upager/upager.h"

ABSL_FLAG(std::string, format, "text",
          "Output: text (for people) or json (one object, for scripts)");
ABSL_FLAG(uint32_t, io_uring_depth, 128,
          "Submission-queue entries of the test ring, 1..4096 (the swap "
          "store's default is 128)");

namespace upager::cli {
namespace {

namespace os = ::upager::internal::os;
namespace f = ::upager::internal::os::uffd_feature;

// What the runtime registers as io_uring fixed buffers (its read buffers,
// runtime/paging.cc), so the probe pins as much as upager will.
constexpr size_t kRingBufferBytes = size_t{1} << 20;

// What upager does with each feature and what lacking it costs. Keep in
// step with Engine::WantedFeatures (runtime/engine.cc) and the has(...)
// checks in runtime/.
struct FeatureUse {
  uint64_t bit;
  const char* use;
  const char* without;
};
constexpr FeatureUse kFeatureUses[] = {
    {f::kPagefaultFlagWp,
     "write-protect faults: copy-on-write snapshots, clean-page drop",
     "no write-protect: no clean-page drop (every evicted page is written "
     "to swap, even unchanged) and no copy-on-write snapshots"},
    {f::kEventFork, "not requested: a fork() child gets a private copy",
     "nothing in upager (not requested)"},
    {f::kEventRemap, "follows the application's mremap() of a region",
     "the application's mremap() of a region goes unseen: upager's page "
     "table and Stats go stale"},
    {f::kEventRemove, "follows madvise(MADV_DONTNEED) on a region",
     "the application's madvise(MADV_DONTNEED) on a region goes unseen: "
     "upager's page table and Stats go stale"},
    {f::kMissingHugetlbfs, "not used (regions are anonymous memory)",
     "nothing in upager"},
    {f::kMissingShmem, "not used (regions are anonymous memory)",
     "nothing in upager"},
    {f::kEventUnmap, "follows the application's munmap() of a region",
     "the application's munmap() of part of a region goes unseen: upager's "
     "page table and Stats go stale"},
    {f::kSigbus,
     "requested only for FaultMode::kSignal: the faulting thread resolves "
     "its own fault in a SIGBUS handler",
     "FaultMode::kSignal is refused (Runtime::Create fails with "
     "FailedPrecondition); thread mode works"},
    {f::kThreadId, "requested; the faulting thread's id is not used yet",
     "nothing in upager today"},
    {f::kMinorHugetlbfs, "not used", "nothing in upager"},
    {f::kMinorShmem, "not used", "nothing in upager"},
    {f::kExactAddress, "not used (page-aligned addresses suffice)",
     "nothing in upager"},
    {f::kWpHugetlbfsShmem, "not used", "nothing in upager"},
    {f::kWpUnpopulated,
     "not requested: upager's page table knows the untouched pages, and the "
     "kernel's markers would break its read fills",
     "nothing in upager (its page table knows which pages were never "
     "touched)"},
    {f::kPoison,
     "a fault that fails (a swap read error, a corrupt saved page) "
     "releases the thread with SIGBUS",
     "a fault that fails (a swap read error, a corrupt saved page) wakes "
     "the faulting thread (which faults again) instead of delivering "
     "SIGBUS; the error stays in Stats"},
    {f::kWpAsync,
     "not requested: snapshots need synchronous write-protect, and one "
     "userfaultfd cannot have both",
     "nothing in upager"},
    {f::kMove,
     "eviction moves victims out, copy-on-write moves pages aside, and "
     "write faults move pre-zeroed pool pages in, with UFFDIO_MOVE",
     "a resident budget is refused (Runtime::Create fails with "
     "FailedPrecondition): no paging beyond memory; no snapshots "
     "(TakeSnapshot fails with FailedPrecondition); no zero-page pool "
     "(write faults copy zeros in)"},
};

bool UserModeOnly(const os::UffdPathProbe& p) {
  return p.path == os::UffdOpenPath::kSyscallUserModeOnly;
}

std::string FeatureName(int bit) {
  return absl::AsciiStrToUpper(os::UffdFeatureName(bit));
}

std::vector<std::string> IoctlList(uint64_t bits) {
  std::vector<std::string> names;
  for (int b = 0; b < 64; ++b) {
    if (!(bits & (uint64_t{1} << b))) continue;
    const char* n = os::UffdIoctlName(b);
    names.push_back(n != nullptr ? n : absl::StrCat("ioctl", b));
  }
  return names;
}

std::string IoctlNames(uint64_t bits) {
  const std::vector<std::string> names = IoctlList(bits);
  return names.empty() ? "none" : absl::StrJoin(names, " ");
}

std::string JsonStrings(const std::vector<std::string>& v) {
  std::vector<std::string> quoted;
  for (const std::string& s : v) quoted.push_back(JsonString(s));
  return JsonArray(quoted);
}

std::string ErrnoText(int err) {
  return std::string(os::ErrnoToStatus(err, "").message().substr(2));
}

// "crw-------": the file type and permission bits of st_mode.
std::string ModeString(uint32_t mode) {
  std::string s = (mode & 0170000) == 0020000   ? "c"
                  : (mode & 0170000) == 0040000 ? "d"
                                                : "-";
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) s += (mode & (0400u >> i)) ? rwx[i] : '-';
  return s;
}

// The bracketed choice of a /sys knob like "always [madvise] never".
std::string Selected(absl::string_view knob) {
  const size_t open = knob.find('[');
  const size_t close = knob.find(']');
  if (open == absl::string_view::npos || close < open) {
    return std::string(absl::StripAsciiWhitespace(knob));
  }
  return std::string(knob.substr(open + 1, close - open - 1));
}

// A knob's value, or "absent" when the file cannot be read (a kernel too
// old for the knob, or /proc not mounted).
std::string Knob(const std::string& path) {
  absl::StatusOr<std::string> v = os::ReadSmallFile(path);
  if (!v.ok()) return "absent";
  return std::string(absl::StripAsciiWhitespace(*v));
}

std::string StatusText(const absl::Status& s) {
  return s.ok() ? "ok" : std::string(s.message());
}

// Maps a region through a real Runtime, writes every page, and reads the
// bytes back. With `budget_pages` > 0 the region is four times the budget,
// so the pages make a round trip through the swap store.
absl::Status TryRuntime(size_t page, uint64_t budget_pages,
                        std::string* detail) {
  RuntimeOptions o;
  o.service_threads = 1;
  o.resident_budget_bytes = budget_pages * page;
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(o);
  if (!rt.ok()) return rt.status();
  const size_t pages = budget_pages > 0 ? 4 * budget_pages : 16;
  absl::StatusOr<Region*> region =
      (*rt)->Map({.size = pages * page, .name = "probe"});
  if (!region.ok()) return region.status();
  std::byte* p = (*region)->data();
  // One marked byte per page at a varying offset; its neighbour must
  // still read as zero.
  for (size_t i = 0; i < pages; ++i) p[i * page + i] = std::byte{0x5a};
  for (size_t i = 0; i < pages; ++i) {
    if (p[i * page + i] != std::byte{0x5a} ||
        p[i * page + i + 1] != std::byte{0}) {
      return absl::DataLossError(
          absl::StrCat("page ", i, " read back wrong bytes"));
    }
  }
  const Stats s = (*rt)->stats();
  *detail = budget_pages > 0
                ? absl::StrCat(pages, " pages through a ", budget_pages,
                               "-page budget: ", s.pages_swapped_out,
                               " swapped out, ", s.pages_swapped_in,
                               " swapped in, bytes verified")
                : absl::StrCat(s.uffd_open_path, ", ", s.uffd_mode,
                               " mode: ", pages, " pages written and verified");
  if (absl::Status st = (*rt)->Unmap(*region); !st.ok()) return st;
  return (*rt)->status();
}

struct Report {
  os::HostInfo host;
  std::string unprivileged_userfaultfd;
  absl::StatusOr<os::PathInfo> dev_userfaultfd = absl::UnknownError("");
  std::vector<os::UffdPathProbe> paths;
  // The first path that works (what UffdOpenMode::kAuto picks), or null.
  const os::UffdPathProbe* used() const {
    for (const os::UffdPathProbe& p : paths) {
      if (p.ok()) return &p;
    }
    return nullptr;
  }
  std::string io_uring_disabled;
  os::IoUringProbe ring;
  std::string thp;
  absl::Status pagemap_scan;
  absl::Status runtime;
  std::string runtime_detail;
  absl::Status budget;
  std::string budget_detail;
  // (what, what it disables), one per missing piece.
  std::vector<std::pair<std::string, std::string>> missing;
};

Report Probe(uint32_t depth) {
  Report r;
  r.host = os::GetHostInfo();
  r.unprivileged_userfaultfd = Knob("/proc/sys/vm/unprivileged_userfaultfd");
  r.dev_userfaultfd = os::StatPath("/dev/userfaultfd");
  // The order Runtime's default (UffdOpenMode::kAuto) tries them in.
  for (os::UffdOpenPath path :
       {os::UffdOpenPath::kSyscall, os::UffdOpenPath::kDevice,
        os::UffdOpenPath::kSyscallUserModeOnly}) {
    r.paths.push_back(os::ProbeUffdPath(path));
  }
  r.io_uring_disabled = Knob("/proc/sys/kernel/io_uring_disabled");
  r.ring = os::ProbeIoUring(depth, kRingBufferBytes);
  absl::StatusOr<std::string> thp =
      os::ReadSmallFile("/sys/kernel/mm/transparent_hugepage/enabled");
  r.thp = thp.ok() ? Selected(*thp) : "absent";
  r.pagemap_scan = os::ProbePagemapScan();
  r.runtime = TryRuntime(r.host.page_size, 0, &r.runtime_detail);
  r.budget = TryRuntime(r.host.page_size, 64, &r.budget_detail);
  const os::UffdPathProbe* used = r.used();

  auto& m = r.missing;
  if (used == nullptr) {
    m.emplace_back("userfaultfd",
                   "none can be opened: upager cannot run here "
                   "(Runtime::Create fails with PermissionDenied)");
  } else if (UserModeOnly(*used)) {
    m.emplace_back(
        "full userfaultfd",
        "only user-mode-only opens: the kernel's own accesses (read(2), "
        "write(2), recv(2) into an untouched page of a region) fail with "
        "EFAULT. Fix: run as root, sysctl vm.unprivileged_userfaultfd=1, or "
        "give this user read-write access to /dev/userfaultfd");
  }
  if (used != nullptr) {
    for (const FeatureUse& u : kFeatureUses) {
      if (used->granted & u.bit) continue;
      const int bit = __builtin_ctzll(u.bit);
      const std::string why =
          (used->denied & u.bit)
              ? absl::StrCat("denied to this process (",
                             u.bit == f::kEventFork
                                 ? "needs CAP_SYS_PTRACE"
                                 : ErrnoText(used->denied_error),
                             ")")
              : "missing from this kernel";
      m.emplace_back(FeatureName(bit), absl::StrCat(why, ": ", u.without));
    }
  }
  if (!r.ring.ring.ok()) {
    m.emplace_back("io_uring",
                   "no swap file store: a resident budget needs an "
                   "application-supplied SwapOptions::store");
  } else {
    if (!r.ring.registered_buffers.ok()) {
      m.emplace_back("io_uring fixed buffers",
                     "swap I/O pins its pages per request instead (slower); "
                     "raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK");
    }
    if (!r.ring.registered_file.ok()) {
      m.emplace_back("io_uring fixed file",
                     "each swap I/O takes a file reference (slightly slower)");
    }
    if (!r.ring.io.ok()) {
      m.emplace_back("io_uring I/O", "swap I/O would fail: " +
                                         std::string(r.ring.io.message()));
    }
  }
  if (!r.pagemap_scan.ok()) {
    m.emplace_back("PAGEMAP_SCAN",
                   "nothing in upager today (the planned dirty tracking)");
  }
  if (used != nullptr && !r.runtime.ok()) {
    m.emplace_back("upager Runtime", StatusText(r.runtime));
  }
  if (r.runtime.ok() && !r.budget.ok()) {
    m.emplace_back("resident budget", StatusText(r.budget));
  }
  return r;
}

std::string Bytes(uint64_t b) {
  if (b == UINT64_MAX) return "unlimited";
  if (b >= (uint64_t{1} << 20) && b % (uint64_t{1} << 20) == 0) {
    return absl::StrCat(b >> 20, " MiB");
  }
  return absl::StrCat(b >> 10, " KiB");
}

std::string PathState(const os::UffdPathProbe& p) {
  if (p.open_error != 0) return "cannot open: " + ErrnoText(p.open_error);
  if (p.api_error != 0) return "UFFDIO_API failed: " + ErrnoText(p.api_error);
  return "ok";
}

std::string FeatureState(const os::UffdPathProbe& p, uint64_t bit) {
  if (p.granted & bit) return "granted";
  if (p.denied & bit) return "denied";
  return "missing";
}

void PrintText(const Report& r, uint32_t depth) {
  const os::HostInfo& h = r.host;
  const os::UffdPathProbe* used = r.used();
  const auto row = [](absl::string_view k, absl::string_view v) {
    std::printf("  %-46s %s\n", std::string(k).c_str(), std::string(v).c_str());
  };
  std::printf(
      "Linux %s %s, page size %zu bytes, %d CPUs online (%d usable "
      "here), uid %u (effective %u)\n\n",
      h.kernel_release.c_str(), h.machine.c_str(), h.page_size, h.online_cpus,
      h.allowed_cpus, h.uid, h.euid);
  std::printf("userfaultfd\n");
  row("vm.unprivileged_userfaultfd", r.unprivileged_userfaultfd);
  row("/dev/userfaultfd",
      r.dev_userfaultfd.ok()
          ? absl::StrFormat("%s uid %u gid %u; this process may open it: %s",
                            ModeString(r.dev_userfaultfd->mode),
                            r.dev_userfaultfd->uid, r.dev_userfaultfd->gid,
                            r.dev_userfaultfd->read_write ? "yes" : "no")
          : "absent");
  row("CAP_SYS_PTRACE",
      (h.capabilities >> os::kCapSysPtrace) & 1 ? "yes" : "no");
  for (size_t i = 0; i < r.paths.size(); ++i) {
    row(absl::StrCat("open via ", os::UffdOpenPathName(r.paths[i].path)),
        PathState(r.paths[i]));
  }
  if (used == nullptr) {
    row("upager uses", "nothing: no userfaultfd can be opened");
  } else {
    row("upager uses",
        absl::StrCat(os::UffdOpenPathName(used->path),
                     UserModeOnly(*used)
                         ? " (user-mode-only: kernel accesses get EFAULT)"
                         : " (full: kernel accesses are served too)"));
    row("ioctls on the descriptor", IoctlNames(used->api_ioctls));
    row(absl::StrCat("ioctls on an anonymous range (",
                     used->register_modes & os::kRegisterWriteProtect
                         ? "MISSING|WP"
                         : "MISSING",
                     ")"),
        used->register_error != 0
            ? "UFFDIO_REGISTER failed: " + ErrnoText(used->register_error)
            : IoctlNames(used->range_ioctls));
    std::printf("  features (UFFDIO_API):\n");
    for (const FeatureUse& u : kFeatureUses) {
      std::printf("    %-20s %-8s %s\n",
                  FeatureName(__builtin_ctzll(u.bit)).c_str(),
                  FeatureState(*used, u.bit).c_str(), u.use);
    }
  }
  std::printf("\nio_uring\n");
  row("kernel.io_uring_disabled", r.io_uring_disabled);
  row(absl::StrCat("ring (", depth, " entries)"), StatusText(r.ring.ring));
  row(absl::StrCat("fixed buffers (", Bytes(r.ring.buffer_bytes), ")"),
      StatusText(r.ring.registered_buffers));
  row("fixed file", StatusText(r.ring.registered_file));
  row("a read through the ring", StatusText(r.ring.io));
  row("RLIMIT_MEMLOCK", Bytes(h.memlock_limit));
  std::printf("\nmemory\n");
  row("transparent hugepages",
      absl::StrCat(r.thp, " (upager regions opt out: MADV_NOHUGEPAGE)"));
  row("PAGEMAP_SCAN",
      r.pagemap_scan.ok() ? "available" : StatusText(r.pagemap_scan));
  std::printf("\nupager\n");
  row("Runtime, map, first touch",
      r.runtime.ok() ? r.runtime_detail : StatusText(r.runtime));
  row("resident budget + swap file",
      r.budget.ok() ? r.budget_detail : StatusText(r.budget));
  std::printf("\nmissing, and what it disables in upager\n");
  if (r.missing.empty()) {
    std::printf(
        "  nothing: every kernel feature upager uses is available "
        "to this process\n");
  }
  for (const auto& [what, disables] : r.missing) {
    std::printf("  %s: %s\n", what.c_str(), disables.c_str());
  }
}

void PrintJson(const Report& r, uint32_t depth) {
  const os::HostInfo& h = r.host;
  const os::UffdPathProbe* used = r.used();
  JsonObject out;
  out.Add("kernel", h.kernel_release);
  out.Add("machine", h.machine);
  out.Add("page_size", h.page_size);
  out.Add("cpus_online", h.online_cpus);
  out.Add("cpus_usable", h.allowed_cpus);
  out.Add("uid", h.uid);
  out.Add("euid", h.euid);
  out.Add("cap_sys_ptrace", ((h.capabilities >> os::kCapSysPtrace) & 1) != 0);

  JsonObject uffd;
  uffd.Add("unprivileged_userfaultfd", r.unprivileged_userfaultfd);
  if (r.dev_userfaultfd.ok()) {
    JsonObject dev;
    dev.Add("mode", ModeString(r.dev_userfaultfd->mode));
    dev.Add("uid", r.dev_userfaultfd->uid);
    dev.Add("gid", r.dev_userfaultfd->gid);
    dev.Add("read_write", r.dev_userfaultfd->read_write);
    uffd.AddRaw("dev_userfaultfd", dev.Build());
  } else {
    uffd.AddRaw("dev_userfaultfd", "null");
  }
  std::vector<std::string> paths;
  for (size_t i = 0; i < r.paths.size(); ++i) {
    JsonObject p;
    p.Add("path", os::UffdOpenPathName(r.paths[i].path));
    p.Add("ok", r.paths[i].ok());
    p.Add("state", PathState(r.paths[i]));
    paths.push_back(p.Build());
  }
  uffd.AddRaw("open_paths", JsonArray(paths));
  uffd.Add("used_path",
           used != nullptr ? os::UffdOpenPathName(used->path) : "");
  uffd.Add("user_mode_only", used != nullptr && UserModeOnly(*used));
  if (used != nullptr) {
    uffd.AddRaw("api_ioctls", JsonStrings(IoctlList(used->api_ioctls)));
    uffd.AddRaw("range_ioctls", JsonStrings(IoctlList(used->range_ioctls)));
    JsonObject features;
    for (const FeatureUse& u : kFeatureUses) {
      features.Add(FeatureName(__builtin_ctzll(u.bit)),
                   FeatureState(*used, u.bit));
    }
    uffd.AddRaw("features", features.Build());
  }
  out.AddRaw("userfaultfd", uffd.Build());

  JsonObject ring;
  ring.Add("io_uring_disabled", r.io_uring_disabled);
  ring.Add("depth", depth);
  ring.Add("ring", StatusText(r.ring.ring));
  ring.Add("fixed_buffers", StatusText(r.ring.registered_buffers));
  ring.Add("fixed_file", StatusText(r.ring.registered_file));
  ring.Add("io", StatusText(r.ring.io));
  if (h.memlock_limit == UINT64_MAX) {
    ring.AddRaw("memlock_limit_bytes", "null");  // unlimited
  } else {
    ring.Add("memlock_limit_bytes", h.memlock_limit);
  }
  out.AddRaw("io_uring", ring.Build());

  out.Add("transparent_hugepages", r.thp);
  out.Add("pagemap_scan", r.pagemap_scan.ok());
  out.Add("runtime", r.runtime.ok() ? r.runtime_detail : StatusText(r.runtime));
  out.Add("runtime_ok", r.runtime.ok());
  out.Add("budget", r.budget.ok() ? r.budget_detail : StatusText(r.budget));
  out.Add("budget_ok", r.budget.ok());
  std::vector<std::string> missing;
  for (const auto& [what, disables] : r.missing) {
    JsonObject m;
    m.Add("missing", what);
    m.Add("disables", disables);
    missing.push_back(m.Build());
  }
  out.AddRaw("missing", JsonArray(missing));
  std::printf("%s\n", out.Build().c_str());
}

int RunProbe(const std::vector<std::string>& args) {
  if (!args.empty()) {
    return UsageError("probe",
                      absl::StrCat("unexpected argument '", args[0], "'"));
  }
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "text" && format != "json") {
    return UsageError("probe", absl::StrCat("--format=", format,
                                            " is not one of: text, json"));
  }
  const uint32_t depth = absl::GetFlag(FLAGS_io_uring_depth);
  if (depth < 1 || depth > 4096) {
    return UsageError("probe", absl::StrCat("--io_uring_depth=", depth,
                                            " is outside [1, 4096]"));
  }
  const Report r = Probe(depth);
  if (format == "json") {
    PrintJson(r, depth);
  } else {
    PrintText(r, depth);
  }
  // Scripts can ask "does upager work here?" with the exit code alone.
  return r.runtime.ok() ? kExitOk : kExitFailure;
}

}  // namespace

UPAGER_CLI_COMMAND(
    probe,
    {.name = "probe",
     .summary = "what this kernel and this user let upager do, and what "
                "each missing feature disables",
     .usage =
         "[--format=text|json] [--io_uring_depth=N]\n\n"
         "Tries every way of opening a userfaultfd (userfaultfd(2), "
         "/dev/userfaultfd,\nuser-mode-only) and reports the sysctl and "
         "device permissions behind them,\nthe UFFDIO_API features and "
         "ioctls granted, whether io_uring rings, fixed\nbuffers and fixed "
         "files work, the transparent-hugepage mode, PAGEMAP_SCAN,\nand "
         "runs a small region through a real Runtime with and without a "
         "resident\nbudget. Ends with one line per missing piece saying what "
         "it disables.\nExit code 0 when upager works here, 1 when it does "
         "not, 2 for a bad command line.",
     .run = RunProbe});

}  // namespace upager::cli
