// Where evicted pages go: the backing-store interface, and upager's own
// stores (an io_uring swap file, an in-memory store).
//
// A store holds fixed-size slots of page_size() bytes. I/O is asynchronous
// and batched: Submit() queues page reads and writes (and may start them);
// completions come back through Reap()/Wait(), each carrying the caller's
// tag. A write is safe (its slot reads back the written bytes) once its
// completion has been reaped with error == 0; until then the caller must
// keep the page's bytes elsewhere. Applications may implement their own
// store (a compressed tier, a remote one) and pass it to the Runtime
// (SwapOptions::store); samples/zero_dedup_store.cc is a complete one.
//
// What the Runtime relies on, so what an implementation must honour:
// - every request accepted by Submit completes exactly once, in any order,
//   with all page_size() bytes transferred or a non-zero error (a short
//   transfer is the store's to finish, never the caller's); ~Runtime waits
//   for requests in flight, so a store that never completes one hangs it;
// - a write that completes with an error may leave anything in its slot:
//   the runtime keeps that page resident and never reads the slot back;
// - Submit and Reap never block on I/O (the service threads call them
//   between faults); Wait is the only call that sleeps.
//
// Thread-safety: every method may be called concurrently from any thread.
// Lifetime: the Runtime holds the store until it is destroyed; one store
// must not serve two Runtimes at once (each reaps the other's completions).
#ifndef UPAGER_BACKING_STORE_H_
#define UPAGER_BACKING_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace upager {

// A store's counters since it was created; Stats::store in the Runtime.
struct BackingStoreStats {
  uint64_t capacity_slots = 0;
  uint64_t used_slots = 0;     // allocated now
  uint64_t reads = 0;          // completed page reads
  uint64_t writes = 0;         // completed page writes
  uint64_t read_errors = 0;
  uint64_t write_errors = 0;
  uint64_t submits = 0;        // submission batches (io_uring_submit calls)
  uint64_t short_transfers = 0;  // partial reads/writes requeued
  bool registered_buffers = false;  // I/O uses fixed (pre-registered) buffers
  bool registered_file = false;     // I/O uses a registered file
  bool direct_io = false;           // O_DIRECT
};

class BackingStore {
 public:
  // One page of I/O: a read fills `buffer` from `slot`, a write stores
  // `buffer` into `slot`.
  struct Request {
    enum class Op : uint8_t { kRead, kWrite };
    Op op = Op::kRead;
    uint64_t slot = 0;  // allocated by AllocateSlot, < capacity_slots()
    // page_size() bytes, aligned to page_size(); must stay valid (and, for
    // a write, unchanged) until the request's completion is reaped.
    std::byte* buffer = nullptr;
    uint64_t tag = 0;  // returned in the completion
  };
  struct Completion {
    uint64_t tag = 0;
    int error = 0;  // 0, or an errno: EIO, ENOSPC, ...
  };

  // upager's stores wait (up to a timeout) for requests in flight when
  // destroyed; the Runtime never destroys its store with any in flight.
  virtual ~BackingStore() = default;

  // The slot size in bytes: the Runtime refuses a store whose page size is
  // not its own. Constant for the store's life, as is capacity_slots().
  virtual size_t page_size() const = 0;
  virtual uint64_t capacity_slots() const = 0;

  // A free slot, or ResourceExhausted naming the capacity when full (the
  // Runtime then keeps the victim resident: Stats::swap_full). Freed slots
  // are reused. A slot never written reads as zeros in upager's stores.
  virtual absl::StatusOr<uint64_t> AllocateSlot() = 0;
  // Precondition: `slot` was allocated and has no request in flight.
  virtual void FreeSlot(uint64_t slot) = 0;

  // Offers the memory the caller will use as I/O buffers, so a store may
  // pre-register it (io_uring fixed buffers). Optional: requests with
  // buffers outside it still work. Returns OK also when the store chose not
  // to register (see stats().registered_buffers); InvalidArgument for a
  // range that is empty or not page-aligned. The Runtime calls it once, in
  // Create, and fails Create on a non-OK result.
  virtual absl::Status RegisterBuffers(std::byte* base, size_t len) = 0;

  // Queues the requests (and may start them). On error, none of them was
  // queued: InvalidArgument for an unknown op, a slot out of range or a
  // null or misaligned buffer, FailedPrecondition for a slot not
  // allocated. I/O errors are not Submit's: they come back in completions.
  virtual absl::Status Submit(absl::Span<const Request> requests) = 0;
  // Non-blocking: moves up to out.size() completions into `out` and returns
  // how many. Each completion is returned once, to whichever caller reaps
  // it.
  virtual size_t Reap(absl::Span<Completion> out) = 0;
  // As Reap, but waits up to `timeout` for at least one completion; 0 when
  // none came in time.
  virtual size_t Wait(absl::Span<Completion> out, absl::Duration timeout) = 0;
  // A descriptor that is readable while completions wait to be reaped (so
  // the runtime can poll it beside the userfaultfd), or -1 if the store has
  // none (then the runtime calls Reap after Submit and when idle). Owned by
  // the store; valid for its life.
  virtual int completion_fd() const = 0;

  // A copy of the counters; may be called at any time.
  virtual BackingStoreStats stats() const = 0;
};

// For OpenSwapFile; each bad value is InvalidArgument naming it.
struct SwapFileOptions {
  // A file on a local disk, non-empty; created if missing. An existing
  // file is emptied first (its contents are lost), then sized to the
  // capacity with its blocks reserved, so a full disk fails the open.
  std::string path;
  // Bytes; a non-zero multiple of the page size.
  uint64_t capacity_bytes = 0;
  // O_DIRECT: page I/O bypasses the page cache (falls back to buffered I/O,
  // reported in stats, when the file system refuses it).
  bool direct_io = true;
  // io_uring submission queue entries. 1..4096.
  uint32_t queue_depth = 128;
  // Requests of one kind for consecutive slots from consecutive buffers
  // (a run of evicted pages, a read-ahead window) go to the kernel as one
  // I/O of up to this many pages: one submission entry, one completion,
  // one device request. 1..256; 1 turns merging off. Each request still
  // completes on its own (a failed merged I/O is retried page by page, so
  // an error names the page it belongs to).
  uint32_t max_merge_pages = 64;
  // Remove the file: as soon as it is open and sized (the store's open
  // descriptor keeps it alive), so that not even a killed process leaves
  // it behind; if that fails, when the store is destroyed. false: the file
  // stays, with the pages written to it.
  bool unlink_on_close = true;
};

// An io_uring-driven swap file: batched submission, short transfers
// requeued, fixed buffers and a registered file when the kernel allows (see
// stats()). Fails with InvalidArgument naming a bad option, or the error of
// the failed system call naming the path (PermissionDenied, NotFound for a
// missing directory, ResourceExhausted for a full disk); a file this call
// created is removed again on failure.
absl::StatusOr<std::unique_ptr<BackingStore>> OpenSwapFile(
    const SwapFileOptions& options);

// Pages kept in anonymous memory: for tests, and as the model a custom
// store can start from. Completes requests inside Submit (its completion
// fd is then readable at once). capacity_bytes: a non-zero multiple of the
// page size, else InvalidArgument; ResourceExhausted if it cannot be
// mapped. The memory is reserved, not populated: a slot costs memory once
// written.
absl::StatusOr<std::unique_ptr<BackingStore>> NewMemoryStore(
    uint64_t capacity_bytes);

}  // namespace upager

#endif  // UPAGER_BACKING_STORE_H_
