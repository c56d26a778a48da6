// Snapshots as transactions, and as a background save without fork(), for a
// key-value table living in a Region (open addressing, fixed-size records).
// A transaction begins with TakeSnapshot; abort is Region::Restore (only the
// pages it wrote are rewritten) and commit is Release. Then another thread
// saves a snapshot with SaveTo while this one keeps writing, and the file,
// mapped back with Runtime::MapSnapshot, must hold the table as it was at the
// snapshot. Every step is checked against a std::map shadow.
//
//   build/bin/kv_rollback [--slots=262144] [--txns=12] [--ops_per_txn=2000]
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <span>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "upager/upager.h"

ABSL_FLAG(uint64_t, slots, 1 << 18, "Table slots (64-byte records)");
ABSL_FLAG(int, txns, 12, "Transactions; every third one aborts");
ABSL_FLAG(int, ops_per_txn, 2000, "Puts and erases per transaction");

namespace {

using Shadow = std::map<uint64_t, std::string>;

struct Record {  // 64 bytes; all zero: an empty slot
  uint64_t key;
  uint32_t state;  // 0 empty, 1 live, 2 erased (a tombstone)
  uint32_t len;    // bytes of value used
  char value[48];
};

// A view of a table that lives entirely in a Region (so in its snapshots).
struct Table {
  // The key's record, or the slot to insert it at (a tombstone or empty).
  Record* Find(uint64_t key) const {
    Record* free = nullptr;
    for (uint64_t i = key * 0x9e3779b97f4a7c15 % slots, n = 0; n < slots;
         i = (i + 1) % slots, ++n) {
      if (r[i].state == 1 && r[i].key == key) return &r[i];
      if (r[i].state != 1 && free == nullptr) free = &r[i];
      if (r[i].state == 0) break;
    }
    return free;
  }
  // Equal to `want`, both by a scan of every slot and by lookups.
  bool Matches(const Shadow& want) const {
    Shadow got;
    for (const Record& x : std::span(r, slots)) {
      if (x.state == 1) got.emplace(x.key, std::string(x.value, x.len));
    }
    bool ok = got == want;
    for (const auto& [k, v] : want) {
      const Record* f = Find(k);
      ok = ok && f->state == 1 && std::string(f->value, f->len) == v;
    }
    return ok;
  }
  Record* r;
  uint64_t slots;
};

// One random put (70%) or erase, applied to the table and to its shadow.
void RandomOp(const Table& t, Shadow& shadow, std::mt19937_64& rng) {
  const uint64_t key = rng() % (t.slots / 4);  // so the table never fills
  Record* r = t.Find(key);
  if (rng() % 10 < 3) {
    if (r->state == 1) r->state = 2;
    shadow.erase(key);
    return;
  }
  const std::string v = "value-" + std::to_string(rng() % 1000000007);
  *r = {key, 1, static_cast<uint32_t>(v.size()), {}};
  std::memcpy(r->value, v.data(), v.size());
  shadow[key] = v;
}

bool Failed(const absl::Status& s, const char* what) {
  if (!s.ok()) std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  return !s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A key-value table in an upager Region: snapshots as transactions "
      "(abort = Restore) and a background SaveTo while writing continues.");
  absl::ParseCommandLine(argc, argv);
  const uint64_t slots = absl::GetFlag(FLAGS_slots);
  const int txns = absl::GetFlag(FLAGS_txns);
  const int ops = absl::GetFlag(FLAGS_ops_per_txn);
  if (slots < 64) {
    std::fprintf(stderr, "need --slots >= 64, not %lu\n", slots);
    return 2;
  }
  auto rt = upager::Runtime::Create({});
  if (Failed(rt.status(), "Runtime::Create")) return 1;
  const size_t page = (*rt)->page_size();
  auto region =
      (*rt)->Map({.size = (slots * sizeof(Record) + page - 1) / page * page,
                  .name = "kv"});
  if (Failed(region.status(), "Map")) return 1;
  const Table table{reinterpret_cast<Record*>((*region)->data()), slots};
  Shadow shadow;
  std::mt19937_64 rng(42);
  for (uint64_t i = 0; i < slots / 8; ++i) RandomOp(table, shadow, rng);

  // (a) Transactions: the snapshot is the undo log.
  int aborted = 0;
  for (int t = 0; t < txns; ++t) {
    auto snap = (*region)->TakeSnapshot();
    if (Failed(snap.status(), "TakeSnapshot")) return 1;
    Shadow tentative = shadow;
    for (int i = 0; i < ops; ++i) RandomOp(table, tentative, rng);
    if (t % 3 == 1) {
      if (Failed((*region)->Restore(**snap), "Restore")) return 1;
      ++aborted;
    } else {
      shadow = std::move(tentative);
    }
    if (Failed((*snap)->Release(), "Release")) return 1;
    if (!table.Matches(shadow)) {
      std::fprintf(stderr, "MISMATCH after transaction %d\n", t);
      return 1;
    }
  }
  upager::Stats s = (*rt)->stats();
  std::printf(
      "%d transactions of %d ops: %d committed, %d rolled back (%lu "
      "pages rewritten); table == shadow after each\n",
      txns, ops, txns - aborted, aborted, s.restore_pages);
  std::printf("  %lu pages copied on first write; snapshot pause p50 %.0f us\n",
              s.snapshot_copies, s.snapshot_pause.p50_ns / 1e3);

  // (b) Background persistence: writes go on while another thread saves.
  std::string dir =
      (std::filesystem::temp_directory_path() / "kv_rollback.XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) {
    std::perror(dir.c_str());
    return 1;
  }
  absl::Cleanup remove_dir = [&] { std::filesystem::remove_all(dir); };
  const std::string path = dir + "/kv.snap";
  auto snap = (*region)->TakeSnapshot();
  if (Failed(snap.status(), "TakeSnapshot")) return 1;
  const Shadow at_snapshot = shadow;
  std::atomic<bool> saving{true};
  absl::Status saved;
  std::thread saver([&] {
    saved = (*snap)->SaveTo(path);
    saving = false;
  });
  uint64_t during = 0, after = 0;
  while (saving || after < static_cast<uint64_t>(ops)) {
    RandomOp(table, shadow, rng);
    ++(saving ? during : after);
  }
  saver.join();
  // The file stands alone: the snapshot may go before it is mapped.
  if (Failed(saved, "SaveTo") || Failed((*snap)->Release(), "Release")) {
    return 1;
  }
  s = (*rt)->stats();
  std::printf("saved %lu MiB at %.0f MB/s during %lu writes (%lu after)\n",
              s.save_bytes >> 20, s.save_mb_per_s, during, after);
  auto back = (*rt)->MapSnapshot(path);
  if (Failed(back.status(), "MapSnapshot")) return 1;
  const Table saved_table{reinterpret_cast<Record*>((*back)->data()), slots};
  const bool ok = saved_table.Matches(at_snapshot) && table.Matches(shadow);
  std::printf(
      "verification: %s (file: %zu keys as at the snapshot, live: %zu)\n",
      ok ? "file and live table equal their shadows" : "MISMATCH",
      at_snapshot.size(), shadow.size());
  return ok && !Failed((*rt)->status(), "fault service") ? 0 : 1;
}
