// A userfaultfd that forwards to the kernel's but can inject the outcomes
// the fault path must survive: EAGAIN storms, EEXIST, ENOENT, hard errors,
// and short (partial) fills and moves; hide features (POISON, MOVE); and run
// a test's action just before a fill. Fakes only at the OS seam: every call
// that is not injected goes to the real kernel.
#ifndef UPAGER_TESTS_RUNTIME_OS_FAKE_UFFD_H_
#define UPAGER_TESTS_RUNTIME_OS_FAKE_UFFD_H_

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "runtime/os/userfaultfd.h"
#include "tests/runtime/os/forwarding_uffd.h"

namespace upager::testing {

class FakeUffd final : public ForwardingUffd {
 public:
  using Outcome = internal::os::UffdOutcome;

  explicit FakeUffd(std::unique_ptr<internal::os::Uffd> real)
      : ForwardingUffd(std::move(real)) {}

  // The next `n` fills (Copy/ZeroPage) fail with `outcome`/`err` without
  // touching the kernel. With `partial_pages` > 0 and a fill longer than
  // that, that many pages are really filled first (a short fill).
  void InjectFillFailures(int n, Outcome outcome, int err,
                          uint64_t partial_pages = 0) {
    outcome_.store(outcome);
    err_.store(err);
    partial_pages_.store(partial_pages);
    fill_failures_.store(n);
  }
  int fills() const { return fills_.load(); }
  int injected() const { return injected_.load(); }
  int poisons() const { return poisons_.load(); }
  // The next `n` moves (Move) fail with `outcome`/`err` without touching
  // the kernel; with `partial_pages` > 0 and a longer move, that many
  // pages are really moved first (a short move).
  void InjectMoveFailures(int n, Outcome outcome, int err,
                          uint64_t partial_pages = 0) {
    move_outcome_.store(outcome);
    move_err_.store(err);
    move_partial_pages_.store(partial_pages);
    move_failures_.store(n);
  }
  // Every move fails with kFailed/`err` from now on, as on a kernel (or
  // under a seccomp filter) that refuses UFFDIO_MOVE outright.
  void FailAllMoves(int err) { InjectMoveFailures(1 << 30, Outcome::kFailed, err); }
  int moves() const { return moves_.load(); }
  int moves_injected() const { return moves_injected_.load(); }
  // Makes the fake report no POISON feature (forces the wake fallback).
  void HidePoison() { hide_poison_ = true; }
  // Makes the fake report no MOVE feature: what needs it stays off.
  void HideMove() { hide_move_ = true; }
  // Reads by the serving threads ("upager-svc-*") see nothing pending, as
  // if they never got a CPU; only the guard thread reads.
  void StarveServiceThreads() { starve_ = true; }
  // Runs `hook(len)` once, inside the first fill (Copy, or Move into a
  // region) whose destination covers `addr`, before the real one: puts an
  // application's action between the runtime's checks and its fill.
  void BeforeFillAt(uint64_t addr, std::function<void(uint64_t len)> hook) {
    absl::MutexLock lock(&hook_mu_);
    hook_addr_ = addr;
    hook_ = std::move(hook);
  }

  uint64_t features() const override {
    uint64_t f = real().features();
    if (hide_poison_) f &= ~internal::os::uffd_feature::kPoison;
    if (hide_move_) f &= ~internal::os::uffd_feature::kMove;
    return f;
  }
  internal::os::ReadResult ReadEvents(
      absl::Span<internal::os::UffdEvent> out) override {
    if (starve_.load()) {
      char name[16] = {};
      pthread_getname_np(pthread_self(), name, sizeof(name));
      if (std::strncmp(name, "upager-svc-", 11) == 0) return {0, 0};
    }
    return real().ReadEvents(out);
  }
  Result Copy(uint64_t dst, const void* src, uint64_t len, bool wake,
              bool wp) override {
    RunHook(dst, len);
    return Fill(dst, len, [&](uint64_t d, uint64_t l) {
      return real().Copy(d, src, l, wake, wp);
    });
  }
  Result ZeroPage(uint64_t dst, uint64_t len, bool wake) override {
    return Fill(dst, len, [&](uint64_t d, uint64_t l) {
      return real().ZeroPage(d, l, wake);
    });
  }
  Result Move(uint64_t dst, uint64_t src, uint64_t len, bool wake,
              bool holes) override {
    RunHook(dst, len);
    moves_.fetch_add(1);
    int left = move_failures_.load();
    while (left > 0 && !move_failures_.compare_exchange_weak(left, left - 1)) {
    }
    if (left <= 0) return real().Move(dst, src, len, wake, holes);
    moves_injected_.fetch_add(1);
    Result r{move_outcome_.load(), 0, move_err_.load()};
    const uint64_t partial = move_partial_pages_.load() * 4096;
    if (partial > 0 && partial < len) {
      const Result done = real().Move(dst, src, partial, wake, holes);
      if (!done.ok()) return done;
      r.bytes = partial;
    }
    return r;
  }
  Result Poison(uint64_t a, uint64_t l, bool w) override {
    poisons_.fetch_add(1);
    return real().Poison(a, l, w);
  }

 private:
  void RunHook(uint64_t dst, uint64_t len) {
    std::function<void(uint64_t)> hook;
    {
      absl::MutexLock lock(&hook_mu_);
      if (!hook_ || hook_addr_ < dst || hook_addr_ >= dst + len) return;
      hook.swap(hook_);
    }
    hook(len);
  }
  template <typename F>
  Result Fill(uint64_t dst, uint64_t len, F real_fill) {
    fills_.fetch_add(1);
    int left = fill_failures_.load();
    while (left > 0 && !fill_failures_.compare_exchange_weak(left, left - 1)) {
    }
    if (left <= 0) return real_fill(dst, len);
    injected_.fetch_add(1);
    Result r{outcome_.load(), 0, err_.load()};
    const uint64_t partial = partial_pages_.load() * 4096;
    if (partial > 0 && partial < len) {
      const Result done = real_fill(dst, partial);
      if (!done.ok()) return done;
      r.bytes = partial;
    }
    return r;
  }

  std::atomic<int> fill_failures_{0};
  std::atomic<Outcome> outcome_{Outcome::kDone};
  std::atomic<int> err_{0};
  std::atomic<uint64_t> partial_pages_{0};
  std::atomic<int> fills_{0};
  std::atomic<int> injected_{0};
  std::atomic<int> poisons_{0};
  bool hide_poison_ = false;
  bool hide_move_ = false;
  std::atomic<int> move_failures_{0};
  std::atomic<Outcome> move_outcome_{Outcome::kDone};
  std::atomic<int> move_err_{0};
  std::atomic<uint64_t> move_partial_pages_{0};
  std::atomic<int> moves_{0};
  std::atomic<int> moves_injected_{0};
  std::atomic<bool> starve_{false};
  absl::Mutex hook_mu_;
  uint64_t hook_addr_ ABSL_GUARDED_BY(hook_mu_) = 0;
  std::function<void(uint64_t)> hook_ ABSL_GUARDED_BY(hook_mu_);
};

}  // namespace upager::testing

#endif  // UPAGER_TESTS_RUNTIME_OS_FAKE_UFFD_H_
