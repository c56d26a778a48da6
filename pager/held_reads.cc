#include "pager/held_reads.h"

namespace upager::internal {

int HeldReads::Hold(uint64_t slot, int buffer) {
  absl::MutexLock lock(&mu_);
  if (auto it = buffers_.find(slot); it != buffers_.end()) {
    const int old = it->second;
    it->second = buffer;
    return old;
  }
  int pushed_out = kNone;
  while (buffers_.size() >= capacity_ && !order_.empty()) {
    auto it = buffers_.find(order_.front());
    order_.pop_front();
    if (it == buffers_.end()) continue;  // taken since it was held
    pushed_out = it->second;
    buffers_.erase(it);
    break;
  }
  buffers_.emplace(slot, buffer);
  order_.push_back(slot);
  // Taken entries leave their slot in order_; drop them once they are
  // most of it, so order_ stays bounded by a multiple of the capacity.
  if (order_.size() > 4 * capacity_) {
    std::deque<uint64_t> live;
    for (uint64_t s : order_) {
      if (buffers_.contains(s)) live.push_back(s);
    }
    order_.swap(live);
  }
  count_.store(buffers_.size(), std::memory_order_relaxed);
  return pushed_out;
}

int HeldReads::Take(uint64_t slot) {
  if (count_.load(std::memory_order_relaxed) == 0) return kNone;
  absl::MutexLock lock(&mu_);
  auto it = buffers_.find(slot);
  if (it == buffers_.end()) return kNone;
  const int buffer = it->second;
  buffers_.erase(it);
  count_.store(buffers_.size(), std::memory_order_relaxed);
  return buffer;
}

std::vector<int> HeldReads::TakeAll() {
  absl::MutexLock lock(&mu_);
  std::vector<int> all;
  all.reserve(buffers_.size());
  for (const auto& [slot, buffer] : buffers_) all.push_back(buffer);
  buffers_.clear();
  order_.clear();
  count_.store(0, std::memory_order_relaxed);
  return all;
}

}  // namespace upager::internal
