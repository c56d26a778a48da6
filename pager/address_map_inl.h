// Template implementation of AddressMap<Owner>; include pager/address_map.h,
// not this file.
#ifndef UPAGER_PAGER_ADDRESS_MAP_INL_H_
#define UPAGER_PAGER_ADDRESS_MAP_INL_H_

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "pager/address_map.h"
#include "pager/page_index.h"

namespace upager::internal {
namespace address_map_internal {

// "[0x1000, 0x3000)": how every error names a range.
inline std::string RangeString(uintptr_t start, uintptr_t end) {
  return absl::StrCat("[0x", absl::Hex(start), ", 0x", absl::Hex(end), ")");
}

}  // namespace address_map_internal

template <typename Owner>
absl::Status AddressMap<Owner>::Insert(uintptr_t start, uintptr_t end,
                                       PageIndex first_page, Owner owner) {
  using address_map_internal::RangeString;
  if (start >= end || start % page_size_ != 0 || end % page_size_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address map: range ", RangeString(start, end),
        " is empty or not aligned to page size 0x", absl::Hex(page_size_)));
  }
  // Only two intervals can overlap [start, end) without one starting inside
  // it: the last one starting before `start`. Check it, then the first one
  // starting at or after `start`.
  auto next = map_.lower_bound(start);
  if (next != map_.begin()) {
    const Interval& prev = std::prev(next)->second;
    if (prev.end > start) {
      return absl::AlreadyExistsError(
          absl::StrCat("address map: range ", RangeString(start, end),
                       " overlaps ", RangeString(prev.start, prev.end)));
    }
  }
  if (next != map_.end() && next->second.start < end) {
    return absl::AlreadyExistsError(absl::StrCat(
        "address map: range ", RangeString(start, end), " overlaps ",
        RangeString(next->second.start, next->second.end)));
  }
  map_.emplace_hint(next, start,
                    Interval{start, end, first_page, std::move(owner)});
  return absl::OkStatus();
}

template <typename Owner>
auto AddressMap<Owner>::Find(uintptr_t addr) const -> std::optional<Interval> {
  auto it = map_.upper_bound(addr);
  if (it == map_.begin()) return std::nullopt;
  --it;
  if (addr >= it->second.end) return std::nullopt;
  return it->second;
}

template <typename Owner>
auto AddressMap<Owner>::FirstOverlap(uintptr_t start, uintptr_t end) const
    -> std::optional<Interval> {
  if (start >= end) return std::nullopt;
  if (auto iv = Find(start); iv.has_value()) return iv;
  auto it = map_.lower_bound(start);
  if (it == map_.end() || it->first >= end) return std::nullopt;
  return it->second;
}

template <typename Owner>
auto AddressMap<Owner>::Erase(uintptr_t start, uintptr_t end)
    -> std::vector<Interval> {
  assert(start % page_size_ == 0 && end % page_size_ == 0);
  std::vector<Interval> removed;
  if (start >= end) return removed;
  // Collect the overlapping intervals first: re-inserting the remainders
  // while iterating would invalidate btree iterators.
  std::vector<Interval> hit;
  auto it = map_.upper_bound(start);
  if (it != map_.begin() && std::prev(it)->second.end > start) --it;
  while (it != map_.end() && it->second.start < end) {
    hit.push_back(std::move(it->second));
    it = map_.erase(it);
  }
  for (Interval& iv : hit) {
    const uintptr_t cut_start = std::max(iv.start, start);
    const uintptr_t cut_end = std::min(iv.end, end);
    // A piece keeps the region page its own first byte holds: the parent's
    // first page advanced by whole pages from the parent's start.
    auto piece = [&](uintptr_t s, uintptr_t e) {
      return Interval{s, e, iv.first_page + (s - iv.start) / page_size_,
                      iv.owner};
    };
    if (iv.start < cut_start)
      map_.emplace(iv.start, piece(iv.start, cut_start));
    if (cut_end < iv.end) map_.emplace(cut_end, piece(cut_end, iv.end));
    removed.push_back(piece(cut_start, cut_end));
  }
  return removed;
}

template <typename Owner>
auto AddressMap<Owner>::EraseOwner(const Owner& owner)
    -> std::vector<Interval> {
  std::vector<Interval> removed;
  for (auto it = map_.begin(); it != map_.end();) {
    if (it->second.owner == owner) {
      removed.push_back(std::move(it->second));
      it = map_.erase(it);
    } else {
      ++it;
    }
  }
  return removed;
}

template <typename Owner>
auto AddressMap<Owner>::Move(uintptr_t from, uintptr_t to, uint64_t len)
    -> std::vector<Interval> {
  // Take the source out before clearing the destination: the kernel refuses
  // overlapping ranges, but if they did overlap, clearing the destination
  // first would drop part of the source instead of moving it.
  assert(from % page_size_ == 0 && to % page_size_ == 0 &&
         len % page_size_ == 0);
  std::vector<Interval> moved = Erase(from, from + len);
  Erase(to, to + len);
  for (Interval& iv : moved) {
    // Unsigned wrap-around makes this right whether `to` is above or below
    // `from`.
    iv.start = iv.start - from + to;
    iv.end = iv.end - from + to;
    map_.emplace(iv.start, iv);
  }
  return moved;
}

template <typename Owner>
auto AddressMap<Owner>::IntervalsOf(const Owner& owner) const
    -> std::vector<Interval> {
  std::vector<Interval> out;
  for (const auto& entry : map_) {
    if (entry.second.owner == owner) out.push_back(entry.second);
  }
  return out;
}

template <typename Owner>
auto AddressMap<Owner>::Intervals() const -> std::vector<Interval> {
  std::vector<Interval> out;
  out.reserve(map_.size());
  for (const auto& entry : map_) out.push_back(entry.second);
  return out;
}

template <typename Owner>
absl::Status AddressMap<Owner>::CheckInvariants() const {
  using address_map_internal::RangeString;
  if (page_size_ == 0 || (page_size_ & (page_size_ - 1)) != 0) {
    return absl::InternalError(absl::StrCat("address map: page size 0x",
                                            absl::Hex(page_size_),
                                            " is not a power of two"));
  }
  uintptr_t prev_end = 0;
  bool first = true;
  for (const auto& [key, iv] : map_) {
    if (key != iv.start) {
      return absl::InternalError(
          absl::StrCat("address map: interval ", RangeString(iv.start, iv.end),
                       " is keyed by 0x", absl::Hex(key)));
    }
    if (iv.start >= iv.end || iv.start % page_size_ != 0 ||
        iv.end % page_size_ != 0) {
      return absl::InternalError(absl::StrCat(
          "address map: interval ", RangeString(iv.start, iv.end),
          " is empty or not aligned to page size 0x", absl::Hex(page_size_)));
    }
    if (!first && iv.start < prev_end) {
      return absl::InternalError(
          absl::StrCat("address map: interval ", RangeString(iv.start, iv.end),
                       " starts before the previous interval ends at 0x",
                       absl::Hex(prev_end)));
    }
    prev_end = iv.end;
    first = false;
  }
  return absl::OkStatus();
}

}  // namespace upager::internal

#endif  // UPAGER_PAGER_ADDRESS_MAP_INL_H_
