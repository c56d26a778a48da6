// CRC32C: the standard check values (RFC 3720's iSCSI vectors and the
// catalogue's "123456789"), on the dispatching entry point and on each
// implementation, and the two implementations against each other over
// every length and alignment that exercises their word and byte loops.
#include "backing/crc32c.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace upager::internal {
namespace {

using ExtendFn = uint32_t (*)(uint32_t, const void*, size_t);

struct Vector {
  std::vector<uint8_t> bytes;
  uint32_t crc;
};

std::vector<Vector> KnownVectors() {
  std::vector<Vector> v;
  const std::string check = "123456789";
  v.push_back({{check.begin(), check.end()}, 0xE3069283});
  v.push_back({{}, 0x00000000});
  v.push_back({std::vector<uint8_t>(32, 0x00), 0x8A9136AA});
  v.push_back({std::vector<uint8_t>(32, 0xFF), 0x62A8AB43});
  std::vector<uint8_t> up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<uint8_t>(i);
    down[i] = static_cast<uint8_t>(31 - i);
  }
  v.push_back({up, 0x46DD794E});
  v.push_back({down, 0x113FDB5C});
  return v;
}

void ExpectKnownVectors(ExtendFn extend, const char* name) {
  for (const Vector& v : KnownVectors()) {
    EXPECT_EQ(extend(0, v.bytes.data(), v.bytes.size()), v.crc)
        << name << " over " << v.bytes.size() << " bytes";
  }
}

TEST(Crc32cTest, KnownVectorsThroughTheDispatcher) {
  ExpectKnownVectors(Crc32cExtend, "Crc32cExtend");
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  const std::string s = "123456789";
  EXPECT_EQ(Crc32c(absl::MakeConstSpan(
                reinterpret_cast<const std::byte*>(s.data()), s.size())),
            0xE3069283u);
}

TEST(Crc32cTest, KnownVectorsInSoftware) {
  ExpectKnownVectors(Crc32cExtendSoftware, "software");
}

TEST(Crc32cTest, KnownVectorsInHardware) {
  if (!Crc32cHardwareAvailable()) {
    GTEST_SKIP() << "this CPU has no SSE4.2 crc32 instruction";
  }
  ExpectKnownVectors(Crc32cExtendHardware, "hardware");
}

// Both implementations over every length 0..600 at every alignment 0..7,
// and each extended in two pieces split at every point.
TEST(Crc32cTest, ImplementationsAgreeAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(42);
  std::vector<uint8_t> buf(600 + 8);
  for (uint8_t& b : buf) b = static_cast<uint8_t>(rng());
  const bool hw = Crc32cHardwareAvailable();
  for (size_t align = 0; align < 8; ++align) {
    for (size_t len = 0; len <= 600; ++len) {
      const uint8_t* p = buf.data() + align;
      const uint32_t sw = Crc32cExtendSoftware(0, p, len);
      EXPECT_EQ(Crc32c(p, len), sw) << "align " << align << " len " << len;
      if (hw) {
        EXPECT_EQ(Crc32cExtendHardware(0, p, len), sw)
            << "align " << align << " len " << len;
      }
    }
  }
  const uint8_t* p = buf.data();
  const uint32_t whole = Crc32cExtendSoftware(0, p, 600);
  for (size_t split = 0; split <= 600; ++split) {
    EXPECT_EQ(Crc32cExtendSoftware(Crc32cExtendSoftware(0, p, split), p + split,
                                   600 - split),
              whole)
        << "software split at " << split;
    if (hw) {
      EXPECT_EQ(Crc32cExtendHardware(Crc32cExtendHardware(0, p, split),
                                     p + split, 600 - split),
                whole)
          << "hardware split at " << split;
    }
  }
}

// A page-sized buffer, as the snapshot format uses it, and a single
// flipped bit anywhere changes the CRC.
TEST(Crc32cTest, PagesAgreeAndEveryBitFlipIsSeen) {
  std::mt19937_64 rng(7);
  std::vector<uint8_t> page(4096);
  for (uint8_t& b : page) b = static_cast<uint8_t>(rng());
  const uint32_t crc = Crc32cExtendSoftware(0, page.data(), page.size());
  if (Crc32cHardwareAvailable()) {
    EXPECT_EQ(Crc32cExtendHardware(0, page.data(), page.size()), crc);
  }
  for (size_t bit = 0; bit < page.size() * 8; bit += 61) {
    page[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_NE(Crc32c(page.data(), page.size()), crc) << "bit " << bit;
    page[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  }
  EXPECT_EQ(Crc32c(page.data(), page.size()), crc);
}

}  // namespace
}  // namespace upager::internal
