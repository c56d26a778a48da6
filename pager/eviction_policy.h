// The eviction policy: which resident pages to drop when resident memory
// passes the budget.
//
// What a user-space pager can see. Accesses to resident pages are invisible
// (no accessed bit), so LRU and CLOCK as the kernel runs them are not
// available. The evidence that exists:
//   - faults: a page becoming resident, on demand or as part of a detected
//     sequential stream / read-ahead, and *refaults*: a page evicted
//     recently is needed again;
//   - writes to resident pages (write-protect faults, PAGEMAP_SCAN bits);
//   - probes: the runtime soft-unmaps a resident page (UFFDIO_MOVE aside);
//     a touch faults it back (a probe hit, ~5 us), no touch within the probe
//     window is a miss. A probe is a referenced-bit test that costs a fault
//     per hot page, so it is rationed to the pages where the answer matters.
//
// The policy: 2Q-style segments, refault-driven promotion, probe aging.
//   sequential  FIFO of pages a detected stream brought in (read-ahead) and
//               not yet reused. Evicted first: a scan only displaces itself.
//               A small reserve (sequential_reserve_pages) is kept while
//               other victims exist, so read-ahead is not evicted before
//               the application consumes it (it would refault and look hot).
//   idle        FIFO of protected pages whose probe missed: the only
//               evidence of idleness there is, so they go next.
//   probation   FIFO of pages admitted on demand (and protected pages that
//               went stale). Without an accessed bit, FIFO is all the order
//               there is among pages with no evidence.
//   protected   pages with evidence of reuse: a refault that finds its ghost,
//               a write or probe hit after the admitting use. Ordered by
//               last evidence. A victim only when nothing else is resident;
//               capped at protected_pages (3/4 of the budget, as 2Q's Am),
//               so probation always has room to observe new pages.
//   probing     protected pages whose probe is outstanding.
//   ghosts      FIFO of recently evicted pages (metadata only), at most
//               ghost_pages (= budget). A refault that finds its ghost is the
//               evidence this policy runs on: the page would have stayed
//               resident with ghost_pages more memory, and only the faulting
//               page of a fill counts (fault-around and read-ahead pages
//               were not asked for).
// A cold scan flows sequential -> ghosts (admitted on demand: probation ->
// ghosts) and never reaches protected, while a hot page that falls out of
// probation refaults within the ghost window and is protected from then on.
// Protected pages age by probes: PickProbes offers those whose last evidence
// is probe_age_pages admissions old; a hit renews them, a miss makes them
// idle. A page promoted into a full protected set displaces the oldest
// protected page only if that one has gone stale_pages admissions without
// evidence, else it waits in probation. That rule keeps protected from
// churning when more pages show reuse than fit (a loop 1.5x the budget:
// FIFO and LRU hit nothing; this policy keeps most of protected resident and
// hits ~47%), and still lets a new working set take over within stale_pages
// admissions when the runtime sends no probes. A write right after
// admission (within correlation_pages) is the admitting use, not reuse, so
// a streaming writer does not promote what it writes.
//
// Why not ARC/LIRS/CLOCK-Pro as published: they promote and age on hits to
// resident pages, which we cannot see; what carries over is their structure
// (a filter for new pages, a protected set, a non-resident history). Time
// is counted in admissions (pages made resident), so aging stops when
// nothing faults: without memory pressure there is nothing to decide and no
// reason to spend probes.
//
// Measured in tests/pager/eviction_policy_test.cc (trace simulation of what
// the runtime sees): the case, a 32768-page hot set accessed at
// random interleaved 1:1 with a 262144-page cold scan under a 65536-page
// budget, ends with 100% of the hot set resident when the scan is admitted
// as kSequential and 97.5% when it is admitted as kDemand (FIFO: 58%); on
// Zipf traces it beats FIFO by 5-7 points of hit rate (and an LRU that could
// see every access by 1-3).
//
// Cost: every operation is O(1) per page (amortized: the index rehashes when
// it doubles). The state is one 32-byte node per tracked page (resident or
// ghost) plus a 4-byte index slot: 38 to 44 bytes per tracked page
// depending on the index's load (pager/page_list.h; 42 measured), so ~84
// bytes per resident page with a full ghost history, 2% of the 4 KiB it
// manages.
//
// Thread-safety: every method may be called from any thread. All state is
// guarded by one mutex, held for the duration of a call; the policy calls
// nothing outside itself, so its lock is a leaf and may be taken under any
// runtime lock. Batch calls (Admit/Forget of a range, PickVictims of n) take
// it once.
#ifndef UPAGER_PAGER_EVICTION_POLICY_H_
#define UPAGER_PAGER_EVICTION_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "pager/page_list.h"

namespace upager::internal {

// PageRef (a page of a region) is defined in pager/page_list.h.

enum class AdmitKind : uint8_t {
  kDemand,      // an ordinary missing fault
  kSequential,  // part of a detected sequential stream or read-ahead
};

struct PolicyStats {
  // Counters since construction, in pages.
  uint64_t admitted_demand = 0;      // ghost hits included
  uint64_t admitted_sequential = 0;  // ghost hits included
  uint64_t admitted_resident = 0;    // Admit of a page already resident
  uint64_t ghost_hits = 0;           // admissions that found their ghost
  uint64_t promotions = 0;           // entries into protected
  uint64_t promotions_deferred = 0;  // refused: protected full of fresh pages
  uint64_t demotions = 0;            // protected -> probation or idle
  uint64_t victims = 0;
  uint64_t victims_sequential = 0;   // of which from the sequential segment
  uint64_t victims_protected = 0;    // of which from protected or probing
  uint64_t evictions_cancelled = 0;  // CancelEviction of a non-resident page
  uint64_t probes = 0;               // pages handed out by PickProbes
  uint64_t probe_hits = 0;           // probed pages Touched
  uint64_t probe_misses = 0;         // probed pages ProbeMissed
  uint64_t touches = 0;              // Touched calls on resident pages
  uint64_t touches_correlated = 0;   // of which ignored as the admitting use
  uint64_t forgotten = 0;            // resident pages Forgotten
  uint64_t ghosts_forgotten = 0;     // ghosts Forgotten
  uint64_t untracked = 0;  // pages not tracked: the arena holds 2^32-1 nodes
  // Gauges, in pages unless stated.
  uint64_t resident = 0;
  uint64_t sequential = 0;
  uint64_t probation = 0;
  uint64_t protected_ = 0;
  uint64_t probing = 0;
  uint64_t idle = 0;
  uint64_t ghosts = 0;
  uint64_t metadata_bytes = 0;  // bytes

  std::string ToString() const;
};

class EvictionPolicy {
 public:
  // Every "0 = default" is resolved by the constructor against
  // budget_pages (see options()); Validate rejects values out of range.
  struct Options {
    // Resident pages the runtime aims to stay under (1..2^31-1, 8 TiB of
    // 4 KiB pages). The policy does not enforce it; the runtime asks for
    // victims when it is passed.
    uint64_t budget_pages = 0;
    // Cap on the protected segment (probing included). 0 = 3/4 of the
    // budget, as 2Q's Am; must be < budget_pages so probation never
    // vanishes. A hot set larger than this is served from probation too.
    uint64_t protected_pages = 0;
    // Ghost history length. 0 = budget_pages: a refault counts as reuse if
    // at most that many pages were evicted in between, i.e. if the page
    // would have been a hit with twice the memory.
    uint64_t ghost_pages = 0;
    // Sequential pages kept back while other victims exist, so read-ahead
    // survives until it is consumed. 0 = min(512, budget / 8): two maximal
    // fault-around windows (FaultAroundSizer's default max is 256).
    uint64_t sequential_reserve_pages = 0;
    // A Touched within this many admissions after a page's own admission is
    // part of the use that brought it in (the write right after a read
    // fault, a scan writing what it reads), not reuse. 0 = budget / 16.
    uint64_t correlation_pages = 0;
    // A protected page is offered for probing once it has gone this many
    // admissions without evidence. 0 = budget / 4.
    uint64_t probe_age_pages = 0;
    // A page promoted into a full protected set displaces the oldest
    // protected page only if that one has gone this many admissions without
    // evidence. 0 = 2 * budget. Must be >= probe_age_pages, so that a
    // runtime that probes renews pages before they go stale.
    uint64_t stale_pages = 0;
  };

  // OK, or InvalidArgument naming the offending value.
  static absl::Status Validate(const Options& options);
  // The largest budget_pages Validate accepts: resident pages and ghosts
  // share the arena's 32-bit node ids.
  static constexpr uint64_t kMaxBudgetPages = PageListArena::kMaxNodes / 2;

  // Precondition: Validate(options).ok().
  explicit EvictionPolicy(const Options& options);
  EvictionPolicy(const EvictionPolicy&) = delete;
  EvictionPolicy& operator=(const EvictionPolicy&) = delete;

  // The options with every default resolved.
  const Options& options() const { return options_; }

  // Pages [first.page, first.page + count) of first.region became resident
  // (one fill). A page found in the ghost history is promoted to protected
  // (or, protected being full of fresh pages, to probation); any other new
  // page joins the sequential segment (kSequential) or probation (kDemand).
  // A page already resident is treated as Touched (e.g. a probed page that
  // faulted back through the fill path) and counted in admitted_resident.
  // Pages above PageListArena::kMaxPage are ignored.
  void Admit(PageRef first, uint64_t count, AdmitKind kind);

  // Evidence that resident page `p` is in use (a write, a probe hit). Renews
  // a protected or probing page; promotes an idle page, and a sequential or
  // probation page unless it is within correlation_pages of its admission
  // (protected being full of fresh pages, the page restarts at the newest
  // end of probation instead). Ignored for a page that is not resident.
  void Touched(PageRef p);

  // Pages [first.page, first.page + count) of first.region left memory for
  // another reason (madvise, munmap): they stop being tracked, resident or
  // ghost, and leave no ghost (their contents are gone, so a later fault is
  // not reuse). O(min(count, pages tracked for the region)).
  void Forget(PageRef first, uint64_t count);
  // Forget of every page of `region`. O(pages tracked for the region).
  void ForgetRegion(uint32_t region);

  // Appends up to n victims to *out, in eviction order, and returns how many
  // it appended (fewer only when fewer pages are resident). They are no
  // longer resident for the policy and are remembered as ghosts. Order:
  // sequential (beyond its reserve), idle, probation, the rest of
  // sequential, protected, probing; oldest first within each. A victim may
  // be a page being probed; its probe outcome, reported later, is ignored.
  size_t PickVictims(size_t n, std::vector<PageRef>* out);

  // A victim the runtime could not evict after all (the store failed, so
  // the page must stay): `p` is resident again, at the newest end of
  // probation, without a ghost and without counting as a refault. No-op if
  // `p` is already resident.
  void CancelEviction(PageRef p);

  // Appends up to n protected pages worth probing to *out (oldest evidence
  // first, each at least probe_age_pages admissions old) and returns how
  // many. They stay resident; each is outstanding until Touched (hit),
  // ProbeMissed (miss), evicted or Forgotten.
  size_t PickProbes(size_t n, std::vector<PageRef>* out);

  // The probe of `p` ended without a touch: `p` becomes idle (next to go
  // after the sequential pages beyond their reserve).
  // Ignored unless `p` has a probe outstanding (a late report after a hit,
  // an eviction or a Forget changes nothing).
  void ProbeMissed(PageRef p);

  uint64_t resident_pages() const;
  PolicyStats stats() const;

  // Segment sizes agree with the lists, protected (with probing) within its
  // cap, ghosts within ghost_pages, stamps not in the future, the
  // bookkeeping well linked (PageListArena::CheckInvariants). O(tracked
  // pages); for tests. Returns the first violation.
  absl::Status CheckInvariants() const;

 private:
  // Segments, as PageListArena list ids. Heads are the newest end, tails
  // the eviction (oldest) end.
  enum Segment : PageListArena::ListId {
    kSequential = 0,
    kProbation = 1,
    kProtected = 2,
    kProbing = 3,
    kIdle = 4,
    kGhost = 5,
  };
  // Node flags.
  // Entered its segment through Admit (the correlation window applies),
  // not by demotion.
  static constexpr uint32_t kAdmittedFlag = 1;

  static Options Resolve(const Options& options);

  // Admissions since `stamp` (clock time modulo 2^32; an age that wrapped
  // reads as younger, which only delays an aging decision).
  uint32_t AgeOf(PageListArena::NodeId id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t Now() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<uint32_t>(clock_);
  }
  // `faulted`: p is the page whose fault caused the fill.
  void AdmitOne(const PageRef& p, AdmitKind kind, bool faulted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchedLocked(PageListArena::NodeId id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves `id` (resident, not protected) into protected, making room first;
  // returns false (and leaves it alone) if protected is full of fresh pages.
  bool Promote(PageListArena::NodeId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Protected -> `segment` (probation or idle).
  void Demote(PageListArena::NodeId id, Segment segment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evicts one page into the ghost history; kNil if nothing is resident.
  PageListArena::NodeId NextVictim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetNode(PageListArena::NodeId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t protected_size() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return pages_.size(kProtected) + pages_.size(kProbing);
  }
  uint64_t resident_locked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return pages_.size(kSequential) + pages_.size(kProbation) +
           pages_.size(kIdle) + protected_size();
  }

  const Options options_;

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  PageListArena pages_ ABSL_GUARDED_BY(mu_);
  uint64_t clock_ ABSL_GUARDED_BY(mu_) = 0;  // pages admitted, ever
  PolicyStats stats_ ABSL_GUARDED_BY(mu_);   // counters only; gauges on read
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_EVICTION_POLICY_H_
