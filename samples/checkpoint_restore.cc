// Checkpoint and restart. A simulation keeps all its state (step, PRNG,
// walkers, a grid of visit counts) in a Region, saves a full checkpoint at
// --full_at, an incremental one (pages changed since) at --delta_at, and runs
// on to --steps. A second process (this binary, posix_spawn'd with the same
// flags and --restore) maps the delta with MapSnapshot, which fills pages
// lazily from it and its base, resumes, and must reach the same checksum.
//
//   build/bin/checkpoint_restore [--grid=2048] [--walkers=1024]
//       [--steps=40000] [--full_at=10000] [--delta_at=20000]
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "upager/status_macros.h"
#include "upager/upager.h"

ABSL_FLAG(uint32_t, grid, 2048, "Cells per side of the grid (4 bytes each)");
ABSL_FLAG(uint32_t, walkers, 1024, "Random walkers, all starting at (0, 0)");
ABSL_FLAG(uint64_t, steps, 40000, "Steps of the whole run");
ABSL_FLAG(uint64_t, full_at, 10000, "Step of the full checkpoint");
ABSL_FLAG(uint64_t, delta_at, 20000, "Step of the incremental checkpoint");
ABSL_FLAG(std::string, restore, "", "Internal: resume from this checkpoint");
ABSL_FLAG(uint64_t, expect, 0, "Internal: the uninterrupted run's checksum");

namespace {

struct Walker {
  uint32_t x, y;
};
struct State {    // the region's start; the walkers, then the grid follow
  uint64_t step;  // steps completed
  uint64_t rng;   // xorshift64 state
  uint32_t grid;  // cells per side
  uint32_t walkers;
};

// Runs the simulation in `r` on to step `until`: each walker moves one cell
// (the grid wraps; a drift to larger y moves the cloud on) and counts a visit.
void Run(const upager::Region& r, uint64_t until) {
  State& s = *reinterpret_cast<State*>(r.data());
  auto* walker = reinterpret_cast<Walker*>(&s + 1);
  auto* cells = reinterpret_cast<uint32_t*>(walker + s.walkers);
  for (const uint32_t g = s.grid; s.step < until; ++s.step) {
    for (uint32_t i = 0; i < s.walkers; ++i) {
      s.rng ^= s.rng << 13, s.rng ^= s.rng >> 7, s.rng ^= s.rng << 17;
      Walker& w = walker[i];
      const uint32_t d = (s.rng >> 40) & 63;  // x+1, x-1: 16 each; y+1: 17
      if (d < 32) w.x = (w.x + (d < 16 ? 1 : g - 1)) % g;
      if (d >= 32) w.y = (w.y + (d < 49 ? 1 : g - 1)) % g;
      ++cells[uint64_t{w.y} * g + w.x];
    }
  }
}

uint64_t Checksum(const upager::Region& r) {
  const auto* v = reinterpret_cast<const uint64_t*>(r.data());
  uint64_t sum = 14695981039346656037ull;  // FNV-1a over 8-byte words
  for (size_t i = 0; i < r.size() / 8; ++i) sum = (sum ^ v[i]) * 1099511628211;
  return sum;
}

// The second process: map the delta, resume from its step, compare.
absl::Status Resume(const std::string& path) {
  UPAGER_ASSIGN_OR_RETURN(auto rt, upager::Runtime::Create({}));
  UPAGER_ASSIGN_OR_RETURN(auto* region, rt->MapSnapshot(path));
  const uint64_t from = reinterpret_cast<State*>(region->data())->step;
  Run(*region, absl::GetFlag(FLAGS_steps));
  const uint64_t sum = Checksum(*region);
  std::printf(
      "[restored pid %d] resumed at step %lu, filled %lu of %zu "
      "pages from the files: checksum %016lx\n",
      getpid(), from, rt->stats().pages_file_filled, region->page_count(), sum);
  if (from != absl::GetFlag(FLAGS_delta_at) ||
      sum != absl::GetFlag(FLAGS_expect)) {
    return absl::DataLossError("the restored run differs from the original");
  }
  return rt->status();  // OK unless the fault service met an error
}

// The first process: run, checkpoint twice, run on, start the second.
absl::Status Checkpoint(int argc, char** argv) {
  UPAGER_ASSIGN_OR_RETURN(auto rt, upager::Runtime::Create({}));
  const uint32_t grid = absl::GetFlag(FLAGS_grid);
  const uint32_t walkers = absl::GetFlag(FLAGS_walkers);
  const size_t page = rt->page_size();
  const size_t bytes = sizeof(State) + 8ull * walkers + 4ull * grid * grid;
  UPAGER_ASSIGN_OR_RETURN(
      auto* region,
      rt->Map({.size = (bytes + page - 1) / page * page, .name = "sim"}));
  *reinterpret_cast<State*>(region->data()) = {
      .step = 0, .rng = 0x2545f4914f6cdd1d, .grid = grid, .walkers = walkers};
  std::string dir = std::filesystem::temp_directory_path() / "ckpt.XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return absl::ErrnoToStatus(errno, dir);
  absl::Cleanup remove_dir = [&] { std::filesystem::remove_all(dir); };
  const std::string full = dir + "/sim.1.snap", delta = dir + "/sim.2.snap";
  Run(*region, absl::GetFlag(FLAGS_full_at));
  UPAGER_ASSIGN_OR_RETURN(auto s1, region->TakeSnapshot());
  UPAGER_RETURN_IF_ERROR(s1->SaveTo(full));
  Run(*region, absl::GetFlag(FLAGS_delta_at));
  UPAGER_ASSIGN_OR_RETURN(auto s2, region->TakeSnapshot());
  UPAGER_RETURN_IF_ERROR(s2->SaveTo(delta, s1.get()));  // s1 must be live
  UPAGER_RETURN_IF_ERROR(s2->Release());
  UPAGER_RETURN_IF_ERROR(s1->Release());
  Run(*region, absl::GetFlag(FLAGS_steps));  // the uninterrupted run

  // A fresh process, not a fork(): it shares nothing with this one.
  std::string a[] = {"--restore=" + delta,
                     absl::StrCat("--expect=", Checksum(*region))};
  std::vector<char*> args = {argv[0], a[0].data(), a[1].data()};
  args.insert(args.end(), argv + 1, argv + argc + 1);  // and argv's nullptr
  std::fflush(stdout);  // or the child's lines could come first
  pid_t pid;
  int status = -1;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, args.data(),
                  environ) != 0 ||
      waitpid(pid, &status, 0) != pid || status != 0) {
    return absl::DataLossError("the restored process failed");
  }
  std::printf("verification: the restored run ended with the same bytes\n");
  return rt->status();  // OK unless the fault service met an error
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_grid) < 2 ||
      absl::GetFlag(FLAGS_full_at) >= absl::GetFlag(FLAGS_delta_at) ||
      absl::GetFlag(FLAGS_delta_at) >= absl::GetFlag(FLAGS_steps)) {
    std::fprintf(stderr, "need --grid > 1, --full_at < --delta_at < --steps\n");
    return 2;
  }
  const std::string restore = absl::GetFlag(FLAGS_restore);
  const absl::Status s =
      restore.empty() ? Checkpoint(argc, argv) : Resume(restore);
  if (!s.ok()) std::fprintf(stderr, "FAILED: %s\n", s.ToString().c_str());
  return s.ok() ? 0 : 1;
}
