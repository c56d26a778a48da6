// Writes the snapshot files the `upager snapshot ...` tests run on, into
// the directory given as the only argument (created if missing):
//
//   full.snap          FULL, 64 pages of 4 KiB: DATA 0..19 and 30..39
//                      (30 pages), the rest zero
//   delta.snap         DELTA on full.snap: DATA 5..9 and 50..52, ZERO
//                      30..31 (8 data pages, 2 zero)
//   corrupt.snap       full.snap with one byte of page 17's data flipped
//   bad/full.snap      corrupt.snap, and bad/delta.snap a copy of
//                      delta.snap: a good delta over a corrupt base
//   truncated.snap     full.snap without its last 100 bytes (the footer)
//   version2.snap      full.snap with format version 2, header CRC resealed
//                      (so the version check is what refuses it)
//   bad_header.snap    full.snap with page_count changed, CRC not resealed
//   bad_metadata.snap  full.snap with one byte of the extent table flipped
//   not_snapshot.snap  text
//   orphan.snap        DELTA whose base (orphan_base.snap) was removed
//
// Page p's bytes are all (p + 1) in full.snap, (p + 101) in delta.snap.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "backing/crc32c.h"
#include "backing/snapshot_file.h"
#include "backing/snapshot_format.h"
#include "tests/backing/snapshot_file_maker.h"

namespace upager::internal {
namespace {

namespace fs = std::filesystem;
namespace fmt = snapshot_format;

constexpr size_t kPage = 4096;
constexpr uint64_t kPages = 64;
// Header field offsets (snapshot_file.h, FORMAT).
constexpr uint64_t kVersionOffset = 8;
constexpr uint64_t kPageCountOffset = 24;

using test_files::Bytes;
using test_files::ReadAll;
using test_files::WriteAll;

absl::Status Write(const std::string& path, const std::string& base,
                   const std::vector<test_files::PageRun>& runs, int fill) {
  return test_files::WriteSnapshot(path, kPage, kPages, base, runs, fill);
}

void Put32(Bytes& b, uint64_t offset, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    b[offset + i] = static_cast<uint8_t>(v >> (8 * i));
  }
}

uint32_t Get32(const Bytes& b, uint64_t offset) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= uint32_t{b[offset + i]} << (8 * i);
  }
  return v;
}

// Recomputes the header CRC over [0, header_length) with its own four
// bytes taken as zero.
void ResealHeader(Bytes& b) {
  const uint32_t header_length = Get32(b, 12);
  Put32(b, fmt::kHeaderCrcOffset, 0);
  Put32(b, fmt::kHeaderCrcOffset, Crc32c(b.data(), header_length));
}

int Main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <directory>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  fs::remove_all(dir);
  fs::create_directories(dir + "/bad");
  const auto at = [&dir](const std::string& name) {
    return absl::StrCat(dir, "/", name);
  };
  const auto check = [](const absl::Status& s) {
    if (!s.ok()) std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return s.ok();
  };

  if (!check(
          Write(at("full.snap"), "", {{0, 20, false}, {30, 10, false}}, 1)) ||
      !check(Write(at("delta.snap"), at("full.snap"),
                   {{5, 5, false}, {30, 2, true}, {50, 3, false}}, 101)) ||
      !check(Write(at("orphan_base.snap"), "", {{0, 4, false}}, 1)) ||
      !check(Write(at("orphan.snap"), at("orphan_base.snap"), {{1, 1, false}},
                   101))) {
    return 1;
  }
  fs::remove(at("orphan_base.snap"));

  auto full = SnapshotFileReader::Open(at("full.snap"));
  if (!check(full.status())) return 1;
  const SnapshotFileInfo info = (*full)->info();
  const Bytes image = ReadAll(at("full.snap"));
  if (image.size() != info.file_size) {
    std::fprintf(stderr, "read %zu bytes of full.snap, expected %llu\n",
                 image.size(), static_cast<unsigned long long>(info.file_size));
    return 1;
  }

  Bytes b = image;
  b[(*full)->DataOffset(17) + 100] ^= 0x01;
  bool ok = WriteAll(at("corrupt.snap"), b) && WriteAll(at("bad/full.snap"), b);

  b = image;
  b.resize(b.size() - 100);
  ok = ok && WriteAll(at("truncated.snap"), b);

  b = image;
  Put32(b, kVersionOffset, 2);
  ResealHeader(b);
  ok = ok && WriteAll(at("version2.snap"), b);

  b = image;
  Put32(b, kPageCountOffset, kPages + 1);
  ok = ok && WriteAll(at("bad_header.snap"), b);

  b = image;
  // The first extent's count, inside the CRC-covered metadata.
  b[info.metadata_offset + fmt::kMetadataPrefixBytes + 8] ^= 0x01;
  ok = ok && WriteAll(at("bad_metadata.snap"), b);

  const std::string text = "this is not a snapshot file\n";
  ok = ok && WriteAll(at("not_snapshot.snap"), Bytes(text.begin(), text.end()));
  ok = ok && WriteAll(at("bad/delta.snap"), ReadAll(at("delta.snap")));
  if (!ok) {
    std::fprintf(stderr, "writing the damaged copies in '%s' failed\n",
                 dir.c_str());
    return 1;
  }
  std::printf("snapshot files written to '%s'\n", dir.c_str());
  return 0;
}

}  // namespace
}  // namespace upager::internal

int main(int argc, char** argv) { return upager::internal::Main(argc, argv); }
