// The data contract every store must keep, run over each store and each
// way of driving the swap file: bytes read back equal the last bytes
// written (checked against a shadow copy), under batches, threads, slot
// reuse and exhaustion; bad input is refused before anything is queued.
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backing/swap_file_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/backing/fake_io_uring.h"
#include "tests/backing/store_test_util.h"
#include "upager/backing_store.h"

namespace upager::testing {
namespace {

using ::testing::HasSubstr;
using Request = BackingStore::Request;
using Op = BackingStore::Request::Op;

struct StoreKind {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<BackingStore>>(
      uint64_t capacity_bytes)>
      make;
  // Offer the test's buffer pool to RegisterBuffers.
  bool register_buffers = false;
  // Allocate-write-read-free rounds per thread in the slot-cycling test: a
  // synchronous store needs many to hit a narrow race; a disk round trip
  // costs far more each.
  int cycle_rounds = 400;
};

// Names the variant in gtest's messages instead of dumping its bytes.
void PrintTo(const StoreKind& kind, std::ostream* os) { *os << kind.name; }

absl::StatusOr<std::unique_ptr<BackingStore>> Swap(SwapFileOptions o) {
  return OpenSwapFile(o);
}

// A swap file whose ring shortens every third transfer.
absl::StatusOr<std::unique_ptr<BackingStore>> SwapShortTransfers(
    uint64_t capacity) {
  auto store = internal::SwapFileStore::Open(
      {.path = UniquePath(kDiskDir, "short"), .capacity_bytes = capacity},
      [](uint32_t depth) -> absl::StatusOr<std::unique_ptr<internal::os::IoUring>> {
        auto real = internal::os::CreateIoUring(depth);
        if (!real.ok()) return real.status();
        auto fake = std::make_unique<FakeIoUring>(std::move(*real));
        fake->ShortenEvery(3);
        return std::unique_ptr<internal::os::IoUring>(std::move(fake));
      });
  if (!store.ok()) return store.status();
  return std::unique_ptr<BackingStore>(std::move(*store));
}

std::vector<StoreKind> Kinds() {
  return {
      {"Memory", [](uint64_t c) { return NewMemoryStore(c); },
       /*register_buffers=*/false, /*cycle_rounds=*/2000},
      {"SwapDirect",
       [](uint64_t c) {
         return Swap({.path = UniquePath(kDiskDir, "direct"),
                      .capacity_bytes = c});
       }},
      {"SwapDirectFixedBuffers",
       [](uint64_t c) {
         return Swap({.path = UniquePath(kDiskDir, "fixed"),
                      .capacity_bytes = c});
       },
       /*register_buffers=*/true},
      {"SwapBufferedShm",
       [](uint64_t c) {
         return Swap({.path = UniquePath(kShmDir, "buffered"),
                      .capacity_bytes = c,
                      .direct_io = false});
       }},
      // Depth 1: nearly every request meets a full submission queue, and
      // most wait in the store's own queue for room in the ring.
      {"SwapQueueDepth1",
       [](uint64_t c) {
         return Swap({.path = UniquePath(kDiskDir, "qd1"),
                      .capacity_bytes = c,
                      .queue_depth = 1});
       }},
      {"SwapShortTransfers", SwapShortTransfers},
  };
}

class BackingStoreTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  std::unique_ptr<BackingStore> Make(uint64_t capacity_slots) {
    absl::StatusOr<std::unique_ptr<BackingStore>> s =
        GetParam().make(capacity_slots * kPage);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return nullptr;
    return std::move(*s);
  }
  void MaybeRegister(BackingStore& store, const AlignedPages& pool) {
    if (!GetParam().register_buffers) return;
    ASSERT_TRUE(store.RegisterBuffers(pool.data(), pool.bytes()).ok());
    EXPECT_TRUE(store.stats().registered_buffers);
  }
};

// Shadow of a store's slots: the bytes each one must read back.
class Shadow {
 public:
  explicit Shadow(uint64_t slots) : bytes_(slots * kPage) {}
  std::byte* page(uint64_t slot) { return bytes_.data() + slot * kPage; }

 private:
  std::vector<std::byte> bytes_;
};

// Routes completions between threads sharing one store: any thread may
// reap any thread's completion, so each records what it reaps by tag and
// waits until all of its own tags are recorded.
class CompletionRouter {
 public:
  CompletionRouter(BackingStore& store, uint64_t tags)
      : store_(store), state_(tags) {}

  // Submits `requests` and waits for their tags. False on a Submit error,
  // a failed request, or 30 s without its completion.
  bool Run(const std::vector<Request>& requests) {
    for (const Request& r : requests) state_[r.tag].store(kPending);
    if (!store_.Submit(requests).ok()) return false;
    std::vector<BackingStore::Completion> out(16);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    bool ok = true;
    for (const Request& r : requests) {
      while (state_[r.tag].load() == kPending) {
        if (absl::Now() > deadline) return false;
        const size_t n =
            store_.Wait(absl::MakeSpan(out), absl::Milliseconds(10));
        for (size_t i = 0; i < n; ++i) {
          state_[out[i].tag].store(out[i].error == 0 ? kOk : kFailed);
        }
      }
      ok = ok && state_[r.tag].load() == kOk;
    }
    return ok;
  }

 private:
  static constexpr int kPending = 0, kOk = 1, kFailed = 2;
  BackingStore& store_;
  std::vector<std::atomic<int>> state_;  // by tag
};

// Writes `slots` (in batches of the pool's size) with fresh contents and
// records them in the shadow once their completions are back.
void WriteSlots(BackingStore& store, const std::vector<uint64_t>& slots,
                AlignedPages& pool, Shadow& shadow, uint64_t version,
                std::mt19937_64& rng) {
  size_t i = 0;
  while (i < slots.size()) {
    const size_t batch =
        std::min<size_t>(slots.size() - i, 1 + rng() % pool.count());
    std::vector<Request> reqs;
    for (size_t k = 0; k < batch; ++k) {
      const uint64_t slot = slots[i + k];
      FillPage(pool.page(k), slot * 1'000'003 + version);
      reqs.push_back({.op = Op::kWrite, .slot = slot, .buffer = pool.page(k),
                      .tag = i + k});
    }
    ASSERT_TRUE(RunBatchOk(store, reqs).ok());
    for (size_t k = 0; k < batch; ++k) {
      std::memcpy(shadow.page(slots[i + k]), pool.page(k), kPage);
    }
    i += batch;
  }
}

// Reads `slots` back in random-size batches and compares each with the
// shadow, byte for byte.
void VerifySlots(BackingStore& store, const std::vector<uint64_t>& slots,
                 AlignedPages& pool, Shadow& shadow, std::mt19937_64& rng) {
  size_t i = 0;
  while (i < slots.size()) {
    const size_t batch =
        std::min<size_t>(slots.size() - i, 1 + rng() % pool.count());
    std::vector<Request> reqs;
    for (size_t k = 0; k < batch; ++k) {
      std::memset(pool.page(k), 0xa5, kPage);
      reqs.push_back({.op = Op::kRead, .slot = slots[i + k],
                      .buffer = pool.page(k), .tag = i + k});
    }
    ASSERT_TRUE(RunBatchOk(store, reqs).ok());
    for (size_t k = 0; k < batch; ++k) {
      ASSERT_EQ(std::memcmp(pool.page(k), shadow.page(slots[i + k]), kPage), 0)
          << "slot " << slots[i + k] << " reads back different bytes";
    }
    i += batch;
  }
}

TEST_P(BackingStoreTest, RandomSlotsRoundTripInBatches) {
  constexpr uint64_t kSlots = 4096;
  auto store = Make(kSlots);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->page_size(), kPage);
  EXPECT_EQ(store->capacity_slots(), kSlots);
  AlignedPages pool(200);
  MaybeRegister(*store, pool);
  std::vector<uint64_t> all;
  for (uint64_t i = 0; i < kSlots; ++i) {
    absl::StatusOr<uint64_t> s = store->AllocateSlot();
    ASSERT_TRUE(s.ok()) << s.status();
    all.push_back(*s);
  }
  Shadow shadow(kSlots);
  std::mt19937_64 rng(42);
  // Three rounds over overlapping random subsets: later versions overwrite
  // earlier ones, so a write that was lost or landed late shows up.
  std::vector<uint64_t> written_ever;
  absl::flat_hash_set<uint64_t> seen;
  for (uint64_t round = 1; round <= 3; ++round) {
    std::vector<uint64_t> slots = all;
    std::shuffle(slots.begin(), slots.end(), rng);
    slots.resize(kSlots / 2);
    WriteSlots(*store, slots, pool, shadow, round, rng);
    for (uint64_t s : slots) {
      if (seen.insert(s).second) written_ever.push_back(s);
    }
    std::shuffle(written_ever.begin(), written_ever.end(), rng);
    VerifySlots(*store, written_ever, pool, shadow, rng);
  }
  const BackingStoreStats st = store->stats();
  EXPECT_EQ(st.capacity_slots, kSlots);
  EXPECT_EQ(st.used_slots, kSlots);
  EXPECT_EQ(st.writes, 3 * kSlots / 2);
  EXPECT_GE(st.reads, written_ever.size());
  EXPECT_EQ(st.read_errors + st.write_errors, 0u);
  EXPECT_GT(st.submits, 0u);
}

TEST_P(BackingStoreTest, ThreadsShareOneStore) {
  constexpr int kThreads = 4;
  constexpr uint64_t kPagesPerThread = 600;
  constexpr uint64_t kBatch = 32;
  auto store = Make(kThreads * kPagesPerThread);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(kThreads * kBatch);
  MaybeRegister(*store, pool);

  CompletionRouter router(*store, kThreads * kPagesPerThread);
  std::atomic<int> failures{0};
  auto worker = [&](int id) {
    std::vector<uint64_t> slots;
    for (uint64_t i = 0; i < kPagesPerThread; ++i) {
      absl::StatusOr<uint64_t> s = store->AllocateSlot();
      if (!s.ok()) {
        failures.fetch_add(1);
        return;
      }
      slots.push_back(*s);
    }
    std::byte* mine = pool.page(id * kBatch);
    std::vector<std::byte> expect(kPage);
    for (uint64_t base = 0; base < kPagesPerThread; base += kBatch) {
      const uint64_t n = std::min(kBatch, kPagesPerThread - base);
      std::vector<Request> reqs;
      for (uint64_t k = 0; k < n; ++k) {
        FillPage(mine + k * kPage, slots[base + k] ^ 0x5a5a);
        reqs.push_back({.op = Op::kWrite, .slot = slots[base + k],
                        .buffer = mine + k * kPage,
                        .tag = id * kPagesPerThread + base + k});
      }
      if (!router.Run(reqs)) failures.fetch_add(1);
      // Read the batch back into the same buffers and check them.
      for (uint64_t k = 0; k < n; ++k) {
        std::memset(mine + k * kPage, 0, kPage);
        reqs[k].op = Op::kRead;
      }
      if (!router.Run(reqs)) failures.fetch_add(1);
      for (uint64_t k = 0; k < n; ++k) {
        FillPage(expect.data(), slots[base + k] ^ 0x5a5a);
        if (std::memcmp(mine + k * kPage, expect.data(), kPage) != 0) {
          failures.fetch_add(1);
        }
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) threads.emplace_back(worker, i);
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store->stats().used_slots, kThreads * kPagesPerThread);
}

// Slots cycle between threads: each one allocates, writes, reads back and
// frees, so a slot freed by one thread is at once written by another. A
// store that touched a slot's bytes after freeing it (the memory store once
// dropped the page after Free) loses the new owner's write.
TEST_P(BackingStoreTest, SlotsCyclingBetweenThreadsKeepTheirBytes) {
  constexpr int kThreads = 4;
  const int rounds = GetParam().cycle_rounds;
  // Fewer slots than threads: a freed slot has a taker waiting for it.
  auto store = Make(2);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(2 * kThreads);
  MaybeRegister(*store, pool);
  CompletionRouter router(*store, kThreads * rounds);
  std::atomic<int> failures{0};
  auto worker = [&](int id) {
    std::byte* out = pool.page(2 * id);
    std::byte* in = pool.page(2 * id + 1);
    for (int round = 0; round < rounds; ++round) {
      absl::StatusOr<uint64_t> slot = store->AllocateSlot();
      while (!slot.ok()) {
        std::this_thread::yield();
        slot = store->AllocateSlot();
      }
      const uint64_t tag = static_cast<uint64_t>(id) * rounds + round;
      FillPage(out, tag);
      std::memset(in, 0, kPage);
      if (!router.Run({{.op = Op::kWrite, .slot = *slot, .buffer = out,
                        .tag = tag}}) ||
          !router.Run({{.op = Op::kRead, .slot = *slot, .buffer = in,
                        .tag = tag}}) ||
          std::memcmp(in, out, kPage) != 0) {
        failures.fetch_add(1);
      }
      store->FreeSlot(*slot);
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) threads.emplace_back(worker, i);
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store->stats().used_slots, 0u);
}

TEST_P(BackingStoreTest, FreedSlotsAreReusedAndFullStoreSaysSo) {
  constexpr uint64_t kSlots = 64;
  auto store = Make(kSlots);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(kSlots);
  MaybeRegister(*store, pool);
  std::vector<uint64_t> slots;
  absl::flat_hash_set<uint64_t> distinct;
  for (uint64_t i = 0; i < kSlots; ++i) {
    absl::StatusOr<uint64_t> s = store->AllocateSlot();
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_LT(*s, kSlots);
    ASSERT_TRUE(distinct.insert(*s).second) << "slot " << *s << " twice";
    slots.push_back(*s);
  }
  absl::StatusOr<uint64_t> full = store->AllocateSlot();
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("64"));

  Shadow shadow(kSlots);
  std::mt19937_64 rng(7);
  WriteSlots(*store, slots, pool, shadow, 1, rng);

  // Free ten, get the same ten back, rewrite them: the other 54 keep their
  // bytes.
  std::vector<uint64_t> freed = {3, 9, 10, 17, 31, 32, 40, 41, 62, 63};
  for (uint64_t s : freed) store->FreeSlot(s);
  EXPECT_EQ(store->stats().used_slots, kSlots - freed.size());
  absl::flat_hash_set<uint64_t> again;
  for (size_t i = 0; i < freed.size(); ++i) {
    absl::StatusOr<uint64_t> s = store->AllocateSlot();
    ASSERT_TRUE(s.ok()) << s.status();
    again.insert(*s);
  }
  EXPECT_EQ(again, absl::flat_hash_set<uint64_t>(freed.begin(), freed.end()));
  EXPECT_EQ(store->AllocateSlot().status().code(),
            absl::StatusCode::kResourceExhausted);
  WriteSlots(*store, freed, pool, shadow, 2, rng);
  VerifySlots(*store, slots, pool, shadow, rng);
}

TEST_P(BackingStoreTest, BadRequestsAreRefusedAndNothingIsQueued) {
  auto store = Make(16);
  ASSERT_NE(store, nullptr);
  AlignedPages pool(4);
  absl::StatusOr<uint64_t> slot = store->AllocateSlot();
  ASSERT_TRUE(slot.ok());
  const Request good{.op = Op::kWrite, .slot = *slot, .buffer = pool.page(0),
                     .tag = 1};

  Request r = good;
  r.slot = 16;
  absl::Status s = store->Submit({good, r});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("slot 16"));

  r = good;
  r.buffer = pool.page(0) + 512;
  s = store->Submit({good, r});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("aligned"));

  r = good;
  r.buffer = nullptr;
  EXPECT_EQ(store->Submit({r}).code(), absl::StatusCode::kInvalidArgument);

  r = good;
  r.op = static_cast<Op>(7);
  EXPECT_EQ(store->Submit({r}).code(), absl::StatusCode::kInvalidArgument);

  r = good;
  r.slot = 5;  // in range, never allocated
  s = store->Submit({good, r});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("slot 5"));

  // None of the refused batches queued its good request.
  std::vector<BackingStore::Completion> out(4);
  EXPECT_EQ(store->Wait(absl::MakeSpan(out), absl::Milliseconds(50)), 0u);
  EXPECT_EQ(store->stats().writes, 0u);
  EXPECT_EQ(store->stats().submits, 0u);

  EXPECT_EQ(store->RegisterBuffers(pool.page(0) + 1, kPage).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->RegisterBuffers(pool.page(0), 100).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->RegisterBuffers(nullptr, kPage).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store->Submit({}).ok());
  EXPECT_EQ(store->Reap({}), 0u);
}

bool Readable(int fd, int timeout_ms) {
  pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

TEST_P(BackingStoreTest, CompletionFdIsReadableExactlyWhileCompletionsWait) {
  auto store = Make(16);
  ASSERT_NE(store, nullptr);
  const int fd = store->completion_fd();
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(Readable(fd, 0));
  AlignedPages pool(3);
  std::vector<Request> reqs;
  for (uint64_t i = 0; i < 3; ++i) {
    absl::StatusOr<uint64_t> slot = store->AllocateSlot();
    ASSERT_TRUE(slot.ok());
    reqs.push_back({.op = Op::kWrite, .slot = *slot, .buffer = pool.page(i),
                    .tag = i});
  }
  ASSERT_TRUE(store->Submit(reqs).ok());
  std::vector<BackingStore::Completion> out(3);
  size_t got = 0;
  // Take them one at a time: after each partial Reap the descriptor must
  // still be readable while any completion is left.
  while (got < 3) {
    ASSERT_TRUE(Readable(fd, 10'000)) << "after " << got << " completions";
    got += store->Reap(absl::MakeSpan(out).subspan(got, 1));
  }
  // A completion posted while a Reap was running may leave the descriptor
  // readable with nothing to take (a spurious wake-up, which pollers
  // tolerate); an empty Reap settles it.
  EXPECT_EQ(store->Reap(absl::MakeSpan(out)), 0u);
  EXPECT_FALSE(Readable(fd, 0));
}

INSTANTIATE_TEST_SUITE_P(
    AllStores, BackingStoreTest, ::testing::ValuesIn(Kinds()),
    [](const ::testing::TestParamInfo<StoreKind>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace upager::testing
