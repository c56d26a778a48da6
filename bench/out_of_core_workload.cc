#include "bench/out_of_core_workload.h"

#include <algorithm>
#include <cstdlib>
#include <latch>
#include <limits>
#include <random>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/types/span.h"

namespace upager::bench {
namespace {

constexpr uint64_t kWordsPerPage = kPageSize / sizeof(uint64_t);
constexpr uint64_t kRandSeed = 0x0c0ffee5;
constexpr uint64_t kHotSeed = 0x40710c01d;
constexpr uint64_t kMixSeed = 0x90ca11;

uint64_t* PageWords(std::byte* base, uint64_t page) {
  return reinterpret_cast<uint64_t*>(base + page * kPageSize);
}
const uint64_t* PageWords(const std::byte* base, uint64_t page) {
  return reinterpret_cast<const uint64_t*>(base + page * kPageSize);
}

void WritePage(std::byte* base, uint64_t page) {
  uint64_t* w = PageWords(base, page);
  for (uint64_t i = 0; i < kWordsPerPage; ++i) w[i] = OocWord(page, i);
}

// The sum of a page's words (unsigned, wrapping) if it holds its pattern.
// The tag and page bits never overlap the word index, so the sum is
// 512 * OocWord(page, 0) + (0 + 1 + ... + 511).
uint64_t ExpectedSum(uint64_t page) {
  return kWordsPerPage * OocWord(page, 0) +
         kWordsPerPage * (kWordsPerPage - 1) / 2;
}

// Reads every word of the page: what a timed read costs beyond the fault.
uint64_t PageSum(const std::byte* base, uint64_t page) {
  const uint64_t* w = PageWords(base, page);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < kWordsPerPage; ++i) sum += w[i];
  return sum;
}

// Pages a timed read found wrong; reported only after the timed part.
struct BadPages {
  uint64_t count = 0;
  uint64_t first = 0;

  void Read(const std::byte* base, uint64_t page) {
    if (PageSum(base, page) != ExpectedSum(page) && count++ == 0) first = page;
  }
  absl::Status ToStatus() const {
    if (count == 0) return absl::OkStatus();
    return absl::DataLossError(absl::StrFormat(
        "%d pages read wrong during the timed part, the first page %d", count,
        first));
  }
};

absl::Status CheckPage(const std::byte* base, uint64_t page, bool full) {
  const uint64_t* w = PageWords(base, page);
  const uint64_t words = full ? kWordsPerPage : 1;
  for (uint64_t i = 0; i < words; ++i) {
    if (w[i] != OocWord(page, i)) {
      return absl::DataLossError(
          absl::StrFormat("page %d word %d reads %#x, want %#x", page, i, w[i],
                          OocWord(page, i)));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRange(const std::byte* base, uint64_t first, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    if (absl::Status s =
            CheckPage(base, first + i, i % kOocFullCheckStride == 0);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckList(const std::byte* base,
                       absl::Span<const uint64_t> pages) {
  for (size_t i = 0; i < pages.size(); ++i) {
    if (absl::Status s =
            CheckPage(base, pages[i], i % kOocFullCheckStride == 0);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Span<const uint64_t> Block(const std::vector<uint64_t>& pages,
                                 uint64_t block, uint64_t size) {
  return absl::MakeConstSpan(pages).subspan(block * size, size);
}

// Each thread's timestamps, on separate cache lines.
struct alignas(64) ThreadSpan {
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  BadPages bad;
};

// Reads `pages` in order, recording each access's latency into `latencies`
// (same length) from the end of the previous access to the end of this one.
void ReadTimed(const std::byte* base, absl::Span<const uint64_t> pages,
               int64_t* latencies, ThreadSpan* span) {
  const int64_t start = NowNanos();
  int64_t prev = start;
  for (size_t i = 0; i < pages.size(); ++i) {
    span->bad.Read(base, pages[i]);
    const int64_t now = NowNanos();
    latencies[i] = now - prev;
    prev = now;
  }
  span->start_ns = start;
  span->end_ns = prev;
}

OocTimed RandRead(const OocPlan& plan, const std::byte* base, int slice) {
  const absl::Span<const uint64_t> block =
      Block(plan.pages, slice, kOocRandReads);
  OocTimed t;
  t.latencies.resize(block.size());
  t.accesses = block.size();
  const int threads = std::max(plan.threads, 1);
  std::vector<ThreadSpan> spans(threads);
  const size_t per_thread = block.size() / threads;
  auto part = [&](int i) {
    const size_t first = i * per_thread;
    const size_t n = i + 1 == threads ? block.size() - first : per_thread;
    ReadTimed(base, block.subspan(first, n), t.latencies.data() + first,
              &spans[i]);
  };
  if (threads == 1) {
    part(0);
  } else {
    // Threads are created outside the timed span and released together by
    // a latch (a futex wake: a spinning waiter would take the CPU a fault
    // needs). The span runs from the first start to the last end.
    std::latch go(threads + 1);
    std::vector<std::thread> workers;
    workers.reserve(threads);
    for (int i = 0; i < threads; ++i) {
      workers.emplace_back([&, i] {
        go.arrive_and_wait();
        part(i);
      });
    }
    go.arrive_and_wait();
    for (std::thread& w : workers) w.join();
  }
  int64_t start = std::numeric_limits<int64_t>::max();
  int64_t end = 0;
  for (const ThreadSpan& s : spans) {
    start = std::min(start, s.start_ns);
    end = std::max(end, s.end_ns);
    if (t.status.ok()) t.status = s.bad.ToStatus();
  }
  t.elapsed_ns = end - start;
  return t;
}

}  // namespace

std::string OocSwapDir() {
  const char* dir = std::getenv("UPAGER_BENCH_DIR");
  return dir != nullptr && *dir != '\0' ? dir : "/var/tmp";
}

OocPlan MakeOocPlan(OocWorkload workload, int threads) {
  OocPlan plan;
  plan.workload = workload;
  plan.threads = threads;
  if (workload == OocWorkload::kRandRead) {
    plan.pages = ShuffledDistinctPages(kOocColdPrefixPages,
                                       kOocSlices * kOocRandReads, kRandSeed);
  } else if (workload == OocWorkload::kHotCold) {
    plan.hot = ShuffledDistinctPages(kOocPages, kOocHotPages, kHotSeed);
    std::vector<bool> is_hot(kOocPages);
    for (const uint64_t p : plan.hot) is_hot[p] = true;
    std::mt19937_64 rng(kMixSeed);
    plan.pages.resize((kOocSlices + 1) * kOocHotColdAccesses);
    for (uint64_t& page : plan.pages) {
      if (rng() % 10 != 0) {
        page = plan.hot[rng() % plan.hot.size()];
        continue;
      }
      do {
        page = rng() % kOocPages;
      } while (is_hot[page]);
    }
  }
  return plan;
}

absl::Status BuildOocWorkingSet(const OocPlan& plan, std::byte* base) {
  const uint64_t pages =
      plan.workload == OocWorkload::kSeqWrite ? kOocSlicePages : kOocPages;
  for (uint64_t p = 0; p < pages; ++p) WritePage(base, p);
  if (plan.workload != OocWorkload::kHotCold) return absl::OkStatus();
  BadPages bad;
  for (const uint64_t p : plan.hot) bad.Read(base, p);
  for (const uint64_t p : Block(plan.pages, 0, kOocHotColdAccesses)) {
    bad.Read(base, p);
  }
  return bad.ToStatus();
}

OocTimed RunOocTimed(const OocPlan& plan, std::byte* base, int slice) {
  OocTimed t;
  switch (plan.workload) {
    case OocWorkload::kSeqWrite: {
      const uint64_t first = (slice + 1) * kOocSlicePages;
      const int64_t start = NowNanos();
      for (uint64_t p = first; p < first + kOocSlicePages; ++p) {
        WritePage(base, p);
      }
      t.elapsed_ns = NowNanos() - start;
      t.accesses = kOocSlicePages;
      return t;
    }
    case OocWorkload::kSeqRead: {
      const uint64_t first = slice * kOocSlicePages;
      BadPages bad;
      const int64_t start = NowNanos();
      for (uint64_t p = first; p < first + kOocSlicePages; ++p) {
        bad.Read(base, p);
      }
      t.elapsed_ns = NowNanos() - start;
      t.accesses = kOocSlicePages;
      t.status = bad.ToStatus();
      return t;
    }
    case OocWorkload::kRandRead:
      return RandRead(plan, base, slice);
    case OocWorkload::kHotCold: {
      const absl::Span<const uint64_t> block =
          Block(plan.pages, slice + 1, kOocHotColdAccesses);
      BadPages bad;
      const int64_t start = NowNanos();
      for (const uint64_t p : block) bad.Read(base, p);
      t.elapsed_ns = NowNanos() - start;
      t.accesses = block.size();
      t.status = bad.ToStatus();
      return t;
    }
  }
  t.status = absl::InternalError("unknown workload");
  return t;
}

absl::Status VerifyOocSlice(const OocPlan& plan, const std::byte* base,
                            int slice) {
  switch (plan.workload) {
    case OocWorkload::kSeqWrite:
      return CheckRange(base, (slice + 1) * kOocSlicePages, kOocSlicePages);
    case OocWorkload::kSeqRead:
      return CheckRange(base, slice * kOocSlicePages, kOocSlicePages);
    case OocWorkload::kRandRead:
      return CheckList(base, Block(plan.pages, slice, kOocRandReads));
    case OocWorkload::kHotCold:
      return CheckList(base, Block(plan.pages, slice + 1, kOocHotColdAccesses));
  }
  return absl::InternalError("unknown workload");
}

}  // namespace upager::bench
