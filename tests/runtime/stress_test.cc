// Model-checked stress: worker threads write and read their stripes of a
// region four times the resident budget while a controller pauses them to
// take, read, restore and release snapshots, drop and prefetch ranges, and
// map/unmap scratch regions. Every read is checked against a shadow model
// (a generation per page); a mismatch prints the seed and the last
// operations so the run can be replayed:
//   UPAGER_STRESS_SEED=<seed> UPAGER_STRESS_SECONDS=<s> build/bin/stress_test
#include <atomic>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/runtime/paging_test_util.h"
#include "tests/runtime/runtime_test_util.h"
#include "tests/runtime/snapshot_test_util.h"
#include "upager/upager.h"

namespace upager::testing {
namespace {

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// The last operations, for the failure report.
class History {
 public:
  void Add(std::string op) {
    std::lock_guard<std::mutex> lock(mu_);
    ops_.push_back(std::move(op));
    if (ops_.size() > 40) ops_.pop_front();
  }
  std::string Dump() {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrJoin(ops_, "\n  ");
  }

 private:
  std::mutex mu_;
  std::deque<std::string> ops_;
};

TEST(StressTest, RandomOperationsMatchTheShadowModel) {
  const uint64_t seed = EnvOr("UPAGER_STRESS_SEED", 20261121);
  const absl::Duration duration =
      absl::Seconds(static_cast<int64_t>(EnvOr("UPAGER_STRESS_SECONDS", 20)));
  constexpr uint64_t kPages = 8192;   // 32 MiB
  constexpr uint64_t kBudget = 2048;  // 8 MiB
  constexpr int kWorkers = 3;
  RuntimeOptions o;
  o.resident_budget_bytes = kBudget * kPage;
  o.swap.store = MemoryStore(6 * kPages * kPage);
  auto rt = MakeRuntime(o);
  ASSERT_NE(rt, nullptr);
  auto region = rt->Map({.size = kPages * kPage, .name = "stress"});
  ASSERT_TRUE(region.ok());
  std::byte* const base = (*region)->data();

  // gen[p] is changed only by page p's owner (p % kWorkers), or by the
  // controller while every worker is paused.
  std::vector<std::atomic<uint64_t>> gen(kPages);
  std::atomic<bool> pause{false}, stop{false}, failed{false};
  std::atomic<int> paused{0};
  std::atomic<uint64_t> ops{0};
  History history;
  std::string failure;
  std::mutex failure_mu;
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(failure_mu);
    if (!failed.exchange(true)) failure = what;
    stop.store(true);
  };
  auto check_page = [&](const std::byte* p, uint64_t page, uint64_t g,
                        const std::string& where) {
    auto r = PageIs(p, page, g);
    if (!r) fail(absl::StrCat(where, ": ", r.message()));
  };

  std::vector<std::thread> workers;
  for (int t = 0; t < kWorkers; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 31 + t);
      while (!stop.load()) {
        if (pause.load()) {
          paused.fetch_add(1);
          while (pause.load() && !stop.load()) std::this_thread::yield();
          paused.fetch_sub(1);
          continue;
        }
        // Mostly local runs (streams), sometimes random pages.
        uint64_t page = (rng() % (kPages / kWorkers)) * kWorkers + t;
        const int run = rng() % 4 == 0 ? 16 : 1;
        for (int i = 0; i < run && page < kPages; ++i, page += kWorkers) {
          if (rng() % 3 == 0) {
            const uint64_t g = gen[page].load() % 250 + 1;
            FillPage(base + page * kPage, page, g);
            gen[page].store(g);
            history.Add(absl::StrCat("w", t, " write page ", page, " gen ", g));
          } else {
            check_page(base + page * kPage, page, gen[page].load(),
                       absl::StrCat("worker ", t, " read"));
          }
          ops.fetch_add(1);
        }
      }
    });
  }

  std::mt19937_64 rng(seed);
  struct Taken {
    std::unique_ptr<Snapshot> snap;
    std::vector<uint64_t> shadow;
  };
  std::vector<Taken> snaps;
  const absl::Time end = absl::Now() + duration;
  int round = 0;
  while (absl::Now() < end && !stop.load()) {
    absl::SleepFor(absl::Milliseconds(5 + rng() % 20));
    pause.store(true);
    while (paused.load() != kWorkers && !stop.load()) std::this_thread::yield();
    if (stop.load()) break;
    ++round;
    const int op = static_cast<int>(rng() % 8);
    std::vector<uint64_t> now(kPages);
    for (uint64_t p = 0; p < kPages; ++p) now[p] = gen[p].load();
    if (op <= 1 && snaps.size() < 4) {
      auto s = (*region)->TakeSnapshot();
      if (!s.ok()) {
        fail(absl::StrCat("TakeSnapshot: ", s.status().ToString()));
      } else {
        history.Add(absl::StrCat("take snapshot ", (*s)->id()));
        snaps.push_back({std::move(*s), now});
      }
    } else if (op == 2 && !snaps.empty()) {
      const size_t i = rng() % snaps.size();
      history.Add(absl::StrCat("restore snapshot ", snaps[i].snap->id()));
      absl::Status st = (*region)->Restore(*snaps[i].snap);
      if (!st.ok()) fail(absl::StrCat("Restore: ", st.ToString()));
      for (uint64_t p = 0; p < kPages; ++p) gen[p].store(snaps[i].shadow[p]);
    } else if (op == 3 && !snaps.empty()) {
      const size_t i = rng() % snaps.size();
      history.Add(absl::StrCat("release snapshot ", snaps[i].snap->id()));
      absl::Status st = snaps[i].snap->Release();
      if (!st.ok()) fail(absl::StrCat("Release: ", st.ToString()));
      snaps.erase(snaps.begin() + static_cast<long>(i));
    } else if (op == 4) {
      const uint64_t first = rng() % (kPages - 64);
      const uint64_t count = 1 + rng() % 64;
      history.Add(absl::StrCat("dontneed ", first, "+", count));
      absl::Status st = rt->Advise(*region, first * kPage, count * kPage,
                                   Runtime::Advice::kDontNeed);
      if (!st.ok()) fail(absl::StrCat("Advise(DontNeed): ", st.ToString()));
      for (uint64_t p = first; p < first + count; ++p) gen[p].store(0);
    } else if (op == 5) {
      const uint64_t first = rng() % (kPages - 256);
      history.Add(absl::StrCat("willneed ", first, "+256"));
      (void)rt->Advise(*region, first * kPage, 256 * kPage,
                       Runtime::Advice::kWillNeed);
    } else if (op == 6) {
      // A scratch region comes and goes.
      auto scratch = rt->Map({.size = 64 * kPage, .name = "scratch"});
      if (!scratch.ok()) {
        fail(absl::StrCat("Map: ", scratch.status().ToString()));
      } else {
        for (uint64_t p = 0; p < 64; ++p) {
          FillPage((*scratch)->data() + p * kPage, p, 3);
        }
        for (uint64_t p = 0; p < 64; ++p) {
          check_page((*scratch)->data() + p * kPage, p, 3, "scratch region");
        }
        absl::Status st = rt->Unmap(*scratch);
        if (!st.ok()) fail(absl::StrCat("Unmap: ", st.ToString()));
      }
    }
    // Some live snapshot is read in full against its shadow.
    if (!snaps.empty() && rng() % 2 == 0) {
      const size_t i = rng() % snaps.size();
      auto r = SnapshotIs(*snaps[i].snap, snaps[i].shadow);
      if (!r) fail(absl::StrCat("snapshot ", snaps[i].snap->id(), ": ", r.message()));
    }
    pause.store(false);
  }
  stop.store(true);
  for (auto& w : workers) w.join();
  if (!failed.load()) {
    std::vector<uint64_t> now(kPages);
    for (uint64_t p = 0; p < kPages; ++p) now[p] = gen[p].load();
    auto r = RegionIs(base, now);
    if (!r) fail(r.message());
    for (auto& s : snaps) {
      auto sr = SnapshotIs(*s.snap, s.shadow);
      if (!sr) fail(absl::StrCat("snapshot ", s.snap->id(), ": ", sr.message()));
    }
  }
  EXPECT_FALSE(failed.load())
      << failure << "\nreplay: UPAGER_STRESS_SEED=" << seed
      << " (thread interleaving varies; the seed fixes the operations)\n"
      << "last operations:\n  " << history.Dump();
  EXPECT_TRUE(rt->status().ok()) << rt->status();
  EXPECT_GT(round, 10);
  std::printf("stress: seed %llu, %d controller rounds, %llu worker ops\n",
              static_cast<unsigned long long>(seed), round,
              static_cast<unsigned long long>(ops.load()));
}

}  // namespace
}  // namespace upager::testing
