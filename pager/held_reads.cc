#include "pager/held_reads.h"

#include <algorithm>

namespace upager::internal {

int HeldReads::Hold(uint64_t slot, int buffer) {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(held_.begin(), held_.end(),
                         [&](const auto& h) { return h.first == slot; });
  if (it != held_.end()) return std::exchange(it->second, buffer);
  int pushed_out = kNone;
  if (held_.size() >= capacity_) {
    pushed_out = held_.front().second;
    held_.erase(held_.begin());
  }
  held_.emplace_back(slot, buffer);
  count_.store(held_.size(), std::memory_order_relaxed);
  return pushed_out;
}

int HeldReads::Take(uint64_t slot) {
  if (count_.load(std::memory_order_relaxed) == 0) return kNone;
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(held_.begin(), held_.end(),
                         [&](const auto& h) { return h.first == slot; });
  if (it == held_.end()) return kNone;
  const int buffer = it->second;
  held_.erase(it);
  count_.store(held_.size(), std::memory_order_relaxed);
  return buffer;
}

std::vector<int> HeldReads::TakeAll() {
  absl::MutexLock lock(&mu_);
  std::vector<int> all;
  all.reserve(held_.size());
  for (const auto& [slot, buffer] : held_) all.push_back(buffer);
  held_.clear();
  count_.store(0, std::memory_order_relaxed);
  return all;
}

}  // namespace upager::internal
