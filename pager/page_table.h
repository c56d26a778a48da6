// upager's own page table: one per region, a sparse multi-level radix tree
// keyed by PageIndex, shaped like the kernel's pgd/pmd/pte hierarchy.
//
// Leaves hold 512 PageEntry values (4 KiB, like a PTE page); interior nodes
// hold 512 child pointers. The tree has the fewest levels (1..4) that cover
// the region, and the root holds exactly as many pointers as the region
// needs, so a reserved but untouched region costs at most one 4 KiB root and
// nothing else (a 1 TiB region of 4 KiB pages: 4 levels, a 16-byte root).
// Nodes are allocated on first write and freed only when the table is
// destroyed.
//
// Thread-safety: every method may be called concurrently from any thread.
// Reads (Get) take no lock and allocate nothing: a child pointer is published
// with a release CAS and read with acquire loads, and an entry is a single
// atomic word, so a reader sees either the old or the new entry, never a torn
// one. Get is async-signal-safe. Writers race only through CompareExchange;
// a caller that needs "claim then fill" uses CAS to move a page into
// PageState::kFilling first (see runtime/fault_service.cc).
#ifndef UPAGER_PAGER_PAGE_TABLE_H_
#define UPAGER_PAGER_PAGE_TABLE_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "pager/page_entry.h"
#include "pager/page_index.h"

namespace upager::internal {

class PageTable {
 public:
  static constexpr int kBitsPerLevel = 9;
  static constexpr uint64_t kFanout = 1u << kBitsPerLevel;  // 512
  // 4 levels of 9 bits cover 2^36 pages (256 TiB of 4 KiB pages).
  static constexpr uint64_t kMaxPages = 1ull << 36;

  // A table for pages [0, page_count). Fails with InvalidArgument naming
  // the value when page_count is 0 or above kMaxPages. (Validate allocates
  // nothing, so it never reports ResourceExhausted; see the constructor.)
  static absl::Status Validate(uint64_t page_count);
  // Precondition: Validate(page_count).ok(). Allocates the root (at most
  // 4 KiB) with nothrow new; if even that fails the table reads as
  // all-absent and every write that needs a node returns false, which is
  // the same failure path as any later node allocation.
  explicit PageTable(uint64_t page_count);
  ~PageTable();
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;

  uint64_t page_count() const { return page_count_; }
  int levels() const { return levels_; }

  // Lock-free, allocation-free read. Pages never written read as kAbsent.
  // Precondition: page < page_count().
  PageEntry Get(PageIndex page) const;

  // Stores `e`. Returns false only if a node could not be allocated
  // (the entry is then unchanged).
  [[nodiscard]] bool Set(PageIndex page, PageEntry e);

  // Atomically replaces `*expected` by `desired` if the entry equals
  // `*expected`; otherwise loads the current entry into `*expected` and
  // returns false. Also returns false (leaving *expected untouched) if a
  // node could not be allocated; `alloc_failed` (optional) tells which.
  [[nodiscard]] bool CompareExchange(PageIndex page, PageEntry* expected,
                                     PageEntry desired,
                                     bool* alloc_failed = nullptr);

  // As CompareExchange, but never allocates: returns false (and leaves
  // *expected untouched) when the entry's leaf does not exist yet.
  // Async-signal-safe (signal mode claims pages with it inside a SIGBUS
  // handler, where malloc is off limits).
  [[nodiscard]] bool CompareExchangeNoAlloc(PageIndex page,
                                            PageEntry* expected,
                                            PageEntry desired);

  // Allocates every node covering [first, first + count) now, so later
  // writes there never allocate. Returns false on allocation failure (a
  // prefix may then be allocated; the table stays valid).
  [[nodiscard]] bool Reserve(PageIndex first, uint64_t count);

  // Sets every entry of [first, first + count) to `e`, skipping subtrees
  // that do not exist yet when `e` is kAbsent with no flags (they already
  // read as absent). Returns false on allocation failure. Each entry is
  // stored on its own (the range is not one atomic update), so readers may
  // see it half done and a failed call may have set a prefix of the range.
  [[nodiscard]] bool SetRange(PageIndex first, uint64_t count, PageEntry e);

  // Calls fn(PageIndex, PageEntry) for every allocated entry that is not
  // raw 0, in page order. fn must not call Set/SetRange/CompareExchange on
  // this table (reads are fine). Concurrent writers may or may not be seen.
  void ForEachNonAbsent(absl::FunctionRef<void(PageIndex, PageEntry)> fn) const;

  // As ForEachNonAbsent, restricted to [first, first + count) (clipped to
  // page_count()); subtrees never allocated are skipped without a visit, so
  // dropping a huge, mostly untouched range costs what it touched.
  void ForEachNonAbsentInRange(
      PageIndex first, uint64_t count,
      absl::FunctionRef<void(PageIndex, PageEntry)> fn) const;

  // One entry met by ForEachNonAbsentInRangeInline, which `fn` may update
  // in place: CompareExchange as PageTable's, minus the lookup (and it never
  // allocates, the entry's node existing already).
  class EntryRef {
   public:
    bool CompareExchange(PageEntry* expected, PageEntry desired) const {
      uint64_t current = expected->raw();
      if (entry_->compare_exchange_strong(current, desired.raw(),
                                          std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
        return true;
      }
      *expected = PageEntry(current);
      return false;
    }

   private:
    friend class PageTable;
    explicit EntryRef(std::atomic<uint64_t>* entry) : entry_(entry) {}
    std::atomic<uint64_t>* entry_;
  };

  // As ForEachNonAbsentInRange, calling fn(PageIndex, PageEntry, EntryRef)
  // inline (a template: no indirect call per entry) for the one loop where
  // that matters, the snapshot sweep over every page of a region. fn may
  // update the entry it is given through the EntryRef, and must not call
  // Set/SetRange/CompareExchange.
  template <typename Fn>
  void ForEachNonAbsentInRangeInline(PageIndex first, uint64_t count,
                                     Fn&& fn) {
    const uint64_t first_page = first.value() < page_count_
                                    ? first.value()
                                    : page_count_;
    const uint64_t end = first_page + std::min(count, page_count_ - first_page);
    uint64_t page = first_page;
    while (page < end) {
      uint64_t missing_span = 0;
      std::atomic<uint64_t>* entries = LeafEntries(page, &missing_span);
      if (entries == nullptr) {
        // Skip to the end of the missing subtree (spans are aligned).
        const uint64_t span = missing_span == 0 ? 1 : missing_span;
        page = (page / span + 1) * span;
        continue;
      }
      const uint64_t leaf_end = std::min(end, (page / kFanout + 1) * kFanout);
      for (; page < leaf_end; ++page) {
        std::atomic<uint64_t>* entry = &entries[page % kFanout];
        const uint64_t raw = entry->load(std::memory_order_acquire);
        if (raw != 0) fn(PageIndex(page), PageEntry(raw), EntryRef(entry));
      }
    }
  }

  // Bytes of metadata this table holds right now (nodes + root).
  size_t MetadataBytes() const {
    return metadata_bytes_.load(std::memory_order_relaxed);
  }

  // Checks structural invariants: node depth, no entry beyond page_count()
  // holding a non-zero value, reserved bits zero, kFilling absent (call with
  // no fill in flight), metadata accounting matches the allocated nodes.
  // Returns the first violation found.
  absl::Status CheckInvariants() const;

 private:
  // Node layouts and the walk are defined in page_table.cc. A node's kind is
  // implied by its depth: depth levels_-1 holds leaves, shallower depths hold
  // interior nodes, and depth 0 is the root (see root_).
  struct Leaf;      // kFanout atomic entries (4 KiB, like a PTE page)
  struct Interior;  // kFanout atomic child pointers (4 KiB)

  // The leaf holding `page`, or nullptr if it was never allocated; then
  // *missing_span (if non-null) is the number of pages the missing subtree
  // would cover, aligned so the caller can skip it. Allocation-free and
  // lock-free (Get's async-signal-safe path).
  Leaf* FindLeaf(uint64_t page, uint64_t* missing_span) const;
  // The CAS itself, on an entry of `leaf`.
  static bool CompareExchangeInLeaf(Leaf* leaf, PageIndex page,
                                    PageEntry* expected, PageEntry desired);
  // FindLeaf's leaf as its kFanout entries (for the inline walk, which
  // cannot see Leaf).
  std::atomic<uint64_t>* LeafEntries(uint64_t page,
                                     uint64_t* missing_span) const;
  // As FindLeaf but allocates the missing path; nullptr only when an
  // allocation failed.
  Leaf* FindOrAllocateLeaf(uint64_t page);
  // Loads *slot, publishing a fresh zeroed node there if it is empty.
  // Returns the winner of any race; nullptr on allocation failure.
  void* ChildOrAllocate(std::atomic<void*>* slot, bool leaf);
  // Frees `node` (at `depth`) and everything below it.
  void FreeSubtree(void* node, int depth);
  // ForEachNonAbsent below `node`, whose first page is `base`.
  void ForEachInSubtree(const void* node, int depth, uint64_t base,
                        absl::FunctionRef<void(PageIndex, PageEntry)> fn) const;
  // CheckInvariants below `node`; adds the node bytes found to *bytes.
  absl::Status CheckSubtree(const void* node, int depth, uint64_t base,
                            size_t* bytes) const;
  // Pages covered by one node at `depth` (1 <= depth < levels_).
  uint64_t SpanAt(int depth) const {
    return uint64_t{1} << (kBitsPerLevel * (levels_ - depth));
  }
  // Number of pointers in the root when levels_ >= 2.
  uint64_t RootSlots() const;
  // Shift that turns a page index into a root slot index.
  int RootShift() const { return kBitsPerLevel * (levels_ - 1); }

  const uint64_t page_count_;
  int levels_ = 1;  // 1 = the root is a single leaf
  std::atomic<size_t> metadata_bytes_{0};
  // levels_ == 1: a Leaf*. Otherwise an array of RootSlots()
  // std::atomic<void*> whose children sit at depth 1. nullptr only if the
  // constructor could not allocate it: the table then reads as all-absent
  // and every write that needs a node fails.
  void* root_ = nullptr;
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_PAGE_TABLE_H_
