// `upager bench`: runs upager_bench (Google Benchmark, kernel and upager
// side by side), then prints each upager variant's ratio to its kernel or
// fork baseline, and writes the raw JSON, the table and one SVG chart per
// benchmark family into an output directory.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runtime/cli/bench_report.h"
#include "runtime/cli/command.h"
#include "runtime/os/probe.h"
#include "runtime/os/process.h"

ABSL_FLAG(std::string, filter, "",
          "Run only the benchmarks whose name matches this regular "
          "expression (Google Benchmark's --benchmark_filter); default: all, "
          "which takes several minutes");
ABSL_FLAG(std::string, out, "",
          "Directory for the results (created if missing); default "
          "./upager-bench-<YYYYmmdd-HHMMSS>");
ABSL_FLAG(int32_t, repetitions, 1,
          "Repetitions of each benchmark (1..100); above 1 every figure is "
          "the median");
ABSL_FLAG(std::string, bench_binary, "",
          "The benchmark program to run; default: upager_bench next to this "
          "upager binary");
ABSL_FLAG(std::string, input, "",
          "Read this Google Benchmark JSON file instead of running the "
          "benchmarks (to redraw the table and charts of an earlier run)");

namespace upager::cli {
namespace {

namespace os = ::upager::internal::os;

constexpr char kName[] = "bench";
constexpr char kJsonFile[] = "upager_bench.json";

int Fail(const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "upager %s: %s\n", kName, message.c_str());
  return kExitFailure;
}

std::string DefaultBenchBinary() {
  absl::StatusOr<std::string> self = os::ExecutablePath();
  if (!self.ok()) return "upager_bench";  // looked up in PATH
  const size_t slash = self->rfind('/');
  return absl::StrCat(self->substr(0, slash + 1), "upager_bench");
}

int RunBench(const std::vector<std::string>& args) {
  if (!args.empty()) {
    return UsageError(kName, absl::StrCat("unexpected argument '", args[0], "'"));
  }
  const int repetitions = absl::GetFlag(FLAGS_repetitions);
  if (repetitions < 1 || repetitions > 100) {
    return UsageError(kName, absl::StrCat("--repetitions=", repetitions,
                                          " is outside [1, 100]"));
  }
  const std::string filter = absl::GetFlag(FLAGS_filter);
  const std::string input = absl::GetFlag(FLAGS_input);
  if (!input.empty() && (!filter.empty() || repetitions != 1 ||
                         !absl::GetFlag(FLAGS_bench_binary).empty())) {
    return UsageError(kName,
                      "--input reads an earlier run: it excludes --filter, "
                      "--repetitions and --bench_binary");
  }
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    out = absl::StrCat("upager-bench-",
                       absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(),
                                        absl::LocalTimeZone()));
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  const std::string json_path = absl::StrCat(out, "/", kJsonFile);

  std::string json;
  if (!input.empty()) {
    absl::StatusOr<std::string> text = os::ReadSmallFile(input, 256 << 20);
    if (!text.ok()) return Fail(std::string(text.status().message()));
    json = std::move(*text);
    if (absl::Status s = os::MakeDirectories(out); !s.ok()) {
      return Fail(std::string(s.message()));
    }
    if (absl::Status s = os::WriteStringToFile(json_path, json); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  } else {
    std::string binary = absl::GetFlag(FLAGS_bench_binary);
    if (binary.empty()) binary = DefaultBenchBinary();
    if (binary.find('/') != std::string::npos) {
      if (absl::StatusOr<os::PathInfo> info = os::StatPath(binary); !info.ok()) {
        return Fail(absl::StrCat("benchmark program '", binary,
                                 "' not found (build it with 'ninja -C build "
                                 "upager_bench', or pass --bench_binary)"));
      }
    }
    if (absl::Status s = os::MakeDirectories(out); !s.ok()) {
      return Fail(std::string(s.message()));
    }
    std::vector<std::string> argv = {
        binary, absl::StrCat("--benchmark_out=", json_path),
        "--benchmark_out_format=json"};
    if (!filter.empty()) argv.push_back(absl::StrCat("--benchmark_filter=", filter));
    if (repetitions > 1) {
      argv.push_back(absl::StrCat("--benchmark_repetitions=", repetitions));
      argv.push_back("--benchmark_report_aggregates_only=true");
    }
    // The benchmark's console output is the progress report: it goes to
    // stderr, so stdout carries only the table.
    std::fprintf(stderr, "upager %s: running %s\n", kName,
                 absl::StrJoin(argv, " ").c_str());
    const absl::Time start = absl::Now();
    absl::StatusOr<os::ExitStatus> st =
        os::RunProcess(argv, {.stdout_to_stderr = true});
    if (!st.ok()) return Fail(std::string(st.status().message()));
    if (!st->ok()) {
      return Fail(absl::StrCat("'", binary, "' failed: ", st->ToString()));
    }
    std::fprintf(stderr, "upager %s: benchmarks took %s\n", kName,
                 absl::FormatDuration(absl::Trunc(absl::Now() - start,
                                                  absl::Milliseconds(100)))
                     .c_str());
    absl::StatusOr<std::string> text = os::ReadSmallFile(json_path, 256 << 20);
    if (!text.ok()) {
      return Fail(absl::StrCat("'", binary, "' wrote no results (",
                               text.status().message(), ")"));
    }
    json = std::move(*text);
    // Google Benchmark leaves the output file empty when the filter
    // matches nothing or is not a valid regular expression (it says which
    // on the console, above).
    if (absl::StripAsciiWhitespace(json).empty()) {
      return Fail(filter.empty()
                      ? absl::StrCat("'", binary, "' wrote no results")
                      : absl::StrCat("no benchmark matched --filter '", filter,
                                     "' (or it is not a regular expression: "
                                     "see the message above)"));
    }
  }

  absl::StatusOr<std::vector<BenchFamily>> families = ReadBenchmarkJson(json);
  if (!families.ok()) {
    return Fail(absl::StrCat("'", input.empty() ? json_path : input,
                             "': ", families.status().message()));
  }
  if (families->empty()) {
    return Fail(filter.empty()
                    ? std::string("no benchmark results")
                    : absl::StrCat("no benchmark matched --filter '", filter, "'"));
  }
  int reps = 1;
  for (const BenchFamily& f : *families) {
    for (const BenchWorkload& w : f.workloads) {
      for (const BenchRun& r : w.runs) {
        reps = std::max(reps, r.repetitions);
      }
    }
  }
  const std::string basis =
      reps > 1 ? absl::StrCat("medians of ", reps, " repetitions")
               : std::string("one run each");
  const std::string subtitle = absl::StrCat(
      basis, "; gray: the kernel (or fork) baseline, blue: upager, green: "
      "no baseline; ratio = variant / baseline");
  const std::string table = RenderTable(*families);
  std::printf("upager vs the kernel (or fork) in the same run; %s; ratio = "
              "variant / baseline\n%s",
              basis.c_str(), table.c_str());

  std::vector<std::string> written = {absl::StrCat(kJsonFile, " (raw)"),
                                      "table.txt"};
  if (absl::Status s = os::WriteStringToFile(absl::StrCat(out, "/table.txt"), table);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  for (const BenchFamily& f : *families) {
    const std::string name = SvgFileName(f.name);
    if (absl::Status s = os::WriteStringToFile(absl::StrCat(out, "/", name),
                                               RenderFamilySvg(f, subtitle));
        !s.ok()) {
      return Fail(std::string(s.message()));
    }
    written.push_back(name);
  }
  std::printf("\nwrote to %s/: %s\n", out.c_str(),
              absl::StrJoin(written, ", ").c_str());
  return kExitOk;
}

}  // namespace

UPAGER_CLI_COMMAND(
    bench,
    {.name = "bench",
     .summary = "run the benchmarks: upager vs the kernel, a ratio table and "
                "SVG charts",
     .usage =
         "[--filter=REGEX] [--out=DIR] [--repetitions=N] "
         "[--bench_binary=PATH] [--input=FILE]\n\n"
         "Runs upager_bench (Google Benchmark: each workload run by the "
         "kernel and by\nupager in the same process) and prints, for each "
         "Family/Workload, every\nupager variant against its baseline (the "
         "kernel, fork(), or the kernel's\nswap for OutOfCore/*) on the "
         "workload's main counter (ns_per_page,\npause_ms or "
         "bytes_per_second), with p50/p99 latencies where measured.\nWrites "
         "into DIR the raw JSON (upager_bench.json), the table (table.txt) "
         "and\none SVG chart per family (open it in a browser). With "
         "--repetitions > 1\nevery figure is the median. The benchmark's "
         "own output goes to stderr.\nExit code 0 on success; 1 when the "
         "benchmark program is missing or fails,\nmatches nothing, or its "
         "output cannot be read (one line on stderr); 2 for\na bad command "
         "line.",
     .run = RunBench});

}  // namespace upager::cli
