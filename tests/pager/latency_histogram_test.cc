#include "pager/latency_histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace upager::internal {
namespace {

using H = LatencyHistogram;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// v lands in a bucket whose range [previous upper + 1, upper] contains it,
// and the upper bound overstates v by less than 12.5%.
void ExpectBucketHolds(uint64_t v) {
  const int b = H::BucketOf(v);
  ASSERT_GE(b, 0) << v;
  ASSERT_LT(b, H::kBuckets) << v;
  EXPECT_GE(H::BucketUpperBound(b), v) << v;
  if (b > 0) {
    EXPECT_LT(H::BucketUpperBound(b - 1), v) << v;
  }
  if (v >= 8) {
    EXPECT_LT((H::BucketUpperBound(b) - v) * 8, v) << v;
  }
}

TEST(LatencyHistogramTest, SmallValuesAreExact) {
  for (uint64_t v = 0; v < 8; ++v) {
    EXPECT_EQ(H::BucketOf(v), static_cast<int>(v));
    EXPECT_EQ(H::BucketUpperBound(static_cast<int>(v)), v);
  }
  // 8..15 still get one bucket per value: the octave is 8 wide.
  for (uint64_t v = 8; v < 16; ++v) {
    EXPECT_EQ(H::BucketUpperBound(H::BucketOf(v)), v);
  }
}

TEST(LatencyHistogramTest, PowersOfTwoAndNeighbours) {
  for (int k = 0; k < 64; ++k) {
    const uint64_t p = uint64_t{1} << k;
    ExpectBucketHolds(p - 1);
    ExpectBucketHolds(p);
    ExpectBucketHolds(p + 1);
    // A power of two >= 8 starts a new octave: it opens a bucket.
    if (p >= 8) {
      EXPECT_EQ(H::BucketUpperBound(H::BucketOf(p) - 1), p - 1);
    }
  }
  ExpectBucketHolds(kMax);
  ExpectBucketHolds(kMax - 1);
  EXPECT_EQ(H::BucketUpperBound(H::BucketOf(kMax)), kMax);
  EXPECT_EQ(H::BucketUpperBound(H::kBuckets - 1), kMax);
}

TEST(LatencyHistogramTest, BucketsAreContiguousAndMonotonic) {
  const int last = H::BucketOf(kMax);
  for (int b = 1; b <= last; ++b) {
    const uint64_t lo = H::BucketUpperBound(b - 1) + 1;
    const uint64_t hi = H::BucketUpperBound(b);
    ASSERT_LE(lo, hi) << b;
    EXPECT_EQ(H::BucketOf(lo), b);
    EXPECT_EQ(H::BucketOf(hi), b);
  }
  int prev = 0;
  for (uint64_t v = 0; v < 200000; ++v) {
    const int b = H::BucketOf(v);
    ASSERT_GE(b, prev) << v;
    ASSERT_LE(b, prev + 1) << v;  // no bucket skipped
    prev = b;
  }
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100000; ++i) {
    ExpectBucketHolds(rng() >> (rng() % 64));
  }
}

TEST(LatencyHistogramTest, EmptyAndSingleValue) {
  H h;
  LatencySnapshot s = h.Summarize();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.p50_ns, 0u);
  EXPECT_EQ(s.p99_ns, 0u);
  EXPECT_EQ(s.max_ns, 0u);
  EXPECT_EQ(h.Quantile(0.5), 0u);

  h.Record(12345);
  s = h.Summarize();
  EXPECT_EQ(s.count, 1u);
  EXPECT_EQ(s.sum_ns, 12345u);
  EXPECT_EQ(s.max_ns, 12345u);
  // The bucket's upper bound is clamped to the exact max.
  EXPECT_EQ(s.p50_ns, 12345u);
  EXPECT_EQ(s.p90_ns, 12345u);
  EXPECT_EQ(s.p99_ns, 12345u);
  EXPECT_EQ(h.Quantile(0), 12345u);
}

// Reported quantiles never understate and overstate by < 12.5%.
void ExpectQuantilesClose(std::vector<uint64_t> values) {
  H h;
  uint64_t sum = 0;
  for (uint64_t v : values) {
    h.Record(v);
    sum += v;
  }
  std::sort(values.begin(), values.end());
  const LatencySnapshot s = h.Summarize();
  EXPECT_EQ(s.count, values.size());
  EXPECT_EQ(s.sum_ns, sum);
  EXPECT_EQ(s.max_ns, values.back());
  auto exact = [&](double q) {
    const auto rank = static_cast<size_t>(
        std::max(1.0, std::ceil(q * static_cast<double>(values.size()))));
    return values[rank - 1];
  };
  for (double q : {0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    const uint64_t want = exact(q);
    const uint64_t got = h.Quantile(q);
    EXPECT_GE(got, want) << "q=" << q;
    EXPECT_LE(static_cast<double>(got), static_cast<double>(want) * 1.125)
        << "q=" << q;
  }
  EXPECT_EQ(s.p50_ns, h.Quantile(0.5));
  EXPECT_EQ(s.p90_ns, h.Quantile(0.9));
  EXPECT_EQ(s.p99_ns, h.Quantile(0.99));
  EXPECT_EQ(h.Quantile(1.0), values.back());
}

TEST(LatencyHistogramTest, UniformDistribution) {
  std::vector<uint64_t> v;
  for (uint64_t i = 1; i <= 100000; ++i) v.push_back(i);
  ExpectQuantilesClose(v);
}

TEST(LatencyHistogramTest, LogUniformDistribution) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> exp10(1.0, 9.0);  // 10 ns .. 1 s
  std::vector<uint64_t> v;
  for (int i = 0; i < 50000; ++i) {
    v.push_back(static_cast<uint64_t>(std::pow(10.0, exp10(rng))));
  }
  ExpectQuantilesClose(v);
}

TEST(LatencyHistogramTest, BimodalDistribution) {
  // 90% fast hits at ~2 us, 10% slow fills at ~1 ms: p50 and p90 must sit
  // in the fast mode, p99 in the slow one.
  std::vector<uint64_t> v;
  for (int i = 0; i < 900; ++i) v.push_back(2000 + i);
  for (int i = 0; i < 100; ++i) v.push_back(1000000 + 1000 * i);
  ExpectQuantilesClose(v);
  H h;
  for (uint64_t x : v) h.Record(x);
  const LatencySnapshot s = h.Summarize();
  EXPECT_LT(s.p90_ns, 3500u);
  EXPECT_GT(s.p99_ns, 1000000u);
}

TEST(LatencyHistogramTest, QuantileArgumentsOutsideTheUnitRange) {
  H h;
  for (uint64_t v : {10, 20, 30, 1000}) h.Record(v);
  EXPECT_EQ(h.Quantile(-1.0), h.Quantile(0.0));
  EXPECT_EQ(h.Quantile(std::nan("")), h.Quantile(0.0));
  EXPECT_EQ(h.Quantile(0.0), 10u);
  EXPECT_EQ(h.Quantile(2.0), 1000u);
}

TEST(LatencyHistogramTest, ExtremeValues) {
  H h;
  h.Record(0);
  h.Record(kMax);
  const LatencySnapshot s = h.Summarize();
  EXPECT_EQ(s.count, 2u);
  EXPECT_EQ(s.max_ns, kMax);
  EXPECT_EQ(s.p50_ns, 0u);
  EXPECT_EQ(s.p99_ns, kMax);
}

TEST(LatencyHistogramTest, ConcurrentRecordsSumExactly) {
  constexpr int kThreads = 8;
  constexpr uint64_t kPerThread = 200000;
  H h;
  H reference;
  auto value = [](int t, uint64_t i) { return (i * 7919 + t * 31) % 5000000; };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; i < kPerThread; ++i) h.Record(value(t, i));
    });
  }
  uint64_t sum = 0;
  uint64_t max = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (uint64_t i = 0; i < kPerThread; ++i) {
      reference.Record(value(t, i));
      sum += value(t, i);
      max = std::max(max, value(t, i));
    }
  }
  for (auto& th : threads) th.join();
  const LatencySnapshot s = h.Summarize();
  const LatencySnapshot r = reference.Summarize();
  EXPECT_EQ(s.count, kThreads * kPerThread);
  EXPECT_EQ(s.sum_ns, sum);
  EXPECT_EQ(s.max_ns, max);
  // Same multiset of values, so the same buckets and percentiles.
  EXPECT_EQ(s.p50_ns, r.p50_ns);
  EXPECT_EQ(s.p90_ns, r.p90_ns);
  EXPECT_EQ(s.p99_ns, r.p99_ns);
  for (double q = 0; q <= 1.0; q += 0.05) {
    EXPECT_EQ(h.Quantile(q), reference.Quantile(q)) << q;
  }
}

TEST(LatencyHistogramTest, ResetZeroesEverything) {
  H h;
  for (uint64_t v = 1; v < 1000; ++v) h.Record(v * 1000);
  h.Reset();
  const LatencySnapshot s = h.Summarize();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.sum_ns, 0u);
  EXPECT_EQ(s.max_ns, 0u);
  EXPECT_EQ(s.p99_ns, 0u);
  h.Record(5);
  EXPECT_EQ(h.Summarize().max_ns, 5u);
  EXPECT_EQ(h.Summarize().count, 1u);
}

}  // namespace
}  // namespace upager::internal
