#include "runtime/cli/bench_report.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/cli/format.h"
#include "runtime/cli/json_parse.h"

namespace upager::cli {

std::optional<double> BenchRun::Get(const std::string& key) const {
  auto it = values.find(key);
  if (it == values.end() || !std::isfinite(it->second)) return std::nullopt;
  return it->second;
}

const BenchRun* BenchWorkload::baseline() const {
  for (const BenchRun& r : runs) {
    if (r.baseline && r.error.empty()) return &r;
  }
  return nullptr;
}

namespace {

// --- Reading the JSON.

// Fields of a benchmark record that are bookkeeping, not measurements.
bool IsBookkeeping(absl::string_view key) {
  return key == "family_index" || key == "per_family_instance_index" ||
         key == "repetitions" || key == "repetition_index" ||
         key == "threads" || key == "iterations";
}

// Google Benchmark's own name components: "manual_time", "real_time",
// "process_time", and "<option>:<value>" ("threads:2", "repeats:3").
bool IsOptionComponent(absl::string_view c) {
  if (c == "manual_time" || c == "real_time" || c == "process_time") return true;
  const size_t colon = c.find(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  for (char ch : c.substr(0, colon)) {
    if (!(ch == '_' || (ch >= 'a' && ch <= 'z'))) return false;
  }
  return true;
}

// The family, workload and variant a run name stands for (see the header).
struct NameParts {
  std::string name;
  std::string family;
  std::string workload;
  std::string variant;
  bool baseline = false;
};

NameParts SplitName(absl::string_view raw) {
  std::vector<std::string> parts;
  for (absl::string_view c : absl::StrSplit(raw, '/')) {
    if (!IsOptionComponent(c)) parts.emplace_back(c);
  }
  NameParts n;
  n.name = absl::StrJoin(parts, "/");
  if (parts.size() >= 3 && parts[0] == "Kernel" && parts[1] == "Swap") {
    // The kernel's swap is the out-of-core baseline.
    n.family = "OutOfCore";
    n.workload = absl::StrJoin(parts.begin() + 2, parts.end(), "/");
    n.variant = "kernel";
    n.baseline = true;
    return n;
  }
  if (parts.size() >= 2 && parts[0] == "Device") {
    n.family = "Device";
    n.workload = absl::StrJoin(parts.begin() + 1, parts.end(), "/");
    n.variant = "device";
    return n;
  }
  if (parts.size() >= 3) {
    n.family = parts[0];
    n.workload = absl::StrJoin(parts.begin() + 1, parts.end() - 1, "/");
    n.variant = parts.back();
  } else if (parts.size() == 2) {
    n.family = parts[0];
    n.workload = parts[1];
    n.variant = parts[1];
  } else {
    n.family = n.workload = n.variant = n.name;
  }
  n.baseline = n.variant == "kernel" || n.variant == "fork";
  return n;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// One benchmark record of the JSON, as read.
struct Record {
  std::string run_name;
  bool aggregate = false;
  std::string aggregate_name;
  int repetitions = 1;
  std::string error;
  std::string time_unit;
  std::map<std::string, double> values;
};

absl::StatusOr<Record> ReadRecord(const JsonValue& b, size_t index) {
  if (b.type() != JsonValue::Type::kObject) {
    return absl::InvalidArgumentError(
        absl::StrCat("benchmarks[", index, "] is not an object"));
  }
  Record r;
  const JsonValue* run_name = b.Find("run_name");
  if (run_name == nullptr || !run_name->AsString()) run_name = b.Find("name");
  if (run_name == nullptr || !run_name->AsString()) {
    return absl::InvalidArgumentError(
        absl::StrCat("benchmarks[", index, "] has no 'name'"));
  }
  r.run_name = *run_name->AsString();
  for (const auto& [key, v] : b.members()) {
    if (key == "run_type") {
      r.aggregate = v.AsString() == std::optional<std::string>("aggregate");
    } else if (key == "aggregate_name") {
      r.aggregate_name = v.AsString().value_or("");
    } else if (key == "repetitions") {
      r.repetitions = static_cast<int>(v.AsNumber().value_or(1));
    } else if (key == "error_occurred") {
      if (v.AsBool().value_or(false) && r.error.empty()) r.error = "error";
    } else if (key == "error_message") {
      if (auto m = v.AsString(); m && !m->empty()) r.error = *m;
    } else if (key == "time_unit") {
      r.time_unit = v.AsString().value_or("");
    } else if (auto num = v.AsNumber(); num && !IsBookkeeping(key)) {
      r.values[key] = *num;
    }
  }
  // An error message alone does not fail a run; error_occurred does.
  if (const JsonValue* e = b.Find("error_occurred");
      e == nullptr || !e->AsBool().value_or(false)) {
    r.error.clear();
  }
  return r;
}

// The metrics a workload may be compared by, in order of preference.
const BenchMetric& MetricFor(absl::string_view key, absl::string_view time_unit) {
  static const BenchMetric kNsPerPage{"ns_per_page", "ns/page", "ns per page",
                                      1, true, "faster", "slower"};
  static const BenchMetric kPause{"pause_ms", "ms pause", "pause (ms)",
                                  1, true, "shorter", "longer"};
  static const BenchMetric kBytes{"bytes_per_second", "MB/s", "MB/s",
                                  1e-6, false, "faster", "slower"};
  static const BenchMetric kItems{"items_per_second", "items/s", "items per second",
                                  1, false, "faster", "slower"};
  static const auto* kTimes = new std::map<std::string, BenchMetric>{
      {"ns", {"real_time", "ns", "time (ns)", 1, true, "faster", "slower"}},
      {"us", {"real_time", "us", "time (us)", 1, true, "faster", "slower"}},
      {"ms", {"real_time", "ms", "time (ms)", 1, true, "faster", "slower"}},
      {"s", {"real_time", "s", "time (s)", 1, true, "faster", "slower"}},
  };
  if (key == "ns_per_page") return kNsPerPage;
  if (key == "pause_ms") return kPause;
  if (key == "bytes_per_second") return kBytes;
  if (key == "items_per_second") return kItems;
  auto it = kTimes->find(std::string(time_unit));
  return it != kTimes->end() ? it->second : kTimes->at("ns");
}

}  // namespace

absl::StatusOr<std::vector<BenchFamily>> ReadBenchmarkJson(
    absl::string_view json) {
  absl::StatusOr<JsonValue> doc = ParseJson(json);
  if (!doc.ok()) return doc.status();
  const JsonValue* benchmarks = doc->Find("benchmarks");
  if (benchmarks == nullptr || benchmarks->type() != JsonValue::Type::kArray) {
    return absl::InvalidArgumentError(
        "no 'benchmarks' array: not Google Benchmark JSON output");
  }
  // Records by run name, in first-seen order.
  std::vector<std::string> order;
  std::map<std::string, std::vector<Record>> by_name;
  for (size_t i = 0; i < benchmarks->array().size(); ++i) {
    absl::StatusOr<Record> r = ReadRecord(benchmarks->array()[i], i);
    if (!r.ok()) return r.status();
    auto [it, inserted] = by_name.try_emplace(r->run_name);
    if (inserted) order.push_back(r->run_name);
    it->second.push_back(std::move(*r));
  }

  std::vector<BenchFamily> families;
  for (const std::string& run_name : order) {
    const std::vector<Record>& records = by_name[run_name];
    const NameParts parts = SplitName(run_name);
    BenchRun run;
    run.name = parts.name;
    run.variant = parts.variant;
    run.baseline = parts.baseline;
    const Record* median = nullptr;
    std::vector<const Record*> iterations;
    for (const Record& r : records) {
      if (!r.error.empty() && run.error.empty()) run.error = r.error;
      if (r.aggregate && r.aggregate_name == "median") median = &r;
      if (!r.aggregate) iterations.push_back(&r);
    }
    if (median != nullptr) {
      run.values = median->values;
      run.time_unit = median->time_unit;
      run.repetitions = median->repetitions;
      run.from_median = true;
    } else if (!iterations.empty()) {
      // Without aggregates: the median of the iteration records, key by key.
      std::map<std::string, std::vector<double>> all;
      for (const Record* r : iterations) {
        for (const auto& [k, v] : r->values) all[k].push_back(v);
        run.time_unit = r->time_unit;
      }
      for (auto& [k, v] : all) run.values[k] = Median(std::move(v));
      run.repetitions = static_cast<int>(iterations.size());
    } else if (run.error.empty()) {
      continue;  // only aggregates other than the median (mean, stddev)
    }

    auto fam = std::find_if(families.begin(), families.end(),
                            [&](const BenchFamily& f) { return f.name == parts.family; });
    if (fam == families.end()) {
      families.push_back({parts.family, {}});
      fam = families.end() - 1;
    }
    auto w = std::find_if(fam->workloads.begin(), fam->workloads.end(),
                          [&](const BenchWorkload& x) { return x.name == parts.workload; });
    if (w == fam->workloads.end()) {
      fam->workloads.push_back({parts.family, parts.workload, {}});
      w = fam->workloads.end() - 1;
    }
    // The baseline first, the others in the order reported.
    if (run.baseline) {
      w->runs.insert(std::find_if(w->runs.begin(), w->runs.end(),
                                  [](const BenchRun& r) { return !r.baseline; }),
                     std::move(run));
    } else {
      w->runs.push_back(std::move(run));
    }
  }
  return families;
}

BenchMetric MainMetric(const BenchWorkload& w) {
  // Prefer what the baseline reports, so the ratio can be taken.
  std::vector<const BenchRun*> runs;
  if (const BenchRun* b = w.baseline(); b != nullptr) runs.push_back(b);
  for (const BenchRun& r : w.runs) {
    if (r.error.empty()) runs.push_back(&r);
  }
  for (const char* key : {"ns_per_page", "pause_ms", "bytes_per_second",
                          "items_per_second"}) {
    for (const BenchRun* r : runs) {
      if (r->Get(key)) return MetricFor(key, r->time_unit);
    }
  }
  return MetricFor("real_time", runs.empty() ? "ns" : runs.front()->time_unit);
}

namespace {

// --- The table.

std::string ValueText(const BenchRun& r, const BenchMetric& m) {
  if (!r.error.empty()) return absl::StrCat(r.variant, " FAILED");
  std::optional<double> v = r.Get(m.key);
  if (!v) return absl::StrCat(r.variant, " (no ", m.key, ")");
  return absl::StrCat(r.variant, " ", HumanNumber(*v * m.scale), " ", m.unit);
}

std::string RatioText(const BenchRun& r, const BenchRun* base,
                      const BenchMetric& m) {
  if (base == nullptr) return "(no baseline)";
  if (!r.error.empty()) return absl::StrCat("error: ", r.error);
  std::optional<double> v = r.Get(m.key);
  std::optional<double> b = base->Get(m.key);
  if (!v || !b || *b == 0) return "-";
  const double ratio = *v / *b;
  const bool better = m.lower_is_better ? ratio < 1 : ratio > 1;
  const double off = std::fabs(ratio - 1);
  return absl::StrFormat("%.2fx %s", ratio,
                         off < 0.03 ? "same" : (better ? m.better : m.worse));
}

// A latency in the unit that keeps it short: "5,353 ns", "136 us", "14.2 ms".
std::string LatencyText(double ns) {
  if (ns < 10'000) return absl::StrCat(HumanNumber(ns), " ns");
  if (ns < 10'000'000) return absl::StrCat(HumanNumber(ns / 1e3), " us");
  return absl::StrCat(HumanNumber(ns / 1e6), " ms");
}

std::string Pad(const std::string& s, size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

// Rows as left-aligned columns two spaces apart, each line indented by two.
std::string Columns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line = "  ";
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, i + 1 == row.size() ? row[i] : Pad(row[i], width[i] + 2));
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace

std::string RenderTable(const std::vector<BenchFamily>& families) {
  // Rows: workload, baseline cell, variant cell, ratio.
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"workload", "baseline", "variant", "ratio"});
  std::vector<std::vector<std::string>> latency;  // name, p50, p99
  for (const BenchFamily& f : families) {
    for (const BenchWorkload& w : f.workloads) {
      const BenchMetric m = MainMetric(w);
      const BenchRun* base = w.baseline();
      std::string base_text = "-";
      for (const BenchRun& r : w.runs) {
        if (r.baseline) base_text = ValueText(r, m);
      }
      bool any = false;
      for (const BenchRun& r : w.runs) {
        if (!r.baseline) {
          rows.push_back({w.full_name(), base_text, ValueText(r, m),
                          RatioText(r, base, m)});
          any = true;
        }
      }
      if (!any) {  // a baseline alone
        rows.push_back({w.full_name(), base_text, "-", "(no variant)"});
      }
      for (const BenchRun& r : w.runs) {
        std::optional<double> p50 = r.Get("p50_ns");
        std::optional<double> p99 = r.Get("p99_ns");
        if (r.error.empty() && p50 && p99) {
          latency.push_back({r.name, absl::StrCat("p50 ", LatencyText(*p50)),
                             absl::StrCat("p99 ", LatencyText(*p99))});
        }
      }
    }
  }
  std::string out = Columns(rows);
  if (!latency.empty()) {
    absl::StrAppend(&out, "\nlatency per access (where measured)\n",
                    Columns(latency));
  }
  return out;
}

namespace {

// --- The charts.

constexpr int kWidth = 1000;
constexpr int kLabelX = 16;     // variant labels start here
constexpr int kPlotX = 210;     // bars start here
constexpr int kPlotW = 600;     // the longest bar
constexpr int kBarH = 18;
constexpr int kBarGap = 8;
constexpr const char* kBaselineColor = "#9e9e9e";
constexpr const char* kVariantColor = "#3b73b9";
constexpr const char* kOtherColor = "#5a9e5a";
constexpr const char* kP50Color = "#8fb8e0";
constexpr const char* kP99Color = "#1f4e89";

std::string Xml(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// A round step for about five ticks up to `max`: 1, 2 or 5 times a power of 10.
double NiceStep(double max) {
  if (!(max > 0)) return 1;
  const double raw = max / 5;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * mag) return m * mag;
  }
  return 10 * mag;
}

std::string TickLabel(double v, double step) {
  if (step >= 1) {
    return v < 1e18 ? HumanCount(static_cast<uint64_t>(std::llround(v)))
                    : HumanNumber(v);
  }
  const int decimals = static_cast<int>(std::ceil(-std::log10(step)));
  return absl::StrFormat("%.*f", decimals, v);
}

// One bar: a labelled row at `y` of value `v` out of `axis_max`.
struct Bar {
  std::string label;
  std::optional<double> value;  // nullopt: `note` instead of a bar
  std::string note;
  const char* color;
};

// A panel: title, rows of bars (each row one or more bars stacked in it),
// an axis with ticks. Appends to *svg and returns the panel's height.
int Panel(std::string* svg, int y, const std::string& title,
          const std::string& axis_title,
          const std::vector<std::vector<Bar>>& rows) {
  double max = 0;
  for (const auto& row : rows) {
    for (const Bar& b : row) {
      if (b.value) max = std::max(max, *b.value);
    }
  }
  const double step = NiceStep(max);
  const double axis_max = std::max(step, std::ceil(max / step) * step);
  const int top = y;
  absl::StrAppendFormat(svg,
                        "<text x=\"%d\" y=\"%d\" font-size=\"14\" "
                        "font-weight=\"bold\">%s</text>\n",
                        kLabelX, y + 16, Xml(title));
  y += 28;
  const int plot_top = y;
  int bars = 0;
  for (const auto& row : rows) bars += static_cast<int>(row.size());
  const int plot_h = bars * kBarH + static_cast<int>(rows.size()) * kBarGap;
  // Grid lines and tick labels.
  for (double t = 0; t <= axis_max * 1.0000001; t += step) {
    const double x = kPlotX + t / axis_max * kPlotW;
    absl::StrAppendFormat(svg,
                          "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
                          "stroke=\"#e3e3e3\"/>\n",
                          x, plot_top, x, plot_top + plot_h);
    absl::StrAppendFormat(svg,
                          "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" "
                          "fill=\"#555\">%s</text>\n",
                          x, plot_top + plot_h + 16, Xml(TickLabel(t, step)));
  }
  for (const auto& row : rows) {
    y += kBarGap / 2;
    for (size_t i = 0; i < row.size(); ++i) {
      const Bar& b = row[i];
      if (i == 0) {
        absl::StrAppendFormat(svg,
                              "<text x=\"%d\" y=\"%d\" dominant-baseline=\"middle\">%s</text>\n",
                              kLabelX, y + kBarH * static_cast<int>(row.size()) / 2,
                              Xml(b.label));
      }
      if (b.value) {
        const double w = std::max(1.0, *b.value / axis_max * kPlotW);
        absl::StrAppendFormat(svg,
                              "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
                              "fill=\"%s\"><title>%s</title></rect>\n",
                              kPlotX, y + 1, w, kBarH - 2, b.color,
                              Xml(absl::StrCat(b.label, ": ", HumanNumber(*b.value))));
        absl::StrAppendFormat(svg,
                              "<text x=\"%.1f\" y=\"%d\" dominant-baseline=\"middle\">%s</text>\n",
                              kPlotX + w + 6, y + kBarH / 2,
                              Xml(absl::StrCat(HumanNumber(*b.value), b.note.empty() ? "" : " ", b.note)));
      } else {
        absl::StrAppendFormat(svg,
                              "<text x=\"%d\" y=\"%d\" dominant-baseline=\"middle\" "
                              "fill=\"#b00\">%s</text>\n",
                              kPlotX + 6, y + kBarH / 2, Xml(b.note));
      }
      y += kBarH;
    }
    y += kBarGap / 2;
  }
  // The axis.
  absl::StrAppendFormat(svg,
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n"
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n",
                        kPlotX, plot_top, kPlotX, plot_top + plot_h, kPlotX,
                        plot_top + plot_h, kPlotX + kPlotW, plot_top + plot_h);
  absl::StrAppendFormat(svg,
                        "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#333\">%s</text>\n",
                        kPlotX + kPlotW / 2, plot_top + plot_h + 34, Xml(axis_title));
  return plot_top + plot_h + 48 - top;
}

}  // namespace

std::string RenderFamilySvg(const BenchFamily& family,
                            const std::string& subtitle) {
  std::string body;
  int y = 64;
  for (const BenchWorkload& w : family.workloads) {
    const BenchMetric m = MainMetric(w);
    const BenchRun* base = w.baseline();
    std::vector<std::vector<Bar>> rows;
    bool latency = false;
    for (const BenchRun& r : w.runs) {
      Bar b{r.variant, std::nullopt, "", r.baseline ? kBaselineColor
                                          : absl::StrContains(r.variant, "upager")
                                              ? kVariantColor
                                              : kOtherColor};
      if (!r.error.empty()) {
        b.note = absl::StrCat("failed: ", r.error);
      } else if (std::optional<double> v = r.Get(m.key); v) {
        b.value = *v * m.scale;
        b.note = m.unit;
        if (base != nullptr && &r != base) {
          if (std::optional<double> bv = base->Get(m.key); bv && *bv != 0) {
            absl::StrAppendFormat(&b.note, " (%.2fx %s)", *v / *bv, base->variant);
          }
        }
      } else {
        b.note = absl::StrCat("no ", m.key);
      }
      rows.push_back({b});
      latency = latency || (r.error.empty() && r.Get("p50_ns") && r.Get("p99_ns"));
    }
    y += Panel(&body, y, w.full_name(),
               absl::StrCat(m.axis, m.lower_is_better ? " (lower is better)"
                                                      : " (higher is better)"),
               rows);
    if (latency) {
      // In the unit that keeps the largest value short.
      double max = 0;
      for (const BenchRun& r : w.runs) {
        if (r.error.empty()) max = std::max(max, r.Get("p99_ns").value_or(0));
      }
      const double div = max >= 1e7 ? 1e6 : max >= 1e4 ? 1e3 : 1;
      const char* unit = max >= 1e7 ? "ms" : max >= 1e4 ? "us" : "ns";
      std::vector<std::vector<Bar>> lrows;
      for (const BenchRun& r : w.runs) {
        std::optional<double> p50 = r.Get("p50_ns");
        std::optional<double> p99 = r.Get("p99_ns");
        if (!r.error.empty() || !p50 || !p99) continue;
        lrows.push_back({{r.variant, *p50 / div, absl::StrCat(unit, " p50"), kP50Color},
                         {r.variant, *p99 / div, absl::StrCat(unit, " p99"), kP99Color}});
      }
      y += Panel(&body, y, absl::StrCat(w.full_name(), ": latency per access"),
                 absl::StrCat(unit, ": p50 (light), p99 (dark); lower is better"),
                 lrows);
    }
    y += 12;
  }
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%d\" y=\"26\" font-size=\"18\" font-weight=\"bold\">upager "
      "bench: %s</text>\n"
      "<text x=\"%d\" y=\"46\" fill=\"#555\">%s</text>\n",
      kWidth, y, kWidth, y, kLabelX, Xml(family.name), kLabelX, Xml(subtitle));
  absl::StrAppend(&svg, body, "</svg>\n");
  return svg;
}

std::string SvgFileName(const std::string& family) {
  std::string out;
  for (char c : family) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '-' || c == '_';
    out += ok ? c : '_';
  }
  return out + ".svg";
}

}  // namespace upager::cli
