// What a SIGBUS handler may look at (signal mode, runtime/signal_fault.cc):
// the address ranges of every live signal-mode region of every Engine in
// the process, and a wake-up word for threads that wait inside the handler
// for a service thread.
//
// The handler can take no lock and allocate nothing, so the ranges live in
// an immutable sorted table published through one atomic pointer. Writers
// (Map, Unmap, the UNMAP/REMAP event handlers, ~Engine) build a new table,
// swap it in, and wait for a grace period before freeing the old one: a
// reader announces itself on one of two counters chosen by the current
// phase, and a writer flips the phase and waits for the old phase's counter
// to drain. A reader re-checks the phase after announcing, so one that
// announced late moves to the new phase and only ever sees the new table.
// The grace period also covers what the entries point to: once Replace
// returns, no handler still uses a RegionCore or Engine it dropped.
//
// Thread-safety: Reader is async-signal-safe and lock-free (wait-free but
// for the re-check loop); Replace may be called from any thread but a
// signal handler, and blocks only until the handlers in flight return.
#ifndef UPAGER_RUNTIME_SIGNAL_REGISTRY_H_
#define UPAGER_RUNTIME_SIGNAL_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <vector>

namespace upager::internal {

class Engine;
class RegionCore;
struct SignalTable;

class SignalRegistry {
 public:
  struct Entry {
    uintptr_t start = 0;  // [start, end) in bytes
    uintptr_t end = 0;
    uint64_t first_page = 0;  // the region page mapped at `start`
    RegionCore* core = nullptr;
    Engine* engine = nullptr;
  };

  // Replaces every entry of `engine` by `entries` (in address order, not
  // overlapping anything live); returns after the grace period. O(entries
  // of all Engines).
  static void Replace(Engine* engine, const std::vector<Entry>& entries);

  // Announces that the layout is changing (an address-space event being
  // read and applied, an Unmap between unpublishing and unregistering): a
  // handler that finds no entry for its address then retries the access
  // instead of passing the SIGBUS on. Nests; async-signal-safe.
  static void BeginLayoutChange();
  static void EndLayoutChange();
  static bool LayoutChanging();

  // A read-side critical section: entries found through it, and what they
  // point to, stay valid until it is destroyed.
  class Reader {
   public:
    Reader();
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    // The entry whose range holds `addr`, or nullptr.
    const Entry* Find(uintptr_t addr) const;

   private:
    uint32_t phase_;
    const SignalTable* table_;
  };
};

// Threads waiting inside a SIGBUS handler for a service thread (a handed-off
// fault, or a page another thread is filling) sleep on one process-wide
// futex word. The protocol is Dekker's: a waiter registers (Waiter's
// constructor) before it publishes its request or re-checks the page; a
// waker publishes its result before NotifyIfWaiting looks for waiters. One
// of the two always sees the other, so a wake is never lost, and a fill
// with nobody waiting costs one fence and one load of a line that is
// rarely written.
class SignalWaiters {
 public:
  class Waiter {
   public:
    Waiter();   // registers and samples the generation
    ~Waiter();  // unregisters
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    // Sleeps until a Notify after construction, or `timeout_ns`.
    // Async-signal-safe.
    void Wait(uint64_t timeout_ns);

   private:
    uint32_t generation_;
  };
  // Wakes every registered waiter if there is one.
  static void NotifyIfWaiting();
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_SIGNAL_REGISTRY_H_
