// Snapshot files: the on-disk image of one region's bytes at a point in
// time, written by SnapshotFileWriter, checked and read by
// SnapshotFileReader, and resolved across a base + deltas chain by
// SnapshotChain. Snapshot::SaveTo writes one; Runtime::MapSnapshot maps one
// lazily, copying each page (UFFDIO_COPY) straight out of a read-only
// mapping of the file.
//
// FORMAT, version 1. All integers little-endian. P = page_size.
//
//   offset 0                  header page (P bytes; the header proper is at
//                             most 4096 bytes, the rest of the page is zero)
//   data_offset (= P)         data area: page p, if stored, at
//                             data_offset + p * P. Pages not stored are
//                             holes, so the file is sparse: a 1 TiB region
//                             with 3 pages stored costs 3 pages of disk.
//   metadata_offset           metadata: extent table + per-page CRCs,
//     (= data_offset +        with its own CRC
//      page_count * P)
//   metadata_offset +         footer (64 bytes): the commit record; the
//     metadata_length         file ends right after it
//
// The data layout is the point: a page is found by arithmetic, so a
// reader maps the file once and serves any page without an index lookup
// in the file.
//
// Header (offsets in bytes):
//     0  8  magic "UPGRSNAP"
//     8  u32 version (1)
//    12  u32 header_length: 136 + base_name_length, the bytes header_crc
//            covers
//    16  u32 page_size (a power of two, 4096 .. 1 GiB)
//    20  u32 kind: 1 = FULL, 2 = DELTA
//    24  u64 page_count (>= 1)
//    32  16  snapshot_id (random; never all zero)
//    48  16  base_id: the id of the base file (DELTA), zero (FULL)
//    64  u64 data_pages: pages stored (covered by DATA extents)
//    72  u64 zero_pages: pages covered by ZERO extents
//    80  u64 extent_count
//    88  u64 data_offset (a multiple of page_size, >= page_size)
//    96  u64 metadata_offset (a multiple of page_size,
//            >= data_offset + page_count * page_size)
//   104  u64 metadata_length (= 24 + 16 * extent_count + 4 * data_pages + 4)
//   112  u64 file_size (= metadata_offset + metadata_length + 64)
//   120  i64 created: nanoseconds since the Unix epoch
//   128  u32 base_name_length (0 for FULL, 1 .. 3960 for DELTA)
//   132  u32 header_crc: CRC32C of bytes [0, header_length) with these
//            four bytes taken as zero
//   136  base_name: the base file's path (no NUL), relative to the
//            delta's directory when the base lies in that directory or
//            below it, absolute otherwise
//
// Metadata (at metadata_offset):
//     0  8  magic "UPGRMETA"
//     8  u64 extent_count (= header)
//    16  u64 data_pages (= header)
//    24  extent_count extents, sorted by first_page, non-overlapping:
//          u64 first_page, u32 count (>= 1), u32 kind: 1 = ZERO, 2 = DATA
//    ..  data_pages u32 CRC32Cs, one per DATA page in extent order
//    ..  u32 metadata_crc: CRC32C of all metadata bytes before it
//
// Footer (at metadata_offset + metadata_length):
//     0  8  magic "UPGRFOOT"
//     8  u32 version (1)
//    12  u32 metadata_crc (= the metadata's)
//    16  16  snapshot_id (= the header's)
//    32  u64 metadata_offset, 40 u64 metadata_length, 48 u64 file_size
//            (= the header's)
//    56  u32 reserved (0)
//    60  u32 footer_crc: CRC32C of footer bytes [0, 60)
//
// Meaning of a page. FULL: DATA extents are stored pages, every other page
// is zero (ZERO extents are allowed but not needed). DELTA: DATA extents
// are stored pages, ZERO extents are pages that became zero since the
// base, and a page no extent covers is INHERITED from the base file, which
// is itself FULL or DELTA; a chain ends at a FULL file.
//
// Integrity. A writer builds the file under a temporary name and renames it
// into place only after everything is written and fsynced, so a file at
// the final name is complete. Open still checks everything but page data:
// magic, version, header CRC, every size and offset against each other and
// against the file's actual size (truncation), the footer, the metadata CRC
// and the extents. Page data is checked page by page (VerifyPage, ReadPage,
// VerifyAll) against the stored CRCs.
//
// Thread-safety: a SnapshotFileWriter is not synchronized (one owner). A
// SnapshotFileReader and a SnapshotChain are immutable after Open: every
// const method may be called from any thread concurrently.
#ifndef UPAGER_BACKING_SNAPSHOT_FILE_H_
#define UPAGER_BACKING_SNAPSHOT_FILE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "runtime/os/file.h"
#include "runtime/os/io_uring.h"

namespace upager::internal {

inline constexpr uint32_t kSnapshotFormatVersion = 1;
// Longest base chain SnapshotChain::Open follows by default (links, i.e.
// deltas above the FULL file). Each file in a chain holds a descriptor.
inline constexpr size_t kMaxSnapshotChainDepth = 1000;

enum class SnapshotKind : uint32_t { kFull = 1, kDelta = 2 };
// How an extent's pages are recorded (the values are the on-disk ones).
enum class ExtentKind : uint32_t { kZero = 1, kData = 2 };
// What one file says about one page.
enum class PageKind : uint8_t {
  kInherit,  // DELTA only: the base file has it
  kZero,
  kData,  // stored in this file at DataOffset(page)
};

using SnapshotId = std::array<uint8_t, 16>;
// 32 lowercase hex digits.
std::string SnapshotIdToString(const SnapshotId& id);

// Pages [first_page, first_page + count), all of one kind.
struct SnapshotExtent {
  uint64_t first_page = 0;
  uint32_t count = 0;  // pages, >= 1
  ExtentKind kind = ExtentKind::kData;

  uint64_t end_page() const { return first_page + count; }
  bool operator==(const SnapshotExtent&) const = default;
};

// Every header field (see FORMAT above).
struct SnapshotFileInfo {
  uint32_t version = kSnapshotFormatVersion;
  SnapshotKind kind = SnapshotKind::kFull;
  uint64_t page_size = 0;   // bytes
  uint64_t page_count = 0;  // pages in the region
  SnapshotId id{};
  SnapshotId base_id{};   // DELTA only; zero for FULL
  std::string base_name;  // DELTA only: as stored (see ResolveSnapshotBase)
  uint64_t data_pages = 0;
  uint64_t zero_pages = 0;
  uint64_t extent_count = 0;
  uint64_t data_offset = 0;      // bytes
  uint64_t metadata_offset = 0;  // bytes
  uint64_t metadata_length = 0;  // bytes
  uint64_t file_size = 0;        // bytes
  absl::Time created;
  uint32_t header_crc = 0;
};

// Where a DELTA's base lives: `base_name` as stored in the delta at
// `delta_path`, absolute or relative to the delta's directory.
std::string ResolveSnapshotBase(const std::string& delta_path,
                                const std::string& base_name);

// Makes the ring a writer runs on; tests pass one that injects failures.
using SnapshotIoUringFactory =
    std::function<absl::StatusOr<std::unique_ptr<os::IoUring>>(
        uint32_t queue_depth)>;

// Writes one snapshot file, pages in increasing order, without needing the
// whole image in memory: each AddData copies the caller's pages into one of
// `queue_depth` buffers of `max_write_bytes` (contiguous pages coalesce)
// and has io_uring write it while the caller goes on; memory stays bounded
// by those buffers plus 4 bytes of CRC and (at most) 16 bytes of extent per
// page added (and, during Commit, one encoded copy of that metadata).
//
// Nothing appears at `path` before Commit succeeds. The pages go to a
// temporary file in the same directory (`path` + ".tmp.<pid>.<n>"); Commit
// writes the metadata, footer and header, fsyncs, renames the temporary
// over `path` and fsyncs the directory. Destroying a writer that did not
// commit removes the temporary, so a failed save leaves neither a partial
// file nor a damaged older file at `path`.
//
// Write errors are sticky: once a write fails, every later AddData,
// AddZero and Commit returns that status (it names the file and the
// offset). A call refused for its arguments (InvalidArgument) changes
// nothing, and the writer goes on.
class SnapshotFileWriter {
 public:
  struct Options {
    size_t page_size = 0;     // bytes: a power of two, 4096 .. 1 GiB
    uint64_t page_count = 0;  // pages in the region, >= 1
    SnapshotKind kind = SnapshotKind::kFull;
    // DELTA only: the base file. Create opens it (fully validated) for its
    // id and checks that its page_size and page_count are these.
    std::string base_path;
    // Writes in flight at most (1 .. 256), each up to max_write_bytes
    // (rounded down to whole pages, at least one page, at most 1 GiB).
    uint32_t queue_depth = 8;
    size_t max_write_bytes = size_t{1} << 20;
    SnapshotIoUringFactory make_ring = os::CreateIoUring;
  };

  struct Stats {
    uint64_t data_pages = 0;     // pages added with AddData
    uint64_t zero_pages = 0;     // pages added with AddZero
    uint64_t extents = 0;        // after merging adjacent ones
    uint64_t bytes_written = 0;  // completed writes: data + metadata + header
    uint64_t write_requests = 0;
    uint64_t file_size = 0;  // logical size of the committed file (Commit)
  };

  // Validates `options` (InvalidArgument naming the bad one), opens the
  // base (DELTA), creates the temporary file and the ring. A base that
  // cannot be opened yields its status; a base of another geometry yields
  // InvalidArgument naming both files and values.
  static absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> Create(
      const std::string& path, const Options& options);

  SnapshotFileWriter(const SnapshotFileWriter&) = delete;
  SnapshotFileWriter& operator=(const SnapshotFileWriter&) = delete;
  // Waits (bounded) for writes in flight; without a successful Commit,
  // removes the temporary file.
  ~SnapshotFileWriter();

  // Records pages [first_page, first_page + bytes.size() / page_size) as
  // DATA with the given contents. bytes.size() must be a non-zero multiple
  // of page_size, the pages must lie in the region, and first_page must be
  // above every page added before (InvalidArgument naming the values). The
  // bytes are copied before returning: the caller may reuse them at once.
  absl::Status AddData(uint64_t first_page, absl::Span<const std::byte> bytes);
  // Records `count` (>= 1) pages from first_page as ZERO; same rules.
  absl::Status AddZero(uint64_t first_page, uint64_t count);
  // Finishes the file and puts it at path(). On failure nothing is at
  // path() that was not there before (except when only the final directory
  // fsync failed: the file is then in place and complete but may not
  // survive a crash; the status says so). Once only.
  absl::Status Commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return file_.path(); }
  const SnapshotId& id() const { return id_; }
  const Stats& stats() const { return stats_; }

 private:
  // One write buffer and the request carrying it: bytes [0, len) go to
  // file offset `offset`; the kernel has written [0, done).
  struct Slot {
    std::unique_ptr<std::byte[]> buffer;  // write_bytes_, made on first use
    uint64_t offset = 0;                  // bytes
    uint32_t len = 0;                     // bytes
    uint32_t done = 0;                    // bytes
  };

  SnapshotFileWriter(std::string path, const Options& options,
                     size_t write_bytes, os::File file,
                     std::unique_ptr<os::IoUring> ring);

  absl::Status CheckAdd(const char* what, uint64_t first_page,
                        uint64_t count) const;
  // Appends to extents_, merging with the last extent when adjacent and of
  // the same kind (an extent holds at most 2^32 - 1 pages).
  void AddExtent(uint64_t first_page, uint64_t count, ExtentKind kind);
  // Copies `bytes` into write buffers for file offset `offset` onwards,
  // extending the buffer being filled when contiguous with it, and sends
  // each buffer that fills up. Waits for a free buffer when all are busy.
  absl::Status Append(uint64_t offset, absl::Span<const std::byte> bytes);
  // Sends the buffer being filled, if any.
  absl::Status Flush();
  // Prepares the queued slots' requests while the ring takes them, then
  // submits.
  absl::Status Pump();
  absl::Status SubmitRing();
  // Waits until some completion is handled (or a refused submission was
  // retried), giving up after kIoTimeout without progress.
  absl::Status WaitAndReap();
  // Handles one completion: frees its slot, requeues the rest of a short
  // write, or records the error.
  void HandleCompletion(const os::IoCompletion& c);
  // Waits until every buffer is written.
  absl::Status Drain();
  // Records the first error (sticky), drops writes not yet sent, returns
  // the sticky error.
  absl::Status Fail(absl::Status s);

  const std::string path_;
  const Options options_;
  const size_t write_bytes_;  // per request at most: whole pages
  os::File file_;             // the temporary file
  std::unique_ptr<os::IoUring> ring_;
  SnapshotId id_{};
  SnapshotId base_id_{};
  std::string base_name_;  // as recorded in the header
  absl::Time created_;

  std::vector<Slot> slots_;  // queue_depth of them; user_data = index
  std::vector<uint32_t> free_slots_;
  static constexpr uint32_t kNoSlot = ~uint32_t{0};
  uint32_t filling_ = kNoSlot;  // the buffer being filled
  // Slots whose (remaining) bytes wait for a submission-queue entry, oldest
  // first (a short write's rest goes to the front).
  std::deque<uint32_t> to_send_;
  uint32_t in_flight_ = 0;              // prepared, completion not yet handled
  uint32_t unsubmitted_ = 0;            // prepared, not yet taken by the kernel
  std::vector<os::IoCompletion> cqes_;  // Reap scratch

  uint64_t next_page_ = 0;  // AddData/AddZero take pages from here up
  std::vector<SnapshotExtent> extents_;
  std::vector<uint32_t> crcs_;  // one per DATA page, in page order
  Stats stats_;
  absl::Status error_;      // sticky
  bool finished_ = false;   // Commit was called
  bool committed_ = false;  // the temporary file was renamed to path_
};

// The parsed extent table of one file and the page -> kind/CRC lookups
// (binary search over extents). Built only from validated metadata.
class SnapshotIndex {
 public:
  SnapshotIndex() = default;
  SnapshotIndex(SnapshotKind kind, uint64_t page_count,
                std::vector<SnapshotExtent> extents,
                std::vector<uint32_t> crcs);

  absl::Span<const SnapshotExtent> extents() const { return extents_; }
  absl::Span<const uint32_t> crcs() const { return crcs_; }
  // O(log extents). Pages no extent covers: kInherit in a DELTA, kZero in
  // a FULL file (also for page >= page_count).
  PageKind Kind(uint64_t page) const;
  // The stored CRC of a DATA page; 0 for any other page.
  uint32_t Crc(uint64_t page) const;
  // Index into extents() of the extent holding `page`, or -1.
  int64_t FindExtent(uint64_t page) const;

 private:
  SnapshotKind kind_ = SnapshotKind::kFull;
  uint64_t page_count_ = 0;
  std::vector<SnapshotExtent> extents_;
  // first_crc_[i]: index in crcs_ of extents_[i]'s first page (DATA).
  std::vector<uint64_t> first_crc_;
  std::vector<uint32_t> crcs_;
};

// One snapshot file, opened read-only and validated (see FORMAT). Page data
// is read only on request.
class SnapshotFileReader {
 public:
  // (pages verified so far, DATA pages in the file)
  using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

  // NotFound naming the path for a missing file; InvalidArgument for a
  // file that is not a snapshot or has another format version (naming
  // both versions); DataLoss for a truncated or corrupt one, naming the
  // path and the expected and actual sizes or checksums.
  static absl::StatusOr<std::unique_ptr<SnapshotFileReader>> Open(
      const std::string& path);

  SnapshotFileReader(const SnapshotFileReader&) = delete;
  SnapshotFileReader& operator=(const SnapshotFileReader&) = delete;

  const std::string& path() const { return file_.path(); }
  const SnapshotFileInfo& info() const { return info_; }
  absl::Span<const SnapshotExtent> extents() const { return index_.extents(); }
  // Read-only descriptor (e.g. for mmap); valid while the reader lives.
  int fd() const { return file_.fd(); }

  // See SnapshotIndex. `page` < page_count.
  PageKind Kind(uint64_t page) const { return index_.Kind(page); }
  uint32_t Crc(uint64_t page) const { return index_.Crc(page); }
  // File offset of page `page`'s bytes (meaningful for DATA pages).
  uint64_t DataOffset(uint64_t page) const {
    return info_.data_offset + page * info_.page_size;
  }

  // Checks page_size bytes at `bytes` against what the file records for
  // `page`: the CRC of a DATA page, all zeros for a ZERO page (or for any
  // uncovered page of a FULL file). DataLoss naming the file and the page
  // on mismatch; FailedPrecondition for an inherited page (ask the chain);
  // InvalidArgument for page >= page_count.
  absl::Status VerifyPage(uint64_t page, const std::byte* bytes) const;
  // Fills out[0, page_size) with the page: pread + VerifyPage for DATA,
  // zeros for ZERO. Same errors as VerifyPage, plus read errors and
  // DataLoss for a file cut short since Open. On failure *out is
  // unspecified.
  absl::Status ReadPage(uint64_t page, std::byte* out) const;
  // Reads every DATA page (large sequential reads) and checks its CRC;
  // returns the first bad page as DataLoss ("snapshot file 'x': page 17
  // checksum mismatch (stored 0x..., computed 0x...)").
  absl::Status VerifyAll(const ProgressFn& progress = nullptr) const;

 private:
  SnapshotFileReader(os::File file, SnapshotFileInfo info, SnapshotIndex index);

  os::File file_;
  const SnapshotFileInfo info_;
  const SnapshotIndex index_;
};

// Where one page's bytes are: file == nullptr for a zero page.
struct ResolvedPage {
  const SnapshotFileReader* file = nullptr;
  uint64_t offset = 0;  // bytes into file's data; 0 when zero
};

// Pages [first_page, first_page + count) served alike: all zero
// (file == nullptr) or all DATA in `file`, page first_page + i at
// offset + i * page_size.
struct ResolvedRun {
  uint64_t first_page = 0;
  uint64_t count = 0;
  const SnapshotFileReader* file = nullptr;
  uint64_t offset = 0;  // of first_page; 0 when zero
};

// A snapshot file and, for a DELTA, its bases down to a FULL file, with
// every page resolved to the newest file that records it. Resolution is
// precomputed at Open into sorted runs, so Resolve is O(log runs) and
// walking a range costs one binary search plus one step per run.
class SnapshotChain {
 public:
  // Opens `path` and, while the file is a DELTA, its base
  // (ResolveSnapshotBase), checking that each base has the geometry and the
  // id its delta recorded. A missing base: NotFound naming both files;
  // another geometry or id: FailedPrecondition naming both files and
  // values; a cycle or more than `max_depth` bases: InvalidArgument.
  static absl::StatusOr<SnapshotChain> Open(
      const std::string& path, size_t max_depth = kMaxSnapshotChainDepth);

  SnapshotChain(SnapshotChain&&) = default;
  SnapshotChain& operator=(SnapshotChain&&) = default;

  uint64_t page_size() const { return newest().info().page_size; }
  uint64_t page_count() const { return newest().info().page_count; }
  const SnapshotFileReader& newest() const { return *files_.front(); }
  // Newest (the file Open was given) first, the FULL file last.
  absl::Span<const std::unique_ptr<SnapshotFileReader>> files() const {
    return files_;
  }
  // Every page some file serves as DATA, in maximal runs, sorted; pages
  // between runs are zero.
  absl::Span<const ResolvedRun> data_runs() const { return runs_; }

  // `page` < page_count (a page beyond it resolves to zero).
  ResolvedPage Resolve(uint64_t page) const;
  // The maximal run (DATA in one file, or zero) holding `page`.
  ResolvedRun RunAt(uint64_t page) const;
  // Calls fn for consecutive runs covering [first_page, first_page + count)
  // (clipped to the region), each clipped to the range. No allocation.
  void ForEachRun(uint64_t first_page, uint64_t count,
                  absl::FunctionRef<void(const ResolvedRun&)> fn) const;
  // The page's bytes, from the file that serves it (verified) or zeros.
  absl::Status ReadPage(uint64_t page, std::byte* out) const;

 private:
  SnapshotChain() = default;

  // Newest first. unique_ptr: runs_ point at the readers, which must not
  // move when the chain does.
  std::vector<std::unique_ptr<SnapshotFileReader>> files_;
  std::vector<ResolvedRun> runs_;  // DATA only, sorted, non-overlapping
};

// libFuzzer entry point: the checks Open makes (header, sizes, footer,
// metadata, extents), and the page lookups, on an in-memory file image.
// Never crashes; returns what Open would.
absl::Status ParseSnapshotFileForFuzzing(absl::Span<const uint8_t> bytes);

}  // namespace upager::internal

#endif  // UPAGER_BACKING_SNAPSHOT_FILE_H_
