#include "pager/latency_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace upager::internal {

// Bucket layout. Values below 8 get one exact bucket each (0..7). A value
// v >= 8 with most significant bit msb (3..63) falls in octave msb, which is
// cut into 8 equal sub-buckets by the 3 bits below the msb:
//   bucket = ((msb - 2) << 3) + ((v >> (msb - 3)) & 7)
// so octave 3 (8..15) is buckets 8..15 and octave 63 ends at bucket 495; the
// buckets above stay empty. A sub-bucket is 1/8 of its octave's lower bound
// wide, which bounds the relative error of an upper bound by 12.5%.
// Record's signal-safety rests on this.
static_assert(std::atomic<uint64_t>::is_always_lock_free);

namespace {

constexpr int kSub = LatencyHistogram::kSubBits;
constexpr uint64_t kSubMask = (1u << kSub) - 1;
// The bucket of 2^64 - 1: octave 63, last sub-bucket.
constexpr int kLastBucket = ((63 - (kSub - 1)) << kSub) + int{kSubMask};

using Counts = std::array<uint64_t, LatencyHistogram::kBuckets>;

// One pass of relaxed loads; returns the total of the copied counts.
uint64_t Snapshot(
    const std::array<std::atomic<uint64_t>, LatencyHistogram::kBuckets>& from,
    Counts* to) {
  uint64_t total = 0;
  for (size_t b = 0; b < from.size(); ++b) {
    (*to)[b] = from[b].load(std::memory_order_relaxed);
    total += (*to)[b];
  }
  return total;
}

}  // namespace

int LatencyHistogram::BucketOf(uint64_t ns) {
  if (ns < (1u << kSub)) return static_cast<int>(ns);
  const int msb = std::bit_width(ns) - 1;
  const int octave_base = (msb - (kSub - 1)) << kSub;
  return octave_base + static_cast<int>((ns >> (msb - kSub)) & kSubMask);
}

uint64_t LatencyHistogram::BucketUpperBound(int bucket) {
  if (bucket < 0) return 0;
  if (bucket < (1 << kSub)) return static_cast<uint64_t>(bucket);
  if (bucket >= kLastBucket) return std::numeric_limits<uint64_t>::max();
  const int msb = (bucket >> kSub) + (kSub - 1);
  const uint64_t sub = static_cast<uint64_t>(bucket) & kSubMask;
  const int width_shift = msb - kSub;
  const uint64_t lower = ((uint64_t{1} << kSub) | sub) << width_shift;
  // lower + width - 1, grouped so the top bucket does not wrap through 2^64.
  return lower + ((uint64_t{1} << width_shift) - 1);
}

void LatencyHistogram::Record(uint64_t ns) {
  counts_[BucketOf(ns)].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(ns, std::memory_order_relaxed);
  uint64_t max = max_.load(std::memory_order_relaxed);
  // Almost always one load: only a new maximum pays for the CAS loop.
  while (ns > max &&
         !max_.compare_exchange_weak(max, ns, std::memory_order_relaxed)) {
  }
}

namespace {

// The smallest bucket whose cumulative count reaches the rank of quantile q,
// reported as that bucket's upper bound clamped to max. `counts` is one
// snapshot so that the walk and its total agree even while Record runs.
uint64_t QuantileOf(const Counts& counts, uint64_t total, uint64_t max,
                    double q) {
  if (total == 0) return 0;
  if (!(q >= 0)) q = 0;  // also maps NaN to 0
  q = std::min(q, 1.0);
  const double exact_rank = std::ceil(q * static_cast<double>(total));
  const uint64_t rank =
      std::clamp<uint64_t>(static_cast<uint64_t>(exact_rank), 1, total);
  uint64_t seen = 0;
  for (int b = 0; b < LatencyHistogram::kBuckets; ++b) {
    seen += counts[b];
    if (seen >= rank) {
      const uint64_t upper = LatencyHistogram::BucketUpperBound(b);
      // max is updated separately from the buckets; while a record is in
      // flight it can lag behind them. Never report below the bucket then.
      const uint64_t lower =
          b == 0 ? 0 : LatencyHistogram::BucketUpperBound(b - 1) + 1;
      return max >= lower ? std::min(upper, max) : upper;
    }
  }
  return max;  // unreachable: the counts sum to total
}

}  // namespace

LatencySnapshot LatencyHistogram::Summarize() const {
  Counts counts;
  LatencySnapshot s;
  s.count = Snapshot(counts_, &counts);
  s.max_ns = max_.load(std::memory_order_relaxed);
  s.sum_ns = sum_.load(std::memory_order_relaxed);
  s.p50_ns = QuantileOf(counts, s.count, s.max_ns, 0.50);
  s.p90_ns = QuantileOf(counts, s.count, s.max_ns, 0.90);
  s.p99_ns = QuantileOf(counts, s.count, s.max_ns, 0.99);
  return s;
}

uint64_t LatencyHistogram::Quantile(double q) const {
  Counts counts;
  const uint64_t total = Snapshot(counts_, &counts);
  return QuantileOf(counts, total, max_.load(std::memory_order_relaxed), q);
}

void LatencyHistogram::Reset() {
  for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
  sum_.store(0, std::memory_order_relaxed);
  max_.store(0, std::memory_order_relaxed);
}

}  // namespace upager::internal
