#include "pager/snapshot_book.h"

#include <algorithm>
#include <utility>

namespace upager::internal {

SnapshotBook::Epoch SnapshotBook::Begin(std::vector<PageRun> present) {
  const Epoch e = next_epoch_++;
  Snapshot& s = snapshots_[e];
  for (const PageRun& r : present) s.present_pages += r.count;
  s.present = std::move(present);
  return e;
}

SnapshotBook::Epoch SnapshotBook::BeginPending() {
  const Epoch e = next_epoch_++;
  snapshots_[e].pending = true;
  return e;
}

void SnapshotBook::SetPresent(Epoch e, std::vector<PageRun> present) {
  auto it = snapshots_.find(e);
  if (it == snapshots_.end()) return;
  it->second.pending = false;
  it->second.present_pages = 0;
  for (const PageRun& r : present) it->second.present_pages += r.count;
  it->second.present = std::move(present);
}

bool SnapshotBook::InRuns(const std::vector<PageRun>& runs, uint64_t page) {
  // The last run starting at or before `page`.
  auto it = std::upper_bound(
      runs.begin(), runs.end(), page,
      [](uint64_t p, const PageRun& r) { return p < r.first; });
  if (it == runs.begin()) return false;
  --it;
  return page - it->first < it->count;
}

bool SnapshotBook::Present(Epoch e, uint64_t page) const {
  auto it = snapshots_.find(e);
  return it != snapshots_.end() && Has(it->second, page);
}

SnapshotBook::Epoch SnapshotBook::LastCaptured(uint64_t page) const {
  auto it = versions_.find(page);
  return it == versions_.end() || it->second.empty() ? 0 : it->second.back().hi;
}

bool SnapshotBook::Needs(uint64_t page) const {
  const Epoch last = LastCaptured(page);
  // Newest first: snapshots older than the last capture have their version.
  for (auto it = snapshots_.rbegin(); it != snapshots_.rend(); ++it) {
    if (it->first <= last) break;
    if (Has(it->second, page)) return true;
  }
  return false;
}

bool SnapshotBook::Capture(uint64_t page, CopyRef ref) {
  const Epoch last = LastCaptured(page);
  Epoch lo = 0;
  Epoch hi = 0;
  for (auto it = snapshots_.upper_bound(last); it != snapshots_.end(); ++it) {
    if (!Has(it->second, page)) continue;
    if (lo == 0) lo = it->first;
    hi = it->first;
  }
  if (lo == 0) return false;
  versions_[page].push_back({lo, hi, ref});
  Count(ref.kind, +1);
  return true;
}

SnapshotBook::Found SnapshotBook::Find(Epoch e, uint64_t page) const {
  auto s = snapshots_.find(e);
  if (s == snapshots_.end() || !Has(s->second, page)) return {};
  if (auto it = versions_.find(page); it != versions_.end()) {
    for (const Version& v : it->second) {
      if (v.lo <= e && e <= v.hi) return {Found::Where::kCopy, v.ref};
    }
  }
  return {Found::Where::kLive, {}};
}

void SnapshotBook::Release(Epoch e, std::vector<CopyRef>* freed) {
  if (snapshots_.erase(e) == 0) return;
  // A version still serves a snapshot if a live epoch falls in [lo, hi].
  auto serves = [&](const Version& v) {
    auto it = snapshots_.lower_bound(v.lo);
    return it != snapshots_.end() && it->first <= v.hi;
  };
  for (auto it = versions_.begin(); it != versions_.end();) {
    auto& list = it->second;
    auto keep = std::remove_if(list.begin(), list.end(), [&](const Version& v) {
      if (v.lo > e || v.hi < e || serves(v)) return false;
      freed->push_back(v.ref);
      Count(v.ref.kind, -1);
      return true;
    });
    list.erase(keep, list.end());
    if (list.empty()) {
      versions_.erase(it++);
    } else {
      ++it;
    }
  }
}

void SnapshotBook::ReleaseAll(std::vector<CopyRef>* freed) {
  for (const auto& [page, list] : versions_) {
    for (const Version& v : list) freed->push_back(v.ref);
  }
  versions_.clear();
  snapshots_.clear();
  for (uint64_t& c : version_counts_) c = 0;
}

bool SnapshotBook::Replace(uint64_t page, CopyRef from, CopyRef to) {
  auto it = versions_.find(page);
  if (it == versions_.end()) return false;
  for (Version& v : it->second) {
    if (v.ref == from) {
      Count(from.kind, -1);
      Count(to.kind, +1);
      v.ref = to;
      return true;
    }
  }
  return false;
}

bool SnapshotBook::Holds(uint64_t page, CopyRef ref) const {
  auto it = versions_.find(page);
  if (it == versions_.end()) return false;
  for (const Version& v : it->second) {
    if (v.ref == ref) return true;
  }
  return false;
}

void SnapshotBook::ForEachChanged(Epoch from, Epoch to,
                                  absl::FunctionRef<void(uint64_t)> fn) const {
  std::vector<uint64_t> pages;
  // Captured after `from` was taken and before `to` was: written or
  // dropped between the two.
  for (const auto& [page, list] : versions_) {
    for (const Version& v : list) {
      if (v.lo <= from && from <= v.hi && v.hi < to) pages.push_back(page);
    }
  }
  // Present in one and not the other (first touched in between; a drop is
  // also a capture, but an absent-at-`to` page must never be missed).
  const std::vector<PageRun>& a = present(from);
  const std::vector<PageRun>& b = present(to);
  // x \ y, run by run (both sorted and disjoint).
  auto add_difference = [&](const std::vector<PageRun>& x,
                            const std::vector<PageRun>& y) {
    size_t j = 0;
    for (const PageRun& r : x) {
      uint64_t p = r.first;
      const uint64_t end = r.first + r.count;
      while (p < end) {
        while (j < y.size() && y[j].first + y[j].count <= p) ++j;
        if (j == y.size() || y[j].first >= end) {
          for (; p < end; ++p) pages.push_back(p);
        } else if (y[j].first > p) {
          for (; p < y[j].first; ++p) pages.push_back(p);
        } else {
          p = std::min(end, y[j].first + y[j].count);
        }
      }
    }
  };
  if (a != b) {
    add_difference(b, a);
    add_difference(a, b);
  }
  std::sort(pages.begin(), pages.end());
  pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
  for (uint64_t p : pages) fn(p);
}

void SnapshotBook::ForEachVersion(
    absl::FunctionRef<void(uint64_t, Epoch, Epoch, CopyRef)> fn) const {
  for (const auto& [page, list] : versions_) {
    for (const Version& v : list) fn(page, v.lo, v.hi, v.ref);
  }
}

const std::vector<PageRun>& SnapshotBook::present(Epoch e) const {
  static const std::vector<PageRun> kNone;
  auto it = snapshots_.find(e);
  return it == snapshots_.end() ? kNone : it->second.present;
}

uint64_t SnapshotBook::present_pages(Epoch e) const {
  auto it = snapshots_.find(e);
  return it == snapshots_.end() ? 0 : it->second.present_pages;
}

}  // namespace upager::internal
