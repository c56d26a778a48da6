// upager_bench: every microbenchmark in bench/, kernel and upager side by
// side in one run. Takes the usual Google Benchmark flags
// (--benchmark_filter, --benchmark_repetitions, --benchmark_format=json...).
//
// Nothing is printed here: output goes only through the benchmark
// reporters, so --benchmark_format=json yields a parseable document. What
// the run depended on (the uffd upager got, THP mode) is added to the
// reporter's context instead.
#include <fstream>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/bench_util.h"
#include "bench/wake_calibration.h"
#include "benchmark/benchmark.h"
#include "upager/runtime.h"

namespace upager::bench {
namespace {

std::string ReadFirstLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return "unavailable";
  return line;
}

// Records how upager's userfaultfd was opened (or why it could not be), so
// a JSON result says whether the upager rows measured anything.
void AddUpagerContext() {
  absl::StatusOr<Runtime*> rt = SharedRuntime();
  if (!rt.ok()) {
    benchmark::AddCustomContext("upager_runtime", rt.status().ToString());
    return;
  }
  const Stats s = (*rt)->stats();
  benchmark::AddCustomContext("upager_runtime", "ok");
  benchmark::AddCustomContext("upager_uffd_mode", s.uffd_mode);
  benchmark::AddCustomContext("upager_uffd_open", s.uffd_open_path);
  benchmark::AddCustomContext("upager_uffd_features",
                              absl::StrJoin(s.uffd_feature_names, ","));
  benchmark::AddCustomContext("upager_service_threads",
                              std::to_string(s.service_threads));
}

// Records the cost of a thread hand-off on one CPU and across two (see
// wake_calibration.h): upager's per-fault numbers move with the second one,
// and the scheduler, not the benchmark, decides which of the two a run
// gets. `taskset -c 0` forces the first.
void AddWakeContext() {
  // 2000 round trips: ~0.2 s even where a cross-CPU trip costs 100 us.
  constexpr int kRounds = 2000;
  const std::vector<int> cpus = AllowedCpus();
  benchmark::AddCustomContext("cpus_allowed", absl::StrJoin(cpus, ","));
  if (cpus.empty()) return;
  auto describe = [](const absl::StatusOr<double>& us) {
    return us.ok() ? absl::StrFormat("%.1f", *us) : us.status().ToString();
  };
  benchmark::AddCustomContext(
      "wake_roundtrip_us_same_cpu",
      describe(WakeRoundTripMicros(cpus[0], cpus[0], kRounds)));
  if (cpus.size() < 2) return;
  benchmark::AddCustomContext(
      "wake_roundtrip_us_cross_cpu",
      describe(WakeRoundTripMicros(cpus[0], cpus[1], kRounds)));
}

}  // namespace
}  // namespace upager::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Both sides advise 4 KiB pages; the system mode still says whether
  // anything else on the machine is competing for huge pages.
  benchmark::AddCustomContext(
      "thp_enabled", upager::bench::ReadFirstLine(
                         "/sys/kernel/mm/transparent_hugepage/enabled"));
  // Free page reporting hands freed blocks of this order back to the
  // hypervisor (see WarmHostMemory); absent on bare metal.
  benchmark::AddCustomContext(
      "page_reporting_order",
      upager::bench::ReadFirstLine(
          "/sys/module/page_reporting/parameters/page_reporting_order"));
  upager::bench::AddUpagerContext();
  upager::bench::AddWakeContext();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
