// Faults a SIGBUS handler hands to the service threads (signal mode): a
// bounded multi-producer multi-consumer ring of fixed-size records.
//
// Each cell carries a sequence number (Vyukov's bounded queue): a producer
// claims the cell whose sequence equals its ticket, writes the record, and
// publishes it by bumping the sequence; a consumer does the mirror image.
// Nothing allocates and nothing blocks, so Push is async-signal-safe. A
// full ring makes Push return false: the handler then just lets the access
// fault again, which retries the hand-off.
//
// Thread-safety: Push and Pop from any threads, concurrently.
#ifndef UPAGER_RUNTIME_HANDOFF_QUEUE_H_
#define UPAGER_RUNTIME_HANDOFF_QUEUE_H_

#include <atomic>
#include <cstdint>

namespace upager::internal {

struct Handoff {
  uint64_t address = 0;
  bool write = false;
  bool wp = false;
  // The handing thread's completion word (Engine::CompleteHandoff).
  std::atomic<uint32_t>* done = nullptr;
};

class HandoffQueue {
 public:
  static constexpr uint64_t kCells = 1024;  // a power of two

  HandoffQueue() {
    for (uint64_t i = 0; i < kCells; ++i) {
      cells_[i].sequence.store(i, std::memory_order_relaxed);
    }
  }
  HandoffQueue(const HandoffQueue&) = delete;
  HandoffQueue& operator=(const HandoffQueue&) = delete;

  bool Push(const Handoff& h) {
    uint64_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & (kCells - 1)];
      const uint64_t seq = c.sequence.load(std::memory_order_acquire);
      const int64_t diff = static_cast<int64_t>(seq - pos);
      if (diff == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1,
                                        std::memory_order_relaxed)) {
          c.value = h;
          c.sequence.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;  // full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  bool Pop(Handoff* out) {
    uint64_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & (kCells - 1)];
      const uint64_t seq = c.sequence.load(std::memory_order_acquire);
      const int64_t diff = static_cast<int64_t>(seq - (pos + 1));
      if (diff == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1,
                                        std::memory_order_relaxed)) {
          *out = c.value;
          c.sequence.store(pos + kCells, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;  // empty
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }

 private:
  struct alignas(64) Cell {
    std::atomic<uint64_t> sequence{0};
    Handoff value;
  };
  alignas(64) std::atomic<uint64_t> tail_{0};
  alignas(64) std::atomic<uint64_t> head_{0};
  Cell cells_[kCells];
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_HANDOFF_QUEUE_H_
