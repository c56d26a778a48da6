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

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <future>
#include <map>
#include <random>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "upager/status_macros.h"
#include "upager/upager.h"

ABSL_FLAG(uint64_t, slots, 1 << 18, "Table slots (24-byte records)");
ABSL_FLAG(int, txns, 12, "Transactions; every third one aborts");
ABSL_FLAG(int, ops_per_txn, 2000, "Puts and erases per transaction");

namespace {

using Shadow = std::map<uint64_t, uint64_t>;

struct Record {  // all zero: an empty slot
  uint64_t key;
  uint64_t value;
  uint64_t state;  // 0 empty, 1 live, 2 erased (a tombstone)
};

// A view of a table that lives entirely in a Region (so in its snapshots).
struct Table {
  // The key's record, or the slot to insert it at (a tombstone or empty).
  Record* Find(uint64_t key) const {
    Record* free = nullptr;
    for (uint64_t n = 0; n < slots; ++n) {
      Record& x = r[(key * 0x9e3779b97f4a7c15 % slots + n) % slots];
      if (x.state == 1 && x.key == key) return &x;
      if (x.state != 1 && free == nullptr) free = &x;
      if (x.state == 0) break;
    }
    return free;
  }
  // OK if the table holds exactly `want` (as many live records, each found
  // by lookup); else DataLoss naming `what`.
  absl::Status Check(const Shadow& want, const std::string& what) const {
    uint64_t live = 0;
    for (uint64_t i = 0; i < slots; ++i) live += r[i].state == 1;
    bool ok = live == want.size();
    for (const auto& [k, v] : want) {
      const Record* f = Find(k);
      ok = ok && f->state == 1 && f->value == v;
    }
    return ok ? absl::OkStatus() : absl::DataLossError(what + " != shadow");
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
  const uint64_t value = rng();
  *r = {.key = key, .value = value, .state = 1};
  shadow[key] = value;
}

absl::Status Run(uint64_t slots, int txns, int ops) {
  UPAGER_ASSIGN_OR_RETURN(auto rt, upager::Runtime::Create({}));
  const size_t size = (slots * sizeof(Record) + rt->page_size() - 1) /
                      rt->page_size() * rt->page_size();
  UPAGER_ASSIGN_OR_RETURN(auto* region, rt->Map({.size = size, .name = "kv"}));
  const Table table{reinterpret_cast<Record*>(region->data()), slots};
  Shadow shadow;
  std::mt19937_64 rng(42);
  for (uint64_t i = 0; i < slots / 8; ++i) RandomOp(table, shadow, rng);

  // (a) Transactions: the snapshot is the undo log.
  for (int t = 0; t < txns; ++t) {
    UPAGER_ASSIGN_OR_RETURN(auto snap, region->TakeSnapshot());
    const Shadow before = shadow;
    for (int i = 0; i < ops; ++i) RandomOp(table, shadow, rng);
    if (t % 3 == 1) {  // abort: the table and its shadow roll back
      UPAGER_RETURN_IF_ERROR(region->Restore(*snap));
      shadow = before;
    }
    UPAGER_RETURN_IF_ERROR(snap->Release());
    UPAGER_RETURN_IF_ERROR(table.Check(shadow, "txn " + std::to_string(t)));
  }

  // (b) Background persistence: writes go on while another thread saves.
  std::string dir = std::filesystem::temp_directory_path() / "kv.XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return absl::ErrnoToStatus(errno, dir);
  absl::Cleanup remove_dir = [&] { std::filesystem::remove_all(dir); };
  const std::string path = dir + "/kv.snap";
  UPAGER_ASSIGN_OR_RETURN(auto snap, region->TakeSnapshot());
  const Shadow at_snapshot = shadow;
  std::future<absl::Status> saved =
      std::async(std::launch::async, [&] { return snap->SaveTo(path); });
  int during = 0;  // writes while the save runs
  while (saved.wait_for(std::chrono::seconds()) != std::future_status::ready) {
    RandomOp(table, shadow, rng);
    ++during;
  }
  for (int i = 0; i < ops; ++i) RandomOp(table, shadow, rng);  // and after
  UPAGER_RETURN_IF_ERROR(saved.get());
  UPAGER_RETURN_IF_ERROR(snap->Release());  // the file stands alone
  UPAGER_ASSIGN_OR_RETURN(auto* back, rt->MapSnapshot(path));
  const Table file{reinterpret_cast<Record*>(back->data()), slots};
  UPAGER_RETURN_IF_ERROR(file.Check(at_snapshot, "file"));
  UPAGER_RETURN_IF_ERROR(table.Check(shadow, "table after the save"));
  const upager::Stats s = rt->stats();
  std::printf(
      "%d transactions (%lu pages rolled back), a %lu MiB save during "
      "%d writes: table == shadow at each step, file == snapshot\n",
      txns, s.restore_pages, s.save_bytes >> 20, during);
  return rt->status();  // OK unless the fault service met an error
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const uint64_t slots = absl::GetFlag(FLAGS_slots);
  if (slots < 64) {
    std::fprintf(stderr, "need --slots >= 64, not %lu\n", slots);
    return 2;
  }
  const absl::Status s =
      Run(slots, absl::GetFlag(FLAGS_txns), absl::GetFlag(FLAGS_ops_per_txn));
  if (!s.ok()) std::fprintf(stderr, "FAILED: %s\n", s.ToString().c_str());
  return s.ok() ? 0 : 1;
}
