// Numbers with units, for the tool's human-readable output: "256 MiB",
// "65,536", "1.42 s", "180 MiB/s", "2,113".
//
// Thread-safety: pure functions.
#ifndef UPAGER_RUNTIME_CLI_FORMAT_H_
#define UPAGER_RUNTIME_CLI_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace upager::cli {

// Binary units, at most one decimal and none when it is 0: "512 bytes",
// "4 KiB", "62.5 MiB", "1.2 GiB".
std::string HumanBytes(uint64_t bytes);

// With thousands separators: "65,536".
std::string HumanCount(uint64_t n);

// A number as a person reads it: thousands separators, and decimals only
// below 100 ("2,113", "45.3", "0.87").
std::string HumanNumber(double v);

// "850 us", "3.1 ms", "1.42 s".
std::string HumanDuration(absl::Duration d);

// Bytes per second in MiB/s: "180 MiB/s".
std::string HumanRate(uint64_t bytes, absl::Duration d);

}  // namespace upager::cli

#endif  // UPAGER_RUNTIME_CLI_FORMAT_H_
