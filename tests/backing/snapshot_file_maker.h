// Snapshot files for tests, written from a list of page runs, and whole
// files as bytes: shared by the programs that make the CLI tests' files
// (tests/cli/make_snapshot_files.cc) and the fuzz seeds
// (tests/fuzz/make_fuzz_corpus.cc). Header-only, for one-file programs.
#ifndef UPAGER_TESTS_BACKING_SNAPSHOT_FILE_MAKER_H_
#define UPAGER_TESTS_BACKING_SNAPSHOT_FILE_MAKER_H_

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "backing/snapshot_file.h"

namespace upager::internal::test_files {

using Bytes = std::vector<uint8_t>;

// Pages [first_page, first_page + count): DATA, or ZERO if `zero`.
struct PageRun {
  uint64_t first_page;
  uint64_t count;
  bool zero;
};

// Writes and commits a snapshot of `page_count` pages of `page_size` bytes
// at `path`: FULL when `base` is empty, else a DELTA on `base`. Every byte
// of DATA page p is (p + fill) mod 256.
inline absl::Status WriteSnapshot(const std::string& path, size_t page_size,
                                  uint64_t page_count, const std::string& base,
                                  const std::vector<PageRun>& runs, int fill) {
  SnapshotFileWriter::Options o;
  o.page_size = page_size;
  o.page_count = page_count;
  o.kind = base.empty() ? SnapshotKind::kFull : SnapshotKind::kDelta;
  o.base_path = base;
  auto w = SnapshotFileWriter::Create(path, o);
  if (!w.ok()) return w.status();
  for (const PageRun& r : runs) {
    if (r.zero) {
      if (absl::Status s = (*w)->AddZero(r.first_page, r.count); !s.ok()) {
        return s;
      }
      continue;
    }
    std::vector<std::byte> bytes;
    for (uint64_t p = r.first_page; p < r.first_page + r.count; ++p) {
      bytes.insert(bytes.end(), page_size, static_cast<std::byte>(p + fill));
    }
    if (absl::Status s = (*w)->AddData(r.first_page, bytes); !s.ok()) return s;
  }
  return (*w)->Commit();
}

// The whole file; empty if it cannot be read.
inline Bytes ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

// Replaces the file with `b`; false if that failed.
inline bool WriteAll(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()),
            static_cast<std::streamsize>(b.size()));
  return static_cast<bool>(out);
}

}  // namespace upager::internal::test_files

#endif  // UPAGER_TESTS_BACKING_SNAPSHOT_FILE_MAKER_H_
