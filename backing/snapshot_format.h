// The snapshot file format's bytes (layout documented in snapshot_file.h):
// encoding and validating the header, metadata and footer, and the path
// rules for a delta's base. Pure functions over byte spans, no system
// calls, so the writer, the reader and the fuzzing entry point share one
// set of checks.
//
// Every Decode/Check status names the file (`path`, which may be any label
// for in-memory images) and the offending values. Structural damage and
// truncation are DataLoss; a file that is not a snapshot (magic) or has
// another format version is InvalidArgument.
//
// Thread-safety: all functions are pure and thread-safe.
#ifndef UPAGER_BACKING_SNAPSHOT_FORMAT_H_
#define UPAGER_BACKING_SNAPSHOT_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "backing/snapshot_file.h"

namespace upager::internal::snapshot_format {

inline constexpr absl::string_view kHeaderMagic = "UPGRSNAP";
inline constexpr absl::string_view kMetadataMagic = "UPGRMETA";
inline constexpr absl::string_view kFooterMagic = "UPGRFOOT";

inline constexpr size_t kFixedHeaderBytes = 136;
inline constexpr size_t kHeaderCrcOffset = 132;
// The header with its base name fits in the smallest page size, so one
// read of this many bytes at offset 0 always holds it.
inline constexpr size_t kMaxHeaderBytes = 4096;
inline constexpr size_t kMaxBaseNameBytes = kMaxHeaderBytes - kFixedHeaderBytes;
inline constexpr size_t kMetadataPrefixBytes = 24;
inline constexpr size_t kExtentBytes = 16;
inline constexpr size_t kFooterBytes = 64;

inline constexpr uint64_t kMinPageSize = 4096;
inline constexpr uint64_t kMaxPageSize = uint64_t{1} << 30;
// Every offset and size in a file stays below this, so sums of two of them
// cannot overflow and every offset fits in off_t.
inline constexpr uint64_t kMaxFileBytes = uint64_t{1} << 62;

// Whether `page_size` is one a file may have.
bool ValidPageSize(uint64_t page_size);

// Sets info->data_offset, metadata_offset, metadata_length and file_size
// from page_size, page_count, extent_count and data_pages (the layout a
// writer produces: data right after the header page, metadata right after
// the data area). InvalidArgument when the file would exceed kMaxFileBytes.
absl::Status ComputeLayout(SnapshotFileInfo* info);

// The header's first info.header_length bytes (136 + base name), with
// header_crc computed (the value is also stored in *header_crc if given).
std::vector<std::byte> EncodeHeader(const SnapshotFileInfo& info,
                                    uint32_t* header_crc = nullptr);
// Metadata followed by the footer: metadata_length + kFooterBytes bytes.
std::vector<std::byte> EncodeMetadataAndFooter(
    const SnapshotFileInfo& info, absl::Span<const SnapshotExtent> extents,
    absl::Span<const uint32_t> crcs);

// Parses and checks a header from the file's first bytes (`bytes` may be
// shorter than kMaxHeaderBytes when the file is): magic, version, CRC, and
// every field against the others.
absl::StatusOr<SnapshotFileInfo> DecodeHeader(absl::Span<const std::byte> bytes,
                                              const std::string& path);
// The file's actual size against the header's file_size (truncation).
absl::Status CheckFileSize(const SnapshotFileInfo& info, uint64_t actual,
                           const std::string& path);
// Checks the footer (`bytes`: the file's last kFooterBytes, from
// metadata_offset + metadata_length) against the header: magic, its CRC,
// and its copies of the header's fields. Needs a header DecodeHeader
// accepted. Cheap, so a reader runs it before allocating the metadata.
absl::Status CheckFooter(const SnapshotFileInfo& info,
                         absl::Span<const std::byte> bytes,
                         const std::string& path);
// Parses and checks the metadata and footer (CheckFooter first): `bytes`
// is the file's [metadata_offset, file_size). Needs a header DecodeHeader
// accepted.
absl::StatusOr<SnapshotIndex> DecodeMetadataAndFooter(
    const SnapshotFileInfo& info, absl::Span<const std::byte> bytes,
    const std::string& path);

// The base name a delta at `delta_path` records for the base at
// `base_path`: relative to the delta's directory when the base lies in it
// or below it (so the pair can be moved together), absolute otherwise.
// `cwd` (absolute) resolves relative arguments. Lexical: symbolic links are
// not followed, and ".." is only ever removed from absolute paths.
std::string BaseNameForDelta(const std::string& delta_path,
                             const std::string& base_path,
                             const std::string& cwd);

}  // namespace upager::internal::snapshot_format

#endif  // UPAGER_BACKING_SNAPSHOT_FORMAT_H_
