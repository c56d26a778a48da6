// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the
// snapshot file format: SSE4.2's crc32 instruction where the CPU has it
// (checked once at run time), an 8-bytes-at-a-time table otherwise. Both
// give identical results; tests hold them to the standard check value
// (Crc32c("123456789") == 0xE3069283) and to each other.
//
// Thread-safety: all functions are pure and thread-safe.
#ifndef UPAGER_BACKING_CRC32C_H_
#define UPAGER_BACKING_CRC32C_H_

#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"

namespace upager::internal {

// The CRC32C of earlier bytes (0 for none) extended over [data, data + len):
// Crc32cExtend(Crc32cExtend(0, a), b) == CRC32C of a followed by b.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t len);

inline uint32_t Crc32c(const void* data, size_t len) {
  return Crc32cExtend(0, data, len);
}
inline uint32_t Crc32c(absl::Span<const std::byte> bytes) {
  return Crc32cExtend(0, bytes.data(), bytes.size());
}

// The two implementations, exposed so tests can check each. The hardware
// one may be called only when Crc32cHardwareAvailable().
bool Crc32cHardwareAvailable();
uint32_t Crc32cExtendSoftware(uint32_t crc, const void* data, size_t len);
uint32_t Crc32cExtendHardware(uint32_t crc, const void* data, size_t len);

}  // namespace upager::internal

#endif  // UPAGER_BACKING_CRC32C_H_
