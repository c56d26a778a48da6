#include "backing/slot_allocator.h"

#include <bit>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_format.h"

namespace upager::internal {
namespace {

constexpr uint64_t kWordBits = 64;

// The padding bits of a level's last word: those at and above `bits % 64`.
uint64_t PaddingMask(uint64_t bits) {
  const uint64_t used = bits % kWordBits;
  return used == 0 ? 0 : ~uint64_t{0} << used;
}

}  // namespace

SlotAllocator::SlotAllocator(uint64_t capacity) : capacity_(capacity) {
  uint64_t bits = capacity == 0 ? 1 : capacity;
  for (;;) {
    const uint64_t words = (bits + kWordBits - 1) / kWordBits;
    std::vector<uint64_t> level(words, 0);
    // The last word still has at least one real (free) bit, so padding
    // never makes a word full and no summary bit needs setting here.
    level.back() |= PaddingMask(bits);
    levels_.push_back(std::move(level));
    level_bits_.push_back(bits);
    if (words == 1) break;
    bits = words;
  }
  if (capacity == 0) levels_[0][0] = kFull;  // nothing to hand out
}

std::optional<uint64_t> SlotAllocator::Allocate() {
  absl::MutexLock lock(&mu_);
  if (levels_.back()[0] == kFull) return std::nullopt;
  // Walk down: at each level take the lowest word that is not full.
  uint64_t index = 0;
  for (size_t l = levels_.size(); l-- > 0;) {
    const uint64_t word = levels_[l][index];
    index = index * kWordBits + static_cast<uint64_t>(std::countr_zero(~word));
  }
  const uint64_t slot = index;
  // Walk up: set the bit; a word that became full sets its summary bit.
  for (size_t l = 0; l < levels_.size(); ++l) {
    uint64_t& word = levels_[l][index / kWordBits];
    word |= uint64_t{1} << (index % kWordBits);
    if (word != kFull) break;
    index /= kWordBits;
  }
  ++used_;
  return slot;
}

bool SlotAllocator::Free(uint64_t slot) {
  absl::MutexLock lock(&mu_);
  const bool allocated =
      slot < capacity_ &&
      (levels_[0][slot / kWordBits] >> (slot % kWordBits)) & 1;
  if (!allocated) {
#ifndef NDEBUG
    std::fprintf(stderr,
                 "upager: SlotAllocator::Free(%llu): slot is %s (capacity "
                 "%llu)\n",
                 static_cast<unsigned long long>(slot),
                 slot < capacity_ ? "not allocated (double free)"
                                  : "out of range",
                 static_cast<unsigned long long>(capacity_));
    std::abort();
#endif
    return false;
  }
  // Walk up: clear the bit; a word that was full clears its summary bit.
  uint64_t index = slot;
  for (size_t l = 0; l < levels_.size(); ++l) {
    uint64_t& word = levels_[l][index / kWordBits];
    const bool was_full = word == kFull;
    word &= ~(uint64_t{1} << (index % kWordBits));
    if (!was_full) break;
    index /= kWordBits;
  }
  --used_;
  return true;
}

bool SlotAllocator::IsAllocated(uint64_t slot) const {
  if (slot >= capacity_) return false;
  absl::MutexLock lock(&mu_);
  return (levels_[0][slot / kWordBits] >> (slot % kWordBits)) & 1;
}

uint64_t SlotAllocator::used() const {
  absl::MutexLock lock(&mu_);
  return used_;
}

absl::Status SlotAllocator::CheckInvariants() const {
  absl::MutexLock lock(&mu_);
  uint64_t allocated = 0;
  for (size_t l = 0; l < levels_.size(); ++l) {
    const std::vector<uint64_t>& level = levels_[l];
    const uint64_t pad = PaddingMask(level_bits_[l]);
    if ((level.back() & pad) != pad) {
      return absl::InternalError(absl::StrFormat(
          "level %d: padding of the last word is not all set (%#x)", l,
          level.back()));
    }
    if (l + 1 == levels_.size() && level.size() != 1) {
      return absl::InternalError("top level is not one word");
    }
    for (uint64_t w = 0; w < level.size(); ++w) {
      if (l == 0) {
        const uint64_t real = w + 1 == level.size() ? level[w] & ~pad
                                                    : level[w];
        allocated += static_cast<uint64_t>(std::popcount(real));
        continue;
      }
      for (uint64_t b = 0; b < kWordBits; ++b) {
        const uint64_t child = w * kWordBits + b;
        if (child >= level_bits_[l]) break;
        const bool summary = (level[w] >> b) & 1;
        const bool full = levels_[l - 1][child] == kFull;
        if (summary != full) {
          return absl::InternalError(absl::StrFormat(
              "level %d bit %d says %s but the word below is %#x", l, child,
              summary ? "full" : "not full", levels_[l - 1][child]));
        }
      }
    }
  }
  if (capacity_ == 0) allocated = 0;
  if (allocated != used_) {
    return absl::InternalError(absl::StrFormat(
        "used() is %d but %d slots are allocated", used_, allocated));
  }
  return absl::OkStatus();
}

}  // namespace upager::internal
