// First-touch latency on this machine, upager against the kernel: writes
// once to each of the same random pages, timing every touch, in plain
// anonymous memory (the kernel fills the page) and in an upager Region (a
// service thread fills it with UFFDIO_COPY and wakes the toucher); prints
// median and p99 per fault and the ratio. bench/ (FirstTouch/*) has more.
//
//   build/bin/fault_latency [--pages=20000] [--region_mib=1024]
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "upager/upager.h"

ABSL_FLAG(uint64_t, pages, 20000, "Pages to touch, each once, in random order");
ABSL_FLAG(uint64_t, region_mib, 1024,
          "Size of the range the pages are drawn from");

namespace {

struct Summary {
  double median_us, p99_us;
};

Summary Summarize(std::vector<int64_t> ns) {
  std::sort(ns.begin(), ns.end());
  const size_t p99 = std::min(ns.size() - 1, ns.size() * 99 / 100);
  return {ns[ns.size() / 2] / 1e3, ns[p99] / 1e3};
}

// The byte each touched page gets, at an offset that varies by page.
size_t Offset(uint64_t p, size_t page) { return p * 64 % page; }
std::byte Marker(uint64_t p) { return std::byte(p % 251 + 1); }

// Writes one byte into each page of `order` (one write fault each) and
// returns the time of every touch in ns. One clock read per touch: each
// interval runs from the end of the previous touch to the end of this one.
std::vector<int64_t> TouchAll(std::byte* base, size_t page,
                              const std::vector<uint64_t>& order) {
  std::vector<int64_t> ns(order.size());  // no allocation while timing
  auto prev = std::chrono::steady_clock::now();
  for (size_t i = 0; i < order.size(); ++i) {
    base[order[i] * page + Offset(order[i], page)] = Marker(order[i]);
    const auto now = std::chrono::steady_clock::now();
    ns[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(now - prev)
                .count();
    prev = now;
  }
  return ns;
}

// Every touched page holds its marker and zeros elsewhere; `untouched`
// reads as zero.
bool Verify(const std::byte* base, size_t page,
            const std::vector<uint64_t>& order, uint64_t untouched) {
  for (const uint64_t p : order) {
    const size_t off = Offset(p, page);
    if (base[p * page + off] != Marker(p) ||
        base[p * page + (off + 1) % page] != std::byte{0}) {
      return false;
    }
  }
  return base[untouched * page] == std::byte{0};
}

bool Failed(const absl::Status& s, const char* what) {
  if (!s.ok()) std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  return !s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Times first touches of random pages in kernel anonymous memory and in "
      "an upager Region; prints median/p99 per fault and the ratio.");
  absl::ParseCommandLine(argc, argv);
  auto rt = upager::Runtime::Create({});
  if (Failed(rt.status(), "Runtime::Create")) return 1;
  const size_t page = (*rt)->page_size();
  const uint64_t region_pages = (absl::GetFlag(FLAGS_region_mib) << 20) / page;
  const uint64_t n = absl::GetFlag(FLAGS_pages);
  if (n < 1 || n + 1 > region_pages) {
    std::fprintf(stderr, "need 1 <= --pages < pages in --region_mib (%lu)\n",
                 region_pages);
    return 2;
  }
  const size_t bytes = region_pages * page;

  // n + 1 distinct random pages; the last one is never touched and must read
  // as zero.
  std::vector<uint64_t> order(region_pages);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(1));
  const uint64_t untouched = order[n];
  order.resize(n);

  // The kernel side is what an application gets from mmap. THP off: upager
  // fills base pages, so the kernel must fault base pages too. Populating
  // and freeing that much memory first makes a VM host back it, so neither
  // side pays for the host's first touch.
  void* warm = mmap(nullptr, n * page, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (warm != MAP_FAILED) munmap(warm, n * page);
  void* anon = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (anon == MAP_FAILED || madvise(anon, bytes, MADV_NOHUGEPAGE) != 0) {
    std::perror("mmap/madvise of the kernel baseline");
    return 1;
  }
  auto* kbase = static_cast<std::byte*>(anon);
  const Summary kernel = Summarize(TouchAll(kbase, page, order));
  bool ok = Verify(kbase, page, order, untouched);
  munmap(anon, bytes);

  // One page per fault: every touch is one round trip to a service thread.
  auto region =
      (*rt)->Map({.size = bytes, .name = "latency", .fault_around_pages = 1});
  if (Failed(region.status(), "Map")) return 1;
  const Summary upager = Summarize(TouchAll((*region)->data(), page, order));
  ok = Verify((*region)->data(), page, order, untouched) && ok;
  const upager::Stats s = (*rt)->stats();

  std::printf(
      "%lu random first touches (writes) in a %lu MiB range, %zu-byte "
      "pages; upager through %s, %s\n",
      n, bytes >> 20, page, s.uffd_open_path.c_str(), s.uffd_mode.c_str());
  std::printf("  kernel (anonymous memory):   median %7.2f us   p99 %7.2f us\n",
              kernel.median_us, kernel.p99_us);
  std::printf("  upager (userfaultfd region): median %7.2f us   p99 %7.2f us\n",
              upager.median_us, upager.p99_us);
  std::printf(
      "  upager / kernel: %.1fx at the median, %.1fx at p99; upager's "
      "service time p50 %.2f us, p99 %.2f us (%lu faults)\n",
      upager.median_us / kernel.median_us, upager.p99_us / kernel.p99_us,
      s.fault_latency.p50_ns / 1e3, s.fault_latency.p99_ns / 1e3,
      s.fault_latency.count);
  std::printf("verification: %s\n",
              ok ? "every touched byte correct" : "MISMATCH");
  return ok && !Failed((*rt)->status(), "fault service") ? 0 : 1;
}
