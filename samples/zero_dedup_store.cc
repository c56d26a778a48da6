// A custom backing store in ~100 lines: pages that are all zero cost
// nothing, the rest are kept in memory. The model for an application's own
// tier (compressed, remote, ...): implement upager::BackingStore, pass it in
// RuntimeOptions::swap.store, and upager pages through it.
//
//   build/bin/zero_dedup_store [--region_mib=64] [--budget_mib=8]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "upager/upager.h"

ABSL_FLAG(uint64_t, region_mib, 64, "Region size");
ABSL_FLAG(uint64_t, budget_mib, 8, "Resident budget");

namespace {

class ZeroDedupStore final : public upager::BackingStore {
 public:
  ZeroDedupStore(size_t page_size, uint64_t slots)
      : page_size_(page_size), capacity_(slots), pages_(slots) {
    for (uint64_t s = slots; s > 0; --s) free_.push_back(s - 1);
  }
  size_t page_size() const override { return page_size_; }
  uint64_t capacity_slots() const override { return capacity_; }

  absl::StatusOr<uint64_t> AllocateSlot() override {
    absl::MutexLock lock(&mu_);
    if (free_.empty()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("zero-dedup store full: ", capacity_, " slots"));
    }
    const uint64_t s = free_.back();
    free_.pop_back();
    return s;
  }
  void FreeSlot(uint64_t slot) override {
    absl::MutexLock lock(&mu_);
    pages_[slot].reset();
    free_.push_back(slot);
  }
  absl::Status RegisterBuffers(std::byte*, size_t) override {
    return absl::OkStatus();  // nothing to pin: copies are plain memcpy
  }

  // Completes every request at once; the runtime reaps after Submit since
  // completion_fd() is -1.
  absl::Status Submit(absl::Span<const Request> requests) override {
    absl::MutexLock lock(&mu_);
    for (const Request& r : requests) {
      if (r.slot >= pages_.size()) {
        return absl::InvalidArgumentError(absl::StrCat("slot ", r.slot));
      }
    }
    for (const Request& r : requests) {
      std::unique_ptr<std::byte[]>& page = pages_[r.slot];
      const bool write = r.op == Request::Op::kWrite;
      if (write && std::all_of(r.buffer, r.buffer + page_size_,
                               [](std::byte b) { return b == std::byte{0}; })) {
        page.reset();  // the whole point: zero pages take no memory
        ++zero_pages_;
      } else if (write) {
        if (!page) page.reset(new std::byte[page_size_]);
        std::memcpy(page.get(), r.buffer, page_size_);
      } else if (page) {
        std::memcpy(r.buffer, page.get(), page_size_);
      } else {
        std::memset(r.buffer, 0, page_size_);
      }
      ++(write ? stats_.writes : stats_.reads);
      done_.push_back({r.tag, 0});
    }
    ++stats_.submits;
    return absl::OkStatus();
  }
  size_t Reap(absl::Span<Completion> out) override {
    absl::MutexLock lock(&mu_);
    const size_t n = std::min(out.size(), done_.size());
    std::copy_n(done_.begin(), n, out.begin());
    done_.erase(done_.begin(), done_.begin() + n);
    return n;
  }
  size_t Wait(absl::Span<Completion> out, absl::Duration) override {
    return Reap(out);
  }
  int completion_fd() const override { return -1; }
  upager::BackingStoreStats stats() const override {
    absl::MutexLock lock(&mu_);
    upager::BackingStoreStats s = stats_;
    s.capacity_slots = pages_.size();
    s.used_slots = pages_.size() - free_.size();
    return s;
  }
  uint64_t zero_pages() const { return zero_pages_; }

 private:
  const size_t page_size_;
  const uint64_t capacity_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<std::byte[]>> pages_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> free_ ABSL_GUARDED_BY(mu_);
  std::deque<Completion> done_ ABSL_GUARDED_BY(mu_);
  upager::BackingStoreStats stats_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> zero_pages_ = 0;
};

// The first byte of page i: a sparse array, one page in eight non-zero.
std::byte Want(uint64_t i) { return std::byte(i % 8 == 0 ? i % 251 + 1 : 0); }

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const uint64_t size = absl::GetFlag(FLAGS_region_mib) << 20;
  const size_t page = 4096;
  auto store = std::make_shared<ZeroDedupStore>(page, 2 * size / page);
  upager::RuntimeOptions o;
  o.resident_budget_bytes = absl::GetFlag(FLAGS_budget_mib) << 20;
  o.swap.store = store;
  auto rt = upager::Runtime::Create(o);
  if (!rt.ok()) {
    std::fprintf(stderr, "%s\n", rt.status().ToString().c_str());
    return 1;
  }
  auto region = (*rt)->Map({.size = size, .name = "sparse"});
  if (!region.ok()) {
    std::fprintf(stderr, "%s\n", region.status().ToString().c_str());
    return 1;
  }
  std::byte* p = (*region)->data();
  for (uint64_t i = 0; i < size / page; ++i) p[i * page] = Want(i);
  uint64_t bad = 0;
  for (uint64_t i = 0; i < size / page; ++i) bad += p[i * page] != Want(i);
  const bool ok = bad == 0 && store->zero_pages() > 0;
  std::printf(
      "%lu pages through a %lu MiB budget: %lu swapped out, %lu "
      "stored as zero (no memory), %lu read back wrong: %s\n",
      size / page, o.resident_budget_bytes >> 20,
      (*rt)->stats().pages_swapped_out, store->zero_pages(), bad,
      ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
