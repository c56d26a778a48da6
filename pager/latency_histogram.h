// A log-bucket latency histogram for the fault path.
//
// Buckets are powers of two subdivided into 8 linear sub-buckets, so a
// reported percentile is within 12.5% of the true value from 1 ns to ~1000 s.
// Record() is two relaxed atomic adds (bucket and sum) plus a relaxed max
// update that costs a CAS only for a new maximum: cheap enough for every
// fault, and safe from any thread or a signal handler (lock-free atomics).
// Thread-safety: Record and Summarize may run concurrently; a summary taken
// while recording is a consistent-enough snapshot (count, sum and max may
// disagree by the records in flight; count and the percentiles always agree
// because both come from one copy of the buckets). Reset is not atomic with
// respect to concurrent Record calls: records racing it may survive in part.
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
  // The count is the sum of counts_, so no separate counter can disagree
  // with the percentiles computed from the same buckets.
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> sum_{0};  // ns
  std::atomic<uint64_t> max_{0};  // ns
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_LATENCY_HISTOGRAM_H_
