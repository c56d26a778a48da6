// `upager bench`'s model of a Google Benchmark JSON result: runs grouped
// by family and workload, each workload's variants against its baseline,
// and the ratio table and SVG charts made from them.
//
// Names follow bench/: Family/Workload/variant, e.g.
// "FirstTouch/Sequential/upager". The baseline variants are "kernel" and
// "fork"; the kernel's swap ("Kernel/Swap/<W>") is the baseline of
// "OutOfCore/<W>/upager"; "Device/<W>" runs stand alone. Google
// Benchmark's own suffixes ("/manual_time", "/threads:2", ...) are dropped.
// A run's value is its *_median aggregate when there is one (repetitions
// > 1), else the median of its iteration records.
//
// Thread-safety: plain values and pure functions.
#ifndef UPAGER_RUNTIME_CLI_BENCH_REPORT_H_
#define UPAGER_RUNTIME_CLI_BENCH_REPORT_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace upager::cli {

struct BenchRun {
  std::string name;      // suffixes dropped: "FirstTouch/Sequential/kernel"
  std::string variant;   // "kernel"
  bool baseline = false;
  std::string error;     // non-empty: the run failed or was skipped
  // Counters and the standard fields (real_time, cpu_time,
  // bytes_per_second, items_per_second), by name.
  std::map<std::string, double> values;
  std::string time_unit;  // of real_time / cpu_time: "ns", "us", "ms", "s"
  int repetitions = 1;    // records behind the value
  bool from_median = false;  // the *_median aggregate

  std::optional<double> Get(const std::string& key) const;
};

struct BenchWorkload {
  std::string family;    // "FirstTouch"
  std::string name;      // "Sequential"
  std::vector<BenchRun> runs;  // the baseline first, then as reported
  const BenchRun* baseline() const;  // nullptr if none (or it failed)
  std::string full_name() const { return family + "/" + name; }
};

struct BenchFamily {
  std::string name;
  std::vector<BenchWorkload> workloads;  // as first reported
};

// Reads Google Benchmark's JSON output. InvalidArgument naming the line
// and column for text that is not JSON, or the member that is missing
// ("no 'benchmarks' array").
absl::StatusOr<std::vector<BenchFamily>> ReadBenchmarkJson(
    absl::string_view json);

// What a workload is compared by: the first of ns_per_page, pause_ms,
// bytes_per_second, items_per_second, real_time its runs report.
struct BenchMetric {
  std::string key;         // e.g. "ns_per_page"
  std::string unit;        // as printed after a value: "ns/page", "MB/s"
  std::string axis;        // chart axis title, e.g. "ns per page"
  double scale = 1;        // printed value = value * scale
  bool lower_is_better = true;
  const char* better = "faster";  // ratio words
  const char* worse = "slower";
};
BenchMetric MainMetric(const BenchWorkload& w);

// The ratio table: one line per non-baseline variant, "<workload>
// <baseline> <value> <unit>  <variant> <value> <unit>  <ratio>x <word>",
// then the latency lines (p50 / p99) of the runs that report them.
std::string RenderTable(const std::vector<BenchFamily>& families);

// One family's chart as a standalone SVG document: per workload, bars per
// variant for its main metric, and p50/p99 bars where the runs have them.
// `subtitle` goes under the title (e.g. "medians of 3 repetitions").
std::string RenderFamilySvg(const BenchFamily& family,
                            const std::string& subtitle);

// "FirstTouch" -> "FirstTouch.svg"; characters other than letters, digits,
// '-' and '_' become '_'.
std::string SvgFileName(const std::string& family);

}  // namespace upager::cli

#endif  // UPAGER_RUNTIME_CLI_BENCH_REPORT_H_
