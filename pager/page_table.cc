#include "pager/page_table.h"

#include <algorithm>
#include <cassert>
#include <new>

#include "absl/strings/str_cat.h"

namespace upager::internal {

// Memory ordering (the only synchronization in this file):
// - A node is zero-initialized before the release half of the CAS that
//   publishes it, and every reader loads child pointers with acquire, so a
//   reader that sees a node also sees its zeroed contents. A reader that
//   sees nullptr reports kAbsent, which is what a missing node means.
// - Entries are stored with release and loaded with acquire, so whatever a
//   writer did before publishing an entry (filling the page, writing a swap
//   slot) is visible to a reader that observes the entry.
// - Nodes are never freed while the table lives, so a pointer once loaded
//   stays valid without hazard pointers or epochs.

struct PageTable::Leaf {
  std::atomic<uint64_t> entries[kFanout];
};

struct PageTable::Interior {
  // Interior* or Leaf*, depending on the depth of this node.
  std::atomic<void*> children[kFanout];
};

// Get's async-signal-safety rests on these: a lock-based atomic could
// deadlock against the code the signal interrupted.
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<void*>::is_always_lock_free);

namespace {

constexpr uint64_t kIndexMask = PageTable::kFanout - 1;
// Bits 11..15 of an entry: reserved, always zero (see page_entry.h).
constexpr uint64_t kReservedBits = 0xF800;

// Smallest L in 1..4 with 512^L >= page_count.
int LevelsFor(uint64_t page_count) {
  int levels = 1;
  uint64_t span = PageTable::kFanout;
  while (span < page_count) {
    span <<= PageTable::kBitsPerLevel;
    ++levels;
  }
  return levels;
}

}  // namespace

absl::Status PageTable::Validate(uint64_t page_count) {
  if (page_count == 0 || page_count > kMaxPages) {
    return absl::InvalidArgumentError(
        absl::StrCat("page table: page_count ", page_count, " is outside [1, ",
                     kMaxPages, "]"));
  }
  return absl::OkStatus();
}

PageTable::PageTable(uint64_t page_count)
    : page_count_(page_count), levels_(LevelsFor(page_count)) {
  assert(Validate(page_count).ok());
  // Value-initialization zeroes the atomics before anyone can see them.
  if (levels_ == 1) {
    root_ = new (std::nothrow) Leaf();
    if (root_ != nullptr) metadata_bytes_.store(sizeof(Leaf));
  } else {
    const uint64_t slots = RootSlots();
    root_ = new (std::nothrow) std::atomic<void*>[slots]();
    if (root_ != nullptr) {
      metadata_bytes_.store(slots * sizeof(std::atomic<void*>));
    }
  }
}

PageTable::~PageTable() {
  if (root_ == nullptr) return;
  if (levels_ == 1) {
    delete static_cast<Leaf*>(root_);
    return;
  }
  auto* slots = static_cast<std::atomic<void*>*>(root_);
  for (uint64_t i = 0; i < RootSlots(); ++i) {
    if (void* child = slots[i].load(std::memory_order_acquire)) {
      FreeSubtree(child, 1);
    }
  }
  delete[] slots;
}

uint64_t PageTable::RootSlots() const {
  const int shift = RootShift();
  return (page_count_ + (uint64_t{1} << shift) - 1) >> shift;
}

void PageTable::FreeSubtree(void* node, int depth) {
  if (depth == levels_ - 1) {
    delete static_cast<Leaf*>(node);
    return;
  }
  auto* interior = static_cast<Interior*>(node);
  for (auto& child : interior->children) {
    if (void* c = child.load(std::memory_order_acquire)) {
      FreeSubtree(c, depth + 1);
    }
  }
  delete interior;
}

PageTable::Leaf* PageTable::FindLeaf(uint64_t page,
                                     uint64_t* missing_span) const {
  assert(page < page_count_);
  if (levels_ == 1 || root_ == nullptr) {
    if (root_ == nullptr && missing_span != nullptr) {
      *missing_span = page_count_;  // nothing exists anywhere
    }
    return levels_ == 1 ? static_cast<Leaf*>(root_) : nullptr;
  }
  int shift = RootShift();
  void* node = static_cast<std::atomic<void*>*>(root_)[page >> shift].load(
      std::memory_order_acquire);
  for (int depth = 1; depth < levels_ - 1; ++depth) {
    if (node == nullptr) break;
    shift -= kBitsPerLevel;
    node = static_cast<Interior*>(node)
               ->children[(page >> shift) & kIndexMask]
               .load(std::memory_order_acquire);
  }
  if (node == nullptr && missing_span != nullptr) {
    // The missing child was looked up at `shift`: it covers 2^shift pages.
    *missing_span = uint64_t{1} << shift;
  }
  return static_cast<Leaf*>(node);
}

std::atomic<uint64_t>* PageTable::LeafEntries(uint64_t page,
                                              uint64_t* missing_span) const {
  Leaf* leaf = FindLeaf(page, missing_span);
  return leaf == nullptr ? nullptr : leaf->entries;
}

void* PageTable::ChildOrAllocate(std::atomic<void*>* slot, bool leaf) {
  void* child = slot->load(std::memory_order_acquire);
  if (child != nullptr) return child;
  void* fresh = leaf ? static_cast<void*>(new (std::nothrow) Leaf())
                     : static_cast<void*>(new (std::nothrow) Interior());
  if (fresh == nullptr) return nullptr;
  if (slot->compare_exchange_strong(child, fresh, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
    metadata_bytes_.fetch_add(leaf ? sizeof(Leaf) : sizeof(Interior),
                              std::memory_order_relaxed);
    return fresh;
  }
  // Another writer published first; `child` now holds its node. Ours was
  // never visible to anyone, so it can be freed right away.
  if (leaf) {
    delete static_cast<Leaf*>(fresh);
  } else {
    delete static_cast<Interior*>(fresh);
  }
  return child;
}

PageTable::Leaf* PageTable::FindOrAllocateLeaf(uint64_t page) {
  assert(page < page_count_);
  if (root_ == nullptr) return nullptr;
  if (levels_ == 1) return static_cast<Leaf*>(root_);
  int shift = RootShift();
  std::atomic<void*>* slot =
      &static_cast<std::atomic<void*>*>(root_)[page >> shift];
  for (int depth = 1; depth < levels_ - 1; ++depth) {
    auto* interior = static_cast<Interior*>(ChildOrAllocate(slot, false));
    if (interior == nullptr) return nullptr;
    shift -= kBitsPerLevel;
    slot = &interior->children[(page >> shift) & kIndexMask];
  }
  return static_cast<Leaf*>(ChildOrAllocate(slot, true));
}

PageEntry PageTable::Get(PageIndex page) const {
  const Leaf* leaf = FindLeaf(page.value(), nullptr);
  if (leaf == nullptr) return PageEntry();
  return PageEntry(
      leaf->entries[page.value() & kIndexMask].load(std::memory_order_acquire));
}

bool PageTable::Set(PageIndex page, PageEntry e) {
  Leaf* leaf = FindLeaf(page.value(), nullptr);
  if (leaf == nullptr) {
    // A missing leaf already reads as raw 0: storing 0 needs no node.
    if (e.raw() == 0) return true;
    leaf = FindOrAllocateLeaf(page.value());
    if (leaf == nullptr) return false;
  }
  leaf->entries[page.value() & kIndexMask].store(e.raw(),
                                                 std::memory_order_release);
  return true;
}

bool PageTable::CompareExchangeInLeaf(Leaf* leaf, PageIndex page,
                                      PageEntry* expected, PageEntry desired) {
  uint64_t current = expected->raw();
  if (leaf->entries[page.value() & kIndexMask].compare_exchange_strong(
          current, desired.raw(), std::memory_order_acq_rel,
          std::memory_order_acquire)) {
    return true;
  }
  *expected = PageEntry(current);
  return false;
}

bool PageTable::CompareExchangeNoAlloc(PageIndex page, PageEntry* expected,
                                       PageEntry desired) {
  Leaf* leaf = FindLeaf(page.value(), nullptr);
  return leaf != nullptr && CompareExchangeInLeaf(leaf, page, expected, desired);
}

bool PageTable::Reserve(PageIndex first, uint64_t count) {
  const uint64_t end = std::min(first.value() + count, page_count_);
  for (uint64_t page = first.value(); page < end;
       page = (page / kFanout + 1) * kFanout) {
    if (FindOrAllocateLeaf(page) == nullptr) return false;
  }
  return true;
}

bool PageTable::CompareExchange(PageIndex page, PageEntry* expected,
                                PageEntry desired, bool* alloc_failed) {
  if (alloc_failed != nullptr) *alloc_failed = false;
  Leaf* leaf = FindLeaf(page.value(), nullptr);
  if (leaf == nullptr) {
    // The entry is raw 0 right now. Decide without allocating when we can:
    // a failing CAS or a 0 -> 0 CAS must not cost 4 KiB per level.
    if (expected->raw() != 0) {
      *expected = PageEntry();
      return false;
    }
    if (desired.raw() == 0) return true;
    leaf = FindOrAllocateLeaf(page.value());
    if (leaf == nullptr) {
      if (alloc_failed != nullptr) *alloc_failed = true;
      return false;
    }
  }
  return CompareExchangeInLeaf(leaf, page, expected, desired);
}

bool PageTable::SetRange(PageIndex first, uint64_t count, PageEntry e) {
  assert(count <= page_count_ && first.value() <= page_count_ - count);
  const uint64_t end = first.value() + count;
  uint64_t page = first.value();
  while (page < end) {
    Leaf* leaf;
    if (e.raw() == 0) {
      uint64_t missing_span = 0;
      leaf = FindLeaf(page, &missing_span);
      if (leaf == nullptr) {
        // The whole missing subtree already reads as absent: skip it.
        page = (page / missing_span + 1) * missing_span;
        continue;
      }
    } else {
      leaf = FindOrAllocateLeaf(page);
      if (leaf == nullptr) return false;
    }
    const uint64_t leaf_end = std::min(end, (page | kIndexMask) + 1);
    for (; page < leaf_end; ++page) {
      leaf->entries[page & kIndexMask].store(e.raw(),
                                             std::memory_order_release);
    }
  }
  return true;
}

void PageTable::ForEachInSubtree(
    const void* node, int depth, uint64_t base,
    absl::FunctionRef<void(PageIndex, PageEntry)> fn) const {
  if (depth == levels_ - 1) {
    const auto* leaf = static_cast<const Leaf*>(node);
    for (uint64_t i = 0; i < kFanout; ++i) {
      const uint64_t raw = leaf->entries[i].load(std::memory_order_acquire);
      if (raw != 0) fn(PageIndex(base + i), PageEntry(raw));
    }
    return;
  }
  const auto* interior = static_cast<const Interior*>(node);
  const uint64_t child_span = SpanAt(depth + 1);
  for (uint64_t i = 0; i < kFanout; ++i) {
    if (const void* c = interior->children[i].load(std::memory_order_acquire)) {
      ForEachInSubtree(c, depth + 1, base + i * child_span, fn);
    }
  }
}

void PageTable::ForEachNonAbsentInRange(
    PageIndex first, uint64_t count,
    absl::FunctionRef<void(PageIndex, PageEntry)> fn) const {
  const uint64_t end = first.value() + std::min(count, page_count_ - std::min(
                                                           first.value(), page_count_));
  uint64_t page = first.value();
  while (page < end) {
    uint64_t missing_span = 0;
    const Leaf* leaf = FindLeaf(page, &missing_span);
    if (leaf == nullptr) {
      // Skip to the end of the missing subtree (spans are aligned).
      const uint64_t span = missing_span == 0 ? 1 : missing_span;
      page = (page / span + 1) * span;
      continue;
    }
    const uint64_t leaf_end = std::min(end, (page / kFanout + 1) * kFanout);
    for (; page < leaf_end; ++page) {
      const uint64_t raw =
          leaf->entries[page % kFanout].load(std::memory_order_acquire);
      if (raw != 0) fn(PageIndex(page), PageEntry(raw));
    }
  }
}

void PageTable::ForEachNonAbsent(
    absl::FunctionRef<void(PageIndex, PageEntry)> fn) const {
  if (root_ == nullptr) return;
  if (levels_ == 1) {
    ForEachInSubtree(root_, 0, 0, fn);
    return;
  }
  const auto* slots = static_cast<const std::atomic<void*>*>(root_);
  const uint64_t child_span = SpanAt(1);
  for (uint64_t i = 0; i < RootSlots(); ++i) {
    if (const void* c = slots[i].load(std::memory_order_acquire)) {
      ForEachInSubtree(c, 1, i * child_span, fn);
    }
  }
}

absl::Status PageTable::CheckSubtree(const void* node, int depth, uint64_t base,
                                     size_t* bytes) const {
  if (base >= page_count_) {
    // Writes never reach past page_count_, so no node can start there.
    return absl::InternalError(
        absl::StrCat("page table: node at depth ", depth, " starts at page ",
                     base, " beyond page_count ", page_count_));
  }
  if (depth == levels_ - 1) {
    *bytes += sizeof(Leaf);
    const auto* leaf = static_cast<const Leaf*>(node);
    for (uint64_t i = 0; i < kFanout; ++i) {
      const PageEntry e(leaf->entries[i].load(std::memory_order_acquire));
      const uint64_t page = base + i;
      if (e.raw() == 0) continue;
      if (page >= page_count_) {
        return absl::InternalError(
            absl::StrCat("page table: page ", page, " beyond page_count ",
                         page_count_, " holds raw entry ", e.raw()));
      }
      if ((e.raw() & kReservedBits) != 0) {
        return absl::InternalError(absl::StrCat(
            "page table: page ", page, " has reserved bits set in raw entry ",
            absl::Hex(e.raw())));
      }
      if (e.state() > PageState::kEvicting) {
        return absl::InternalError(absl::StrCat("page table: page ", page,
                                                " has invalid state ",
                                                static_cast<int>(e.state())));
      }
      if (e.state() == PageState::kFilling ||
          e.state() == PageState::kEvicting) {
        return absl::InternalError(absl::StrCat(
            "page table: page ", page, " is still ", PageStateName(e.state()),
            " (a fill or an eviction leaked)"));
      }
    }
    return absl::OkStatus();
  }
  *bytes += sizeof(Interior);
  const auto* interior = static_cast<const Interior*>(node);
  const uint64_t child_span = SpanAt(depth + 1);
  for (uint64_t i = 0; i < kFanout; ++i) {
    if (const void* c = interior->children[i].load(std::memory_order_acquire)) {
      absl::Status s = CheckSubtree(c, depth + 1, base + i * child_span, bytes);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status PageTable::CheckInvariants() const {
  if (!Validate(page_count_).ok() || levels_ != LevelsFor(page_count_)) {
    return absl::InternalError(absl::StrCat(
        "page table: ", levels_, " levels for page_count ", page_count_));
  }
  if (root_ == nullptr) {
    return MetadataBytes() == 0
               ? absl::OkStatus()
               : absl::InternalError("page table: no root but metadata > 0");
  }
  size_t bytes = 0;
  if (levels_ == 1) {
    absl::Status s = CheckSubtree(root_, 0, 0, &bytes);
    if (!s.ok()) return s;
  } else {
    const auto* slots = static_cast<const std::atomic<void*>*>(root_);
    bytes += RootSlots() * sizeof(std::atomic<void*>);
    const uint64_t child_span = SpanAt(1);
    for (uint64_t i = 0; i < RootSlots(); ++i) {
      const void* c = slots[i].load(std::memory_order_acquire);
      if (c == nullptr) continue;
      absl::Status s = CheckSubtree(c, 1, i * child_span, &bytes);
      if (!s.ok()) return s;
    }
  }
  // This also catches a node published in two slots (or a lost node): it
  // would be counted twice (or never) by the walk but once by the CAS.
  if (bytes != MetadataBytes()) {
    return absl::InternalError(absl::StrCat("page table: nodes hold ", bytes,
                                            " bytes but metadata_bytes is ",
                                            MetadataBytes()));
  }
  return absl::OkStatus();
}

}  // namespace upager::internal
