#include "pager/eviction_policy.h"

#include <algorithm>
#include <cassert>
#include <limits>

#include "absl/strings/str_cat.h"

namespace upager::internal {
namespace {

using NodeId = PageListArena::NodeId;
constexpr NodeId kNil = PageListArena::kNil;

// Ages are 32-bit clock differences; keeping thresholds below 2^31 leaves
// room for an age to be compared without wrapping past it.
constexpr uint64_t kMaxAge = (uint64_t{1} << 31) - 1;

absl::Status CheckAge(const char* name, uint64_t v) {
  if (v > kMaxAge) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EvictionPolicy::Options::", name, " = ", v, " exceeds ", kMaxAge));
  }
  return absl::OkStatus();
}

}  // namespace

std::string PolicyStats::ToString() const {
  return absl::StrCat(
      "admitted demand=", admitted_demand, " sequential=", admitted_sequential,
      " resident=", admitted_resident, " ghost_hits=", ghost_hits,
      " promotions=", promotions, " deferred=", promotions_deferred,
      " demotions=", demotions, " victims=", victims, " (sequential ",
      victims_sequential, ", protected ", victims_protected,
      ") cancelled=", evictions_cancelled, " probes=", probes,
      " hits=", probe_hits, " misses=", probe_misses, " touches=", touches,
      " (correlated ", touches_correlated, ") forgotten=", forgotten,
      " ghosts_forgotten=", ghosts_forgotten, " untracked=", untracked,
      " | resident=", resident, " sequential=", sequential,
      " probation=", probation, " protected=", protected_, " probing=", probing,
      " idle=", idle, " ghosts=", ghosts, " metadata_bytes=", metadata_bytes);
}

EvictionPolicy::Options EvictionPolicy::Resolve(const Options& o) {
  Options r = o;
  const uint64_t b = o.budget_pages;
  if (r.protected_pages == 0) r.protected_pages = b - 1 - (b - 1) / 4;
  if (r.ghost_pages == 0) r.ghost_pages = b;
  if (r.sequential_reserve_pages == 0) {
    r.sequential_reserve_pages = std::min<uint64_t>(512, b / 8);
  }
  if (r.correlation_pages == 0) r.correlation_pages = std::min(kMaxAge, b / 16);
  if (r.probe_age_pages == 0) r.probe_age_pages = std::min(kMaxAge, b / 4);
  if (r.stale_pages == 0) {
    r.stale_pages = std::max(r.probe_age_pages,
                             std::min(kMaxAge, 2 * std::min(b, kMaxAge)));
  }
  return r;
}

absl::Status EvictionPolicy::Validate(const Options& options) {
  if (options.budget_pages == 0) {
    return absl::InvalidArgumentError(
        "EvictionPolicy::Options::budget_pages = 0; must be >= 1");
  }
  if (options.protected_pages >= options.budget_pages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EvictionPolicy::Options::protected_pages = ", options.protected_pages,
        " must be below budget_pages = ", options.budget_pages));
  }
  constexpr uint64_t kMaxPages = kMaxBudgetPages;
  if (options.budget_pages > kMaxPages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EvictionPolicy::Options::budget_pages = ", options.budget_pages,
        " exceeds ", kMaxPages));
  }
  if (options.ghost_pages > kMaxPages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EvictionPolicy::Options::ghost_pages = ", options.ghost_pages,
        " exceeds ", kMaxPages));
  }
  for (absl::Status s :
       {CheckAge("correlation_pages", options.correlation_pages),
        CheckAge("probe_age_pages", options.probe_age_pages),
        CheckAge("stale_pages", options.stale_pages)}) {
    if (!s.ok()) return s;
  }
  const Options r = Resolve(options);
  if (r.stale_pages < r.probe_age_pages) {
    return absl::InvalidArgumentError(
        absl::StrCat("EvictionPolicy::Options::stale_pages = ", r.stale_pages,
                     " is below probe_age_pages = ", r.probe_age_pages));
  }
  return absl::OkStatus();
}

EvictionPolicy::EvictionPolicy(const Options& options)
    : options_(Resolve(options)) {
  assert(Validate(options).ok());
}

uint32_t EvictionPolicy::AgeOf(NodeId id) const {
  return Now() - pages_.node(id).stamp;
}

void EvictionPolicy::Admit(PageRef first, uint64_t count, AdmitKind kind) {
  absl::MutexLock lock(&mu_);
  for (uint64_t i = 0; i < count; ++i) {
    const PageRef p{first.region, first.page + i};
    if (p.page > PageListArena::kMaxPage || p.page < first.page) break;
    // Only the faulting page (the first of the fill) was asked for; the rest
    // are speculative (fault-around, read-ahead), so a ghost among them is
    // not evidence of reuse.
    AdmitOne(p, kind, /*faulted=*/i == 0);
  }
}

void EvictionPolicy::AdmitOne(const PageRef& p, AdmitKind kind, bool faulted) {
  NodeId id = pages_.Find(p);
  if (id != kNil && pages_.list_of(id) != kGhost) {
    ++stats_.admitted_resident;
    TouchedLocked(id);
    return;
  }
  ++clock_;
  ++(kind == AdmitKind::kSequential ? stats_.admitted_sequential
                                    : stats_.admitted_demand);
  const bool ghost_hit = id != kNil && faulted;
  // A refault is reuse whatever the stream detector says, so it starts (or
  // waits for protection) in probation, not among the sequential pages.
  const Segment segment =
      kind == AdmitKind::kSequential && !ghost_hit ? kSequential : kProbation;
  if (id == kNil) {
    id = pages_.Insert(p, segment, /*at_head=*/true, Now());
    if (id == kNil) {
      ++stats_.untracked;
      return;
    }
  } else {
    pages_.MoveTo(id, segment, /*at_head=*/true);
    pages_.set_stamp(id, Now());
  }
  pages_.set_flags(id, kAdmittedFlag);
  if (ghost_hit) {
    ++stats_.ghost_hits;
    Promote(id);
  }
}

void EvictionPolicy::Touched(PageRef p) {
  absl::MutexLock lock(&mu_);
  const NodeId id = pages_.Find(p);
  if (id == kNil || pages_.list_of(id) == kGhost) return;
  TouchedLocked(id);
}

void EvictionPolicy::TouchedLocked(NodeId id) {
  ++stats_.touches;
  switch (pages_.list_of(id)) {
    case kProbing:
      ++stats_.probe_hits;
      [[fallthrough]];
    case kProtected:
      pages_.MoveTo(id, kProtected, /*at_head=*/true);
      pages_.set_stamp(id, Now());
      return;
    case kSequential:
    case kProbation:
    case kIdle:
      if ((pages_.node(id).flags & kAdmittedFlag) != 0 &&
          AgeOf(id) < options_.correlation_pages) {
        ++stats_.touches_correlated;
        return;
      }
      if (!Promote(id)) {
        // Protected is full of fresh pages: the evidence still earns the
        // page a fresh start in probation, where a later Touched or a
        // refault can try again.
        pages_.MoveTo(id, kProbation, /*at_head=*/true);
        pages_.set_stamp(id, Now());
        pages_.set_flags(id, 0);
      }
      return;
    default:
      assert(false);
  }
}

bool EvictionPolicy::Promote(NodeId id) {
  if (protected_size() >= options_.protected_pages) {
    // The stalest page is at the tail of probing (probes take the oldest
    // protected pages) or else of protected. A page whose probe is still
    // out is displaced too: waiting for the probe window would let the
    // probe, meant to age the protected set faster, slow it down.
    NodeId oldest = pages_.tail(kProbing);
    if (oldest == kNil || AgeOf(oldest) < options_.stale_pages) {
      oldest = pages_.tail(kProtected);
    }
    if (oldest == kNil || AgeOf(oldest) < options_.stale_pages) {
      ++stats_.promotions_deferred;
      return false;
    }
    Demote(oldest, kProbation);
  }
  ++stats_.promotions;
  pages_.MoveTo(id, kProtected, /*at_head=*/true);
  pages_.set_stamp(id, Now());
  pages_.set_flags(id, 0);
  return true;
}

void EvictionPolicy::Demote(NodeId id, Segment segment) {
  ++stats_.demotions;
  pages_.MoveTo(id, segment, /*at_head=*/true);
  pages_.set_stamp(id, Now());
  pages_.set_flags(id, 0);
}

void EvictionPolicy::Forget(PageRef first, uint64_t count) {
  absl::MutexLock lock(&mu_);
  if (first.page > PageListArena::kMaxPage) return;
  count = std::min(count, PageListArena::kMaxPage - first.page + 1);
  if (count <= pages_.region_size(first.region)) {
    for (uint64_t i = 0; i < count; ++i) {
      const NodeId id = pages_.Find(PageRef{first.region, first.page + i});
      if (id != kNil) ForgetNode(id);
    }
    return;
  }
  // The range is larger than what the region has tracked (an munmap of a
  // huge, mostly untouched region): walk the region's chain instead.
  NodeId id = pages_.region_head(first.region);
  while (id != kNil) {
    const NodeId next = pages_.node(id).rnext;
    const uint64_t page = pages_.node(id).page;
    if (page >= first.page && page - first.page < count) ForgetNode(id);
    id = next;
  }
}

void EvictionPolicy::ForgetRegion(uint32_t region) {
  absl::MutexLock lock(&mu_);
  NodeId id = pages_.region_head(region);
  while (id != kNil) {
    const NodeId next = pages_.node(id).rnext;
    ForgetNode(id);
    id = next;
  }
}

void EvictionPolicy::ForgetNode(NodeId id) {
  ++(pages_.list_of(id) == kGhost ? stats_.ghosts_forgotten : stats_.forgotten);
  pages_.Erase(id);
}

size_t EvictionPolicy::PickVictims(size_t n, std::vector<PageRef>* out) {
  absl::MutexLock lock(&mu_);
  size_t picked = 0;
  for (; picked < n; ++picked) {
    const NodeId id = NextVictim();
    if (id == kNil) break;
    out->push_back(pages_.ref(id));
  }
  return picked;
}

NodeId EvictionPolicy::NextVictim() {
  NodeId id;
  if (pages_.size(kSequential) > options_.sequential_reserve_pages) {
    id = pages_.tail(kSequential);
  } else if (pages_.size(kIdle) > 0) {
    id = pages_.tail(kIdle);
  } else if (pages_.size(kProbation) > 0) {
    id = pages_.tail(kProbation);
  } else if (pages_.size(kSequential) > 0) {
    id = pages_.tail(kSequential);
  } else if (pages_.size(kProtected) > 0) {
    id = pages_.tail(kProtected);
  } else {
    id = pages_.tail(kProbing);
  }
  if (id == kNil) return kNil;
  ++stats_.victims;
  switch (pages_.list_of(id)) {
    case kSequential:
      ++stats_.victims_sequential;
      break;
    case kProtected:
    case kProbing:
      ++stats_.victims_protected;
      break;
    default:
      break;
  }
  pages_.MoveTo(id, kGhost, /*at_head=*/true);
  pages_.set_stamp(id, Now());
  pages_.set_flags(id, 0);
  if (pages_.size(kGhost) > options_.ghost_pages) {
    pages_.Erase(pages_.tail(kGhost));
  }
  return id;
}

void EvictionPolicy::CancelEviction(PageRef p) {
  absl::MutexLock lock(&mu_);
  if (p.page > PageListArena::kMaxPage) return;
  NodeId id = pages_.Find(p);
  if (id != kNil && pages_.list_of(id) != kGhost) return;
  ++stats_.evictions_cancelled;
  // Not an admission (the clock does not move) and no evidence either way:
  // the page starts over as unproven, at the far end from the victims so the
  // next PickVictims does not hand it straight back.
  if (id == kNil) {
    id = pages_.Insert(p, kProbation, /*at_head=*/true, Now());
    if (id == kNil) ++stats_.untracked;
    return;
  }
  pages_.MoveTo(id, kProbation, /*at_head=*/true);
  pages_.set_stamp(id, Now());
  pages_.set_flags(id, 0);
}

size_t EvictionPolicy::PickProbes(size_t n, std::vector<PageRef>* out) {
  absl::MutexLock lock(&mu_);
  size_t picked = 0;
  for (; picked < n; ++picked) {
    const NodeId id = pages_.tail(kProtected);
    if (id == kNil || AgeOf(id) < options_.probe_age_pages) break;
    // The stamp stays: it is the evidence the probe is testing.
    pages_.MoveTo(id, kProbing, /*at_head=*/true);
    out->push_back(pages_.ref(id));
  }
  stats_.probes += picked;
  return picked;
}

void EvictionPolicy::ProbeMissed(PageRef p) {
  absl::MutexLock lock(&mu_);
  const NodeId id = pages_.Find(p);
  if (id == kNil || pages_.list_of(id) != kProbing) return;
  ++stats_.probe_misses;
  // A miss is evidence of idleness, the only kind a user-space pager gets:
  // the page goes before anything in probation, whose pages are merely
  // unproven. A hot page the probe wronged refaults, finds its ghost and is
  // protected again: the same single refault it would cost from probation,
  // paid sooner.
  Demote(id, kIdle);
}

uint64_t EvictionPolicy::resident_pages() const {
  absl::MutexLock lock(&mu_);
  return resident_locked();
}

PolicyStats EvictionPolicy::stats() const {
  absl::MutexLock lock(&mu_);
  PolicyStats s = stats_;
  s.resident = resident_locked();
  s.sequential = pages_.size(kSequential);
  s.probation = pages_.size(kProbation);
  s.protected_ = pages_.size(kProtected);
  s.probing = pages_.size(kProbing);
  s.idle = pages_.size(kIdle);
  s.ghosts = pages_.size(kGhost);
  s.metadata_bytes = pages_.MemoryBytes();
  return s;
}

absl::Status EvictionPolicy::CheckInvariants() const {
  absl::MutexLock lock(&mu_);
  absl::Status s = pages_.CheckInvariants();
  if (!s.ok()) return s;
  if (protected_size() > options_.protected_pages) {
    return absl::InternalError(absl::StrCat("protected holds ",
                                            protected_size(), " pages, cap ",
                                            options_.protected_pages));
  }
  if (pages_.size(kGhost) > options_.ghost_pages) {
    return absl::InternalError(absl::StrCat("ghosts hold ", pages_.size(kGhost),
                                            " pages, cap ",
                                            options_.ghost_pages));
  }
  for (PageListArena::ListId l = kGhost + 1; l < PageListArena::kLists; ++l) {
    if (pages_.size(l) != 0) {
      return absl::InternalError(
          absl::StrCat("unused list ", l, " holds ", pages_.size(l), " pages"));
    }
  }
  // Every segment is ordered by its stamps (newest at the head), which is
  // what lets tails stand for "oldest" in O(1). Checked only while the clock
  // has not wrapped 32 bits (ages are modulo 2^32).
  if (clock_ > std::numeric_limits<uint32_t>::max()) return absl::OkStatus();
  for (PageListArena::ListId l = 0; l <= kGhost; ++l) {
    uint64_t newer = clock_;
    for (NodeId id = pages_.head(l); id != kNil; id = pages_.node(id).next) {
      const uint64_t stamp = pages_.node(id).stamp;
      const uint32_t flags = pages_.node(id).flags;
      if (stamp > newer) {
        return absl::InternalError(
            absl::StrCat("segment ", l, ": stamp ", stamp, " after ", newer,
                         " (clock ", clock_, ") breaks the order"));
      }
      newer = stamp;
      if ((flags & ~kAdmittedFlag) != 0 ||
          (flags != 0 && l != kSequential && l != kProbation)) {
        return absl::InternalError(
            absl::StrCat("segment ", l, ": node flags ", flags));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace upager::internal
