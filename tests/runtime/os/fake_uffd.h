// A userfaultfd that forwards to the kernel's but can inject the outcomes
// the fault path must survive: EAGAIN storms, EEXIST, ENOENT, hard errors,
// and short (partial) fills. Fakes only at the OS seam: every call that is
// not injected goes to the real kernel.
#ifndef UPAGER_TESTS_RUNTIME_OS_FAKE_UFFD_H_
#define UPAGER_TESTS_RUNTIME_OS_FAKE_UFFD_H_

#include <pthread.h>

#include <atomic>
#include <cstring>
#include <cerrno>
#include <memory>
#include <utility>

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
  // Makes the fake report no POISON feature (forces the wake fallback).
  void HidePoison() { hide_poison_ = true; }
  // Reads by the serving threads ("upager-svc-*") see nothing pending, as
  // if they never got a CPU; only the guard thread reads.
  void StarveServiceThreads() { starve_ = true; }

  uint64_t features() const override {
    uint64_t f = real().features();
    if (hide_poison_) f &= ~internal::os::uffd_feature::kPoison;
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
    return Fill(dst, len, [&](uint64_t d, uint64_t l) {
      return real().Copy(d, src, l, wake, wp);
    });
  }
  Result ZeroPage(uint64_t dst, uint64_t len, bool wake) override {
    return Fill(dst, len, [&](uint64_t d, uint64_t l) {
      return real().ZeroPage(d, l, wake);
    });
  }
  Result Poison(uint64_t a, uint64_t l, bool w) override {
    poisons_.fetch_add(1);
    return real().Poison(a, l, w);
  }

 private:
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
  std::atomic<bool> starve_{false};
};

}  // namespace upager::testing

#endif  // UPAGER_TESTS_RUNTIME_OS_FAKE_UFFD_H_
