#include "backing/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace upager::internal {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;  // Castagnoli, bit-reversed

// Slicing-by-8 tables: kTables[k][b] is the CRC of byte b followed by k
// zero bytes, so eight table lookups advance the CRC by eight bytes.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1) ? kPolynomial : 0);
    t[0][b] = c;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (uint32_t b = 0; b < 256; ++b) {
      t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
    }
  }
  return t;
}

constexpr Tables kTables = MakeTables();

uint64_t LoadLittleEndian64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
                "the slicing-by-8 loop assumes a little-endian CPU");
  return v;
}

using ExtendFn = uint32_t (*)(uint32_t, const void*, size_t);

ExtendFn ChooseImplementation() {
  return Crc32cHardwareAvailable() ? Crc32cExtendHardware
                                   : Crc32cExtendSoftware;
}

}  // namespace

uint32_t Crc32cExtendSoftware(uint32_t crc, const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  for (; len >= 8; len -= 8, p += 8) {
    const uint64_t v = LoadLittleEndian64(p) ^ c;
    c = kTables[7][v & 0xFF] ^ kTables[6][(v >> 8) & 0xFF] ^
        kTables[5][(v >> 16) & 0xFF] ^ kTables[4][(v >> 24) & 0xFF] ^
        kTables[3][(v >> 32) & 0xFF] ^ kTables[2][(v >> 40) & 0xFF] ^
        kTables[1][(v >> 48) & 0xFF] ^ kTables[0][v >> 56];
  }
  for (; len > 0; --len, ++p) c = (c >> 8) ^ kTables[0][(c ^ *p) & 0xFF];
  return ~c;
}

#if defined(__x86_64__)

bool Crc32cHardwareAvailable() {
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
}

// Compiled for SSE4.2 alone (the rest of the build targets baseline
// x86-64), and reached only after the run-time check above.
__attribute__((target("sse4.2"))) uint32_t Crc32cExtendHardware(
    uint32_t crc, const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t c = ~crc;
  for (; len >= 8; len -= 8, p += 8) {
    c = _mm_crc32_u64(c, LoadLittleEndian64(p));
  }
  auto c32 = static_cast<uint32_t>(c);
  for (; len > 0; --len, ++p) c32 = _mm_crc32_u8(c32, *p);
  return ~c32;
}

#else

bool Crc32cHardwareAvailable() { return false; }

uint32_t Crc32cExtendHardware(uint32_t crc, const void* data, size_t len) {
  return Crc32cExtendSoftware(crc, data, len);
}

#endif

uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t len) {
  static const ExtendFn extend = ChooseImplementation();
  return extend(crc, data, len);
}

}  // namespace upager::internal
