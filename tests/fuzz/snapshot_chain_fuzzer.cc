// libFuzzer target: base + delta chains (SnapshotChain::Open and its page
// resolution) against a model. The input describes up to four small
// snapshot files: kind, geometry, id, which file a delta names as its
// base (itself, a later or earlier one, or one that does not exist), the
// base id it records, and its extents. They are written (sparse, with the
// project's own encoders) to a scratch directory, and the chain is opened
// from the first one with a depth limit the input also picks.
//
// Contract:
// - Open fails exactly when the model's walk down the bases fails, with
//   the same code (NotFound: missing base; FailedPrecondition: other
//   geometry or id; InvalidArgument: cycle, too deep), naming the delta
//   where the walk stopped (for a cycle: the newest file and the base seen
//   twice);
// - otherwise every page resolves (Resolve, RunAt, data_runs, ForEachRun)
//   to the newest file recording it, at that file's offset for the page,
//   or to zero; runs are sorted, disjoint and maximal; and ReadPage of a
//   page whose bytes are a hole reads zeros that verify (each file records
//   the CRC of a zero page).
//
// The files are tiny: page data is never written, only the header and the
// metadata, so the data area is a hole.
#include <fuzzer/FuzzedDataProvider.h>
#include <stdlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backing/crc32c.h"
#include "backing/snapshot_file.h"
#include "backing/snapshot_format.h"
#include "tests/fuzz/fuzz_check.h"

namespace upager::fuzz {
namespace {

using internal::ExtentKind;
using internal::ResolvedPage;
using internal::ResolvedRun;
using internal::SnapshotChain;
using internal::SnapshotExtent;
using internal::SnapshotFileInfo;
using internal::SnapshotId;
using internal::SnapshotKind;
namespace fmt = internal::snapshot_format;

constexpr int kMaxFiles = 4;
// A delta naming this index names a file that never exists.
constexpr int kAbsent = kMaxFiles;
constexpr uint64_t kMaxPages = 48;

// One scratch directory per process, removed at exit.
const std::string& ScratchDir() {
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string t = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp",
                                 "/upager-chain-fuzz-XXXXXX");
    if (mkdtemp(t.data()) == nullptr) {
      CheckFailed(__FILE__, __LINE__, "mkdtemp", t);
    }
    std::atexit([] { std::filesystem::remove_all(ScratchDir()); });
    return new std::string(t);
  }();
  return *dir;
}

std::string PathOf(int file) {
  return file == kAbsent ? absl::StrCat(ScratchDir(), "/absent.snap")
                         : absl::StrCat(ScratchDir(), "/f", file, ".snap");
}

struct FileSpec {
  bool written = true;  // false: named as a base, but not on disk
  SnapshotKind kind = SnapshotKind::kFull;
  uint64_t page_size = 4096;
  uint64_t page_count = 1;
  uint8_t id = 1;  // 1..4: the input picks collisions
  // DELTA only.
  int base = 0;  // 0..kMaxFiles - 1, or kAbsent
  bool base_id_matches = true;
  bool absolute_base_name = false;
  std::vector<SnapshotExtent> extents;
};

SnapshotId IdOf(uint8_t n) {
  SnapshotId id{};
  id[0] = n;
  id[15] = 0x5a;
  return id;
}

std::vector<SnapshotExtent> ConsumeExtents(FuzzedDataProvider& in,
                                           uint64_t pages) {
  std::vector<SnapshotExtent> extents;
  for (uint64_t p = 0; p < pages;) {
    // Runs out of input as gaps of one page, so this always ends.
    const uint8_t step = in.ConsumeIntegral<uint8_t>();
    const uint64_t count = std::min<uint64_t>(1 + (step / 3) % 8, pages - p);
    if (step % 3 != 0) {
      extents.push_back(
          {.first_page = p,
           .count = static_cast<uint32_t>(count),
           .kind = step % 3 == 1 ? ExtentKind::kZero : ExtentKind::kData});
    }
    p += count;
  }
  return extents;
}

// Writes `spec` as file `index`: header and metadata, data area a hole.
void WriteFile(int index, const std::vector<FileSpec>& specs) {
  const FileSpec& f = specs[index];
  SnapshotFileInfo info;
  info.kind = f.kind;
  info.page_size = f.page_size;
  info.page_count = f.page_count;
  info.id = IdOf(f.id);
  info.created = absl::FromUnixSeconds(1700000000);
  if (f.kind == SnapshotKind::kDelta) {
    const bool exists = f.base != kAbsent && specs[f.base].written;
    info.base_id = f.base_id_matches && exists ? IdOf(specs[f.base].id)
                                               : IdOf(0xee);
    info.base_name = f.absolute_base_name
                         ? PathOf(f.base)
                         : std::filesystem::path(PathOf(f.base))
                               .filename()
                               .string();
  }
  for (const SnapshotExtent& e : f.extents) {
    (e.kind == ExtentKind::kData ? info.data_pages : info.zero_pages) +=
        e.count;
  }
  info.extent_count = f.extents.size();
  const absl::Status layout = fmt::ComputeLayout(&info);
  UPAGER_FUZZ_CHECK(layout.ok(), layout.ToString());
  // Every page is a hole, which reads as zeros: record that CRC.
  const std::vector<std::byte> zeros(f.page_size);
  const std::vector<uint32_t> crcs(info.data_pages,
                                   internal::Crc32c(zeros.data(), zeros.size()));
  const std::vector<std::byte> header = fmt::EncodeHeader(info);
  const std::vector<std::byte> meta =
      fmt::EncodeMetadataAndFooter(info, f.extents, crcs);
  std::ofstream out(PathOf(index), std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(header.data()), header.size());
  out.seekp(static_cast<std::streamoff>(info.metadata_offset));
  out.write(reinterpret_cast<const char*>(meta.data()), meta.size());
  out.close();
  UPAGER_FUZZ_CHECK(out.good(), absl::StrCat("writing ", PathOf(index)));
}

// What the model says Open does: the files of the chain, newest first, or
// the error and the files its message must name.
struct Expected {
  std::vector<int> chain;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::vector<int> named;
};

Expected Walk(const std::vector<FileSpec>& specs, size_t max_depth) {
  Expected x;
  x.chain = {0};
  std::vector<uint8_t> seen = {specs[0].id};
  for (int cur = 0; specs[cur].kind == SnapshotKind::kDelta;) {
    const FileSpec& d = specs[cur];
    // Every failure names the delta where the walk stopped, but a cycle,
    // which names the chain's newest file and the repeated base.
    x.named = {cur};
    if (x.chain.size() > max_depth) {
      x.code = absl::StatusCode::kInvalidArgument;
      return x;
    }
    if (d.base == kAbsent || !specs[d.base].written) {
      x.code = absl::StatusCode::kNotFound;
      return x;
    }
    const FileSpec& b = specs[d.base];
    if (b.page_size != d.page_size || b.page_count != d.page_count ||
        !d.base_id_matches) {
      x.code = absl::StatusCode::kFailedPrecondition;
      return x;
    }
    if (std::find(seen.begin(), seen.end(), b.id) != seen.end()) {
      x.code = absl::StatusCode::kInvalidArgument;
      x.named = {0, d.base};
      return x;
    }
    seen.push_back(b.id);
    x.chain.push_back(d.base);
    cur = d.base;
  }
  return x;
}

// The chain position of the file serving `page`, or -1 for zero.
int ModelServes(const std::vector<FileSpec>& specs,
                const std::vector<int>& chain, uint64_t page) {
  for (size_t k = 0; k < chain.size(); ++k) {
    const FileSpec& f = specs[chain[k]];
    for (const SnapshotExtent& e : f.extents) {
      if (page >= e.first_page && page < e.end_page()) {
        return e.kind == ExtentKind::kData ? static_cast<int>(k) : -1;
      }
    }
    if (f.kind == SnapshotKind::kFull) return -1;
  }
  return -1;
}

void CheckResolved(const SnapshotChain& chain, const std::vector<int>& model,
                   uint64_t page, const internal::SnapshotFileReader* file,
                   uint64_t offset, const char* what) {
  const int k = page < model.size() ? model[page] : -1;
  const internal::SnapshotFileReader* want =
      k < 0 ? nullptr : chain.files()[k].get();
  const uint64_t want_offset = k < 0 ? 0 : want->DataOffset(page);
  UPAGER_FUZZ_CHECK(file == want && offset == want_offset,
                    absl::StrCat(what, ": page ", page, " resolved to ",
                                 file == nullptr ? "zero" : file->path(),
                                 " at ", offset, ", expected ",
                                 want == nullptr ? "zero" : want->path(),
                                 " at ", want_offset));
}

void CheckChain(const SnapshotChain& chain, const std::vector<FileSpec>& specs,
                const Expected& x, FuzzedDataProvider& in) {
  UPAGER_FUZZ_CHECK(chain.files().size() == x.chain.size(),
                    absl::StrCat(chain.files().size(), " files, expected ",
                                 x.chain.size()));
  for (size_t k = 0; k < x.chain.size(); ++k) {
    UPAGER_FUZZ_CHECK(chain.files()[k]->path() == PathOf(x.chain[k]),
                      absl::StrCat("file ", k, " is ",
                                   chain.files()[k]->path()));
  }
  const uint64_t pages = specs[0].page_count;
  const uint64_t ps = specs[0].page_size;
  UPAGER_FUZZ_CHECK(chain.page_count() == pages && chain.page_size() == ps,
                    "geometry");
  std::vector<int> model(pages);
  for (uint64_t p = 0; p < pages; ++p) model[p] = ModelServes(specs, x.chain, p);
  auto same = [&model](uint64_t a, uint64_t b) {
    return a < model.size() && b < model.size() && model[a] == model[b];
  };

  for (uint64_t p = 0; p < pages + 2; ++p) {
    const ResolvedPage r = chain.Resolve(p);
    CheckResolved(chain, model, p, r.file, r.offset, "Resolve");
  }
  // data_runs: sorted, disjoint, maximal, and exactly the DATA pages.
  uint64_t next = 0;
  const ResolvedRun* prev = nullptr;
  std::vector<bool> covered(pages);
  for (const ResolvedRun& r : chain.data_runs()) {
    UPAGER_FUZZ_CHECK(r.count >= 1 && r.first_page >= next &&
                          r.file != nullptr && r.first_page + r.count <= pages,
                      absl::StrCat("data run [", r.first_page, ", +", r.count,
                                   ") after page ", next));
    UPAGER_FUZZ_CHECK(prev == nullptr || prev->file != r.file ||
                          prev->first_page + prev->count != r.first_page,
                      absl::StrCat("data runs not merged at ", r.first_page));
    for (uint64_t i = 0; i < r.count; ++i) {
      CheckResolved(chain, model, r.first_page + i, r.file,
                    r.offset + i * ps, "data_runs");
      covered[r.first_page + i] = true;
    }
    next = r.first_page + r.count;
    prev = &r;
  }
  for (uint64_t p = 0; p < pages; ++p) {
    UPAGER_FUZZ_CHECK(covered[p] == (model[p] >= 0),
                      absl::StrCat("data_runs miss page ", p));
  }
  // RunAt: the maximal run holding the page.
  for (uint64_t p = 0; p < pages; ++p) {
    const ResolvedRun r = chain.RunAt(p);
    UPAGER_FUZZ_CHECK(r.first_page <= p && p - r.first_page < r.count &&
                          r.first_page + r.count <= pages,
                      absl::StrCat("RunAt(", p, ") = [", r.first_page, ", +",
                                   r.count, ")"));
    for (uint64_t i = 0; i < r.count; ++i) {
      CheckResolved(chain, model, r.first_page + i, r.file,
                    r.file == nullptr ? 0 : r.offset + i * ps, "RunAt");
    }
    UPAGER_FUZZ_CHECK(
        (r.first_page == 0 || !same(r.first_page - 1, p)) &&
            !same(r.first_page + r.count, p),
        absl::StrCat("RunAt(", p, ") = [", r.first_page, ", +", r.count,
                     ") is not maximal"));
  }
  // ForEachRun over a range the input picks (possibly past the end, or
  // with a count that would overflow).
  const uint64_t first = in.ConsumeIntegralInRange<uint64_t>(0, pages + 1);
  const uint64_t count = in.ConsumeBool()
                             ? in.ConsumeIntegralInRange<uint64_t>(0, pages + 1)
                             : in.ConsumeIntegral<uint64_t>();
  const uint64_t end =
      first >= pages ? first : first + std::min(count, pages - first);
  uint64_t pos = first;
  chain.ForEachRun(first, count, [&](const ResolvedRun& r) {
    UPAGER_FUZZ_CHECK(r.first_page == pos && r.count >= 1 &&
                          r.count <= end - pos,
                      absl::StrCat("ForEachRun(", first, ", ", count,
                                   ") gave [", r.first_page, ", +", r.count,
                                   ") at page ", pos));
    for (uint64_t i = 0; i < r.count; ++i) {
      CheckResolved(chain, model, r.first_page + i, r.file,
                    r.file == nullptr ? 0 : r.offset + i * ps, "ForEachRun");
    }
    pos += r.count;
  });
  UPAGER_FUZZ_CHECK(pos == end, absl::StrCat("ForEachRun(", first, ", ",
                                             count, ") stopped at ", pos,
                                             ", expected ", end));
  // ReadPage over the start of that range: zeros, verified.
  std::vector<std::byte> buf(ps);
  for (uint64_t p = first; p < std::min(end, first + 4); ++p) {
    buf.assign(ps, std::byte{0x5a});
    const absl::Status s = chain.ReadPage(p, buf.data());
    UPAGER_FUZZ_CHECK(s.ok(), s.ToString());
    UPAGER_FUZZ_CHECK(
        std::all_of(buf.begin(), buf.end(),
                    [](std::byte b) { return b == std::byte{0}; }),
        absl::StrCat("ReadPage(", p, ") is not zero"));
  }
  const absl::Status past = chain.ReadPage(pages, buf.data());
  UPAGER_FUZZ_CHECK(absl::IsInvalidArgument(past), past.ToString());
}

void Run(FuzzedDataProvider& in) {
  const int files = in.ConsumeIntegralInRange<int>(1, kMaxFiles);
  const uint64_t pages = in.ConsumeIntegralInRange<uint64_t>(1, kMaxPages);
  std::vector<FileSpec> specs(files);
  for (int i = 0; i < files; ++i) {
    FileSpec& f = specs[i];
    f.written = i == 0 || in.ConsumeIntegralInRange<int>(0, 7) != 0;
    f.kind = in.ConsumeBool() ? SnapshotKind::kDelta : SnapshotKind::kFull;
    f.page_count = pages;
    switch (in.ConsumeIntegralInRange<int>(0, 15)) {
      case 1:
        f.page_count = pages + 1;
        break;
      case 2:
        f.page_size = 8192;
        break;
      default:
        break;
    }
    f.id = in.ConsumeIntegralInRange<uint8_t>(1, kMaxFiles);
    if (f.kind == SnapshotKind::kDelta) {
      f.base = in.ConsumeIntegralInRange<int>(0, kAbsent);
      if (f.base != kAbsent && f.base >= files) f.base = kAbsent;
      f.base_id_matches = in.ConsumeIntegralInRange<int>(0, 7) != 0;
      f.absolute_base_name = in.ConsumeBool();
    }
  }
  // Ids as the walk sees them: a mismatched base id never matches.
  for (FileSpec& f : specs) {
    if (f.kind == SnapshotKind::kDelta &&
        (f.base == kAbsent || !specs[f.base].written)) {
      f.base_id_matches = false;
    }
  }
  for (FileSpec& f : specs) f.extents = ConsumeExtents(in, f.page_count);
  const size_t max_depth = in.ConsumeBool()
                               ? internal::kMaxSnapshotChainDepth
                               : in.ConsumeIntegralInRange<size_t>(0, 4);

  for (int i = 0; i <= kAbsent; ++i) {
    std::error_code ignored;
    std::filesystem::remove(PathOf(i), ignored);
  }
  for (int i = 0; i < files; ++i) {
    if (specs[i].written) WriteFile(i, specs);
  }

  const Expected x = Walk(specs, max_depth);
  absl::StatusOr<SnapshotChain> chain =
      SnapshotChain::Open(PathOf(0), max_depth);
  if (!chain.ok()) {
    UPAGER_FUZZ_CHECK(
        chain.status().code() == x.code,
        absl::StrCat(chain.status().ToString(), "; expected code ",
                     absl::StatusCodeToString(x.code)));
    for (int f : x.named) {
      UPAGER_FUZZ_CHECK(
          absl::StrContains(chain.status().message(), PathOf(f)),
          absl::StrCat(chain.status().ToString(), "; expected it to name ",
                       PathOf(f)));
    }
    return;
  }
  UPAGER_FUZZ_CHECK(x.code == absl::StatusCode::kOk,
                    absl::StrCat("opened, expected ",
                                 absl::StatusCodeToString(x.code)));
  CheckChain(*chain, specs, x, in);
}

}  // namespace
}  // namespace upager::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  upager::fuzz::Run(in);
  return 0;
}
