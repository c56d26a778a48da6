#include "runtime/signal_registry.h"

#include <algorithm>
#include <iterator>
#include <memory>

#include "absl/base/const_init.h"
#include "absl/synchronization/mutex.h"
#include "runtime/os/signals.h"

namespace upager::internal {

struct SignalTable {
  std::vector<SignalRegistry::Entry> entries;  // sorted by start
};

namespace {

ABSL_CONST_INIT absl::Mutex g_writer_mu(absl::kConstInit);
std::atomic<const SignalTable*> g_table{nullptr};
std::atomic<uint32_t> g_phase{0};
std::atomic<uint64_t> g_readers[2];

std::atomic<int64_t> g_layout_changes{0};

std::atomic<uint32_t> g_generation{0};
std::atomic<uint32_t> g_waiters{0};

}  // namespace

void SignalRegistry::Replace(Engine* engine, const std::vector<Entry>& entries) {
  absl::MutexLock lock(&g_writer_mu);
  const SignalTable* old = g_table.load(std::memory_order_relaxed);
  // Both inputs are in address order: a linear merge keeps the table
  // sorted.
  std::vector<Entry> others;
  if (old != nullptr) {
    others.reserve(old->entries.size());
    for (const Entry& e : old->entries) {
      if (e.engine != engine) others.push_back(e);
    }
  }
  auto fresh = std::make_unique<SignalTable>();
  fresh->entries.reserve(others.size() + entries.size());
  std::merge(others.begin(), others.end(), entries.begin(), entries.end(),
             std::back_inserter(fresh->entries),
             [](const Entry& a, const Entry& b) { return a.start < b.start; });
  g_table.store(fresh.release(), std::memory_order_seq_cst);
  // Grace period: readers of the old phase finish; new ones see `fresh`.
  const uint32_t phase = g_phase.fetch_add(1, std::memory_order_seq_cst) & 1;
  while (g_readers[phase].load(std::memory_order_seq_cst) != 0) {
    os::YieldCpu();
  }
  delete old;
}

void SignalRegistry::BeginLayoutChange() {
  g_layout_changes.fetch_add(1, std::memory_order_seq_cst);
}

void SignalRegistry::EndLayoutChange() {
  g_layout_changes.fetch_sub(1, std::memory_order_seq_cst);
}

bool SignalRegistry::LayoutChanging() {
  return g_layout_changes.load(std::memory_order_seq_cst) != 0;
}

SignalRegistry::Reader::Reader() {
  for (;;) {
    phase_ = g_phase.load(std::memory_order_seq_cst) & 1;
    g_readers[phase_].fetch_add(1, std::memory_order_seq_cst);
    if ((g_phase.load(std::memory_order_seq_cst) & 1) == phase_) break;
    g_readers[phase_].fetch_sub(1, std::memory_order_seq_cst);
  }
  table_ = g_table.load(std::memory_order_seq_cst);
}

SignalRegistry::Reader::~Reader() {
  g_readers[phase_].fetch_sub(1, std::memory_order_release);
}

const SignalRegistry::Entry* SignalRegistry::Reader::Find(
    uintptr_t addr) const {
  if (table_ == nullptr) return nullptr;
  const std::vector<Entry>& v = table_->entries;
  // Last entry starting at or below addr.
  auto it = std::upper_bound(
      v.begin(), v.end(), addr,
      [](uintptr_t a, const Entry& e) { return a < e.start; });
  if (it == v.begin()) return nullptr;
  --it;
  return addr < it->end ? &*it : nullptr;
}

SignalWaiters::Waiter::Waiter() {
  g_waiters.fetch_add(1, std::memory_order_seq_cst);
  generation_ = g_generation.load(std::memory_order_seq_cst);
}

SignalWaiters::Waiter::~Waiter() {
  g_waiters.fetch_sub(1, std::memory_order_relaxed);
}

void SignalWaiters::Waiter::Wait(uint64_t timeout_ns) {
  os::FutexWait(&g_generation, generation_, timeout_ns);
}

void SignalWaiters::NotifyIfWaiting() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (g_waiters.load(std::memory_order_relaxed) == 0) return;
  g_generation.fetch_add(1, std::memory_order_seq_cst);
  os::FutexWakeAll(&g_generation);
}

}  // namespace upager::internal
