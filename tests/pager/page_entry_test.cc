#include "pager/page_entry.h"

#include <string>

#include "gtest/gtest.h"

namespace upager::internal {
namespace {

TEST(PageEntryTest, DefaultIsAbsentAndZero) {
  constexpr PageEntry e;
  EXPECT_EQ(e.raw(), 0u);
  EXPECT_EQ(e.state(), PageState::kAbsent);
  EXPECT_FALSE(e.present());
}

TEST(PageEntryTest, FieldsRoundTripWithoutDisturbingEachOther) {
  const PageEntry e = PageEntry::Of(PageState::kSwapped)
                          .with_flag(PageEntry::kDirtyBit, true)
                          .with_flag(PageEntry::kCapturedBit, true)
                          .with_slot(PageEntry::kMaxSlot);
  EXPECT_EQ(e.state(), PageState::kSwapped);
  EXPECT_TRUE(e.dirty());
  EXPECT_TRUE(e.captured());
  EXPECT_FALSE(e.write_protected());
  EXPECT_FALSE(e.accessed());
  EXPECT_EQ(e.slot(), PageEntry::kMaxSlot);

  const PageEntry r = e.with_state(PageState::kResident).with_slot(42);
  EXPECT_EQ(r.state(), PageState::kResident);
  EXPECT_TRUE(r.present());
  EXPECT_TRUE(r.dirty());
  EXPECT_EQ(r.slot(), 42u);
  EXPECT_FALSE(r.with_flag(PageEntry::kDirtyBit, false).dirty());
  // Reserved bits 8..15 stay zero through every setter.
  EXPECT_EQ(r.raw() & 0xFC00, 0u);
}

TEST(PageEntryTest, PresentOnlyForZeroAndResident) {
  EXPECT_FALSE(PageEntry::Of(PageState::kAbsent).present());
  EXPECT_TRUE(PageEntry::Of(PageState::kZero).present());
  EXPECT_TRUE(PageEntry::Of(PageState::kResident).present());
  EXPECT_FALSE(PageEntry::Of(PageState::kSwapped).present());
  EXPECT_FALSE(PageEntry::Of(PageState::kFilling).present());
}

TEST(PageEntryTest, StateNames) {
  EXPECT_EQ(std::string(PageStateName(PageState::kAbsent)), "absent");
  EXPECT_EQ(std::string(PageStateName(PageState::kZero)), "zero");
  EXPECT_EQ(std::string(PageStateName(PageState::kResident)), "resident");
  EXPECT_EQ(std::string(PageStateName(PageState::kSwapped)), "swapped");
  EXPECT_EQ(std::string(PageStateName(PageState::kFilling)), "filling");
  EXPECT_EQ(std::string(PageStateName(static_cast<PageState>(9))), "invalid");
}

}  // namespace
}  // namespace upager::internal
