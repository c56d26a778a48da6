#include "pager/snapshot_book.h"

#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace upager::internal {
namespace {

using Where = SnapshotBook::Found::Where;

CopyRef Mem(uint64_t h) { return {CopyRef::Kind::kMemory, h}; }

TEST(SnapshotBookTest, AbsentAtTakeReadsZeroLiveUntilCaptured) {
  SnapshotBook b;
  const auto e = b.Begin({{0, 4}, {10, 2}});
  EXPECT_EQ(b.present_pages(e), 6u);
  EXPECT_EQ(b.Find(e, 5).where, Where::kAbsent);
  EXPECT_EQ(b.Find(e, 12).where, Where::kAbsent);
  EXPECT_EQ(b.Find(e, 3).where, Where::kLive);
  EXPECT_TRUE(b.Needs(3));
  EXPECT_FALSE(b.Needs(5));
  EXPECT_TRUE(b.Capture(3, Mem(7)));
  EXPECT_FALSE(b.Needs(3));
  EXPECT_FALSE(b.Capture(3, Mem(8)));  // already has its version
  const auto f = b.Find(e, 3);
  EXPECT_EQ(f.where, Where::kCopy);
  EXPECT_EQ(f.ref, Mem(7));
  EXPECT_FALSE(b.Capture(5, Mem(9)));  // absent at e: nobody needs it
}

TEST(SnapshotBookTest, OneCopySharedBySnapshotsTakenBeforeTheWrite) {
  SnapshotBook b;
  const auto e1 = b.Begin({{0, 1}});
  const auto e2 = b.Begin({{0, 1}});
  ASSERT_TRUE(b.Capture(0, Mem(1)));  // first write after both
  EXPECT_EQ(b.Find(e1, 0).ref, Mem(1));
  EXPECT_EQ(b.Find(e2, 0).ref, Mem(1));
  EXPECT_EQ(b.versions(CopyRef::Kind::kMemory), 1u);
  const auto e3 = b.Begin({{0, 1}});
  EXPECT_EQ(b.Find(e3, 0).where, Where::kLive);
  ASSERT_TRUE(b.Capture(0, Mem(2)));
  EXPECT_EQ(b.Find(e3, 0).ref, Mem(2));
  EXPECT_EQ(b.Find(e1, 0).ref, Mem(1));

  std::vector<CopyRef> freed;
  b.Release(e1, &freed);
  EXPECT_TRUE(freed.empty());  // e2 still uses Mem(1)
  b.Release(e2, &freed);
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0], Mem(1));
  freed.clear();
  b.Release(e3, &freed);
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0], Mem(2));
  EXPECT_FALSE(b.any_live());
  EXPECT_EQ(b.versions(CopyRef::Kind::kMemory), 0u);
}

TEST(SnapshotBookTest, ReleasingTheMiddleSnapshotKeepsSharedVersions) {
  SnapshotBook b;
  const auto e1 = b.Begin({{0, 1}});
  const auto e2 = b.Begin({{0, 1}});
  const auto e3 = b.Begin({{0, 1}});
  ASSERT_TRUE(b.Capture(0, Mem(1)));  // serves e1..e3
  std::vector<CopyRef> freed;
  b.Release(e2, &freed);
  EXPECT_TRUE(freed.empty());
  EXPECT_EQ(b.Find(e1, 0).ref, Mem(1));
  EXPECT_EQ(b.Find(e3, 0).ref, Mem(1));
  b.Release(e3, &freed);
  EXPECT_TRUE(freed.empty());
  b.Release(e1, &freed);
  EXPECT_EQ(freed.size(), 1u);
  b.Release(e1, &freed);  // twice: no-op
  EXPECT_EQ(freed.size(), 1u);
}

TEST(SnapshotBookTest, PendingSnapshotCapturesEveryPageUntilPresentIsSet) {
  SnapshotBook b;
  const auto e = b.BeginPending();
  EXPECT_TRUE(b.Needs(40));
  ASSERT_TRUE(b.Capture(40, Mem(1)));  // changed during the sweep
  b.SetPresent(e, {{0, 2}});
  EXPECT_EQ(b.present_pages(e), 2u);
  EXPECT_EQ(b.Find(e, 40).where, Where::kAbsent);  // absent after all
  EXPECT_EQ(b.Find(e, 1).where, Where::kLive);
  std::vector<CopyRef> freed;
  b.Release(e, &freed);
  EXPECT_EQ(freed, std::vector<CopyRef>{Mem(1)});
}

TEST(SnapshotBookTest, ReplaceRepointsASpilledCopy) {
  SnapshotBook b;
  const auto e = b.Begin({{0, 2}});
  ASSERT_TRUE(b.Capture(1, Mem(4)));
  const CopyRef slot{CopyRef::Kind::kSlot, 99};
  EXPECT_TRUE(b.Replace(1, Mem(4), slot));
  EXPECT_FALSE(b.Replace(1, Mem(4), slot));
  EXPECT_EQ(b.Find(e, 1).ref, slot);
  EXPECT_EQ(b.versions(CopyRef::Kind::kSlot), 1u);
  EXPECT_EQ(b.versions(CopyRef::Kind::kMemory), 0u);
}

TEST(SnapshotBookTest, ChangedBetweenTwoSnapshots) {
  SnapshotBook b;
  const auto e1 = b.Begin({{0, 8}});
  ASSERT_TRUE(b.Capture(2, Mem(1)));                         // written
  ASSERT_TRUE(b.Capture(5, {CopyRef::Kind::kLost, 0}));      // dropped
  const auto e2 = b.Begin({{0, 5}, {6, 2}, {20, 3}});        // 20..22 new
  ASSERT_TRUE(b.Capture(3, Mem(2)));  // written after e2: not between
  std::vector<uint64_t> changed;
  b.ForEachChanged(e1, e2, [&](uint64_t p) { changed.push_back(p); });
  EXPECT_EQ(changed, (std::vector<uint64_t>{2, 5, 20, 21, 22}));
}

// Random operations against a brute-force model: every snapshot records
// the full content of every page at its epoch; content changes capture.
TEST(SnapshotBookTest, MatchesBruteForceModel) {
  constexpr uint64_t kPages = 24;
  std::mt19937_64 rng(1234);
  SnapshotBook b;
  std::vector<int64_t> live(kPages, -1);  // -1 = absent, else a value
  std::map<uint64_t, std::vector<int64_t>> model;  // epoch -> contents
  std::map<uint64_t, int64_t> copies;              // handle -> value
  uint64_t next_handle = 1;
  int64_t next_value = 1;
  for (int step = 0; step < 5000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    const uint64_t p = rng() % kPages;
    if (op == 0 && model.size() < 6) {
      std::vector<PageRun> runs;
      for (uint64_t i = 0; i < kPages; ++i) {
        if (live[i] < 0) continue;
        if (!runs.empty() && runs.back().first + runs.back().count == i) {
          ++runs.back().count;
        } else {
          runs.push_back({i, 1});
        }
      }
      model[b.Begin(runs)] = live;
    } else if (op == 1 && !model.empty()) {
      auto it = model.begin();
      std::advance(it, rng() % model.size());
      std::vector<CopyRef> freed;
      b.Release(it->first, &freed);
      for (const CopyRef& r : freed) ASSERT_EQ(copies.erase(r.handle), 1u);
      model.erase(it);
    } else if (op <= 7) {
      // Write (or first touch) of page p, or a drop (op 7).
      if (live[p] >= 0) {
        const bool needs = b.Needs(p);
        const uint64_t h = next_handle++;
        ASSERT_EQ(b.Capture(p, Mem(h)), needs);
        if (needs) copies[h] = live[p];
      }
      live[p] = op == 7 ? -1 : next_value++;
    }
    // Every live snapshot reads its own point-in-time content.
    for (const auto& [e, content] : model) {
      for (uint64_t i = 0; i < kPages; ++i) {
        const auto f = b.Find(e, i);
        int64_t got = -2;
        switch (f.where) {
          case Where::kAbsent: got = -1; break;
          case Where::kLive: got = live[i]; break;
          case Where::kCopy: got = copies.at(f.ref.handle); break;
        }
        ASSERT_EQ(got, content[i]) << "step " << step << " epoch " << e
                                   << " page " << i;
      }
    }
    // Incremental: pages changed between consecutive live snapshots.
    if (model.size() >= 2) {
      const auto a = model.begin();
      const auto z = std::prev(model.end());
      std::vector<bool> changed(kPages, false);
      b.ForEachChanged(a->first, z->first, [&](uint64_t i) { changed[i] = true; });
      for (uint64_t i = 0; i < kPages; ++i) {
        if (a->second[i] != z->second[i]) {
          ASSERT_TRUE(changed[i]) << "step " << step << " page " << i;
        }
      }
    }
  }
  std::vector<CopyRef> freed;
  b.ReleaseAll(&freed);
  EXPECT_EQ(freed.size(), copies.size());
}

}  // namespace
}  // namespace upager::internal
