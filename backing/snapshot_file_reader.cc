// SnapshotIndex, SnapshotFileReader, SnapshotChain and the fuzzing entry
// point: the read side of the snapshot file format.
#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <new>
#include <set>
#include <utility>

#include "absl/strings/str_format.h"
#include "backing/crc32c.h"
#include "backing/snapshot_file.h"
#include "backing/snapshot_format.h"
#include "upager/status_macros.h"

namespace upager::internal {
namespace {

namespace fmt = snapshot_format;

// VerifyAll reads this much at a time (or one page, if larger).
constexpr size_t kVerifyChunkBytes = size_t{4} << 20;

absl::Status Annotate(const absl::Status& s, const std::string& context) {
  return absl::Status(s.code(),
                      absl::StrFormat("%s: %s", context, s.message()));
}

// Index of the first byte that is not zero, or n.
size_t FirstNonZero(const std::byte* p, size_t n) {
  size_t i = 0;
  // Word at a time; page sizes are multiples of 8.
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w != 0) break;
  }
  for (; i < n; ++i) {
    if (p[i] != std::byte{0}) return i;
  }
  return n;
}

}  // namespace

// --- SnapshotIndex

SnapshotIndex::SnapshotIndex(SnapshotKind kind, uint64_t page_count,
                             std::vector<SnapshotExtent> extents,
                             std::vector<uint32_t> crcs)
    : kind_(kind),
      page_count_(page_count),
      extents_(std::move(extents)),
      crcs_(std::move(crcs)) {
  first_crc_.reserve(extents_.size());
  uint64_t n = 0;
  for (const SnapshotExtent& e : extents_) {
    first_crc_.push_back(n);
    if (e.kind == ExtentKind::kData) n += e.count;
  }
}

int64_t SnapshotIndex::FindExtent(uint64_t page) const {
  // The last extent starting at or before `page`.
  auto it = std::upper_bound(
      extents_.begin(), extents_.end(), page,
      [](uint64_t p, const SnapshotExtent& e) { return p < e.first_page; });
  if (it == extents_.begin()) return -1;
  --it;
  if (page >= it->end_page()) return -1;
  return it - extents_.begin();
}

PageKind SnapshotIndex::Kind(uint64_t page) const {
  if (page >= page_count_) return PageKind::kZero;
  const int64_t i = FindExtent(page);
  if (i < 0) {
    return kind_ == SnapshotKind::kDelta ? PageKind::kInherit : PageKind::kZero;
  }
  return extents_[i].kind == ExtentKind::kData ? PageKind::kData
                                               : PageKind::kZero;
}

uint32_t SnapshotIndex::Crc(uint64_t page) const {
  const int64_t i = FindExtent(page);
  if (i < 0 || extents_[i].kind != ExtentKind::kData) return 0;
  return crcs_[first_crc_[i] + (page - extents_[i].first_page)];
}

// --- SnapshotFileReader

SnapshotFileReader::SnapshotFileReader(os::File file, SnapshotFileInfo info,
                                       SnapshotIndex index)
    : file_(std::move(file)),
      info_(std::move(info)),
      index_(std::move(index)) {}

absl::StatusOr<std::unique_ptr<SnapshotFileReader>> SnapshotFileReader::Open(
    const std::string& path) {
  absl::StatusOr<os::File> file =
      os::File::Open(path, {.create = false, .read_only = true});
  if (!file.ok()) {
    return Annotate(file.status(), absl::StrFormat("snapshot file '%s'", path));
  }
  std::vector<std::byte> head(fmt::kMaxHeaderBytes);
  UPAGER_ASSIGN_OR_RETURN(const size_t head_bytes,
                          file->ReadAt(0, absl::MakeSpan(head)));
  UPAGER_ASSIGN_OR_RETURN(
      SnapshotFileInfo info,
      fmt::DecodeHeader(absl::MakeConstSpan(head).first(head_bytes), path));
  UPAGER_ASSIGN_OR_RETURN(const uint64_t size, file->Size());
  UPAGER_RETURN_IF_ERROR(fmt::CheckFileSize(info, size, path));

  // The header's sizes agree with each other (metadata_length is what
  // extent_count and data_pages need) and with the file's actual size, so
  // the metadata buffer below is at most the file's size. A sparse file
  // can still claim gigabytes of metadata it never wrote: its footer is
  // read and checked first (64 bytes), so only a file whose commit record
  // matches its header gets a buffer that large.
  std::array<std::byte, fmt::kFooterBytes> footer;
  UPAGER_ASSIGN_OR_RETURN(
      const size_t footer_bytes,
      file->ReadAt(info.file_size - fmt::kFooterBytes, absl::MakeSpan(footer)));
  UPAGER_RETURN_IF_ERROR(fmt::CheckFooter(
      info, absl::MakeConstSpan(footer.data(), footer_bytes), path));

  std::vector<std::byte> meta;
  // Running out of memory for a large (or claimed large) file's metadata
  // is a status, not a crash.
  try {
    meta.resize(info.metadata_length + fmt::kFooterBytes);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "snapshot file '%s': no memory for %d bytes of metadata", path,
        info.metadata_length));
  }
  UPAGER_ASSIGN_OR_RETURN(
      const size_t meta_bytes,
      file->ReadAt(info.metadata_offset, absl::MakeSpan(meta)));
  UPAGER_ASSIGN_OR_RETURN(
      SnapshotIndex index,
      fmt::DecodeMetadataAndFooter(
          info, absl::MakeConstSpan(meta).first(meta_bytes), path));
  return std::unique_ptr<SnapshotFileReader>(new SnapshotFileReader(
      std::move(*file), std::move(info), std::move(index)));
}

absl::Status SnapshotFileReader::VerifyPage(uint64_t page,
                                            const std::byte* bytes) const {
  if (page >= info_.page_count) {
    return absl::InvalidArgumentError(
        absl::StrFormat("snapshot file '%s': page %d is past page_count %d",
                        path(), page, info_.page_count));
  }
  const size_t ps = info_.page_size;
  switch (Kind(page)) {
    case PageKind::kData: {
      const uint32_t stored = Crc(page);
      const uint32_t computed = Crc32c(bytes, ps);
      if (stored != computed) {
        return absl::DataLossError(absl::StrFormat(
            "snapshot file '%s': page %d checksum mismatch (stored 0x%08x, "
            "computed 0x%08x)",
            path(), page, stored, computed));
      }
      return absl::OkStatus();
    }
    case PageKind::kZero:
      if (const size_t i = FirstNonZero(bytes, ps); i < ps) {
        return absl::DataLossError(absl::StrFormat(
            "snapshot file '%s': page %d is recorded as zero, but byte %d is "
            "0x%02x",
            path(), page, i, std::to_integer<unsigned>(bytes[i])));
      }
      return absl::OkStatus();
    case PageKind::kInherit:
      break;
  }
  return absl::FailedPreconditionError(absl::StrFormat(
      "snapshot file '%s': page %d is inherited from base '%s'; resolve it "
      "through its SnapshotChain",
      path(), page, info_.base_name));
}

absl::Status SnapshotFileReader::ReadPage(uint64_t page, std::byte* out) const {
  const PageKind kind = Kind(page);
  if (page >= info_.page_count || kind == PageKind::kInherit) {
    return VerifyPage(page, out);  // the same InvalidArgument/Precondition
  }
  const size_t ps = info_.page_size;
  if (kind == PageKind::kZero) {
    std::memset(out, 0, ps);
    return absl::OkStatus();
  }
  UPAGER_ASSIGN_OR_RETURN(const size_t n,
                          file_.ReadAt(DataOffset(page), {out, ps}));
  if (n < ps) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot file '%s': page %d: read %d of %d bytes at offset %d (the "
        "file is shorter than when it was opened)",
        path(), page, n, ps, DataOffset(page)));
  }
  return VerifyPage(page, out);
}

absl::Status SnapshotFileReader::VerifyAll(const ProgressFn& progress) const {
  const size_t ps = info_.page_size;
  const size_t chunk_pages = std::max<size_t>(1, kVerifyChunkBytes / ps);
  std::vector<std::byte> buf;
  try {
    buf.resize(std::min<uint64_t>(chunk_pages, info_.data_pages) * ps);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "snapshot file '%s': no memory for a %d-byte read buffer", path(),
        chunk_pages * ps));
  }
  uint64_t done = 0;
  for (const SnapshotExtent& e : extents()) {
    if (e.kind != ExtentKind::kData) continue;
    for (uint64_t p = e.first_page; p < e.end_page();) {
      const uint64_t n = std::min<uint64_t>(chunk_pages, e.end_page() - p);
      UPAGER_ASSIGN_OR_RETURN(
          const size_t got,
          file_.ReadAt(DataOffset(p), absl::MakeSpan(buf.data(), n * ps)));
      if (got < n * ps) {
        return absl::DataLossError(absl::StrFormat(
            "snapshot file '%s': pages %d..%d: read %d of %d bytes at offset "
            "%d (the file is shorter than when it was opened)",
            path(), p, p + n - 1, got, n * ps, DataOffset(p)));
      }
      for (uint64_t i = 0; i < n; ++i) {
        UPAGER_RETURN_IF_ERROR(VerifyPage(p + i, buf.data() + i * ps));
      }
      p += n;
      done += n;
      if (progress) progress(done, info_.data_pages);
    }
  }
  return absl::OkStatus();
}

// --- SnapshotChain

absl::StatusOr<SnapshotChain> SnapshotChain::Open(const std::string& path,
                                                  size_t max_depth) {
  SnapshotChain chain;
  UPAGER_ASSIGN_OR_RETURN(std::unique_ptr<SnapshotFileReader> newest,
                          SnapshotFileReader::Open(path));
  std::set<SnapshotId> seen = {newest->info().id};
  chain.files_.push_back(std::move(newest));
  while (chain.files_.back()->info().kind == SnapshotKind::kDelta) {
    const SnapshotFileReader& delta = *chain.files_.back();
    const SnapshotFileInfo& d = delta.info();
    if (chain.files_.size() > max_depth) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "snapshot chain from '%s' has more than %d bases (stopped at '%s')",
          path, max_depth, delta.path()));
    }
    const std::string base_path =
        ResolveSnapshotBase(delta.path(), d.base_name);
    absl::StatusOr<std::unique_ptr<SnapshotFileReader>> base =
        SnapshotFileReader::Open(base_path);
    if (!base.ok()) {
      return Annotate(base.status(),
                      absl::StrFormat("base '%s' of snapshot file '%s' "
                                      "(recorded as '%s')",
                                      base_path, delta.path(), d.base_name));
    }
    const SnapshotFileInfo& b = (*base)->info();
    if (b.page_size != d.page_size || b.page_count != d.page_count) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "snapshot file '%s' (page_size %d, page_count %d) has base '%s' "
          "with page_size %d, page_count %d",
          delta.path(), d.page_size, d.page_count, base_path, b.page_size,
          b.page_count));
    }
    if (b.id != d.base_id) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "snapshot file '%s' was written against base id %s, but its base "
          "'%s' has id %s (was the base replaced?)",
          delta.path(), SnapshotIdToString(d.base_id), base_path,
          SnapshotIdToString(b.id)));
    }
    if (!seen.insert(b.id).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "snapshot chain from '%s' has a cycle: '%s' (id %s) is its own "
          "ancestor",
          path, base_path, SnapshotIdToString(b.id)));
    }
    chain.files_.push_back(std::move(*base));
  }

  // Lay each file over the older ones, oldest (the FULL file) first: an
  // extent of any kind replaces what lies under it, DATA extents become
  // runs of their file, and whatever no file covers stays zero.
  const uint64_t ps = chain.page_size();
  for (auto f = chain.files_.rbegin(); f != chain.files_.rend(); ++f) {
    const SnapshotFileReader& file = **f;
    const std::vector<ResolvedRun> under = std::move(chain.runs_);
    std::vector<ResolvedRun>& out = chain.runs_;
    out.clear();
    auto push = [&out](const ResolvedRun& r) {
      if (r.count == 0) return;
      ResolvedRun* last = out.empty() ? nullptr : &out.back();
      if (last != nullptr && last->file == r.file &&
          last->first_page + last->count == r.first_page) {
        last->count += r.count;  // same file, adjacent pages: adjacent bytes
      } else {
        out.push_back(r);
      }
    };
    // What of run `r` lies in [lo, hi).
    auto clip = [&push, ps](const ResolvedRun& r, uint64_t lo, uint64_t hi) {
      const uint64_t a = std::max(r.first_page, lo);
      const uint64_t b = std::min(r.first_page + r.count, hi);
      if (a < b) {
        push({.first_page = a,
              .count = b - a,
              .file = r.file,
              .offset = r.offset + (a - r.first_page) * ps});
      }
    };
    size_t i = 0;
    uint64_t pos = 0;  // pages below are settled
    for (const SnapshotExtent& e : file.extents()) {
      // Older runs before this extent.
      while (i < under.size() && under[i].first_page < e.first_page) {
        clip(under[i], pos, e.first_page);
        if (under[i].first_page + under[i].count > e.first_page) break;
        ++i;
      }
      if (e.kind == ExtentKind::kData) {
        push({.first_page = e.first_page,
              .count = e.count,
              .file = &file,
              .offset = file.DataOffset(e.first_page)});
      }
      pos = e.end_page();
      while (i < under.size() && under[i].first_page + under[i].count <= pos) {
        ++i;
      }
    }
    for (; i < under.size(); ++i) {
      clip(under[i], pos, std::numeric_limits<uint64_t>::max());
    }
  }
  return chain;
}

namespace {

// Index of the first run starting after `page`.
size_t RunsAfter(absl::Span<const ResolvedRun> runs, uint64_t page) {
  return std::upper_bound(runs.begin(), runs.end(), page,
                          [](uint64_t p, const ResolvedRun& r) {
                            return p < r.first_page;
                          }) -
         runs.begin();
}

}  // namespace

ResolvedPage SnapshotChain::Resolve(uint64_t page) const {
  const size_t i = RunsAfter(runs_, page);
  if (i == 0) return {};
  const ResolvedRun& r = runs_[i - 1];
  if (page >= r.first_page + r.count) return {};
  return {.file = r.file,
          .offset = r.offset + (page - r.first_page) * page_size()};
}

ResolvedRun SnapshotChain::RunAt(uint64_t page) const {
  const size_t i = RunsAfter(runs_, page);
  if (i > 0 && page < runs_[i - 1].first_page + runs_[i - 1].count) {
    return runs_[i - 1];
  }
  // A zero gap: from the end of the run before to the start of the next.
  const uint64_t lo = i > 0 ? runs_[i - 1].first_page + runs_[i - 1].count : 0;
  const uint64_t hi =
      i < runs_.size() ? runs_[i].first_page : std::max(page + 1, page_count());
  return {.first_page = lo, .count = hi - lo};
}

void SnapshotChain::ForEachRun(
    uint64_t first_page, uint64_t count,
    absl::FunctionRef<void(const ResolvedRun&)> fn) const {
  const uint64_t pages = page_count();
  if (first_page >= pages) return;
  const uint64_t end = first_page + std::min(count, pages - first_page);
  const uint64_t ps = page_size();
  size_t i = RunsAfter(runs_, first_page);
  if (i > 0 && runs_[i - 1].first_page + runs_[i - 1].count > first_page) --i;
  uint64_t pos = first_page;
  for (; pos < end && i < runs_.size(); ++i) {
    const ResolvedRun& r = runs_[i];
    if (r.first_page >= end) break;
    if (r.first_page > pos) {
      fn({.first_page = pos, .count = r.first_page - pos});
      pos = r.first_page;
    }
    const uint64_t stop = std::min(end, r.first_page + r.count);
    fn({.first_page = pos,
        .count = stop - pos,
        .file = r.file,
        .offset = r.offset + (pos - r.first_page) * ps});
    pos = stop;
  }
  if (pos < end) fn({.first_page = pos, .count = end - pos});
}

absl::Status SnapshotChain::ReadPage(uint64_t page, std::byte* out) const {
  if (page >= page_count()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("snapshot chain '%s': page %d is past page_count %d",
                        newest().path(), page, page_count()));
  }
  const ResolvedPage r = Resolve(page);
  if (r.file == nullptr) {
    std::memset(out, 0, page_size());
    return absl::OkStatus();
  }
  return r.file->ReadPage(page, out);
}

// --- Fuzzing

absl::Status ParseSnapshotFileForFuzzing(absl::Span<const uint8_t> bytes) {
  const std::string label = "<fuzz input>";
  const absl::Span<const std::byte> b(
      reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  UPAGER_ASSIGN_OR_RETURN(
      SnapshotFileInfo info,
      fmt::DecodeHeader(b.first(std::min(b.size(), fmt::kMaxHeaderBytes)),
                        label));
  UPAGER_RETURN_IF_ERROR(fmt::CheckFileSize(info, b.size(), label));
  UPAGER_ASSIGN_OR_RETURN(SnapshotIndex index,
                          fmt::DecodeMetadataAndFooter(
                              info, b.subspan(info.metadata_offset), label));
  // The lookups the runtime makes, at every extent's edges.
  for (const SnapshotExtent& e : index.extents()) {
    for (uint64_t p :
         {e.first_page - 1, e.first_page, e.end_page() - 1, e.end_page()}) {
      (void)index.Kind(p);
      (void)index.Crc(p);
    }
  }
  return absl::OkStatus();
}

}  // namespace upager::internal
