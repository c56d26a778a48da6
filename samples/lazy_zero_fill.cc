// Lazy zero-fill, the simplest use of upager: map a region far larger than
// what gets touched, touch part of it from a few threads, check every byte,
// and print what upager did.
//
//   build/bin/lazy_zero_fill [--size_mib=4096] [--touch_mib=256] [--threads=2]
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/clock.h"
#include "upager/upager.h"

ABSL_FLAG(uint64_t, size_mib, 4096, "Region size (reserved address space)");
ABSL_FLAG(uint64_t, touch_mib, 256, "How much of it to write and verify");
ABSL_FLAG(int, threads, 2, "Application threads touching the region");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Maps a lazily zero-filled region through upager, touches part of it "
      "from several threads, verifies every byte and prints the Stats.");
  absl::ParseCommandLine(argc, argv);
  const uint64_t size = absl::GetFlag(FLAGS_size_mib) << 20;
  const uint64_t touch = absl::GetFlag(FLAGS_touch_mib) << 20;
  const int threads = absl::GetFlag(FLAGS_threads);
  if (touch > size || threads < 1) {
    std::fprintf(stderr, "need touch_mib <= size_mib and threads >= 1\n");
    return 2;
  }

  auto rt = upager::Runtime::Create({});
  if (!rt.ok()) {
    std::fprintf(stderr, "Runtime::Create: %s\n", rt.status().ToString().c_str());
    return 1;
  }
  auto region = (*rt)->Map({.size = size, .name = "sample"});
  if (!region.ok()) {
    std::fprintf(stderr, "Map: %s\n", region.status().ToString().c_str());
    return 1;
  }
  std::byte* p = (*region)->data();
  const size_t page = (*rt)->page_size();
  std::printf("mapped %lu MiB at %p; writing %lu MiB from %d thread(s)\n",
              size >> 20, static_cast<void*>(p), touch >> 20, threads);

  // Each thread writes a pattern into its share of the pages; then every
  // page is checked, and an untouched page must read as zero.
  const absl::Time start = absl::Now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([=] {
      for (uint64_t off = t * page; off < touch; off += threads * page) {
        std::memset(p + off, static_cast<int>((off / page) % 251 + 1), page);
      }
    });
  }
  for (auto& w : workers) w.join();
  const absl::Duration took = absl::Now() - start;
  uint64_t bad = 0;
  for (uint64_t off = 0; off < touch; off += page) {
    const auto want = static_cast<std::byte>((off / page) % 251 + 1);
    for (size_t i = 0; i < page; ++i) bad += p[off + i] != want;
  }
  for (uint64_t off = touch; off < size; off += size / 64 + page) {
    bad += p[off] != std::byte{0};
  }
  std::printf("wrote %lu pages in %.1f ms (%.2f us/page); verification: %s\n",
              touch / page, absl::ToDoubleMilliseconds(took),
              absl::ToDoubleMicroseconds(took) / (touch / page),
              bad == 0 ? "every byte correct" : "MISMATCH");
  std::printf("\n%s", (*rt)->stats().ToString().c_str());
  if (absl::Status s = (*rt)->Unmap(*region); !s.ok()) {
    std::fprintf(stderr, "Unmap: %s\n", s.ToString().c_str());
    return 1;
  }
  return bad == 0 ? 0 : 1;
}
