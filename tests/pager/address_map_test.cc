#include "pager/address_map.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pager/page_index.h"

namespace upager::internal {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kPage = 4096;
using Map = AddressMap<int>;

// (start, end, first_page, owner): comparable and printable.
using Flat = std::tuple<uintptr_t, uintptr_t, uint64_t, int>;

std::vector<Flat> Flatten(const std::vector<Map::Interval>& v) {
  std::vector<Flat> out;
  for (const auto& iv : v) {
    out.emplace_back(iv.start, iv.end, iv.first_page.value(), iv.owner);
  }
  return out;
}

// Every interval currently in the map, in address order.
std::vector<Flat> All(const Map& m, std::vector<int> owners = {1, 2, 3}) {
  std::vector<Flat> out;
  for (int o : owners) {
    for (const Flat& f : Flatten(m.IntervalsOf(o))) out.push_back(f);
  }
  std::sort(out.begin(), out.end());
  return out;
}

uintptr_t A(uint64_t page) { return 0x10000000 + page * kPage; }

TEST(AddressMapTest, InsertRejectsEmptyMisalignedAndOverlapping) {
  Map m(kPage);
  ASSERT_TRUE(m.Insert(A(10), A(20), PageIndex(0), 1).ok());

  absl::Status s = m.Insert(A(5), A(5), PageIndex(0), 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = m.Insert(A(30) + 1, A(40), PageIndex(0), 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("0x1001e001"));
  EXPECT_EQ(m.Insert(A(30), A(40) - 8, PageIndex(0), 2).code(),
            absl::StatusCode::kInvalidArgument);

  // Overlaps on the left, on the right, inside, and around.
  for (auto [lo, hi] : std::vector<std::pair<uint64_t, uint64_t>>{
           {5, 11}, {19, 25}, {12, 13}, {0, 100}, {10, 20}}) {
    s = m.Insert(A(lo), A(hi), PageIndex(0), 2);
    EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << lo << " " << hi;
    // Names both ranges in hex.
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("[0x1000a000, 0x10014000)"));
  }
  // Touching is not overlapping.
  EXPECT_TRUE(m.Insert(A(5), A(10), PageIndex(0), 2).ok());
  EXPECT_TRUE(m.Insert(A(20), A(21), PageIndex(0), 3).ok());
  EXPECT_EQ(m.size(), 3u);
  EXPECT_TRUE(m.CheckInvariants().ok());
}

TEST(AddressMapTest, FindAtBoundaries) {
  Map m(kPage);
  ASSERT_TRUE(m.Insert(A(10), A(20), PageIndex(100), 1).ok());
  ASSERT_TRUE(m.Insert(A(20), A(22), PageIndex(0), 2).ok());
  ASSERT_TRUE(m.Insert(A(30), A(31), PageIndex(7), 3).ok());

  EXPECT_FALSE(m.Find(0).has_value());
  EXPECT_FALSE(m.Find(A(10) - 1).has_value());
  auto f = m.Find(A(10));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->owner, 1);
  EXPECT_EQ(f->first_page, PageIndex(100));
  EXPECT_EQ(m.Find(A(20) - 1)->owner, 1);
  EXPECT_EQ(m.Find(A(20))->owner, 2);  // end is exclusive
  EXPECT_EQ(m.Find(A(22) - 1)->owner, 2);
  EXPECT_FALSE(m.Find(A(22)).has_value());
  EXPECT_FALSE(m.Find(A(29) + 5).has_value());
  EXPECT_EQ(m.Find(A(30) + 17)->owner, 3);
  EXPECT_FALSE(m.Find(A(31)).has_value());
  EXPECT_FALSE(m.Find(~uintptr_t{0}).has_value());
}

class AddressMapEraseTest : public ::testing::Test {
 protected:
  // Region 1 owns pages 0..9 at A(10)..A(20); region 2 owns 0..4 at
  // A(20)..A(25); region 3 owns 0..1 at A(40)..A(42).
  void SetUp() override {
    ASSERT_TRUE(m_.Insert(A(10), A(20), PageIndex(0), 1).ok());
    ASSERT_TRUE(m_.Insert(A(20), A(25), PageIndex(0), 2).ok());
    ASSERT_TRUE(m_.Insert(A(40), A(42), PageIndex(0), 3).ok());
  }
  void TearDown() override {
    EXPECT_TRUE(m_.CheckInvariants().ok()) << m_.CheckInvariants();
  }
  Map m_{kPage};
};

TEST_F(AddressMapEraseTest, Middle) {
  EXPECT_EQ(Flatten(m_.Erase(A(13), A(15))),
            (std::vector<Flat>{{A(13), A(15), 3, 1}}));
  EXPECT_EQ(Flatten(m_.IntervalsOf(1)),
            (std::vector<Flat>{{A(10), A(13), 0, 1}, {A(15), A(20), 5, 1}}));
  EXPECT_EQ(m_.Find(A(16))->first_page, PageIndex(5));
  EXPECT_FALSE(m_.Find(A(14)).has_value());
}

TEST_F(AddressMapEraseTest, Head) {
  EXPECT_EQ(Flatten(m_.Erase(A(8), A(12))),
            (std::vector<Flat>{{A(10), A(12), 0, 1}}));
  EXPECT_EQ(Flatten(m_.IntervalsOf(1)),
            (std::vector<Flat>{{A(12), A(20), 2, 1}}));
}

TEST_F(AddressMapEraseTest, Tail) {
  EXPECT_EQ(Flatten(m_.Erase(A(18), A(20))),
            (std::vector<Flat>{{A(18), A(20), 8, 1}}));
  EXPECT_EQ(Flatten(m_.IntervalsOf(1)),
            (std::vector<Flat>{{A(10), A(18), 0, 1}}));
  EXPECT_EQ(Flatten(m_.IntervalsOf(2)),
            (std::vector<Flat>{{A(20), A(25), 0, 2}}));
}

TEST_F(AddressMapEraseTest, Whole) {
  EXPECT_EQ(Flatten(m_.Erase(A(10), A(20))),
            (std::vector<Flat>{{A(10), A(20), 0, 1}}));
  EXPECT_TRUE(m_.IntervalsOf(1).empty());
  EXPECT_EQ(m_.size(), 2u);
}

TEST_F(AddressMapEraseTest, AcrossSeveralIntervalsAndGaps) {
  EXPECT_EQ(
      Flatten(m_.Erase(A(15), A(41))),
      (std::vector<Flat>{
          {A(15), A(20), 5, 1}, {A(20), A(25), 0, 2}, {A(40), A(41), 0, 3}}));
  EXPECT_EQ(All(m_),
            (std::vector<Flat>{{A(10), A(15), 0, 1}, {A(41), A(42), 1, 3}}));
}

TEST_F(AddressMapEraseTest, NothingThereOrEmptyRange) {
  EXPECT_TRUE(m_.Erase(A(30), A(40)).empty());
  EXPECT_TRUE(m_.Erase(A(15), A(15)).empty());
  EXPECT_TRUE(m_.Erase(A(16), A(15)).empty());
  EXPECT_EQ(m_.size(), 3u);
}

TEST_F(AddressMapEraseTest, SplitPiecesSplitAgainKeepTheirPages) {
  m_.Erase(A(12), A(13));
  m_.Erase(A(16), A(17));
  EXPECT_EQ(Flatten(m_.Erase(A(14), A(15))),
            (std::vector<Flat>{{A(14), A(15), 4, 1}}));
  EXPECT_EQ(Flatten(m_.IntervalsOf(1)),
            (std::vector<Flat>{{A(10), A(12), 0, 1},
                               {A(13), A(14), 3, 1},
                               {A(15), A(16), 5, 1},
                               {A(17), A(20), 7, 1}}));
}

TEST_F(AddressMapEraseTest, EraseOwner) {
  m_.Erase(A(12), A(13));  // region 1 now has two intervals
  EXPECT_EQ(Flatten(m_.EraseOwner(1)),
            (std::vector<Flat>{{A(10), A(12), 0, 1}, {A(13), A(20), 3, 1}}));
  EXPECT_TRUE(m_.IntervalsOf(1).empty());
  EXPECT_FALSE(m_.Find(A(10)).has_value());
  EXPECT_EQ(m_.Find(A(20))->owner, 2);
  EXPECT_TRUE(m_.EraseOwner(1).empty());
  EXPECT_EQ(m_.size(), 2u);
}

TEST_F(AddressMapEraseTest, MovePartKeepsItsFirstPage) {
  // mremap pages 3..5 of region 1 up to A(100).
  EXPECT_EQ(Flatten(m_.Move(A(13), A(100), 3 * kPage)),
            (std::vector<Flat>{{A(100), A(103), 3, 1}}));
  EXPECT_EQ(
      Flatten(m_.IntervalsOf(1)),
      (std::vector<Flat>{
          {A(10), A(13), 0, 1}, {A(16), A(20), 6, 1}, {A(100), A(103), 3, 1}}));
  EXPECT_EQ(m_.Find(A(101))->first_page, PageIndex(3));
  EXPECT_FALSE(m_.Find(A(14)).has_value());
}

TEST_F(AddressMapEraseTest, MoveWholeDownwardReplacesTheDestination) {
  // Region 2 moves onto [A(40), A(45)), replacing region 3 there.
  EXPECT_EQ(Flatten(m_.Move(A(20), A(40), 5 * kPage)),
            (std::vector<Flat>{{A(40), A(45), 0, 2}}));
  EXPECT_TRUE(m_.IntervalsOf(3).empty());
  EXPECT_EQ(All(m_),
            (std::vector<Flat>{{A(10), A(20), 0, 1}, {A(40), A(45), 0, 2}}));
  // And back to a lower address.
  EXPECT_EQ(Flatten(m_.Move(A(40), A(2), 5 * kPage)),
            (std::vector<Flat>{{A(2), A(7), 0, 2}}));
  EXPECT_EQ(m_.Find(A(6))->owner, 2);
  EXPECT_EQ(m_.Find(A(6))->first_page, PageIndex(0));
}

TEST_F(AddressMapEraseTest, MoveSpanningTwoRegionsAndAGap) {
  // The moved window holds region 1 pages 8..9, region 2 pages 0..4 and a
  // hole; each piece keeps its own owner and first page.
  EXPECT_EQ(
      Flatten(m_.Move(A(18), A(200), 10 * kPage)),
      (std::vector<Flat>{{A(200), A(202), 8, 1}, {A(202), A(207), 0, 2}}));
  EXPECT_FALSE(m_.Find(A(207)).has_value());
  EXPECT_EQ(m_.Find(A(201))->first_page, PageIndex(8));
  EXPECT_EQ(All(m_), (std::vector<Flat>{{A(10), A(18), 0, 1},
                                        {A(40), A(42), 0, 3},
                                        {A(200), A(202), 8, 1},
                                        {A(202), A(207), 0, 2}}));
}

TEST(AddressMapTest, SharedPtrOwners) {
  // The runtime's owner type: a shared_ptr compared by identity.
  struct Region {};
  auto r1 = std::make_shared<Region>();
  auto r2 = std::make_shared<Region>();
  AddressMap<std::shared_ptr<Region>> m(kPage);
  ASSERT_TRUE(m.Insert(A(0), A(4), PageIndex(0), r1).ok());
  ASSERT_TRUE(m.Insert(A(4), A(8), PageIndex(0), r2).ok());
  m.Erase(A(1), A(2));
  EXPECT_EQ(m.IntervalsOf(r1).size(), 2u);
  EXPECT_EQ(m.Find(A(5))->owner, r2);
  EXPECT_EQ(r1.use_count(), 3);  // two intervals + ours
  EXPECT_EQ(m.EraseOwner(r1).size(), 2u);
  EXPECT_EQ(r1.use_count(), 1);  // the map let go
  EXPECT_TRUE(m.CheckInvariants().ok());
}

TEST(AddressMapTest, RandomOpsAgainstPageShadow) {
  // Shadow: address page -> (owner, region page), or absent.
  constexpr uint64_t kSpan = 256;
  std::vector<std::pair<int, uint64_t>> shadow(kSpan, {0, 0});
  Map m(kPage);
  uint64_t seed = 99;
  auto next = [&] {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return seed >> 33;
  };
  int next_owner = 1;
  for (int iter = 0; iter < 3000; ++iter) {
    const uint64_t lo = next() % kSpan;
    const uint64_t len = 1 + next() % 16;
    const uint64_t hi = std::min(kSpan, lo + len);
    switch (next() % 3) {
      case 0: {
        bool free = true;
        for (uint64_t p = lo; p < hi; ++p) free &= shadow[p].first == 0;
        const int owner = next_owner++;
        const uint64_t first = next() % 1000;
        ASSERT_EQ(m.Insert(A(lo), A(hi), PageIndex(first), owner).ok(), free);
        if (free) {
          for (uint64_t p = lo; p < hi; ++p) {
            shadow[p] = {owner, first + (p - lo)};
          }
        }
        break;
      }
      case 1:
        m.Erase(A(lo), A(hi));
        for (uint64_t p = lo; p < hi; ++p) shadow[p] = {0, 0};
        break;
      default: {
        const uint64_t to = next() % (kSpan - (hi - lo) + 1);
        std::vector<std::pair<int, uint64_t>> moved(shadow.begin() + lo,
                                                    shadow.begin() + hi);
        for (uint64_t p = lo; p < hi; ++p) shadow[p] = {0, 0};
        for (uint64_t i = 0; i < hi - lo; ++i) shadow[to + i] = moved[i];
        m.Move(A(lo), A(to), (hi - lo) * kPage);
        break;
      }
    }
    ASSERT_TRUE(m.CheckInvariants().ok()) << m.CheckInvariants();
    for (uint64_t p = 0; p < kSpan; ++p) {
      auto f = m.Find(A(p) + (p % 7) * 512);
      if (shadow[p].first == 0) {
        ASSERT_FALSE(f.has_value()) << "iter " << iter << " page " << p;
      } else {
        ASSERT_TRUE(f.has_value()) << "iter " << iter << " page " << p;
        ASSERT_EQ(f->owner, shadow[p].first);
        ASSERT_EQ(f->first_page + (A(p) - f->start) / kPage,
                  PageIndex(shadow[p].second));
      }
    }
  }
}

}  // namespace
}  // namespace upager::internal

namespace upager::internal {
namespace {

TEST(AddressMapOverlapTest, FirstOverlapFindsCoveredAndPartialIntervals) {
  AddressMap<int> m(4096);
  ASSERT_TRUE(m.Insert(0x10000, 0x20000, PageIndex(0), 1).ok());
  ASSERT_TRUE(m.Insert(0x30000, 0x40000, PageIndex(0), 2).ok());
  EXPECT_FALSE(m.FirstOverlap(0x0, 0x10000).has_value());
  EXPECT_FALSE(m.FirstOverlap(0x20000, 0x30000).has_value());
  EXPECT_EQ(m.FirstOverlap(0x0, 0x50000)->owner, 1);    // covers both
  EXPECT_EQ(m.FirstOverlap(0x1f000, 0x21000)->owner, 1);  // starts inside
  EXPECT_EQ(m.FirstOverlap(0x21000, 0x31000)->owner, 2);  // ends inside
  EXPECT_EQ(m.FirstOverlap(0x25000, 0x45000)->owner, 2);  // covers one
  EXPECT_FALSE(m.FirstOverlap(0x15000, 0x15000).has_value());
}

}  // namespace
}  // namespace upager::internal
