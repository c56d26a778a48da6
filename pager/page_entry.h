// The 8-byte per-page record of upager's own page table.
//
// Invariant: an entry is one uint64_t, read and written atomically by the
// page table, so the fault path can read it without a lock. The layout:
//   bits  0..3   PageState
//   bit   4      dirty          written since it was last made clean (swap)
//   bit   5      write-protected (uffd WP is armed on this page)
//   bit   6      captured       a live snapshot needs this page's current
//                               bytes and has no copy of them yet: they
//                               must be copied aside before they change
//                               (see runtime/snapshot_engine.cc)
//   bit   7      accessed       referenced since the policy last looked
//   bit   8      wanted         kEvicting: a fault is waiting for the page
//   bit   9      discard        kEvicting: the application dropped the page
//                               (madvise/munmap); forget its bytes
//   bit  10      clean          kResident: swapped in and never written
//                               since; `slot` still holds its bytes
//   bits 11..15  reserved (zero)
//   bits 16..63  swap slot (valid when state is kSwapped or kEvicting, or
//                for a clean resident page)
// Thread-safety: PageEntry is a plain value; see PageTable for atomicity.
#ifndef UPAGER_PAGER_PAGE_ENTRY_H_
#define UPAGER_PAGER_PAGE_ENTRY_H_

#include <cstdint>

namespace upager::internal {

enum class PageState : uint8_t {
  kAbsent = 0,    // no memory; reads as zero on first touch (lazy zero-fill)
  kZero = 1,      // mapped to the kernel's shared zero page (read fault)
  kResident = 2,  // a private page with the region's bytes
  kSwapped = 3,   // bytes live only in the swap slot
  kFilling = 4,   // a service thread owns the page and is filling it
  // The evictor owns the page: its bytes were moved out of the region to a
  // staging page and are being written to `slot`. A fault sets kWantedBit
  // and waits; the evictor then moves the bytes back.
  kEvicting = 5,
};

const char* PageStateName(PageState s);

class PageEntry {
 public:
  static constexpr uint64_t kStateMask = 0xF;
  static constexpr uint64_t kDirtyBit = 1ull << 4;
  static constexpr uint64_t kWriteProtectedBit = 1ull << 5;
  static constexpr uint64_t kCapturedBit = 1ull << 6;
  static constexpr uint64_t kAccessedBit = 1ull << 7;
  static constexpr uint64_t kWantedBit = 1ull << 8;
  static constexpr uint64_t kDiscardBit = 1ull << 9;
  static constexpr uint64_t kCleanBit = 1ull << 10;
  static constexpr int kSlotShift = 16;
  static constexpr uint64_t kMaxSlot = (1ull << 48) - 1;

  constexpr PageEntry() = default;
  constexpr explicit PageEntry(uint64_t raw) : raw_(raw) {}
  static constexpr PageEntry Of(PageState s) {
    return PageEntry(static_cast<uint64_t>(s));
  }

  constexpr uint64_t raw() const { return raw_; }
  constexpr PageState state() const {
    return static_cast<PageState>(raw_ & kStateMask);
  }
  // True when the kernel has a PTE for the page (zero page or private page).
  constexpr bool present() const {
    return state() == PageState::kZero || state() == PageState::kResident;
  }
  constexpr bool dirty() const { return raw_ & kDirtyBit; }
  constexpr bool write_protected() const { return raw_ & kWriteProtectedBit; }
  constexpr bool captured() const { return raw_ & kCapturedBit; }
  constexpr bool accessed() const { return raw_ & kAccessedBit; }
  constexpr bool wanted() const { return raw_ & kWantedBit; }
  constexpr bool discard() const { return raw_ & kDiscardBit; }
  constexpr bool clean() const { return raw_ & kCleanBit; }
  constexpr uint64_t slot() const { return raw_ >> kSlotShift; }

  constexpr PageEntry with_state(PageState s) const {
    return PageEntry((raw_ & ~kStateMask) | static_cast<uint64_t>(s));
  }
  constexpr PageEntry with_flag(uint64_t bit, bool on) const {
    return PageEntry(on ? (raw_ | bit) : (raw_ & ~bit));
  }
  // Precondition: slot <= kMaxSlot.
  constexpr PageEntry with_slot(uint64_t slot) const {
    return PageEntry((raw_ & ((1ull << kSlotShift) - 1)) |
                     (slot << kSlotShift));
  }

  constexpr bool operator==(const PageEntry&) const = default;

 private:
  uint64_t raw_ = 0;
};

static_assert(sizeof(PageEntry) == 8);

}  // namespace upager::internal

#endif  // UPAGER_PAGER_PAGE_ENTRY_H_
