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

#include "absl/strings/str_join.h"
#include "bench/bench_util.h"
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
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
