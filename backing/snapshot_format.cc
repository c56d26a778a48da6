#include "backing/snapshot_format.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <new>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backing/crc32c.h"

namespace upager::internal {

std::string SnapshotIdToString(const SnapshotId& id) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(id.data()), id.size()));
}

std::string ResolveSnapshotBase(const std::string& delta_path,
                                const std::string& base_name) {
  const std::filesystem::path base(base_name);
  if (base.is_absolute()) return base_name;
  const std::filesystem::path dir =
      std::filesystem::path(delta_path).parent_path();
  if (dir.empty()) return base_name;
  return (dir / base).string();
}

namespace snapshot_format {
namespace {

// Little-endian field access at fixed offsets. Callers check bounds first.
uint32_t Get32(absl::Span<const std::byte> b, size_t off) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i)
    v = (v << 8) | std::to_integer<uint32_t>(b[off + i]);
  return v;
}
uint64_t Get64(absl::Span<const std::byte> b, size_t off) {
  return Get32(b, off) | (uint64_t{Get32(b, off + 4)} << 32);
}
void Put32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
void Put64(std::byte* p, uint64_t v) {
  Put32(p, static_cast<uint32_t>(v));
  Put32(p + 4, static_cast<uint32_t>(v >> 32));
}
SnapshotId GetId(absl::Span<const std::byte> b, size_t off) {
  SnapshotId id;
  std::memcpy(id.data(), b.data() + off, id.size());
  return id;
}
bool MagicIs(absl::Span<const std::byte> b, size_t off,
             absl::string_view magic) {
  return std::memcmp(b.data() + off, magic.data(), magic.size()) == 0;
}
std::string Printable(absl::Span<const std::byte> b, size_t off, size_t n) {
  return absl::CHexEscape(
      absl::string_view(reinterpret_cast<const char*>(b.data() + off), n));
}

// Header field offsets (snapshot_file.h, FORMAT).
constexpr size_t kVersionOff = 8;
constexpr size_t kHeaderLengthOff = 12;
constexpr size_t kPageSizeOff = 16;
constexpr size_t kKindOff = 20;
constexpr size_t kPageCountOff = 24;
constexpr size_t kIdOff = 32;
constexpr size_t kBaseIdOff = 48;
constexpr size_t kDataPagesOff = 64;
constexpr size_t kZeroPagesOff = 72;
constexpr size_t kExtentCountOff = 80;
constexpr size_t kDataOffsetOff = 88;
constexpr size_t kMetadataOffsetOff = 96;
constexpr size_t kMetadataLengthOff = 104;
constexpr size_t kFileSizeOff = 112;
constexpr size_t kCreatedOff = 120;
constexpr size_t kBaseNameLengthOff = 128;

// Footer field offsets.
constexpr size_t kFooterVersionOff = 8;
constexpr size_t kFooterMetadataCrcOff = 12;
constexpr size_t kFooterIdOff = 16;
constexpr size_t kFooterMetadataOffsetOff = 32;
constexpr size_t kFooterMetadataLengthOff = 40;
constexpr size_t kFooterFileSizeOff = 48;
constexpr size_t kFooterReservedOff = 56;
constexpr size_t kFooterCrcOff = 60;

// CRC of the header's bytes with the CRC field read as zero.
uint32_t HeaderCrc(absl::Span<const std::byte> header) {
  static constexpr std::byte kZeros[4] = {};
  uint32_t crc = Crc32cExtend(0, header.data(), kHeaderCrcOffset);
  crc = Crc32cExtend(crc, kZeros, sizeof(kZeros));
  return Crc32cExtend(crc, header.data() + kFixedHeaderBytes,
                      header.size() - kFixedHeaderBytes);
}

absl::Status Corrupt(const std::string& path, const std::string& what) {
  return absl::DataLossError(
      absl::StrFormat("snapshot file '%s': %s", path, what));
}

bool IsZeroId(const SnapshotId& id) {
  return std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; });
}

// a * b, or false when it exceeds kMaxFileBytes.
bool MulBounded(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out) && *out <= kMaxFileBytes;
}

// Header fields against each other (the CRC already matched).
absl::Status CheckHeaderFields(const SnapshotFileInfo& h,
                               const std::string& path) {
  if (!ValidPageSize(h.page_size)) {
    return Corrupt(
        path, absl::StrFormat("page_size %d is not a power of two in %d..%d",
                              h.page_size, kMinPageSize, kMaxPageSize));
  }
  if (h.kind != SnapshotKind::kFull && h.kind != SnapshotKind::kDelta) {
    return Corrupt(path, absl::StrFormat("kind %d is neither FULL (1) nor "
                                         "DELTA (2)",
                                         static_cast<uint32_t>(h.kind)));
  }
  uint64_t data_bytes;
  if (h.page_count == 0 ||
      !MulBounded(h.page_count, h.page_size, &data_bytes)) {
    return Corrupt(
        path, absl::StrFormat("page_count %d (page_size %d) is zero or makes "
                              "the data area larger than %d bytes",
                              h.page_count, h.page_size, kMaxFileBytes));
  }
  if (IsZeroId(h.id)) return Corrupt(path, "snapshot id is zero");
  if (h.kind == SnapshotKind::kFull) {
    if (!h.base_name.empty() || !IsZeroId(h.base_id)) {
      return Corrupt(path, "a FULL file names a base");
    }
  } else if (h.base_name.empty() || IsZeroId(h.base_id)) {
    return Corrupt(path, "a DELTA file names no base");
  }
  if (h.base_name.find('\0') != std::string::npos) {
    return Corrupt(path, "base name contains a NUL byte");
  }
  if (h.data_pages > h.page_count ||
      h.zero_pages > h.page_count - h.data_pages ||
      h.extent_count > h.data_pages + h.zero_pages) {
    return Corrupt(
        path, absl::StrFormat("counts do not fit the region: data_pages %d, "
                              "zero_pages %d, extent_count %d, page_count %d",
                              h.data_pages, h.zero_pages, h.extent_count,
                              h.page_count));
  }
  if (h.data_offset < h.page_size || h.data_offset % h.page_size != 0 ||
      h.data_offset > kMaxFileBytes) {
    return Corrupt(
        path, absl::StrFormat("data_offset %d is not a multiple of page_size "
                              "%d past the header page",
                              h.data_offset, h.page_size));
  }
  const uint64_t data_end = h.data_offset + data_bytes;  // < 2^63
  if (h.metadata_offset < data_end || h.metadata_offset % h.page_size != 0 ||
      h.metadata_offset > kMaxFileBytes) {
    return Corrupt(
        path, absl::StrFormat("metadata_offset %d is not a multiple of "
                              "page_size %d at or after the data area's end %d",
                              h.metadata_offset, h.page_size, data_end));
  }
  SnapshotFileInfo expect = h;
  if (!ComputeLayout(&expect).ok()) {
    return Corrupt(path, "the metadata would exceed the largest file size");
  }
  if (h.metadata_length != expect.metadata_length) {
    return Corrupt(
        path, absl::StrFormat("metadata_length %d, but %d extents and %d data "
                              "pages need %d",
                              h.metadata_length, h.extent_count, h.data_pages,
                              expect.metadata_length));
  }
  const uint64_t end = h.metadata_offset + h.metadata_length;  // < 2^63
  if (end > kMaxFileBytes || h.file_size != end + kFooterBytes) {
    return Corrupt(
        path, absl::StrFormat("file_size %d, but metadata at %d of %d bytes "
                              "and the footer need %d",
                              h.file_size, h.metadata_offset, h.metadata_length,
                              end + kFooterBytes));
  }
  return absl::OkStatus();
}

}  // namespace

bool ValidPageSize(uint64_t page_size) {
  return page_size >= kMinPageSize && page_size <= kMaxPageSize &&
         (page_size & (page_size - 1)) == 0;
}

absl::Status ComputeLayout(SnapshotFileInfo* info) {
  uint64_t data_bytes, extent_bytes, crc_bytes;
  if (!MulBounded(info->page_count, info->page_size, &data_bytes) ||
      !MulBounded(info->extent_count, kExtentBytes, &extent_bytes) ||
      !MulBounded(info->data_pages, 4, &crc_bytes)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a snapshot of %d pages of %d bytes with %d extents and %d data "
        "pages exceeds the largest file (%d bytes)",
        info->page_count, info->page_size, info->extent_count, info->data_pages,
        kMaxFileBytes));
  }
  info->data_offset = info->page_size;
  info->metadata_offset = info->data_offset + data_bytes;
  info->metadata_length = kMetadataPrefixBytes + extent_bytes + crc_bytes + 4;
  // Each term is at most 2^62, so the sums below cannot wrap.
  const uint64_t end = info->metadata_offset + info->metadata_length;
  if (info->metadata_offset > kMaxFileBytes || end > kMaxFileBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a snapshot of %d pages of %d bytes exceeds the largest file (%d "
        "bytes)",
        info->page_count, info->page_size, kMaxFileBytes));
  }
  info->file_size = end + kFooterBytes;
  return absl::OkStatus();
}

std::vector<std::byte> EncodeHeader(const SnapshotFileInfo& info,
                                    uint32_t* header_crc) {
  std::vector<std::byte> h(kFixedHeaderBytes + info.base_name.size());
  std::byte* p = h.data();
  std::memcpy(p, kHeaderMagic.data(), kHeaderMagic.size());
  Put32(p + kVersionOff, info.version);
  Put32(p + kHeaderLengthOff, static_cast<uint32_t>(h.size()));
  Put32(p + kPageSizeOff, static_cast<uint32_t>(info.page_size));
  Put32(p + kKindOff, static_cast<uint32_t>(info.kind));
  Put64(p + kPageCountOff, info.page_count);
  std::memcpy(p + kIdOff, info.id.data(), info.id.size());
  std::memcpy(p + kBaseIdOff, info.base_id.data(), info.base_id.size());
  Put64(p + kDataPagesOff, info.data_pages);
  Put64(p + kZeroPagesOff, info.zero_pages);
  Put64(p + kExtentCountOff, info.extent_count);
  Put64(p + kDataOffsetOff, info.data_offset);
  Put64(p + kMetadataOffsetOff, info.metadata_offset);
  Put64(p + kMetadataLengthOff, info.metadata_length);
  Put64(p + kFileSizeOff, info.file_size);
  Put64(p + kCreatedOff,
        static_cast<uint64_t>(absl::ToUnixNanos(info.created)));
  Put32(p + kBaseNameLengthOff, static_cast<uint32_t>(info.base_name.size()));
  std::memcpy(p + kFixedHeaderBytes, info.base_name.data(),
              info.base_name.size());
  const uint32_t crc = HeaderCrc(h);
  Put32(p + kHeaderCrcOffset, crc);
  if (header_crc != nullptr) *header_crc = crc;
  return h;
}

std::vector<std::byte> EncodeMetadataAndFooter(
    const SnapshotFileInfo& info, absl::Span<const SnapshotExtent> extents,
    absl::Span<const uint32_t> crcs) {
  std::vector<std::byte> m(info.metadata_length + kFooterBytes);
  std::byte* p = m.data();
  std::memcpy(p, kMetadataMagic.data(), kMetadataMagic.size());
  Put64(p + 8, extents.size());
  Put64(p + 16, crcs.size());
  p += kMetadataPrefixBytes;
  for (const SnapshotExtent& e : extents) {
    Put64(p, e.first_page);
    Put32(p + 8, e.count);
    Put32(p + 12, static_cast<uint32_t>(e.kind));
    p += kExtentBytes;
  }
  for (uint32_t c : crcs) {
    Put32(p, c);
    p += 4;
  }
  const uint32_t metadata_crc = Crc32c(m.data(), info.metadata_length - 4);
  Put32(p, metadata_crc);
  std::byte* f = m.data() + info.metadata_length;
  std::memcpy(f, kFooterMagic.data(), kFooterMagic.size());
  Put32(f + kFooterVersionOff, info.version);
  Put32(f + kFooterMetadataCrcOff, metadata_crc);
  std::memcpy(f + kFooterIdOff, info.id.data(), info.id.size());
  Put64(f + kFooterMetadataOffsetOff, info.metadata_offset);
  Put64(f + kFooterMetadataLengthOff, info.metadata_length);
  Put64(f + kFooterFileSizeOff, info.file_size);
  Put32(f + kFooterReservedOff, 0);
  Put32(f + kFooterCrcOff, Crc32c(f, kFooterCrcOff));
  return m;
}

absl::StatusOr<SnapshotFileInfo> DecodeHeader(absl::Span<const std::byte> b,
                                              const std::string& path) {
  // Magic and version come before the CRC: a file that is not ours, or is
  // from another version (whose header may be laid out differently), gets
  // that reason rather than "checksum mismatch".
  if (b.size() < kHeaderMagic.size() + 4) {
    return Corrupt(
        path, absl::StrFormat("truncated: the file has %d bytes, a snapshot "
                              "header needs at least %d",
                              b.size(), kFixedHeaderBytes));
  }
  if (!MagicIs(b, 0, kHeaderMagic)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "'%s' is not a snapshot file: magic \"%s\", expected \"%s\"", path,
        Printable(b, 0, kHeaderMagic.size()), kHeaderMagic));
  }
  SnapshotFileInfo h;
  h.version = Get32(b, kVersionOff);
  if (h.version != kSnapshotFormatVersion) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s' has format version %d; this build reads version "
        "%d only",
        path, h.version, kSnapshotFormatVersion));
  }
  if (b.size() < kFixedHeaderBytes) {
    return Corrupt(
        path, absl::StrFormat("truncated: the file has %d bytes, the header "
                              "needs %d",
                              b.size(), kFixedHeaderBytes));
  }
  const uint32_t header_length = Get32(b, kHeaderLengthOff);
  const uint32_t name_length = Get32(b, kBaseNameLengthOff);
  if (header_length < kFixedHeaderBytes || header_length > kMaxHeaderBytes ||
      header_length - kFixedHeaderBytes != name_length) {
    return Corrupt(
        path, absl::StrFormat("header_length %d does not match base name "
                              "length %d (%d + name, at most %d)",
                              header_length, name_length, kFixedHeaderBytes,
                              kMaxHeaderBytes));
  }
  if (b.size() < header_length) {
    return Corrupt(
        path, absl::StrFormat("truncated: the file has %d bytes, the header "
                              "needs %d",
                              b.size(), header_length));
  }
  const auto header = b.first(header_length);
  h.header_crc = Get32(header, kHeaderCrcOffset);
  if (const uint32_t crc = HeaderCrc(header); crc != h.header_crc) {
    return Corrupt(path,
                   absl::StrFormat("header checksum mismatch (stored 0x%08x, "
                                   "computed 0x%08x)",
                                   h.header_crc, crc));
  }
  h.page_size = Get32(b, kPageSizeOff);
  h.kind = static_cast<SnapshotKind>(Get32(b, kKindOff));
  h.page_count = Get64(b, kPageCountOff);
  h.id = GetId(b, kIdOff);
  h.base_id = GetId(b, kBaseIdOff);
  h.data_pages = Get64(b, kDataPagesOff);
  h.zero_pages = Get64(b, kZeroPagesOff);
  h.extent_count = Get64(b, kExtentCountOff);
  h.data_offset = Get64(b, kDataOffsetOff);
  h.metadata_offset = Get64(b, kMetadataOffsetOff);
  h.metadata_length = Get64(b, kMetadataLengthOff);
  h.file_size = Get64(b, kFileSizeOff);
  h.created = absl::FromUnixNanos(static_cast<int64_t>(Get64(b, kCreatedOff)));
  h.base_name.assign(
      reinterpret_cast<const char*>(b.data()) + kFixedHeaderBytes, name_length);
  if (absl::Status s = CheckHeaderFields(h, path); !s.ok()) return s;
  return h;
}

absl::Status CheckFileSize(const SnapshotFileInfo& info, uint64_t actual,
                           const std::string& path) {
  if (actual < info.file_size) {
    return Corrupt(
        path, absl::StrFormat("truncated: the header records %d bytes, the "
                              "file has %d",
                              info.file_size, actual));
  }
  if (actual > info.file_size) {
    return Corrupt(
        path, absl::StrFormat("the header records %d bytes, the file has %d "
                              "(%d unexpected bytes after the footer)",
                              info.file_size, actual, actual - info.file_size));
  }
  return absl::OkStatus();
}

absl::Status CheckFooter(const SnapshotFileInfo& info,
                         absl::Span<const std::byte> f,
                         const std::string& path) {
  const uint64_t footer_offset = info.metadata_offset + info.metadata_length;
  if (f.size() != kFooterBytes) {
    return Corrupt(
        path, absl::StrFormat("truncated: the footer needs %d bytes from "
                              "offset %d, %d were read",
                              kFooterBytes, footer_offset, f.size()));
  }
  if (!MagicIs(f, 0, kFooterMagic)) {
    return Corrupt(
        path,
        absl::StrFormat("no footer at offset %d (magic \"%s\", expected "
                        "\"%s\"): the file was not completely written",
                        footer_offset, Printable(f, 0, kFooterMagic.size()),
                        kFooterMagic));
  }
  if (const uint32_t stored = Get32(f, kFooterCrcOff),
      computed = Crc32c(f.data(), kFooterCrcOff);
      stored != computed) {
    return Corrupt(
        path, absl::StrFormat("footer checksum mismatch at offset %d (stored "
                              "0x%08x, computed 0x%08x)",
                              footer_offset, stored, computed));
  }
  if (Get32(f, kFooterVersionOff) != info.version ||
      GetId(f, kFooterIdOff) != info.id ||
      Get64(f, kFooterMetadataOffsetOff) != info.metadata_offset ||
      Get64(f, kFooterMetadataLengthOff) != info.metadata_length ||
      Get64(f, kFooterFileSizeOff) != info.file_size ||
      Get32(f, kFooterReservedOff) != 0) {
    return Corrupt(
        path, absl::StrFormat("the footer (version %d, id %s, metadata %d+%d, "
                              "file_size %d) does not match the header "
                              "(version %d, id %s, metadata %d+%d, "
                              "file_size %d)",
                              Get32(f, kFooterVersionOff),
                              SnapshotIdToString(GetId(f, kFooterIdOff)),
                              Get64(f, kFooterMetadataOffsetOff),
                              Get64(f, kFooterMetadataLengthOff),
                              Get64(f, kFooterFileSizeOff), info.version,
                              SnapshotIdToString(info.id), info.metadata_offset,
                              info.metadata_length, info.file_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotIndex> DecodeMetadataAndFooter(
    const SnapshotFileInfo& info, absl::Span<const std::byte> b,
    const std::string& path) {
  if (b.size() != info.metadata_length + kFooterBytes) {
    return Corrupt(
        path, absl::StrFormat("truncated: metadata and footer need %d bytes "
                              "from offset %d, %d were read",
                              info.metadata_length + kFooterBytes,
                              info.metadata_offset, b.size()));
  }
  // The footer first: it is written with the metadata, so without it the
  // rest of the metadata cannot be trusted either.
  const auto f = b.subspan(info.metadata_length);
  if (absl::Status s = CheckFooter(info, f, path); !s.ok()) return s;
  const auto m = b.first(info.metadata_length);
  const uint32_t stored = Get32(m, m.size() - 4);
  if (const uint32_t computed = Crc32c(m.data(), m.size() - 4);
      stored != computed || stored != Get32(f, kFooterMetadataCrcOff)) {
    return Corrupt(
        path, absl::StrFormat("metadata checksum mismatch at offset %d (stored "
                              "0x%08x, footer 0x%08x, computed 0x%08x)",
                              info.metadata_offset, stored,
                              Get32(f, kFooterMetadataCrcOff), computed));
  }
  if (!MagicIs(m, 0, kMetadataMagic) || Get64(m, 8) != info.extent_count ||
      Get64(m, 16) != info.data_pages) {
    return Corrupt(
        path,
        absl::StrFormat("metadata at offset %d (magic \"%s\", %d extents, "
                        "%d data pages) does not match the header (%d "
                        "extents, %d data pages)",
                        info.metadata_offset,
                        Printable(m, 0, kMetadataMagic.size()), Get64(m, 8),
                        Get64(m, 16), info.extent_count, info.data_pages));
  }
  std::vector<SnapshotExtent> extents;
  std::vector<uint32_t> crcs;
  // The sizes were checked against the bytes actually present, but those
  // can be many (a sparse file may claim terabytes of metadata): running
  // out of memory is a status, not a crash.
  try {
    extents.reserve(info.extent_count);
    crcs.reserve(info.data_pages);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "snapshot file '%s': no memory for %d extents and %d page checksums",
        path, info.extent_count, info.data_pages));
  }
  uint64_t end = 0, data = 0, zero = 0;
  size_t off = kMetadataPrefixBytes;
  for (uint64_t i = 0; i < info.extent_count; ++i, off += kExtentBytes) {
    SnapshotExtent e;
    e.first_page = Get64(m, off);
    e.count = Get32(m, off + 8);
    const uint32_t kind = Get32(m, off + 12);
    e.kind = static_cast<ExtentKind>(kind);
    if (kind != static_cast<uint32_t>(ExtentKind::kZero) &&
        kind != static_cast<uint32_t>(ExtentKind::kData)) {
      return Corrupt(
          path, absl::StrFormat("extent %d: kind %d is neither ZERO (1) nor "
                                "DATA (2)",
                                i, kind));
    }
    if (e.count == 0 || e.first_page < end || e.first_page > info.page_count ||
        e.count > info.page_count - e.first_page) {
      return Corrupt(path, absl::StrFormat(
                               "extent %d: pages [%d, +%d) are empty, overlap "
                               "or precede the previous extent (ending at "
                               "%d), or pass page_count %d",
                               i, e.first_page, e.count, end, info.page_count));
    }
    end = e.end_page();
    (e.kind == ExtentKind::kData ? data : zero) += e.count;
    extents.push_back(e);
  }
  if (data != info.data_pages || zero != info.zero_pages) {
    return Corrupt(
        path, absl::StrFormat("the extents hold %d data and %d zero pages, the "
                              "header says %d and %d",
                              data, zero, info.data_pages, info.zero_pages));
  }
  for (uint64_t i = 0; i < info.data_pages; ++i, off += 4) {
    crcs.push_back(Get32(m, off));
  }
  return SnapshotIndex(info.kind, info.page_count, std::move(extents),
                       std::move(crcs));
}

std::string BaseNameForDelta(const std::string& delta_path,
                             const std::string& base_path,
                             const std::string& cwd) {
  namespace fs = std::filesystem;
  auto absolute = [&cwd](const fs::path& p) {
    return (p.is_absolute() ? p : fs::path(cwd) / p).lexically_normal();
  };
  const fs::path base = absolute(base_path);
  const fs::path dir = absolute(delta_path).parent_path();
  const fs::path rel = base.lexically_relative(dir);
  // A ".." would walk out of the delta's directory: where it lands depends
  // on symbolic links, so such a base is recorded by its absolute path.
  bool inside = !rel.empty() && rel != ".";
  for (const fs::path& part : rel) {
    if (part == "..") inside = false;
  }
  return inside ? rel.string() : base.string();
}

}  // namespace snapshot_format
}  // namespace upager::internal
