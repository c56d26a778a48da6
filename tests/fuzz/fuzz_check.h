// Contract checks for the fuzz targets (tests/fuzz/*_fuzzer.cc). A failed
// check prints what broke and aborts: libFuzzer reports that as a crash
// and saves the input, the corpus replay test (corpus_replay_test.cc) as a
// failed test. Unlike assert(), active in every build type.
#ifndef UPAGER_TESTS_FUZZ_FUZZ_CHECK_H_
#define UPAGER_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

namespace upager::fuzz {

[[noreturn]] inline void CheckFailed(const char* file, int line,
                                     const char* condition,
                                     const std::string& detail) {
  std::fprintf(stderr, "%s:%d: fuzz contract violated: %s\n  %s\n", file,
               line, condition, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace upager::fuzz

// `detail` (a std::string expression) is evaluated only on failure.
#define UPAGER_FUZZ_CHECK(condition, detail)                              \
  do {                                                                    \
    if (!(condition)) {                                                   \
      ::upager::fuzz::CheckFailed(__FILE__, __LINE__, #condition, detail); \
    }                                                                     \
  } while (0)

#endif  // UPAGER_TESTS_FUZZ_FUZZ_CHECK_H_
