#include "runtime/cli/progress.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "runtime/cli/format.h"
#include "runtime/os/process.h"

namespace upager::cli {

Progress::Progress(std::string what, uint64_t total_bytes)
    : what_(std::move(what)),
      total_(total_bytes),
      start_(absl::Now()),
      terminal_(internal::os::StderrIsTerminal()),
      reporter_([this] { Report(); }) {}

Progress::~Progress() { Finish(); }

absl::Duration Progress::Finish() {
  if (finished_) return elapsed_;
  finished_ = true;
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  reporter_.join();
  elapsed_ = absl::Now() - start_;
  return elapsed_;
}

void Progress::Report() {
  bool printed = false;
  absl::Time next = start_ + absl::Seconds(1);
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (mu_.AwaitWithDeadline(absl::Condition(&stop_), next)) break;
    }
    const absl::Time now = absl::Now();
    const uint64_t done = done_.load(std::memory_order_relaxed);
    std::string line = absl::StrCat("  ... ", what_, ": ");
    if (total_ != 0) {
      absl::StrAppend(&line, done * 100 / total_, "% (", HumanBytes(done),
                      " of ", HumanBytes(total_), "), ");
    }
    absl::StrAppendFormat(&line, "%.1f s", absl::ToDoubleSeconds(now - start_));
    if (terminal_) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
    printed = true;
    next = now + absl::Seconds(1);
  }
  if (printed && terminal_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
}

}  // namespace upager::cli
