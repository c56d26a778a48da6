#include "runtime/cli/format.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace upager::cli {
namespace {

// "62.5" or "64" (no ".0").
std::string OneDecimal(double v) {
  std::string s = absl::StrFormat("%.1f", v);
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

}  // namespace

std::string HumanBytes(uint64_t bytes) {
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " bytes");
  double v = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  return absl::StrCat(OneDecimal(v), " ", kUnits[unit]);
}

std::string HumanCount(uint64_t n) {
  std::string digits = absl::StrCat(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string HumanNumber(double v) {
  if (!std::isfinite(v)) return "-";
  if (v < 0) return absl::StrCat("-", HumanNumber(-v));
  if (v >= 1e18) return absl::StrFormat("%.3g", v);
  if (v >= 100) return HumanCount(static_cast<uint64_t>(std::llround(v)));
  if (v >= 10) return absl::StrFormat("%.1f", v);
  return absl::StrFormat("%.2f", v);
}

std::string HumanDuration(absl::Duration d) {
  const double us = absl::ToDoubleMicroseconds(d);
  if (us < 1000) return absl::StrFormat("%.0f us", us);
  if (us < 1e6) return absl::StrCat(OneDecimal(us / 1e3), " ms");
  return absl::StrFormat("%.2f s", us / 1e6);
}

std::string HumanRate(uint64_t bytes, absl::Duration d) {
  const double s = absl::ToDoubleSeconds(d);
  if (s <= 0) return "- MiB/s";
  return absl::StrFormat("%.0f MiB/s", static_cast<double>(bytes) / (1 << 20) / s);
}

}  // namespace upager::cli
