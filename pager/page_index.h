// Strong unit types for paging arithmetic.
//
// A page index (a page's position inside a region) and a byte count or byte
// offset are both integers; mixing them is the classic paging bug. PageIndex
// keeps them apart at compile time. Thread-safety: plain values.
#ifndef UPAGER_PAGER_PAGE_INDEX_H_
#define UPAGER_PAGER_PAGE_INDEX_H_

#include <compare>
#include <cstdint>

namespace upager::internal {

// Index of a page inside one region: page 0 is the region's first page.
class PageIndex {
 public:
  constexpr PageIndex() = default;
  constexpr explicit PageIndex(uint64_t v) : v_(v) {}
  constexpr uint64_t value() const { return v_; }
  constexpr auto operator<=>(const PageIndex&) const = default;
  constexpr PageIndex operator+(uint64_t n) const { return PageIndex(v_ + n); }
  constexpr PageIndex operator-(uint64_t n) const { return PageIndex(v_ - n); }
  constexpr uint64_t operator-(PageIndex o) const { return v_ - o.v_; }
  constexpr PageIndex& operator++() {
    ++v_;
    return *this;
  }

 private:
  uint64_t v_ = 0;
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_PAGE_INDEX_H_
