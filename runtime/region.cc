#include "upager/region.h"

#include <algorithm>

#include "runtime/region_core.h"

namespace upager {

uint64_t Region::resident_pages() const {
  return static_cast<uint64_t>(std::max<int64_t>(
      0, core_->resident.load(std::memory_order_relaxed)));
}

uint64_t Region::zero_mapped_pages() const {
  return static_cast<uint64_t>(std::max<int64_t>(
      0, core_->zero_mapped.load(std::memory_order_relaxed)));
}

}  // namespace upager
