// `upager snapshot inspect`: what a snapshot file holds (every header
// field) and, for a delta, the chain of bases it needs down to the full
// file, with how many pages of the image each file serves. Reads only the
// header and metadata of each file (SnapshotFileReader::Open validates
// them); page data is `upager snapshot verify`'s job.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "backing/snapshot_file.h"
#include "backing/snapshot_format.h"
#include "runtime/cli/command.h"
#include "runtime/cli/json.h"

ABSL_FLAG(bool, extents, false,
          "Also list every extent (first page, count, data or zero) of "
          "each file in the chain");
// Defined by probe_command.cc (flag names are process-wide); listed in
// this command's shared_flags.
ABSL_DECLARE_FLAG(std::string, format);

namespace upager::cli {
namespace {

using ::upager::internal::ExtentKind;
using ::upager::internal::ResolvedRun;
using ::upager::internal::SnapshotChain;
using ::upager::internal::SnapshotExtent;
using ::upager::internal::SnapshotFileInfo;
using ::upager::internal::SnapshotFileReader;
using ::upager::internal::SnapshotIdToString;
using ::upager::internal::SnapshotKind;

namespace fmt = ::upager::internal::snapshot_format;

constexpr char kName[] = "snapshot inspect";

const char* KindName(SnapshotKind kind) {
  return kind == SnapshotKind::kFull ? "full" : "delta";
}

// "282624 bytes (276 KiB)": exact, then rounded for people.
std::string Bytes(uint64_t b) {
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (b < 1024) return absl::StrCat(b, " bytes");
  double v = static_cast<double>(b) / 1024;
  int unit = 0;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%d bytes (%.*f %s)", b, v < 10 ? 1 : 0, v,
                         kUnits[unit]);
}

// The bytes a writer actually writes: the header, the DATA pages, the
// metadata and the footer. Everything else in the file is holes (pages
// never stored), which take no disk on file systems with sparse files.
// This is what the file needs on disk, not what the file system reports:
// the OS layer has no stat of allocated blocks yet.
uint64_t StoredBytes(const SnapshotFileInfo& h) {
  return fmt::kFixedHeaderBytes + h.base_name.size() +
         h.data_pages * h.page_size + h.metadata_length + fmt::kFooterBytes;
}

// Pages of the chain's image that each file serves as DATA, indexed like
// chain.files(); the rest of the image is zero.
std::vector<uint64_t> PagesServed(const SnapshotChain& chain) {
  std::vector<uint64_t> served(chain.files().size(), 0);
  for (const ResolvedRun& r : chain.data_runs()) {
    for (size_t i = 0; i < chain.files().size(); ++i) {
      if (chain.files()[i].get() == r.file) served[i] += r.count;
    }
  }
  return served;
}

uint64_t Sum(const std::vector<uint64_t>& v) {
  uint64_t s = 0;
  for (uint64_t x : v) s += x;
  return s;
}

std::string CreatedText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%E3S UTC", t, absl::UTCTimeZone());
}

void PrintHeaderText(const SnapshotFileReader& file) {
  const SnapshotFileInfo& h = file.info();
  const auto row = [](absl::string_view k, absl::string_view v) {
    std::printf("  %-16s %s\n", std::string(k).c_str(), std::string(v).c_str());
  };
  std::printf("snapshot file '%s'\n", file.path().c_str());
  row("format version", absl::StrCat(h.version));
  row("kind", KindName(h.kind));
  row("page size", absl::StrCat(h.page_size, " bytes"));
  row("pages", absl::StrCat(h.page_count, " (region of ",
                            Bytes(h.page_count * h.page_size), ")"));
  row("id", SnapshotIdToString(h.id));
  row("created", CreatedText(h.created));
  row("data pages", absl::StrCat(h.data_pages));
  row("zero pages", absl::StrCat(h.zero_pages));
  if (h.kind == SnapshotKind::kDelta) {
    row("inherited pages",
        absl::StrCat(h.page_count - h.data_pages - h.zero_pages,
                     " (from the base)"));
  }
  row("extents", absl::StrCat(h.extent_count));
  row("file size", Bytes(h.file_size));
  row("on disk", absl::StrCat("at least ", Bytes(StoredBytes(h)),
                              ": header, data pages, metadata (the rest "
                              "is holes)"));
  if (h.kind == SnapshotKind::kDelta) {
    row("base",
        absl::StrCat("'", h.base_name, "' (as stored) -> '",
                     internal::ResolveSnapshotBase(file.path(), h.base_name),
                     "'"));
    row("base id", SnapshotIdToString(h.base_id));
  }
}

void PrintExtentsText(const SnapshotFileReader& file) {
  std::printf("\nextents of '%s' (%zu)\n", file.path().c_str(),
              file.extents().size());
  if (file.extents().empty()) return;
  std::printf("  %20s %10s  %s\n", "first page", "pages", "kind");
  for (const SnapshotExtent& e : file.extents()) {
    std::printf("  %20llu %10u  %s\n",
                static_cast<unsigned long long>(e.first_page), e.count,
                e.kind == ExtentKind::kData ? "data" : "zero");
  }
}

void PrintChainText(const SnapshotChain& chain) {
  const auto files = chain.files();
  const std::vector<uint64_t> served = PagesServed(chain);
  std::printf("\nchain: %zu file%s, newest first\n", files.size(),
              files.size() == 1 ? "" : "s");
  for (size_t i = 0; i < files.size(); ++i) {
    const SnapshotFileInfo& h = files[i]->info();
    std::printf("  [%zu] '%s'", i, files[i]->path().c_str());
    if (i > 0) {
      std::printf(" (stored in [%zu] as '%s')", i - 1,
                  files[i - 1]->info().base_name.c_str());
    }
    std::printf("\n      %s, id %s, %llu data pages, %llu zero pages\n",
                KindName(h.kind), SnapshotIdToString(h.id).c_str(),
                static_cast<unsigned long long>(h.data_pages),
                static_cast<unsigned long long>(h.zero_pages));
    const uint64_t hidden = h.data_pages - served[i];
    std::printf("      serves %llu pages of the image",
                static_cast<unsigned long long>(served[i]));
    if (hidden > 0) {
      std::printf(" (%llu of its data pages are replaced by newer files)",
                  static_cast<unsigned long long>(hidden));
    }
    std::printf("\n");
  }
  const uint64_t data = Sum(served);
  std::printf("image: %llu pages: %llu data, %llu zero\n",
              static_cast<unsigned long long>(chain.page_count()),
              static_cast<unsigned long long>(data),
              static_cast<unsigned long long>(chain.page_count() - data));
}

std::string ExtentsJson(const SnapshotFileReader& file) {
  std::vector<std::string> items;
  for (const SnapshotExtent& e : file.extents()) {
    JsonObject x;
    x.Add("first_page", e.first_page);
    x.Add("count", e.count);
    x.Add("kind", e.kind == ExtentKind::kData ? "data" : "zero");
    items.push_back(x.Build());
  }
  return JsonArray(items);
}

// One file's header fields (the newest file's, and each chain entry's).
void AddHeaderJson(const SnapshotFileReader& file, JsonObject* out) {
  const SnapshotFileInfo& h = file.info();
  out->Add("path", file.path());
  out->Add("version", h.version);
  out->Add("kind", KindName(h.kind));
  out->Add("page_size", h.page_size);
  out->Add("page_count", h.page_count);
  out->Add("region_bytes", h.page_count * h.page_size);
  out->Add("id", SnapshotIdToString(h.id));
  out->Add("created", absl::FormatTime(absl::RFC3339_full, h.created,
                                       absl::UTCTimeZone()));
  out->Add("created_unix_nanos", absl::ToUnixNanos(h.created));
  out->Add("data_pages", h.data_pages);
  out->Add("zero_pages", h.zero_pages);
  out->Add("extent_count", h.extent_count);
  out->Add("file_size", h.file_size);
  out->Add("stored_bytes", StoredBytes(h));
  if (h.kind == SnapshotKind::kDelta) {
    out->Add("base_name", h.base_name);
    out->Add("base_path",
             internal::ResolveSnapshotBase(file.path(), h.base_name));
    out->Add("base_id", SnapshotIdToString(h.base_id));
  }
}

void PrintJson(const SnapshotFileReader& file,
               const absl::StatusOr<SnapshotChain>& chain, bool extents) {
  JsonObject out;
  AddHeaderJson(file, &out);
  if (extents) out.AddRaw("extents", ExtentsJson(file));
  if (chain.ok()) {
    const std::vector<uint64_t> served = PagesServed(*chain);
    std::vector<std::string> items;
    for (size_t i = 0; i < chain->files().size(); ++i) {
      const SnapshotFileReader& f = *chain->files()[i];
      JsonObject item;
      AddHeaderJson(f, &item);
      item.Add("pages_served", served[i]);
      if (extents) item.AddRaw("extents", ExtentsJson(f));
      items.push_back(item.Build());
    }
    out.AddRaw("chain", JsonArray(items));
    out.Add("image_data_pages", Sum(served));
    out.Add("image_zero_pages", chain->page_count() - Sum(served));
  } else {
    out.AddRaw("chain", "null");
    out.Add("chain_error", chain.status().message());
  }
  std::printf("%s\n", out.Build().c_str());
}

int RunInspect(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    return UsageError(
        kName, args.empty() ? "expects one snapshot file"
                            : absl::StrCat("expects one snapshot file, got ",
                                           args.size(), " arguments"));
  }
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "text" && format != "json") {
    return UsageError(
        kName, absl::StrCat("--format=", format, " is not one of: text, json"));
  }
  const bool extents = absl::GetFlag(FLAGS_extents);
  absl::StatusOr<std::unique_ptr<SnapshotFileReader>> file =
      SnapshotFileReader::Open(args[0]);
  if (!file.ok()) {
    std::fprintf(stderr, "upager %s: %s\n", kName,
                 std::string(file.status().message()).c_str());
    return kExitFailure;
  }
  // The chain opens the file again; its readers name the bases as
  // resolved. A broken chain still leaves the file itself to show.
  const absl::StatusOr<SnapshotChain> chain = SnapshotChain::Open(args[0]);
  if (format == "json") {
    PrintJson(**file, chain, extents);
  } else {
    PrintHeaderText(**file);
    if (chain.ok()) {
      PrintChainText(*chain);
      if (extents) {
        for (const auto& f : chain->files()) PrintExtentsText(*f);
      }
    } else if (extents) {
      PrintExtentsText(**file);
    }
  }
  if (!chain.ok()) {
    std::fflush(stdout);
    std::fprintf(stderr, "upager %s: %s\n", kName,
                 std::string(chain.status().message()).c_str());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

UPAGER_CLI_COMMAND(
    snapshot_inspect,
    {.name = "snapshot inspect",
     .summary = "a snapshot file's header, its chain of bases, and which "
                "file serves how many pages",
     .usage =
         "[--extents] [--format=text|json] <file>\n\n"
         "Prints every header field of a snapshot file (format version, "
         "full or delta,\npage size and count, id, creation time, data and "
         "zero pages, extents, file\nsize and the bytes it stores; the rest "
         "of the file is holes), then its chain:\nfor a delta, each base "
         "down to the full file (the name stored in the delta\nabove it, "
         "the path it resolves to, id and kind) and how many pages of "
         "the\nimage each file serves. Reads headers and metadata only "
         "(checked against\ntheir CRCs); 'upager snapshot verify' checks the "
         "page data.\nExit code 0, 1 when a file cannot be read or a base "
         "is missing or does not\nmatch (the file's own header is still "
         "printed), 2 for a bad command line.",
     .run = RunInspect,
     .shared_flags = {"format"}});

}  // namespace upager::cli
