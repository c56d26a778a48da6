// A log-bucket latency histogram for the fault path.
//
// Buckets are powers of two subdivided into 8 linear sub-buckets, so a
// reported percentile is within 12.5% of the true value from 1 ns to ~1000 s.
// Record() is one relaxed atomic increment (plus a relaxed max update): cheap
// enough for every fault, and safe from any thread or a signal handler.
// Thread-safety: Record and Summarize may run concurrently; a summary taken
// while recording is a consistent-enough snapshot (counts may lag by the
// records in flight).
#ifndef UPAGER_PAGER_LATENCY_HISTOGRAM_H_
#define UPAGER_PAGER_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>

namespace upager::internal {

struct LatencySnapshot {
  uint64_t count = 0;
  uint64_t p50_ns = 0;
  uint64_t p90_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t max_ns = 0;  // exact
  uint64_t sum_ns = 0;  // exact
};

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 3;  // 8 sub-buckets per power of two
  static constexpr int kBuckets = 64 << kSubBits;

  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  void Record(uint64_t ns);
  // Percentiles report the upper bound of the bucket holding that rank,
  // clamped to max_ns.
  LatencySnapshot Summarize() const;
  // Value at quantile q in [0, 1], same rule as Summarize.
  uint64_t Quantile(double q) const;
  void Reset();

  // Bucket math, exposed for tests.
  static int BucketOf(uint64_t ns);
  static uint64_t BucketUpperBound(int bucket);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
  std::atomic<uint64_t> max_{0};
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_LATENCY_HISTOGRAM_H_
