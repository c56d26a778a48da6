// libFuzzer target: the snapshot file parser on arbitrary bytes, taken as a
// whole file image (ParseSnapshotFileForFuzzing runs the checks
// SnapshotFileReader::Open makes, on memory instead of a file).
//
// Each input is parsed twice: as given, and resealed, with the header,
// metadata and footer checksums recomputed wherever the (mutated) header
// says those parts are. Without the second pass nearly every mutation
// stops at a checksum, and the checks behind the checksums (sizes,
// offsets, counts, extents) would only ever see the seed files.
//
// Contract, beyond no crash, no leak and no undefined behavior:
// - a rejection is DataLoss (damage, truncation), InvalidArgument (not a
//   snapshot file, another format version) or ResourceExhausted, and its
//   message names the file;
// - an accepted file encodes back to the same header, metadata and footer
//   bytes (snapshot_format's Encode*): the decoder keeps every field;
// - its page lookups (Kind, Crc, FindExtent) agree with a walk over the
//   extents.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "backing/crc32c.h"
#include "backing/snapshot_file.h"
#include "backing/snapshot_format.h"
#include "tests/fuzz/fuzz_check.h"

namespace upager::fuzz {
namespace {

using internal::ExtentKind;
using internal::PageKind;
using internal::SnapshotExtent;
using internal::SnapshotFileInfo;
using internal::SnapshotIndex;
using internal::SnapshotKind;
namespace fmt = internal::snapshot_format;

// The label ParseSnapshotFileForFuzzing gives the in-memory file.
constexpr char kLabel[] = "<fuzz input>";

// Header and footer offsets (snapshot_file.h, FORMAT) the reseal needs.
constexpr size_t kHeaderLengthOff = 12;
constexpr size_t kMetadataOffsetOff = 96;
constexpr size_t kMetadataLengthOff = 104;
constexpr size_t kFooterMetadataCrcOff = 12;
constexpr size_t kFooterCrcOff = 60;

uint64_t Get(const std::vector<uint8_t>& b, size_t off, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[off + i];
  return v;
}
void Put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

// Recomputes the metadata, footer and header CRCs where the header places
// them, when it places them inside the input. Metadata first: the header
// CRC must be last in case a mutated header points the metadata into it.
void Reseal(std::vector<uint8_t>& b) {
  if (b.size() < fmt::kFixedHeaderBytes) return;
  const uint64_t meta = Get(b, kMetadataOffsetOff, 8);
  const uint64_t meta_len = Get(b, kMetadataLengthOff, 8);
  if (meta_len >= 4 && meta <= b.size() && meta_len <= b.size() - meta &&
      fmt::kFooterBytes <= b.size() - meta - meta_len) {
    const uint32_t crc = internal::Crc32c(b.data() + meta, meta_len - 4);
    Put32(b, meta + meta_len - 4, crc);
    const size_t footer = meta + meta_len;
    Put32(b, footer + kFooterMetadataCrcOff, crc);
    Put32(b, footer + kFooterCrcOff,
          internal::Crc32c(b.data() + footer, kFooterCrcOff));
  }
  const uint64_t header_len = Get(b, kHeaderLengthOff, 4);
  if (header_len >= fmt::kFixedHeaderBytes &&
      header_len <= std::min(b.size(), fmt::kMaxHeaderBytes)) {
    Put32(b, fmt::kHeaderCrcOffset, 0);
    Put32(b, fmt::kHeaderCrcOffset, internal::Crc32c(b.data(), header_len));
  }
}

std::string Hex(absl::Span<const std::byte> b, size_t at) {
  std::string s;
  for (size_t i = at; i < std::min(b.size(), at + 16); ++i) {
    absl::StrAppend(&s, absl::Hex(std::to_integer<unsigned>(b[i]),
                                  absl::kZeroPad2));
  }
  return s;
}

// Encoding `want` must give exactly the input's `got`.
void CheckSameBytes(const char* what, absl::Span<const std::byte> want,
                    absl::Span<const std::byte> got) {
  UPAGER_FUZZ_CHECK(want.size() == got.size(),
                    absl::StrCat(what, ": re-encoded to ", want.size(),
                                 " bytes, the input has ", got.size()));
  const auto diff = std::mismatch(want.begin(), want.end(), got.begin());
  const size_t at = diff.first - want.begin();
  UPAGER_FUZZ_CHECK(at == want.size(),
                    absl::StrCat(what, ": re-encoded bytes differ at ", at,
                                 ": ", Hex(want, at), " vs the input's ",
                                 Hex(got, at)));
}

// Kind, Crc and FindExtent at every extent's edges and the region's ends,
// against one ordered walk over the (validated: sorted, disjoint) extents.
void CheckLookups(const SnapshotFileInfo& info, const SnapshotIndex& index) {
  const auto extents = index.extents();
  std::vector<uint64_t> pages = {0, info.page_count - 1, info.page_count,
                                 info.page_count + 1, ~uint64_t{0}};
  for (const SnapshotExtent& e : extents) {
    pages.insert(pages.end(), {e.first_page - 1, e.first_page,
                               e.end_page() - 1, e.end_page()});
  }
  std::sort(pages.begin(), pages.end());
  pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
  size_t i = 0;       // first extent not wholly below the page
  uint64_t crcs = 0;  // DATA pages in extents before extents[i]
  for (uint64_t p : pages) {
    for (; i < extents.size() && extents[i].end_page() <= p; ++i) {
      if (extents[i].kind == ExtentKind::kData) crcs += extents[i].count;
    }
    const bool in = i < extents.size() && extents[i].first_page <= p;
    int64_t want_extent = in ? static_cast<int64_t>(i) : -1;
    PageKind want_kind = info.kind == SnapshotKind::kDelta ? PageKind::kInherit
                                                           : PageKind::kZero;
    uint32_t want_crc = 0;
    if (in && extents[i].kind == ExtentKind::kData) {
      want_kind = PageKind::kData;
      want_crc = index.crcs()[crcs + (p - extents[i].first_page)];
    } else if (in) {
      want_kind = PageKind::kZero;
    }
    if (p >= info.page_count) want_kind = PageKind::kZero;
    UPAGER_FUZZ_CHECK(index.FindExtent(p) == want_extent,
                      absl::StrCat("FindExtent(", p, ") = ",
                                   index.FindExtent(p), ", expected ",
                                   want_extent));
    UPAGER_FUZZ_CHECK(index.Kind(p) == want_kind,
                      absl::StrCat("Kind(", p, ") = ",
                                   static_cast<int>(index.Kind(p)),
                                   ", expected ", static_cast<int>(want_kind)));
    UPAGER_FUZZ_CHECK(index.Crc(p) == want_crc,
                      absl::StrCat("Crc(", p, ") = ", index.Crc(p),
                                   ", expected ", want_crc));
  }
}

void ParseOne(absl::Span<const uint8_t> input) {
  const absl::Status s = internal::ParseSnapshotFileForFuzzing(input);
  if (!s.ok()) {
    UPAGER_FUZZ_CHECK(absl::IsDataLoss(s) || absl::IsInvalidArgument(s) ||
                          absl::IsResourceExhausted(s),
                      s.ToString());
    UPAGER_FUZZ_CHECK(absl::StrContains(s.message(), kLabel), s.ToString());
    return;
  }
  // Accepted: decode again through the same steps to see what was kept.
  const absl::Span<const std::byte> b(
      reinterpret_cast<const std::byte*>(input.data()), input.size());
  absl::StatusOr<SnapshotFileInfo> info = fmt::DecodeHeader(
      b.first(std::min(b.size(), fmt::kMaxHeaderBytes)), kLabel);
  UPAGER_FUZZ_CHECK(info.ok(), info.status().ToString());
  absl::StatusOr<SnapshotIndex> index = fmt::DecodeMetadataAndFooter(
      *info, b.subspan(info->metadata_offset), kLabel);
  UPAGER_FUZZ_CHECK(index.ok(), index.status().ToString());
  UPAGER_FUZZ_CHECK(b.size() == info->file_size,
                    absl::StrCat("accepted ", b.size(), " bytes, file_size ",
                                 info->file_size));

  const std::vector<std::byte> header = fmt::EncodeHeader(*info);
  CheckSameBytes("header", header, b.first(std::min(b.size(), header.size())));
  const std::vector<std::byte> meta =
      fmt::EncodeMetadataAndFooter(*info, index->extents(), index->crcs());
  CheckSameBytes("metadata and footer", meta, b.subspan(info->metadata_offset));
  CheckLookups(*info, *index);
}

}  // namespace
}  // namespace upager::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::Span<const uint8_t> input(data, size);
  upager::fuzz::ParseOne(input);
  std::vector<uint8_t> resealed(input.begin(), input.end());
  upager::fuzz::Reseal(resealed);
  if (!std::equal(resealed.begin(), resealed.end(), input.begin())) {
    upager::fuzz::ParseOne(resealed);
  }
  return 0;
}
