// Helpers shared by the backing-store tests: unique file paths in a chosen
// directory, page-aligned buffer pools, page contents derived from a seed,
// and running a batch through a store until every completion is back.
#ifndef UPAGER_TESTS_BACKING_STORE_TEST_UTIL_H_
#define UPAGER_TESTS_BACKING_STORE_TEST_UTIL_H_

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "upager/backing_store.h"

namespace upager::testing {

inline constexpr size_t kPage = 4096;

// A directory on a disk file system (O_DIRECT works there); tests run two
// at a time, so every path they make is unique.
inline constexpr char kDiskDir[] = "/var/tmp";
// tmpfs: memory-backed.
inline constexpr char kShmDir[] = "/dev/shm";

// "<dir>/upager-test-<pid>-<n>-<tag>.swap", never handed out twice.
inline std::string UniquePath(const std::string& dir, const std::string& tag) {
  static std::atomic<int> counter{0};
  return absl::StrCat(dir, "/upager-test-", getpid(), "-", counter++, "-", tag,
                      ".swap");
}

inline bool FileExists(const std::string& path) {
  return access(path.c_str(), F_OK) == 0;
}

// Whether the file system holding `dir` accepts O_DIRECT (probes with a
// scratch file).
inline bool DirectIoSupported(const std::string& dir) {
  const std::string p = UniquePath(dir, "probe");
  const int fd = open(p.c_str(), O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
  if (fd < 0) {
    unlink(p.c_str());
    return false;
  }
  close(fd);
  unlink(p.c_str());
  return true;
}

// `count` page-aligned pages, freed on destruction.
class AlignedPages {
 public:
  explicit AlignedPages(size_t count)
      : count_(count),
        data_(static_cast<std::byte*>(std::aligned_alloc(kPage,
                                                         count * kPage))) {
    std::memset(data_, 0, count * kPage);
  }
  AlignedPages(const AlignedPages&) = delete;
  AlignedPages& operator=(const AlignedPages&) = delete;
  ~AlignedPages() { std::free(data_); }

  std::byte* page(size_t i) const { return data_ + i * kPage; }
  std::byte* data() const { return data_; }
  size_t count() const { return count_; }
  size_t bytes() const { return count_ * kPage; }

 private:
  size_t count_;
  std::byte* data_;
};

// Fills a page with bytes that depend on every bit of `seed`
// (xorshift64*), so a page landing in the wrong slot, a stale version, or a
// torn transfer cannot compare equal.
inline void FillPage(std::byte* page, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  for (size_t i = 0; i < kPage; i += 8) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    const uint64_t v = x * 0x2545f4914f6cdd1dull;
    std::memcpy(page + i, &v, 8);
  }
}

// Submits `requests` (tags must be distinct) and waits until each tag's
// completion is back. Returns the errors by tag, or the Submit status /
// DeadlineExceeded naming how many are missing.
inline absl::Status RunBatch(BackingStore& store,
                             absl::Span<const BackingStore::Request> requests,
                             absl::flat_hash_map<uint64_t, int>* errors,
                             absl::Duration timeout = absl::Seconds(20)) {
  if (absl::Status s = store.Submit(requests); !s.ok()) return s;
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<BackingStore::Completion> out(64);
  size_t got = 0;
  while (got < requests.size()) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat(requests.size() - got, " of ", requests.size(),
                       " completions missing"));
    }
    const size_t n = store.Wait(absl::MakeSpan(out), left);
    for (size_t i = 0; i < n; ++i) {
      if (!errors->emplace(out[i].tag, out[i].error).second) {
        return absl::InternalError(
            absl::StrCat("tag ", out[i].tag, " completed twice"));
      }
    }
    got += n;
  }
  return absl::OkStatus();
}

// RunBatch, then OK only if every request succeeded.
inline absl::Status RunBatchOk(BackingStore& store,
                               absl::Span<const BackingStore::Request> requests) {
  absl::flat_hash_map<uint64_t, int> errors;
  if (absl::Status s = RunBatch(store, requests, &errors); !s.ok()) return s;
  for (const auto& [tag, err] : errors) {
    if (err != 0) {
      return absl::InternalError(
          absl::StrCat("tag ", tag, " failed: ", std::strerror(err)));
    }
  }
  return absl::OkStatus();
}

}  // namespace upager::testing

#endif  // UPAGER_TESTS_BACKING_STORE_TEST_UTIL_H_
