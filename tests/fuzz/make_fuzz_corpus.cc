// Writes the snapshot_file_fuzzer seeds into the directory given as the only
// argument, and checks that ParseSnapshotFileForFuzzing gives each the
// verdict listed below. The committed seeds (tests/fuzz/corpus/
// snapshot_file/) were made by
//   build/bin/make_fuzz_corpus tests/fuzz/corpus/snapshot_file
// and the suite runs it into the build tree (FuzzCorpus.Generate), so the
// generator keeps working as the writer changes. Files are kept tiny (a
// few pages of 4 KiB) because the fuzzer's input is the whole file.
//
// Written by SnapshotFileWriter (page p's bytes are all p + 1):
//   full.snap         FULL, 3 pages: DATA 0..1, page 2 zero by omission
//   zero_runs.snap    FULL, 4 pages: DATA 0, ZERO 1..2, DATA 3
//   sparse.snap       FULL, 4 pages: DATA 3 only (the rest holes)
//   all_zero.snap     FULL, 1 page, no extents
//   delta.snap        DELTA on full.snap: DATA 1, ZERO 2 (page 0 inherited)
//   delta_empty.snap  DELTA on full.snap, no extents (all inherited)
//   page_8k.snap      FULL, one 8 KiB page, DATA
// Damaged copies (each refused):
//   truncated_footer.snap  full.snap without its footer
//   truncated_header.snap  its first 100 bytes
//   header_page.snap       its header page only
//   trailing_byte.snap     full.snap and one byte more
//   bad_header_crc.snap    page_count changed, header CRC left stale
//   bad_metadata_crc.snap  an extent byte flipped, metadata CRC left stale
//   version2.snap          format version 2, header CRC resealed
//   empty_extent.snap      an extent's count set to 0, metadata resealed
//   overlap.snap           delta.snap's extents overlapping, resealed
//   not_snapshot.snap      text
//   empty.snap             no bytes
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "backing/crc32c.h"
#include "backing/snapshot_file.h"
#include "backing/snapshot_format.h"
#include "tests/backing/snapshot_file_maker.h"

namespace upager::internal {
namespace {

namespace fs = std::filesystem;
namespace fmt = snapshot_format;

using test_files::Bytes;
using test_files::ReadAll;
using test_files::WriteAll;

// Page p's bytes are all p + 1.
absl::Status Write(const std::string& path, size_t page_size,
                   uint64_t page_count, const std::string& base,
                   const std::vector<test_files::PageRun>& runs) {
  return test_files::WriteSnapshot(path, page_size, page_count, base, runs, 1);
}

// Header and footer offsets (snapshot_file.h, FORMAT).
constexpr size_t kVersionOff = 8;
constexpr size_t kHeaderLengthOff = 12;
constexpr size_t kPageCountOff = 24;
constexpr size_t kFooterMetadataCrcOff = 12;
constexpr size_t kFooterCrcOff = 60;

uint64_t Get(const Bytes& b, size_t off, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[off + i];
  return v;
}
void Put32(Bytes& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(Bytes& b, size_t off, uint64_t v) {
  Put32(b, off, static_cast<uint32_t>(v));
  Put32(b, off + 4, static_cast<uint32_t>(v >> 32));
}

void ResealHeader(Bytes& b) {
  Put32(b, fmt::kHeaderCrcOffset, 0);
  Put32(b, fmt::kHeaderCrcOffset,
        Crc32c(b.data(), Get(b, kHeaderLengthOff, 4)));
}

// Recomputes the metadata CRC and the footer's copy of it and its own.
void ResealMetadata(Bytes& b, const SnapshotFileInfo& info) {
  const size_t meta = info.metadata_offset;
  const size_t len = info.metadata_length;
  const uint32_t crc = Crc32c(b.data() + meta, len - 4);
  Put32(b, meta + len - 4, crc);
  Put32(b, meta + len + kFooterMetadataCrcOff, crc);
  Put32(b, meta + len + kFooterCrcOff,
        Crc32c(b.data() + meta + len, kFooterCrcOff));
}

int Main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <directory>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  fs::create_directories(dir);
  const auto at = [&dir](const std::string& name) {
    return absl::StrCat(dir, "/", name);
  };
  const std::vector<std::pair<std::string, absl::Status>> written = {
      {"full.snap", Write(at("full.snap"), 4096, 3, "", {{0, 2, false}})},
      {"zero_runs.snap",
       Write(at("zero_runs.snap"), 4096, 4, "",
             {{0, 1, false}, {1, 2, true}, {3, 1, false}})},
      {"sparse.snap", Write(at("sparse.snap"), 4096, 4, "", {{3, 1, false}})},
      {"all_zero.snap", Write(at("all_zero.snap"), 4096, 1, "", {})},
      {"delta.snap", Write(at("delta.snap"), 4096, 3, at("full.snap"),
                           {{1, 1, false}, {2, 1, true}})},
      {"delta_empty.snap",
       Write(at("delta_empty.snap"), 4096, 3, at("full.snap"), {})},
      {"page_8k.snap", Write(at("page_8k.snap"), 8192, 1, "", {{0, 1, false}})},
  };
  for (const auto& [name, s] : written) {
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), s.ToString().c_str());
      return 1;
    }
  }

  const Bytes full = ReadAll(at("full.snap"));
  const Bytes delta = ReadAll(at("delta.snap"));
  auto info_of = [](const Bytes& b) {
    return fmt::DecodeHeader(
        absl::MakeConstSpan(reinterpret_cast<const std::byte*>(b.data()),
                            std::min(b.size(), fmt::kMaxHeaderBytes)),
        "seed");
  };
  const absl::StatusOr<SnapshotFileInfo> fi = info_of(full);
  const absl::StatusOr<SnapshotFileInfo> di = info_of(delta);
  if (!fi.ok() || !di.ok()) {
    std::fprintf(stderr, "cannot decode the seeds' headers\n");
    return 1;
  }
  std::vector<std::pair<std::string, Bytes>> damaged;
  damaged.push_back({"truncated_footer.snap",
                     Bytes(full.begin(), full.end() - fmt::kFooterBytes)});
  damaged.push_back({"truncated_header.snap",
                     Bytes(full.begin(), full.begin() + 100)});
  damaged.push_back({"header_page.snap",
                     Bytes(full.begin(), full.begin() + fi->page_size)});
  Bytes b = full;
  b.push_back(0);
  damaged.push_back({"trailing_byte.snap", b});
  b = full;
  Put64(b, kPageCountOff, fi->page_count + 1);
  damaged.push_back({"bad_header_crc.snap", b});
  b = full;
  b[fi->metadata_offset + fmt::kMetadataPrefixBytes] ^= 0x01;
  damaged.push_back({"bad_metadata_crc.snap", b});
  b = full;
  Put32(b, kVersionOff, 2);
  ResealHeader(b);
  damaged.push_back({"version2.snap", b});
  b = full;
  Put32(b, fi->metadata_offset + fmt::kMetadataPrefixBytes + 8, 0);
  ResealMetadata(b, *fi);
  damaged.push_back({"empty_extent.snap", b});
  // The second extent (ZERO 2) starts at page 1, inside the first.
  b = delta;
  Put64(b, di->metadata_offset + fmt::kMetadataPrefixBytes + fmt::kExtentBytes,
        1);
  ResealMetadata(b, *di);
  damaged.push_back({"overlap.snap", b});
  const std::string text = "this is not a snapshot file\n";
  damaged.push_back({"not_snapshot.snap", Bytes(text.begin(), text.end())});
  damaged.push_back({"empty.snap", {}});
  for (const auto& [name, bytes] : damaged) {
    if (!WriteAll(at(name), bytes)) {
      std::fprintf(stderr, "writing '%s' failed\n", at(name).c_str());
      return 1;
    }
  }

  // Every seed gets the verdict it was made for.
  bool ok = true;
  auto expect = [&](const std::string& name, absl::StatusCode code) {
    const Bytes bytes = ReadAll(at(name));
    const absl::Status s = ParseSnapshotFileForFuzzing(bytes);
    if (s.code() != code) {
      std::fprintf(stderr, "%s: %s, expected %s\n", name.c_str(),
                   s.ToString().c_str(),
                   absl::StatusCodeToString(code).c_str());
      ok = false;
    }
  };
  for (const auto& [name, s] : written) expect(name, absl::StatusCode::kOk);
  for (const auto& [name, bytes] : damaged) {
    const bool foreign = name == "version2.snap" || name == "not_snapshot.snap";
    expect(name, foreign ? absl::StatusCode::kInvalidArgument
                         : absl::StatusCode::kDataLoss);
  }
  if (!ok) return 1;
  std::printf("%zu seeds written to '%s'\n", written.size() + damaged.size(),
              dir.c_str());
  return 0;
}

}  // namespace
}  // namespace upager::internal

int main(int argc, char** argv) { return upager::internal::Main(argc, argv); }
