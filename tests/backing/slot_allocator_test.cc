// SlotAllocator against a shadow set: lowest-first allocation, reuse,
// exhaustion, double-free detection, and the summary levels at every
// capacity where they change shape.
#include "backing/slot_allocator.h"

#include <atomic>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace upager::internal {
namespace {

TEST(SlotAllocatorTest, HandsOutLowestFirstThenReportsFull) {
  SlotAllocator a(5);
  for (uint64_t i = 0; i < 5; ++i) EXPECT_EQ(a.Allocate(), i);
  EXPECT_EQ(a.Allocate(), std::nullopt);
  EXPECT_EQ(a.used(), 5u);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(SlotAllocatorTest, ReusesTheLowestFreedSlot) {
  SlotAllocator a(200);
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(a.Allocate().has_value());
  EXPECT_TRUE(a.Free(150));
  EXPECT_TRUE(a.Free(70));
  EXPECT_TRUE(a.Free(130));
  EXPECT_EQ(a.used(), 197u);
  EXPECT_EQ(a.Allocate(), 70u);
  EXPECT_EQ(a.Allocate(), 130u);
  EXPECT_EQ(a.Allocate(), 150u);
  EXPECT_EQ(a.Allocate(), std::nullopt);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(SlotAllocatorTest, DoubleFreeAndOutOfRangeAreRefused) {
#ifdef NDEBUG
  SlotAllocator a(10);
  ASSERT_EQ(a.Allocate(), 0u);
  EXPECT_TRUE(a.Free(0));
  EXPECT_FALSE(a.Free(0));   // double free: ignored
  EXPECT_FALSE(a.Free(3));   // never allocated
  EXPECT_FALSE(a.Free(10));  // out of range
  EXPECT_EQ(a.used(), 0u);
  EXPECT_TRUE(a.CheckInvariants().ok());
  EXPECT_FALSE(a.IsAllocated(0));
  EXPECT_FALSE(a.IsAllocated(10));
#else
  SlotAllocator a(10);
  ASSERT_EQ(a.Allocate(), 0u);
  EXPECT_TRUE(a.Free(0));
  EXPECT_DEATH(a.Free(0), "double free");
  EXPECT_DEATH(a.Free(10), "out of range");
#endif
}

// Capacities on both sides of each word and level boundary.
class SlotAllocatorShapeTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(SlotAllocatorShapeTest, RandomOpsMatchAShadowSet) {
  const uint64_t capacity = GetParam();
  SlotAllocator a(capacity);
  ASSERT_TRUE(a.CheckInvariants().ok());
  std::set<uint64_t> free_set;
  for (uint64_t i = 0; i < capacity; ++i) free_set.insert(i);
  std::vector<uint64_t> held;
  std::mt19937_64 rng(capacity);
  const int ops = static_cast<int>(std::min<uint64_t>(4 * capacity, 40000));
  for (int op = 0; op < ops; ++op) {
    // Biased toward allocating so that the allocator also runs full.
    if (held.empty() || rng() % 8 < 5) {
      std::optional<uint64_t> s = a.Allocate();
      if (free_set.empty()) {
        ASSERT_EQ(s, std::nullopt);
        continue;
      }
      ASSERT_EQ(s, *free_set.begin());  // always the lowest free one
      free_set.erase(free_set.begin());
      held.push_back(*s);
    } else {
      const size_t i = rng() % held.size();
      ASSERT_TRUE(a.Free(held[i]));
      free_set.insert(held[i]);
      held[i] = held.back();
      held.pop_back();
    }
    if (op % 997 == 0) {
      ASSERT_TRUE(a.CheckInvariants().ok()) << op;
    }
  }
  EXPECT_EQ(a.used(), held.size());
  // Fill to the brim, then empty completely.
  while (a.Allocate().has_value()) {
  }
  EXPECT_EQ(a.used(), capacity);
  ASSERT_TRUE(a.CheckInvariants().ok());
  for (uint64_t i = 0; i < capacity; ++i) ASSERT_TRUE(a.Free(i));
  EXPECT_EQ(a.used(), 0u);
  ASSERT_TRUE(a.CheckInvariants().ok());
  EXPECT_EQ(a.Allocate(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Capacities, SlotAllocatorShapeTest,
                         ::testing::Values(1, 2, 63, 64, 65, 127, 4095, 4096,
                                           4097, 262143, 262144, 262145));

TEST(SlotAllocatorTest, LargeCapacityCostsAboutOneBitPerSlot) {
  // 2^28 slots = a 1 TiB swap file of 4 KiB pages: a 32 MiB bitmap, and
  // allocation walks 5 levels.
  SlotAllocator a(uint64_t{1} << 28);
  EXPECT_EQ(a.Allocate(), 0u);
  EXPECT_EQ(a.Allocate(), 1u);
  EXPECT_TRUE(a.Free(0));
  EXPECT_EQ(a.Allocate(), 0u);
  EXPECT_TRUE(a.IsAllocated(1));
  EXPECT_FALSE(a.IsAllocated(2));
}

TEST(SlotAllocatorTest, ThreadsNeverGetTheSameSlot) {
  constexpr uint64_t kCapacity = 4096;
  constexpr int kThreads = 4;
  SlotAllocator a(kCapacity);
  std::vector<std::atomic<int>> owner(kCapacity);
  std::atomic<int> conflicts{0};
  auto worker = [&](int id) {
    std::mt19937_64 rng(id);
    std::vector<uint64_t> mine;
    for (int i = 0; i < 20000; ++i) {
      if (mine.size() < 500 && rng() % 2 == 0) {
        if (std::optional<uint64_t> s = a.Allocate()) {
          int expected = 0;
          if (!owner[*s].compare_exchange_strong(expected, id + 1)) {
            conflicts.fetch_add(1);
          }
          mine.push_back(*s);
        }
      } else if (!mine.empty()) {
        const uint64_t s = mine.back();
        mine.pop_back();
        owner[s].store(0);
        if (!a.Free(s)) conflicts.fetch_add(1);
      }
    }
    for (uint64_t s : mine) {
      owner[s].store(0);
      a.Free(s);
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) threads.emplace_back(worker, i);
  for (auto& t : threads) t.join();
  EXPECT_EQ(conflicts.load(), 0);
  EXPECT_EQ(a.used(), 0u);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

}  // namespace
}  // namespace upager::internal
