// SnapshotFileWriter: pages in increasing order -> coalesced io_uring writes
// into a temporary file -> metadata, footer, header -> fsync -> rename.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <new>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "backing/crc32c.h"
#include "backing/snapshot_file.h"
#include "backing/snapshot_format.h"
#include "runtime/os/errno_status.h"
#include "runtime/os/wakeup.h"
#include "upager/status_macros.h"

namespace upager::internal {
namespace {

namespace fmt = snapshot_format;

// How long a write may go without any completion before the writer gives
// up. A healthy disk answers in milliseconds; this only bounds a hung one.
constexpr absl::Duration kIoTimeout = absl::Seconds(60);
// How long the destructor waits for writes the kernel has started (their
// buffers are ours and are freed after it).
constexpr absl::Duration kDrainTimeout = absl::Seconds(30);
constexpr uint32_t kMaxQueueDepth = 256;
constexpr size_t kMaxWriteBytes = size_t{1} << 30;

absl::Status CheckOptions(const std::string& path,
                          const SnapshotFileWriter::Options& o) {
  if (path.empty()) {
    return absl::InvalidArgumentError("snapshot file path is empty");
  }
  if (!fmt::ValidPageSize(o.page_size)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': Options.page_size=%d must be a power of two in "
        "%d..%d",
        path, o.page_size, fmt::kMinPageSize, fmt::kMaxPageSize));
  }
  if (o.page_count == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': Options.page_count=0: a region has at least one "
        "page",
        path));
  }
  if (o.kind == SnapshotKind::kFull && !o.base_path.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': Options.base_path='%s' given for a FULL "
        "snapshot (only a DELTA has a base)",
        path, o.base_path));
  }
  if (o.kind == SnapshotKind::kDelta && o.base_path.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': a DELTA snapshot needs Options.base_path", path));
  }
  if (o.kind != SnapshotKind::kFull && o.kind != SnapshotKind::kDelta) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': Options.kind=%d is neither FULL nor DELTA", path,
        static_cast<uint32_t>(o.kind)));
  }
  if (o.queue_depth < 1 || o.queue_depth > kMaxQueueDepth) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': Options.queue_depth=%d must be in 1..%d", path,
        o.queue_depth, kMaxQueueDepth));
  }
  if (!o.make_ring) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': Options.make_ring is empty", path));
  }
  return absl::OkStatus();
}

// Never all zero: a zero id means "no base" in a FULL file's header.
SnapshotId NewId() {
  absl::BitGen gen;
  SnapshotId id{};
  while (std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; })) {
    for (size_t i = 0; i < id.size(); i += 8) {
      const uint64_t v = gen();
      std::memcpy(id.data() + i, &v, 8);
    }
  }
  return id;
}

std::string DirectoryOf(const std::string& path) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

// A status with `context: ` in front of its message, same code.
absl::Status Annotate(const absl::Status& s, const std::string& context) {
  return absl::Status(s.code(),
                      absl::StrFormat("%s: %s", context, s.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> SnapshotFileWriter::Create(
    const std::string& path, const Options& options) {
  UPAGER_RETURN_IF_ERROR(CheckOptions(path, options));
  SnapshotFileInfo layout;
  layout.page_size = options.page_size;
  layout.page_count = options.page_count;
  if (absl::Status s = fmt::ComputeLayout(&layout); !s.ok()) {
    return Annotate(s, absl::StrFormat("snapshot file '%s'", path));
  }

  SnapshotId base_id{};
  std::string base_name;
  if (options.kind == SnapshotKind::kDelta) {
    absl::StatusOr<std::unique_ptr<SnapshotFileReader>> base =
        SnapshotFileReader::Open(options.base_path);
    if (!base.ok()) {
      return Annotate(base.status(),
                      absl::StrFormat("base of snapshot file '%s'", path));
    }
    const SnapshotFileInfo& b = (*base)->info();
    if (b.page_size != options.page_size ||
        b.page_count != options.page_count) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "snapshot file '%s' (page_size %d, page_count %d): its base '%s' "
          "has page_size %d, page_count %d",
          path, options.page_size, options.page_count, options.base_path,
          b.page_size, b.page_count));
    }
    base_id = b.id;
    std::string cwd;
    if (path.front() != '/' || options.base_path.front() != '/') {
      UPAGER_ASSIGN_OR_RETURN(cwd, os::CurrentDirectory());
    }
    base_name = fmt::BaseNameForDelta(path, options.base_path, cwd);
    if (base_name.size() > fmt::kMaxBaseNameBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "snapshot file '%s': base path '%s' is %d bytes; at most %d fit in "
          "the header",
          path, base_name, base_name.size(), fmt::kMaxBaseNameBytes));
    }
  }

  // Unique per writer in this process; the pid keeps concurrent processes
  // apart. A leftover of a crashed writer with our pid is ours to reuse.
  static std::atomic<uint64_t> counter{0};
  const std::string temp =
      absl::StrFormat("%s.tmp.%d.%d", path, os::CurrentProcessId(), counter++);
  UPAGER_ASSIGN_OR_RETURN(os::File file,
                          os::File::Open(temp, {.create = true}));
  auto fail = [&file](const absl::Status& s) {
    const std::string p = file.path();
    (void)file.Close();
    (void)os::UnlinkFile(p);
    return s;
  };
  // Empty first (a leftover may have bytes), then as long as the data
  // area: a file system that cannot hold a file this large (ext4 stops at
  // 16 TiB) says so now rather than at Commit; the data area stays a hole
  // until written.
  if (absl::Status s = file.Truncate(0); !s.ok()) return fail(s);
  if (absl::Status s = file.Truncate(layout.metadata_offset); !s.ok()) {
    return fail(Annotate(
        s, absl::StrFormat("snapshot file '%s': a region of %d pages of %d "
                           "bytes needs a file of over %d bytes",
                           path, options.page_count, options.page_size,
                           layout.metadata_offset)));
  }
  absl::StatusOr<std::unique_ptr<os::IoUring>> ring =
      options.make_ring(options.queue_depth);
  if (!ring.ok()) return fail(ring.status());

  const size_t write_bytes = std::max(
      options.page_size, std::min(options.max_write_bytes, kMaxWriteBytes) /
                             options.page_size * options.page_size);
  auto writer = std::unique_ptr<SnapshotFileWriter>(new SnapshotFileWriter(
      path, options, write_bytes, std::move(file), std::move(*ring)));
  writer->base_id_ = base_id;
  writer->base_name_ = std::move(base_name);
  return writer;
}

SnapshotFileWriter::SnapshotFileWriter(std::string path, const Options& options,
                                       size_t write_bytes, os::File file,
                                       std::unique_ptr<os::IoUring> ring)
    : path_(std::move(path)),
      options_(options),
      write_bytes_(write_bytes),
      file_(std::move(file)),
      ring_(std::move(ring)),
      id_(NewId()),
      created_(absl::Now()),
      slots_(options.queue_depth),
      cqes_(ring_->cq_entries()) {
  for (uint32_t i = options.queue_depth; i > 0; --i)
    free_slots_.push_back(i - 1);
}

SnapshotFileWriter::~SnapshotFileWriter() {
  // Writes the kernel has taken still read our buffers: wait for them
  // before the buffers go. Writes never submitted die with the ring.
  const absl::Time deadline = absl::Now() + kDrainTimeout;
  while (in_flight_ > unsubmitted_ && absl::Now() < deadline) {
    if (ring_->Ready() == 0) {
      (void)ring_->WaitForCompletion(absl::Milliseconds(100));
    }
    const size_t n = ring_->Reap(absl::MakeSpan(cqes_));
    in_flight_ -=
        static_cast<uint32_t>(std::min<size_t>(n, in_flight_ - unsubmitted_));
  }
  ring_.reset();
  const std::string temp = file_.path();
  (void)file_.Close();
  if (!committed_) (void)os::UnlinkFile(temp);
}

absl::Status SnapshotFileWriter::CheckAdd(const char* what, uint64_t first_page,
                                          uint64_t count) const {
  if (first_page < next_page_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': %s(first_page=%d): pages must be added in "
        "increasing order, and page %d was already added",
        path_, what, first_page, next_page_ - 1));
  }
  if (first_page >= options_.page_count ||
      count > options_.page_count - first_page) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': %s(first_page=%d, count=%d) goes past the "
        "region's %d pages",
        path_, what, first_page, count, options_.page_count));
  }
  return absl::OkStatus();
}

absl::Status SnapshotFileWriter::AddData(uint64_t first_page,
                                         absl::Span<const std::byte> bytes) {
  if (!error_.ok()) return error_;
  const size_t ps = options_.page_size;
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot file '%s': AddData(first_page=%d) after Commit", path_,
        first_page));
  }
  if (bytes.empty() || bytes.size() % ps != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': AddData(first_page=%d) with %d bytes: not a "
        "positive multiple of page_size %d",
        path_, first_page, bytes.size(), ps));
  }
  const uint64_t count = bytes.size() / ps;
  UPAGER_RETURN_IF_ERROR(CheckAdd("AddData", first_page, count));
  AddExtent(first_page, count, ExtentKind::kData);
  next_page_ = first_page + count;
  stats_.data_pages += count;
  // Page by page, so the CRC and the copy read the page while it is in
  // cache. Data offsets: the header page, then page p at p * page_size.
  for (uint64_t i = 0; i < count; ++i) {
    const auto page = bytes.subspan(i * ps, ps);
    crcs_.push_back(Crc32c(page));
    UPAGER_RETURN_IF_ERROR(Append(ps + (first_page + i) * ps, page));
  }
  return absl::OkStatus();
}

absl::Status SnapshotFileWriter::AddZero(uint64_t first_page, uint64_t count) {
  if (!error_.ok()) return error_;
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot file '%s': AddZero(first_page=%d) after Commit", path_,
        first_page));
  }
  if (count == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot file '%s': AddZero(first_page=%d, count=0): count must be "
        "at least 1",
        path_, first_page));
  }
  UPAGER_RETURN_IF_ERROR(CheckAdd("AddZero", first_page, count));
  // Nothing to write: a ZERO page is a hole in the data area.
  AddExtent(first_page, count, ExtentKind::kZero);
  next_page_ = first_page + count;
  stats_.zero_pages += count;
  return absl::OkStatus();
}

void SnapshotFileWriter::AddExtent(uint64_t first_page, uint64_t count,
                                   ExtentKind kind) {
  constexpr uint64_t kMaxCount = ~uint32_t{0};
  while (count > 0) {
    uint64_t n;
    if (!extents_.empty() && extents_.back().kind == kind &&
        extents_.back().end_page() == first_page &&
        extents_.back().count < kMaxCount) {
      n = std::min(count, kMaxCount - extents_.back().count);
      extents_.back().count += static_cast<uint32_t>(n);
    } else {
      n = std::min(count, kMaxCount);
      extents_.push_back({.first_page = first_page,
                          .count = static_cast<uint32_t>(n),
                          .kind = kind});
    }
    first_page += n;
    count -= n;
  }
  stats_.extents = extents_.size();
}

absl::Status SnapshotFileWriter::Append(uint64_t offset,
                                        absl::Span<const std::byte> bytes) {
  while (!bytes.empty()) {
    if (filling_ != kNoSlot) {
      const Slot& s = slots_[filling_];
      if (s.offset + s.len != offset) UPAGER_RETURN_IF_ERROR(Flush());
    }
    if (filling_ == kNoSlot) {
      while (free_slots_.empty()) UPAGER_RETURN_IF_ERROR(WaitAndReap());
      const uint32_t i = free_slots_.back();
      Slot& s = slots_[i];
      if (s.buffer == nullptr) {
        s.buffer.reset(new (std::nothrow) std::byte[write_bytes_]);
        if (s.buffer == nullptr) {
          return Fail(absl::ResourceExhaustedError(absl::StrFormat(
              "snapshot file '%s': no memory for a %d-byte write buffer", path_,
              write_bytes_)));
        }
      }
      free_slots_.pop_back();
      filling_ = i;
      s.offset = offset;
      s.len = 0;
      s.done = 0;
    }
    Slot& s = slots_[filling_];
    const size_t n = std::min(bytes.size(), write_bytes_ - s.len);
    std::memcpy(s.buffer.get() + s.len, bytes.data(), n);
    s.len += static_cast<uint32_t>(n);
    offset += n;
    bytes.remove_prefix(n);
    if (s.len == write_bytes_) UPAGER_RETURN_IF_ERROR(Flush());
  }
  return absl::OkStatus();
}

absl::Status SnapshotFileWriter::Flush() {
  if (filling_ == kNoSlot) return absl::OkStatus();
  to_send_.push_back(std::exchange(filling_, kNoSlot));
  return Pump();
}

absl::Status SnapshotFileWriter::Pump() {
  while (!to_send_.empty()) {
    const Slot& s = slots_[to_send_.front()];
    os::IoRequest r;
    r.op = os::IoOp::kWrite;
    r.fd = file_.fd();
    r.buf = s.buffer.get() + s.done;
    r.len = s.len - s.done;
    r.offset = s.offset + s.done;
    r.user_data = to_send_.front();
    if (!ring_->Prepare(r)) {
      // The submission queue holds entries the kernel has not taken yet:
      // hand them over and try once more; if it is still full, the slot
      // waits in to_send_ for the next call.
      UPAGER_RETURN_IF_ERROR(SubmitRing());
      if (!ring_->Prepare(r)) break;
    }
    to_send_.pop_front();
    ++in_flight_;
    ++unsubmitted_;
    ++stats_.write_requests;
  }
  return SubmitRing();
}

absl::Status SnapshotFileWriter::SubmitRing() {
  if (unsubmitted_ == 0) return absl::OkStatus();
  uint32_t taken = 0;
  const int err = ring_->Submit(&taken);
  if (err == 0) {
    unsubmitted_ -= std::min(taken, unsubmitted_);
    return absl::OkStatus();
  }
  // No memory for requests right now, completions backed up, or a signal:
  // the entries stay in the ring and WaitAndReap submits them again.
  if (err == EAGAIN || err == EBUSY || err == EINTR) return absl::OkStatus();
  return Fail(os::ErrnoToStatus(
      err,
      absl::StrFormat("io_uring_submit(snapshot file '%s')", file_.path())));
}

absl::Status SnapshotFileWriter::WaitAndReap() {
  const absl::Time deadline = absl::Now() + kIoTimeout;
  for (;;) {
    UPAGER_RETURN_IF_ERROR(Pump());
    if (ring_->Ready() == 0) {
      if (in_flight_ > unsubmitted_) {
        const int err = ring_->WaitForCompletion(absl::Milliseconds(100));
        if (err != 0 && err != ETIME && err != EINTR) {
          return Fail(os::ErrnoToStatus(
              err, absl::StrFormat("io_uring wait (snapshot file '%s')",
                                   file_.path())));
        }
      } else if (unsubmitted_ > 0 || !to_send_.empty()) {
        // The kernel refused our entries for now and holds nothing of ours
        // that could complete: try again shortly.
        absl::SleepFor(absl::Milliseconds(1));
      } else {
        return absl::OkStatus();  // nothing outstanding
      }
    }
    const size_t n = ring_->Reap(absl::MakeSpan(cqes_));
    for (size_t i = 0; i < n; ++i) HandleCompletion(cqes_[i]);
    if (!error_.ok()) return error_;
    if (n > 0) return Pump();
    if (absl::Now() > deadline) {
      return Fail(absl::DeadlineExceededError(absl::StrFormat(
          "snapshot file '%s': %d writes made no progress for %s", file_.path(),
          in_flight_, absl::FormatDuration(kIoTimeout))));
    }
  }
}

void SnapshotFileWriter::HandleCompletion(const os::IoCompletion& c) {
  // Every entry this writer prepares carries a slot index.
  if (c.user_data >= slots_.size() || in_flight_ == 0) return;
  const auto i = static_cast<uint32_t>(c.user_data);
  Slot& s = slots_[i];
  --in_flight_;
  int error = c.error;
  // A write of zero bytes makes no progress; sending it again would spin.
  if (error == 0 && c.bytes == 0) error = EIO;
  // Not started (interrupted before any byte moved): the same write again.
  if (error == EAGAIN || error == EINTR) {
    to_send_.push_front(i);
    return;
  }
  if (error != 0) {
    (void)Fail(os::ErrnoToStatus(
        error,
        absl::StrFormat("snapshot file '%s': write(offset=%d, len=%d)",
                        file_.path(), s.offset + s.done, s.len - s.done)));
    free_slots_.push_back(i);
    return;
  }
  const uint32_t n = std::min(c.bytes, s.len - s.done);
  s.done += n;
  stats_.bytes_written += n;
  if (s.done < s.len) {
    // A short write: the rest goes next, ahead of newer buffers.
    to_send_.push_front(i);
    return;
  }
  free_slots_.push_back(i);
}

absl::Status SnapshotFileWriter::Drain() {
  while (error_.ok() && (in_flight_ > 0 || !to_send_.empty())) {
    UPAGER_RETURN_IF_ERROR(WaitAndReap());
  }
  return error_;
}

absl::Status SnapshotFileWriter::Fail(absl::Status s) {
  if (error_.ok()) error_ = std::move(s);
  // Buffers not yet in the ring will never be written now.
  for (uint32_t i : to_send_) free_slots_.push_back(i);
  to_send_.clear();
  if (filling_ != kNoSlot)
    free_slots_.push_back(std::exchange(filling_, kNoSlot));
  return error_;
}

absl::Status SnapshotFileWriter::Commit() {
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot file '%s': Commit was already called", path_));
  }
  finished_ = true;
  if (!error_.ok()) return error_;
  UPAGER_RETURN_IF_ERROR(Flush());
  UPAGER_RETURN_IF_ERROR(Drain());

  SnapshotFileInfo info;
  info.kind = options_.kind;
  info.page_size = options_.page_size;
  info.page_count = options_.page_count;
  info.id = id_;
  info.base_id = base_id_;
  info.base_name = base_name_;
  info.data_pages = stats_.data_pages;
  info.zero_pages = stats_.zero_pages;
  info.extent_count = extents_.size();
  info.created = created_;
  if (absl::Status s = fmt::ComputeLayout(&info); !s.ok()) {
    return Fail(Annotate(s, absl::StrFormat("snapshot file '%s'", path_)));
  }
  // The header goes last: until every other byte is down, the file has no
  // valid header (not that anyone can see it before the rename).
  UPAGER_RETURN_IF_ERROR(
      Append(info.metadata_offset,
             fmt::EncodeMetadataAndFooter(info, extents_, crcs_)));
  UPAGER_RETURN_IF_ERROR(Flush());
  UPAGER_RETURN_IF_ERROR(Drain());
  UPAGER_RETURN_IF_ERROR(Append(0, fmt::EncodeHeader(info)));
  UPAGER_RETURN_IF_ERROR(Flush());
  UPAGER_RETURN_IF_ERROR(Drain());

  // The writes ended at the footer; trailing holes are the data area's,
  // already inside. Truncating anyway makes the size exact whatever the
  // file held before.
  if (absl::Status s = file_.Truncate(info.file_size); !s.ok()) return Fail(s);
  if (absl::Status s = file_.Sync(); !s.ok()) return Fail(s);
  // Descriptors stay valid after a rename; the reader opens its own.
  if (absl::Status s = os::RenameFile(file_.path(), path_); !s.ok()) {
    return Fail(Annotate(
        s, absl::StrFormat("snapshot file '%s': putting it in place", path_)));
  }
  committed_ = true;
  stats_.file_size = info.file_size;
  // The rename is durable only once the directory is: until then a crash
  // may bring back the old entry. The file itself is complete and valid.
  const std::string dir = DirectoryOf(path_);
  if (absl::Status s = os::SyncDirectory(dir); !s.ok()) {
    return Fail(
        Annotate(s, absl::StrFormat("snapshot file '%s' is in place, but its "
                                    "directory could not be synced",
                                    path_)));
  }
  return absl::OkStatus();
}

}  // namespace upager::internal
