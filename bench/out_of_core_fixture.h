// The one out-of-core working set alive in the process, kept between the
// calls Google Benchmark makes for one benchmark's repetitions.
//
// Building a working set takes seconds (1 GiB written through a 256 MiB
// budget), so each benchmark builds one and spends it over its timed parts,
// one per call (OocTimedParts, out_of_core_workload.h). Only one is alive at a
// time, upager's or the kernel's: two would compete for memory and the
// disk, and a kernel-side worker forked while an upager region holds pages
// would share them with the child, which makes upager's evictions fail
// (UFFDIO_MOVE refuses a shared page).
//
// Thread-safety: the benchmark thread only (benchmarks run one at a time).
#ifndef UPAGER_BENCH_OUT_OF_CORE_FIXTURE_H_
#define UPAGER_BENCH_OUT_OF_CORE_FIXTURE_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/out_of_core_workload.h"

namespace upager::bench {

class OocFixture {
 public:
  explicit OocFixture(int timed_parts) : timed_parts_(timed_parts) {}
  OocFixture(const OocFixture&) = delete;
  OocFixture& operator=(const OocFixture&) = delete;
  virtual ~OocFixture() = default;

  // The next unused timed part, 0..timed_parts-1.
  int TakeSlice() { return next_slice_++; }
  bool exhausted() const { return next_slice_ >= timed_parts_; }

 private:
  const int timed_parts_;
  int next_slice_ = 0;
};

// The live fixture if it was installed under `key` and has a timed part
// left, else nullptr.
OocFixture* LiveOocFixture(absl::string_view key);
// Keeps `fixture` under `key`, destroying the previous one.
void InstallOocFixture(std::string key, std::unique_ptr<OocFixture> fixture);
// Destroys the live fixture, if any. Also runs at exit.
void ReleaseOocFixture();

// The live fixture of type T under `key`, or (after destroying whatever is
// alive, so two working sets never coexist) a new one from `build()`, which
// returns absl::StatusOr<std::unique_ptr<T>>. One key is only ever used
// with one T.
template <typename T, typename Build>
absl::StatusOr<T*> AcquireOocFixture(absl::string_view key, Build build) {
  if (OocFixture* live = LiveOocFixture(key); live != nullptr) {
    return static_cast<T*>(live);
  }
  ReleaseOocFixture();
  absl::StatusOr<std::unique_ptr<T>> made = build();
  if (!made.ok()) return made.status();
  T* const fixture = made->get();
  InstallOocFixture(std::string(key), std::move(*made));
  return fixture;
}

}  // namespace upager::bench

#endif  // UPAGER_BENCH_OUT_OF_CORE_FIXTURE_H_
