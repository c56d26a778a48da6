// ThreadSanitizer builds only (UPAGER_SANITIZE=thread): cmake/Sanitizers.cmake
// links this file into every executable of the tree.
//
// Why: Debian's Abseil is compiled without -fsanitize=thread, so the
// TSan annotations in absl/synchronization/mutex.cc are compiled out and
// absl::Mutex's lock and unlock happen in code TSan never sees (atomics and
// raw futex system calls). Every access to an ABSL_GUARDED_BY member would
// then look unsynchronized and TSan would report races that are not there.
//
// How: the executable defines the out-of-line entry points of absl::Mutex
// and absl::CondVar itself. A definition in the executable wins over the
// shared library's at link time (and, for calls from other libraries, at
// load time); each one forwards to the library's own function (found with
// dlsym(RTLD_NEXT)) between the same __tsan_mutex_* calls an instrumented
// Abseil makes. TSan then sees each Mutex as a mutex: lock and unlock order
// memory, and lock sets and lock-order inversions are checked as for
// pthread mutexes. The real call runs inside the annotation window, where TSan
// ignores memory accesses: that is where Abseil evaluates a Condition,
// possibly on the thread that is unlocking, as an instrumented Abseil would.
//
// Not covered (upager uses none of them; a TSan report involving one is
// suspect): absl::Notification, absl::BlockingCounter, absl::Barrier, and
// the reference counts of absl::Status / absl::Cord payloads, which are
// released inside the uninstrumented library.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#if !defined(__SANITIZE_THREAD__) && defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define __SANITIZE_THREAD__ 1
#endif
#endif
#ifndef __SANITIZE_THREAD__
#error "cmake/tsan_absl_mutex.cc belongs in -fsanitize=thread builds only"
#endif

namespace {

#define UPAGER_STR2(x) #x
#define UPAGER_STR(x) UPAGER_STR2(x)

// The library's definition of absl::<inline namespace>::<mangled_rest>, e.g.
// Real<void (*)(absl::Mutex*)>("5Mutex4LockEv"). Aborts if it is missing:
// a silently unannotated Mutex would make every report a lie.
template <typename Fn>
Fn Real(const char* mangled_rest) {
  const char* ns = UPAGER_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name =
      "_ZN4absl" + std::to_string(std::strlen(ns)) + ns + mangled_rest;
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan_absl_mutex: %s not found: %s\n", name.c_str(),
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// Member functions are called as functions taking `this` first (Itanium
// C++ ABI); absl::Duration and absl::Time are passed by value either way.
using VoidFn = void (*)(absl::Mutex*);
using BoolFn = bool (*)(absl::Mutex*);
using CondFn = void (*)(absl::Mutex*, const absl::Condition&);
using CondTimeoutFn = bool (*)(absl::Mutex*, const absl::Condition&,
                               absl::Duration);
using CondDeadlineFn = bool (*)(absl::Mutex*, const absl::Condition&,
                                absl::Time);

constexpr unsigned kRead = __tsan_mutex_read_lock;

// The mode `mu` is held in by the caller of Await or CondVar::Wait, as
// mutex.cc decides it: the writer bit of the lock word (mutex.cc's
// kMuWriter), the Mutex's only data member.
unsigned HeldMode(const absl::Mutex* mu) {
  constexpr intptr_t kMuWriter = 0x0008;
  const auto* word = reinterpret_cast<const std::atomic<intptr_t>*>(mu);
  return (word->load(std::memory_order_relaxed) & kMuWriter) != 0 ? 0 : kRead;
}

// Inside Abseil one entry point may call another through the PLT (e.g.
// LockWhenWithTimeout -> LockWhenWithDeadline), which lands in this file
// again: only the outermost call on a thread is annotated.
thread_local int depth = 0;

class Outermost {
 public:
  Outermost() : outermost_(depth++ == 0) {}
  ~Outermost() { --depth; }
  Outermost(const Outermost&) = delete;
  Outermost& operator=(const Outermost&) = delete;
  explicit operator bool() const { return outermost_; }

 private:
  const bool outermost_;
};

// Runs `release_and_reacquire` (which returns with `mu` held again in `mode`)
// as an unlock followed by a lock.
template <typename F>
auto Reacquire(absl::Mutex* mu, unsigned mode, F release_and_reacquire) {
  const Outermost annotate;
  if (annotate) __tsan_mutex_pre_unlock(mu, mode);
  const auto result = release_and_reacquire();
  if (annotate) {
    __tsan_mutex_post_unlock(mu, mode);
    __tsan_mutex_pre_lock(mu, mode);
    __tsan_mutex_post_lock(mu, mode, 0);
  }
  return result;
}

// Acquires `mu` in `mode` with `acquire`, which always returns with it held.
template <typename F>
auto Acquire(absl::Mutex* mu, unsigned mode, F acquire) {
  const Outermost annotate;
  if (annotate) __tsan_mutex_pre_lock(mu, mode);
  const auto result = acquire();
  if (annotate) __tsan_mutex_post_lock(mu, mode, 0);
  return result;
}

bool TryAcquire(absl::Mutex* mu, unsigned mode, BoolFn try_lock) {
  const Outermost annotate;
  if (annotate) __tsan_mutex_pre_lock(mu, mode | __tsan_mutex_try_lock);
  const bool locked = try_lock(mu);
  if (annotate) {
    __tsan_mutex_post_lock(
        mu,
        mode | __tsan_mutex_try_lock |
            (locked ? 0u : unsigned{__tsan_mutex_try_lock_failed}),
        0);
  }
  return locked;
}

void Release(absl::Mutex* mu, unsigned mode, VoidFn unlock) {
  const Outermost annotate;
  if (annotate) __tsan_mutex_pre_unlock(mu, mode);
  unlock(mu);
  if (annotate) __tsan_mutex_post_unlock(mu, mode);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

Mutex::~Mutex() {
  static const VoidFn real = Real<VoidFn>("5MutexD2Ev");
  if (const Outermost annotate; annotate) __tsan_mutex_destroy(this, 0);
  real(this);
}

void Mutex::Lock() {
  static const VoidFn real = Real<VoidFn>("5Mutex4LockEv");
  Acquire(this, 0, [&] { return (real(this), 0); });
}

void Mutex::ReaderLock() {
  static const VoidFn real = Real<VoidFn>("5Mutex10ReaderLockEv");
  Acquire(this, kRead, [&] { return (real(this), 0); });
}

bool Mutex::TryLock() {
  static const BoolFn real = Real<BoolFn>("5Mutex7TryLockEv");
  return TryAcquire(this, 0, real);
}

bool Mutex::ReaderTryLock() {
  static const BoolFn real = Real<BoolFn>("5Mutex13ReaderTryLockEv");
  return TryAcquire(this, kRead, real);
}

void Mutex::Unlock() {
  static const VoidFn real = Real<VoidFn>("5Mutex6UnlockEv");
  Release(this, 0, real);
}

void Mutex::ReaderUnlock() {
  static const VoidFn real = Real<VoidFn>("5Mutex12ReaderUnlockEv");
  Release(this, kRead, real);
}

void Mutex::LockWhen(const Condition& cond) {
  static const CondFn real = Real<CondFn>("5Mutex8LockWhenERKNS0_9ConditionE");
  Acquire(this, 0, [&] { return (real(this, cond), 0); });
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const CondFn real =
      Real<CondFn>("5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Acquire(this, kRead, [&] { return (real(this, cond), 0); });
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const CondTimeoutFn real = Real<CondTimeoutFn>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Acquire(this, 0, [&] { return real(this, cond, timeout); });
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const CondTimeoutFn real = Real<CondTimeoutFn>(
      "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Acquire(this, kRead, [&] { return real(this, cond, timeout); });
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const CondDeadlineFn real = Real<CondDeadlineFn>(
      "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Acquire(this, 0, [&] { return real(this, cond, deadline); });
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const CondDeadlineFn real = Real<CondDeadlineFn>(
      "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Acquire(this, kRead, [&] { return real(this, cond, deadline); });
}

void Mutex::Await(const Condition& cond) {
  static const CondFn real = Real<CondFn>("5Mutex5AwaitERKNS0_9ConditionE");
  Reacquire(this, HeldMode(this), [&] { return (real(this, cond), 0); });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static const CondTimeoutFn real = Real<CondTimeoutFn>(
      "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Reacquire(this, HeldMode(this),
                   [&] { return real(this, cond, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static const CondDeadlineFn real = Real<CondDeadlineFn>(
      "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Reacquire(this, HeldMode(this),
                   [&] { return real(this, cond, deadline); });
}

// CondVar::Wait* release `mu` and take it again before returning.
void CondVar::Wait(Mutex* mu) {
  using Fn = void (*)(CondVar*, Mutex*);
  static const Fn real = Real<Fn>("7CondVar4WaitEPNS0_5MutexE");
  Reacquire(mu, HeldMode(mu), [&] { return (real(this, mu), 0); });
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  using Fn = bool (*)(CondVar*, Mutex*, Duration);
  static const Fn real =
      Real<Fn>("7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  return Reacquire(mu, HeldMode(mu), [&] { return real(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  using Fn = bool (*)(CondVar*, Mutex*, Time);
  static const Fn real =
      Real<Fn>("7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  return Reacquire(mu, HeldMode(mu), [&] { return real(this, mu, deadline); });
}

ABSL_NAMESPACE_END
}  // namespace absl
