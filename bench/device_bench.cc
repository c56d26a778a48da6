// Device/*: what the disk under a swap file can do, and what the swap store
// costs on top of it, in the same run.
//
// The raw rows drive one io_uring directly (O_DIRECT, registered buffers
// and file: the best the kernel offers) and are the ceiling; the SwapStore
// rows send the same 4 KiB random I/O through SwapFileStore (its queue,
// lock, op records, eventfd and poll), so the difference is the store's
// overhead. Both use the very same 1 GiB file, in the directory a swap file
// would use: $UPAGER_BENCH_DIR, else /var/tmp.
//
// The file is made once, on first use and outside any timing: the store
// creates it (1 GiB, blocks reserved), it is filled with 128 KiB writes
// (reads of never-written blocks would return zeros without touching the
// device), and it is unlinked at once, so it disappears at exit even if the
// run is killed. Every page starts with its own index; every read checks
// it (one 8-byte compare, noise next to a device read), and every write
// puts it back.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "runtime/os/file.h"
#include "runtime/os/io_uring.h"
#include "runtime/os/memory.h"
#include "runtime/os/wakeup.h"
#include "upager/backing_store.h"

namespace upager::bench {
namespace {

namespace os = internal::os;

constexpr uint64_t kFileBytes = uint64_t{1} << 30;
constexpr uint64_t kFilePages = kFileBytes / kPageSize;
constexpr size_t kSeqBlock = size_t{128} << 10;
constexpr uint32_t kSeqDepth = 8;
constexpr uint32_t kRandDepth = 32;
// Buffers in the raw ring's registered region: enough for either queue.
constexpr size_t kRawBuffers = kRandDepth;
constexpr size_t kRawBufferBytes = kSeqBlock;

std::string BenchDir() {
  const char* dir = std::getenv("UPAGER_BENCH_DIR");
  return dir != nullptr && *dir != '\0' ? dir : "/var/tmp";
}

// The first 8 bytes of every page of the file: its page index.
void StampPage(std::byte* page, uint64_t index) {
  std::memcpy(page, &index, sizeof(index));
}
bool PageHasStamp(const std::byte* page, uint64_t index) {
  uint64_t got;
  std::memcpy(&got, page, sizeof(got));
  return got == index;
}

// The shared file, the store over it, and a raw ring with its own
// descriptor and registered buffers. Created on first use, never destroyed
// (exit reclaims all of it; the file is already unlinked).
struct Device {
  std::string label;  // "<dir> O_DIRECT" or "<dir> buffered"
  std::unique_ptr<BackingStore> store;
  std::byte* store_buffers = nullptr;  // kRandDepth pages, registered
  std::optional<os::File> file;        // the raw side's descriptor
  std::unique_ptr<os::IoUring> ring;
  int ring_fd = -1;  // file.fd() or its registered index
  bool fixed_file = false;
  std::byte* raw_buffers = nullptr;  // kRawBuffers * kRawBufferBytes

  std::byte* raw_buffer(size_t i) const {
    return raw_buffers + i * kRawBufferBytes;
  }
  os::IoRequest Raw(os::IoOp op, size_t buffer, uint32_t len,
                    uint64_t offset) const {
    return {.op = op, .fd = ring_fd, .fixed_file = fixed_file,
            .fixed_buffer = true, .buf = raw_buffer(buffer), .len = len,
            .offset = offset, .user_data = buffer};
  }
};

// Keeps up to `depth` (<= kRawBuffers) raw requests in flight until
// `total` have completed. prepare(i, buffer) returns the i-th request, to
// use raw buffer `buffer`; complete(completion, i) checks it (false: wrong
// bytes). Allocation-free, so it can run inside the timed part.
template <typename Prepare, typename Complete>
absl::Status RunRaw(Device& d, uint32_t depth, uint64_t total,
                    Prepare prepare, Complete complete) {
  uint64_t index_of[kRawBuffers];  // request index per busy buffer
  size_t free_buffers[kRawBuffers];
  size_t free_count = 0;
  for (size_t b = 0; b < depth; ++b) free_buffers[free_count++] = depth - 1 - b;
  os::IoCompletion cqes[kRawBuffers];
  uint64_t issued = 0;
  uint64_t done = 0;
  while (done < total) {
    bool prepared = false;
    while (free_count > 0 && issued < total) {
      const size_t b = free_buffers[--free_count];
      index_of[b] = issued;
      // Never full: at most `depth` entries, and the ring has kRandDepth.
      if (!d.ring->Prepare(prepare(issued, b))) {
        return absl::InternalError("raw ring submission queue full");
      }
      ++issued;
      prepared = true;
    }
    if (prepared) {
      uint32_t submitted;
      if (const int err = d.ring->Submit(&submitted); err != 0) {
        return absl::InternalError(
            absl::StrFormat("io_uring_submit: %s", std::strerror(err)));
      }
    }
    if (d.ring->Ready() == 0) {
      if (const int err = d.ring->WaitForCompletion(absl::InfiniteDuration());
          err != 0) {
        return absl::InternalError(
            absl::StrFormat("io_uring_wait_cqe: %s", std::strerror(err)));
      }
    }
    const size_t n = d.ring->Reap(absl::MakeSpan(cqes, depth));
    for (size_t i = 0; i < n; ++i) {
      const os::IoCompletion& c = cqes[i];
      if (c.error != 0) {
        return absl::DataLossError(
            absl::StrFormat("raw I/O failed: %s", std::strerror(c.error)));
      }
      if (!complete(c, index_of[c.user_data])) {
        return absl::DataLossError(absl::StrFormat(
            "raw request %d moved the wrong bytes", index_of[c.user_data]));
      }
      free_buffers[free_count++] = c.user_data;
      ++done;
    }
  }
  return absl::OkStatus();
}

constexpr uint64_t kPagesPerBlock = kSeqBlock / kPageSize;

// Writes blocks [first, first + count) of kSeqBlock bytes, kSeqDepth in
// flight, every page with its stamp.
absl::Status WriteBlocks(Device& d, uint64_t first, uint64_t count) {
  return RunRaw(
      d, kSeqDepth, count,
      [&](uint64_t i, size_t b) {
        const uint64_t block = first + i;
        for (uint64_t p = 0; p < kPagesPerBlock; ++p) {
          StampPage(d.raw_buffer(b) + p * kPageSize,
                    block * kPagesPerBlock + p);
        }
        return d.Raw(os::IoOp::kWrite, b, kSeqBlock, block * kSeqBlock);
      },
      [](const os::IoCompletion& c, uint64_t) { return c.bytes == kSeqBlock; });
}

absl::StatusOr<std::unique_ptr<Device>> MakeDevice() {
  auto d = std::make_unique<Device>();
  const std::string dir = BenchDir();
  const std::string path = absl::StrFormat(
      "%s/upager-device-bench-%d.swap", dir, os::CurrentProcessId());
  absl::StatusOr<std::unique_ptr<BackingStore>> store = OpenSwapFile(
      {.path = path, .capacity_bytes = kFileBytes, .queue_depth = kRandDepth,
       .unlink_on_close = false});
  if (!store.ok()) return store.status();
  d->store = std::move(*store);
  absl::StatusOr<os::File> file =
      os::File::Open(path, {.create = false, .direct_io = true});
  // Unlinked now: both descriptors keep the file alive until exit.
  (void)os::UnlinkFile(path);
  if (!file.ok()) return file.status();
  d->file.emplace(std::move(*file));
  d->label = absl::StrFormat("%s %s", dir,
                             d->file->direct_io() ? "O_DIRECT" : "buffered");

  absl::StatusOr<void*> store_buffers = os::MapAnonymous(
      kRandDepth * kPageSize, os::Protection::kReadWrite);
  if (!store_buffers.ok()) return store_buffers.status();
  d->store_buffers = static_cast<std::byte*>(*store_buffers);
  if (absl::Status s = d->store->RegisterBuffers(d->store_buffers,
                                                 kRandDepth * kPageSize);
      !s.ok()) {
    return s;
  }
  for (uint64_t i = 0; i < kFilePages; ++i) {
    absl::StatusOr<uint64_t> slot = d->store->AllocateSlot();
    if (!slot.ok()) return slot.status();
  }

  absl::StatusOr<std::unique_ptr<os::IoUring>> ring =
      os::CreateIoUring(kRandDepth);
  if (!ring.ok()) return ring.status();
  d->ring = std::move(*ring);
  absl::StatusOr<void*> raw = os::MapAnonymous(
      kRawBuffers * kRawBufferBytes, os::Protection::kReadWrite);
  if (!raw.ok()) return raw.status();
  d->raw_buffers = static_cast<std::byte*>(*raw);
  // Registration may be refused (RLIMIT_MEMLOCK); plain buffers then.
  (void)d->ring->RegisterBuffer(d->raw_buffers,
                                kRawBuffers * kRawBufferBytes);
  d->ring_fd = d->file->fd();
  if (absl::StatusOr<int> index = d->ring->RegisterFile(d->file->fd());
      index.ok()) {
    d->ring_fd = *index;
    d->fixed_file = true;
  }

  // Fill: every page gets its stamp, in 128 KiB writes.
  absl::Status s = WriteBlocks(*d, 0, kFileBytes / kSeqBlock);
  if (!s.ok()) return s;
  return d;
}

absl::StatusOr<Device*> GetDevice() {
  static auto* device =
      new absl::StatusOr<std::unique_ptr<Device>>(MakeDevice());
  if (!device->ok()) return device->status();
  return device->value().get();
}

// `count` random page indices of the file, drawn outside the timed part.
std::vector<uint64_t> RandomPages(uint64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> pages(count);
  for (uint64_t& p : pages) p = rng() % kFilePages;
  return pages;
}

// --- Device/SeqRead and Device/SeqWrite: 128 KiB transfers, 8 in flight,
// 256 MiB per iteration (a different quarter of the file each time). The
// write is the ceiling for page-out, whose store writes runs of up to
// 256 KiB, up to 1 MiB in flight; every page gets its stamp back.

void BM_Seq(benchmark::State& state, os::IoOp op) {
  absl::StatusOr<Device*> dev = GetDevice();
  if (SkipIfError(state, dev.status())) return;
  Device& d = **dev;
  constexpr uint64_t kBlocks = (kFileBytes / 4) / kSeqBlock;
  uint64_t quarter = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    const uint64_t first = (quarter++ % 4) * kBlocks;
    const int64_t start = NowNanos();
    absl::Status s =
        op == os::IoOp::kWrite
            ? WriteBlocks(d, first, kBlocks)
            : RunRaw(
                  d, kSeqDepth, kBlocks,
                  [&](uint64_t i, size_t b) {
                    return d.Raw(os::IoOp::kRead, b, kSeqBlock,
                                 (first + i) * kSeqBlock);
                  },
                  [&](const os::IoCompletion& c, uint64_t i) {
                    return c.bytes == kSeqBlock &&
                           PageHasStamp(d.raw_buffer(c.user_data),
                                        (first + i) * kPagesPerBlock);
                  });
    const int64_t end = NowNanos();
    if (SkipIfError(state, s)) break;
    state.SetIterationTime(static_cast<double>(end - start) * 1e-9);
    bytes += static_cast<int64_t>(kBlocks * kSeqBlock);
  }
  state.SetBytesProcessed(bytes);
  state.SetLabel(d.label);
}

// --- Device/RandRead4K/QD1: one 4 KiB read at a time, each timed from
// preparing it to reaping its completion.

constexpr uint64_t kQd1Reads = 2000;

void BM_RandReadQd1(benchmark::State& state) {
  absl::StatusOr<Device*> dev = GetDevice();
  if (SkipIfError(state, dev.status())) return;
  Device& d = **dev;
  const std::vector<uint64_t> pages = RandomPages(kQd1Reads, 1);
  std::vector<int64_t> latencies(static_cast<size_t>(state.max_iterations) *
                                 kQd1Reads);
  size_t recorded = 0;
  int64_t timed_ns = 0;
  for (auto _ : state) {
    int64_t iteration_ns = 0;
    absl::Status s;
    for (const uint64_t page : pages) {
      const int64_t start = NowNanos();
      s = RunRaw(
          d, 1, 1,
          [&](uint64_t, size_t b) {
            return d.Raw(os::IoOp::kRead, b, kPageSize, page * kPageSize);
          },
          [](const os::IoCompletion& c, uint64_t) {
            return c.bytes == kPageSize;
          });
      const int64_t ns = NowNanos() - start;
      if (!s.ok()) break;
      if (!PageHasStamp(d.raw_buffer(0), page)) {
        s = absl::DataLossError(absl::StrFormat("page %d: wrong stamp", page));
        break;
      }
      latencies[recorded++] = ns;
      iteration_ns += ns;
    }
    if (SkipIfError(state, s)) break;
    state.SetIterationTime(static_cast<double>(iteration_ns) * 1e-9);
    timed_ns += iteration_ns;
  }
  if (recorded == 0) return;
  latencies.resize(recorded);
  const auto reads = static_cast<int64_t>(recorded);
  state.SetItemsProcessed(reads);
  state.counters["ns_per_page"] = static_cast<double>(timed_ns) / reads;
  state.counters["p50_ns"] = static_cast<double>(Percentile(latencies, 0.50));
  state.counters["p99_ns"] = static_cast<double>(Percentile(latencies, 0.99));
  state.SetLabel(d.label);
}

// --- Device/RandRead4K/QD32 and Device/RandWrite4K/QD32: 32 random 4 KiB
// requests always in flight; ns_per_page = wall time / requests.

constexpr uint64_t kQd32Ops = 16384;

void BM_RawRandQd32(benchmark::State& state, os::IoOp op) {
  absl::StatusOr<Device*> dev = GetDevice();
  if (SkipIfError(state, dev.status())) return;
  Device& d = **dev;
  const std::vector<uint64_t> pages = RandomPages(kQd32Ops, 2);
  int64_t timed_ns = 0;
  int64_t ops = 0;
  for (auto _ : state) {
    const int64_t start = NowNanos();
    absl::Status s = RunRaw(
        d, kRandDepth, kQd32Ops,
        [&](uint64_t i, size_t b) {
          if (op == os::IoOp::kWrite) StampPage(d.raw_buffer(b), pages[i]);
          return d.Raw(op, b, kPageSize, pages[i] * kPageSize);
        },
        [&](const os::IoCompletion& c, uint64_t i) {
          return c.bytes == kPageSize &&
                 (op == os::IoOp::kWrite ||
                  PageHasStamp(d.raw_buffer(c.user_data), pages[i]));
        });
    const int64_t end = NowNanos();
    if (SkipIfError(state, s)) break;
    state.SetIterationTime(static_cast<double>(end - start) * 1e-9);
    timed_ns += end - start;
    ops += kQd32Ops;
  }
  if (ops == 0) return;
  state.SetItemsProcessed(ops);
  state.counters["ns_per_page"] = static_cast<double>(timed_ns) / ops;
  state.SetLabel(d.label);
}

// --- Device/SwapStore/{Write,Read}4K/QD32: the same workload through
// SwapFileStore: slot = page index, 32 requests in flight, refilled in
// batches as completions are reaped.

void BM_SwapStoreQd32(benchmark::State& state, BackingStore::Request::Op op) {
  using Request = BackingStore::Request;
  absl::StatusOr<Device*> dev = GetDevice();
  if (SkipIfError(state, dev.status())) return;
  Device& d = **dev;
  BackingStore& store = *d.store;
  const std::vector<uint64_t> pages = RandomPages(kQd32Ops, 3);
  const bool write = op == Request::Op::kWrite;
  std::vector<BackingStore::Completion> out(kRandDepth);
  std::vector<Request> batch;
  batch.reserve(kRandDepth);
  std::vector<uint64_t> index_of(kRandDepth);  // request index per buffer
  int64_t timed_ns = 0;
  int64_t ops = 0;
  for (auto _ : state) {
    absl::Status s;
    uint64_t issued = 0;
    uint64_t done = 0;
    auto add = [&](uint64_t buffer) {
      std::byte* buf = d.store_buffers + buffer * kPageSize;
      if (write) StampPage(buf, pages[issued]);
      index_of[buffer] = issued;
      batch.push_back({.op = op, .slot = pages[issued], .buffer = buf,
                       .tag = buffer});
      ++issued;
    };
    const int64_t start = NowNanos();
    batch.clear();
    for (uint64_t b = 0; b < kRandDepth; ++b) add(b);
    s = store.Submit(batch);
    while (s.ok() && done < kQd32Ops) {
      const size_t n =
          store.Wait(absl::MakeSpan(out), absl::InfiniteDuration());
      batch.clear();
      for (size_t i = 0; i < n; ++i) {
        const BackingStore::Completion& c = out[i];
        const std::byte* buf = d.store_buffers + c.tag * kPageSize;
        if (c.error != 0) {
          s = absl::DataLossError(
              absl::StrFormat("store I/O failed: %s", std::strerror(c.error)));
        } else if (!write && !PageHasStamp(buf, pages[index_of[c.tag]])) {
          s = absl::DataLossError("store read the wrong bytes");
        }
        ++done;
        if (issued < kQd32Ops) add(c.tag);
      }
      if (s.ok() && !batch.empty()) s = store.Submit(batch);
    }
    const int64_t end = NowNanos();
    if (SkipIfError(state, s)) break;
    state.SetIterationTime(static_cast<double>(end - start) * 1e-9);
    timed_ns += end - start;
    ops += kQd32Ops;
  }
  if (ops == 0) return;
  state.SetItemsProcessed(ops);
  state.counters["ns_per_page"] = static_cast<double>(timed_ns) / ops;
  const BackingStoreStats st = store.stats();
  state.SetLabel(absl::StrFormat("%s%s%s", d.label,
                                 st.registered_buffers ? " fixed-buffers" : "",
                                 st.registered_file ? " fixed-file" : ""));
}

// Unit: one iteration is 50-300 ms.
BENCHMARK_CAPTURE(BM_Seq, read, os::IoOp::kRead)
    ->Name("Device/SeqRead")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Seq, write, os::IoOp::kWrite)
    ->Name("Device/SeqWrite")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RandReadQd1)
    ->Name("Device/RandRead4K/QD1")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_RawRandQd32, read, os::IoOp::kRead)
    ->Name("Device/RandRead4K/QD32")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_RawRandQd32, write, os::IoOp::kWrite)
    ->Name("Device/RandWrite4K/QD32")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_SwapStoreQd32, write, BackingStore::Request::Op::kWrite)
    ->Name("Device/SwapStore/Write4K/QD32")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_SwapStoreQd32, read, BackingStore::Request::Op::kRead)
    ->Name("Device/SwapStore/Read4K/QD32")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace upager::bench
