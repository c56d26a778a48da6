// `upager snapshot verify`: opens a snapshot file with its whole chain of
// bases (every header, footer and metadata checked at open) and checks
// every stored page of every file against its CRC32C. The verdict is one
// line: "OK: ..." or "CORRUPT: <the first bad page, naming file and page>".
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backing/snapshot_file.h"
#include "runtime/cli/command.h"

ABSL_FLAG(absl::Duration, progress_interval, absl::Seconds(1),
          "Print a progress line on stderr when verifying has taken this "
          "long, and again every time as long after (0: after every read)");

namespace upager::cli {
namespace {

using ::upager::internal::SnapshotChain;
using ::upager::internal::SnapshotFileReader;

constexpr char kName[] = "snapshot verify";

// One line on stderr naming what failed; the status names the file.
int Fail(const absl::Status& s) {
  std::fprintf(stderr, "upager %s: %s\n", kName,
               std::string(s.message()).c_str());
  return kExitFailure;
}

int RunVerify(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    return UsageError(
        kName, args.empty() ? "expects one snapshot file"
                            : absl::StrCat("expects one snapshot file, got ",
                                           args.size(), " arguments"));
  }
  const absl::Duration interval = absl::GetFlag(FLAGS_progress_interval);
  if (interval < absl::ZeroDuration()) {
    return UsageError(
        kName, absl::StrCat("--progress_interval=",
                            absl::FormatDuration(interval), " is negative"));
  }
  // Open checks everything but page data: a missing file or base, a
  // truncated file, damaged headers or metadata, another format version,
  // a base that does not match its delta.
  absl::StatusOr<SnapshotChain> chain = SnapshotChain::Open(args[0]);
  if (!chain.ok()) return Fail(chain.status());

  const auto files = chain->files();
  uint64_t total = 0;  // DATA pages in the chain
  for (const auto& f : files) total += f->info().data_pages;
  const absl::Time start = absl::Now();
  absl::Time last_report = start;
  bool reported = false;
  uint64_t before = 0;  // pages of the files already verified
  for (size_t i = 0; i < files.size(); ++i) {
    const SnapshotFileReader& file = *files[i];
    const auto progress = [&](uint64_t done, uint64_t /*in_file*/) {
      const absl::Time now = absl::Now();
      if (now - start < interval || (reported && now - last_report < interval))
        return;
      const uint64_t all = before + done;
      std::fprintf(stderr,
                   "upager %s: verified %llu of %llu pages (%d%%), file %zu "
                   "of %zu '%s'\n",
                   kName, static_cast<unsigned long long>(all),
                   static_cast<unsigned long long>(total),
                   static_cast<int>(total == 0 ? 100 : 100 * all / total),
                   i + 1, files.size(), file.path().c_str());
      last_report = now;
      reported = true;
    };
    if (absl::Status s = file.VerifyAll(progress); !s.ok()) {
      // DataLoss is what the file says about itself (a checksum mismatch,
      // or the file shrank since it was opened): the verdict. Anything
      // else (a read error) is a failure to verify.
      if (s.code() != absl::StatusCode::kDataLoss) return Fail(s);
      std::printf("CORRUPT: %s\n", std::string(s.message()).c_str());
      return kExitFailure;
    }
    before += file.info().data_pages;
  }
  std::printf("OK: %llu pages verified in %zu file(s)\n",
              static_cast<unsigned long long>(total), files.size());
  return kExitOk;
}

}  // namespace

UPAGER_CLI_COMMAND(
    snapshot_verify,
    {.name = "snapshot verify",
     .summary = "check every stored page of a snapshot file and its bases "
                "against their checksums",
     .usage =
         "[--progress_interval=DURATION] <file>\n\n"
         "Opens the snapshot file and, for a delta, every base down to the "
         "full file\n(headers, footers, metadata and extent tables are "
         "checked against their\nCRCs, sizes against the file's, each base "
         "against the id its delta recorded),\nthen reads every stored page "
         "of every file in the chain and checks its\nCRC32C. Prints one "
         "verdict on stdout: 'OK: <n> pages verified in <k> file(s)'\nor "
         "'CORRUPT: snapshot file '<f>': page <p> ...' for the first bad "
         "page.\nExit code 0 when every page is intact; 1 for a corrupt "
         "page, or when a file\nof the chain is missing, truncated, damaged "
         "or of another format version\n(one line on stderr naming the file "
         "and the problem); 2 for a bad command\nline.",
     .run = RunVerify});

}  // namespace upager::cli
