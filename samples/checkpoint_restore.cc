// Checkpoint and restart through saved snapshots. A simulation keeps all of
// its state (step counter, PRNG, walkers, a grid of visit counts) in one
// Region. It saves a full checkpoint at --full_at and an incremental one
// (only the pages changed since) at --delta_at, then runs on to --steps. A
// fresh process (this binary, posix_spawn'd with --restore) maps the newest
// checkpoint with Runtime::MapSnapshot, which finds its base and fills pages
// lazily from the files, resumes from the step it holds, and must end with
// exactly the uninterrupted run's bytes (compared by checksum).
//
//   build/bin/checkpoint_restore [--grid=2048] [--walkers=1024]
//       [--steps=40000] [--full_at=10000] [--delta_at=20000]
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "upager/upager.h"

ABSL_FLAG(uint32_t, grid, 2048, "Cells per side of the grid (4 bytes each)");
ABSL_FLAG(uint32_t, walkers, 1024, "Random walkers, all starting together");
ABSL_FLAG(uint64_t, steps, 40000, "Steps of the whole run");
ABSL_FLAG(uint64_t, full_at, 10000, "Step of the full checkpoint");
ABSL_FLAG(uint64_t, delta_at, 20000, "Step of the incremental checkpoint");
ABSL_FLAG(std::string, restore, "", "Internal: resume from this checkpoint");
ABSL_FLAG(uint64_t, expect_step, 0, "Internal: the checkpoint's step");
ABSL_FLAG(uint64_t, expect_final, 0, "Internal: the uninterrupted checksum");

namespace {

// The region: a Header and the walkers, then at kCellsOffset the grid.
struct Header {
  uint64_t step;  // steps completed
  uint64_t rng;   // xorshift64 state
  uint32_t grid;  // cells per side
  uint32_t walkers;
};
struct Walker {
  uint32_t x, y;
};
constexpr size_t kCellsOffset = 1 << 16;
constexpr size_t kMaxWalkers = (kCellsOffset - sizeof(Header)) / 8;

// A view of the state in a region (the header must be initialised).
struct Sim {
  explicit Sim(std::byte* base)
      : h(reinterpret_cast<Header*>(base)),
        w(reinterpret_cast<Walker*>(base + sizeof(Header))),
        cells(reinterpret_cast<uint32_t*>(base + kCellsOffset)) {}
  // Each walker moves one cell (the grid wraps; a slight drift to larger y,
  // so the cloud moves on through the rows) and counts its visit there.
  void Run(uint64_t until) const {
    const uint32_t g = h->grid;
    for (; h->step < until; ++h->step) {
      for (uint32_t i = 0; i < h->walkers; ++i) {
        uint64_t& r = h->rng;
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        Walker& v = w[i];
        const uint32_t d = (r >> 40) & 63;  // x+1, x-1: 16 each; y+1: 17
        if (d < 32) v.x = (v.x + (d < 16 ? 1 : g - 1)) % g;
        if (d >= 32) v.y = (v.y + (d < 49 ? 1 : g - 1)) % g;
        ++cells[uint64_t{v.y} * g + v.x];
      }
    }
  }
  Header* h;
  Walker* w;
  uint32_t* cells;
};

uint64_t Checksum(const upager::Region& r) {
  const auto* v = reinterpret_cast<const uint64_t*>(r.data());
  uint64_t sum = 14695981039346656037ull;
  for (size_t i = 0; i < r.size() / 8; ++i) sum = (sum ^ v[i]) * 1099511628211;
  return sum;
}

bool Failed(const absl::Status& s, const char* what) {
  if (!s.ok()) std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  return !s.ok();
}

// The second process: map the checkpoint, resume, compare.
int Resume(upager::Runtime& rt, const std::string& path) {
  auto region = rt.MapSnapshot(path);
  if (Failed(region.status(), "MapSnapshot")) return 1;
  const Sim sim((*region)->data());
  const uint64_t from = sim.h->step, steps = absl::GetFlag(FLAGS_steps);
  sim.Run(steps);
  const upager::Stats s = rt.stats();
  const uint64_t sum = Checksum(**region);
  const bool ok = from == absl::GetFlag(FLAGS_expect_step) &&
                  sum == absl::GetFlag(FLAGS_expect_final);
  std::printf(
      "[restored pid %d] resumed at step %lu, ran to %lu filling %lu "
      "of %zu pages (%lu from the files); checksum %016lx: %s\n",
      getpid(), from, steps, s.resident_pages, (*region)->page_count(),
      s.pages_file_filled, sum, ok ? "equal" : "MISMATCH");
  return ok && !Failed(rt.status(), "fault service") ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Full and incremental checkpoints of a simulation in an upager Region, "
      "resumed in a second process through Runtime::MapSnapshot.");
  absl::ParseCommandLine(argc, argv);
  auto rt = upager::Runtime::Create({});
  if (Failed(rt.status(), "Runtime::Create")) return 1;
  if (!absl::GetFlag(FLAGS_restore).empty()) {
    return Resume(**rt, absl::GetFlag(FLAGS_restore));
  }
  const uint32_t grid = absl::GetFlag(FLAGS_grid);
  const uint32_t n = absl::GetFlag(FLAGS_walkers);
  const uint64_t steps = absl::GetFlag(FLAGS_steps);
  const uint64_t full_at = absl::GetFlag(FLAGS_full_at);
  const uint64_t delta_at = absl::GetFlag(FLAGS_delta_at);
  if (grid < 2 || n > kMaxWalkers || full_at >= delta_at || delta_at >= steps) {
    std::fprintf(stderr, "need grid >= 2, walkers <= %zu\n", kMaxWalkers);
    std::fprintf(stderr, "and full_at < delta_at < steps\n");
    return 2;
  }
  const size_t page = (*rt)->page_size();
  auto region = (*rt)->Map(
      {.size = (kCellsOffset + 4ull * grid * grid + page - 1) / page * page,
       .name = "sim"});
  if (Failed(region.status(), "Map")) return 1;
  const Sim sim((*region)->data());
  *sim.h = {.step = 0, .rng = 0x2545f4914f6cdd1d, .grid = grid, .walkers = n};
  for (uint32_t i = 0; i < n; ++i) sim.w[i] = {grid / 2, grid / 4};

  std::string dir =
      (std::filesystem::temp_directory_path() / "checkpoint.XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) {
    std::perror(dir.c_str());
    return 1;
  }
  absl::Cleanup remove_dir = [&] { std::filesystem::remove_all(dir); };
  const std::string full = dir + "/sim.1.snap", delta = dir + "/sim.2.snap";
  sim.Run(full_at);
  auto s1 = (*region)->TakeSnapshot();
  if (Failed(s1.status(), "TakeSnapshot") ||
      Failed((*s1)->SaveTo(full), "SaveTo(full)")) {
    return 1;
  }
  sim.Run(delta_at);
  auto s2 = (*region)->TakeSnapshot();  // the delta's base must still be live
  if (Failed(s2.status(), "TakeSnapshot") ||
      Failed((*s2)->SaveTo(delta, s1->get()), "SaveTo(delta)")) {
    return 1;
  }
  // Pages in each file, and those the restore can find only in the base.
  std::vector<bool> changed((*region)->page_count());
  uint64_t in_full = 0, in_delta = 0, base_only = 0;
  absl::Status st = (*s2)->ForEachChangedSince(
      **s1, [&](uint64_t p) { changed[p] = true, ++in_delta; });
  if (st.ok()) {
    st = (*s1)->ForEachPage([&](uint64_t p, const std::byte* b) {
      in_full += b != nullptr, base_only += b != nullptr && !changed[p];
      return absl::OkStatus();
    });
  }
  if (Failed(st, "ForEachChangedSince/ForEachPage")) return 1;
  std::printf(
      "checkpoints of %zu pages: full at step %lu holds %lu, delta at "
      "step %lu holds %lu (%lu pages only in the full one)\n",
      (*region)->page_count(), full_at, in_full, delta_at, in_delta, base_only);
  if (Failed((*s2)->Release(), "Release") ||
      Failed((*s1)->Release(), "Release")) {
    return 1;
  }
  sim.Run(steps);
  const uint64_t sum = Checksum(**region);
  std::printf("[original pid %d] ran on to step %lu: checksum %016lx\n",
              getpid(), steps, sum);

  // A fresh process, not a fork(): it shares nothing with this one.
  std::string a[] = {"--restore=" + delta, "--steps=" + std::to_string(steps),
                     "--expect_step=" + std::to_string(delta_at),
                     "--expect_final=" + std::to_string(sum)};
  char* child_argv[] = {argv[0],     a[0].data(), a[1].data(),
                        a[2].data(), a[3].data(), nullptr};
  std::fflush(stdout);  // or the child's lines could come first
  pid_t pid;
  int status = 0;
  if (int err = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr,
                            child_argv, environ)) {
    std::fprintf(stderr, "posix_spawn: %s\n", std::strerror(err));
    return 1;
  }
  const bool same = waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                    WEXITSTATUS(status) == 0;
  std::printf("verification: %s\n",
              !same            ? "FAILED: the restored run differs"
              : base_only == 0 ? "FAILED: the delta holds every page"
                               : "the restored run ended with the same bytes");
  const bool ok = same && base_only > 0;
  return ok && !Failed((*rt)->status(), "fault service") ? 0 : 1;
}
