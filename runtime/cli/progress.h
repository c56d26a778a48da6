// A progress line on stderr for a step that takes more than a second.
//
//   Progress p("writing the pattern", region_bytes);
//   for (...) p.Set(done_bytes);
//   p.Finish();   // before printing the step's result on stdout
//
// Nothing is printed for a step that ends within a second. After that, once
// a second: on a terminal one line rewritten in place ("\r") and erased by
// Finish; otherwise a line each time ("  ... writing the pattern: 45%
// (115 MiB of 256 MiB), 2.0 s"). A reporter thread does the printing, so a
// step whose work happens inside one library call (Restore, SaveTo) gets a
// line too; Set is one relaxed atomic store, cheap enough per page.
//
// Thread-safety: Set may be called from any thread; construct and Finish
// on one.
#ifndef UPAGER_RUNTIME_CLI_PROGRESS_H_
#define UPAGER_RUNTIME_CLI_PROGRESS_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace upager::cli {

class Progress {
 public:
  // `total_bytes` 0: the amount is unknown; the line shows the time only.
  Progress(std::string what, uint64_t total_bytes = 0);
  ~Progress();  // Finish()es
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void Set(uint64_t done_bytes) {
    done_.store(done_bytes, std::memory_order_relaxed);
  }
  // Stops the reporter and erases a rewritten line. Idempotent. Returns the
  // time since construction.
  absl::Duration Finish();

 private:
  void Report();

  const std::string what_;
  const uint64_t total_;
  const absl::Time start_;
  const bool terminal_;
  std::atomic<uint64_t> done_{0};
  absl::Duration elapsed_;  // set by Finish
  bool finished_ = false;   // owner's thread only
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reporter_;
};

}  // namespace upager::cli

#endif  // UPAGER_RUNTIME_CLI_PROGRESS_H_
