#include "pager/page_entry.h"

namespace upager::internal {

const char* PageStateName(PageState s) {
  switch (s) {
    case PageState::kAbsent:
      return "absent";
    case PageState::kZero:
      return "zero";
    case PageState::kResident:
      return "resident";
    case PageState::kSwapped:
      return "swapped";
    case PageState::kFilling:
      return "filling";
    case PageState::kEvicting:
      return "evicting";
  }
  // The state field is 4 bits wide; a corrupt entry can hold 5..15. Callers
  // print this in diagnostics, so it must not crash on bad input.
  return "invalid";
}

}  // namespace upager::internal
