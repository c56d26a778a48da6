// Where a region mapped from a saved snapshot (Runtime::MapSnapshot) gets
// its pages: the snapshot file chain (backing/snapshot_file.h), each file
// mapped read-only so a fill is one UFFDIO_COPY from the page cache, after
// the page's checksum is verified. The mappings go with the source.
//
// Thread-safety: immutable after construction except the prefetch thread's
// stop flag; the mappings live as long as the region.
#ifndef UPAGER_RUNTIME_SNAPSHOT_SOURCE_H_
#define UPAGER_RUNTIME_SNAPSHOT_SOURCE_H_

#include <atomic>
#include <cstddef>
#include <thread>
#include <utility>
#include <vector>

#include "backing/snapshot_file.h"
#include "runtime/os/memory.h"

namespace upager::internal {

struct SnapshotSource {
  explicit SnapshotSource(SnapshotChain c) : chain(std::move(c)) {}
  ~SnapshotSource() {
    for (size_t i = 0; i < maps.size(); ++i) {
      (void)os::Unmap(const_cast<std::byte*>(maps[i]), map_lengths[i]);
    }
  }
  SnapshotSource(const SnapshotSource&) = delete;
  SnapshotSource& operator=(const SnapshotSource&) = delete;

  // The bytes of `run`'s first page in the file mapping (run.file != null).
  const std::byte* Bytes(const ResolvedRun& run) const {
    for (size_t i = 0; i < chain.files().size(); ++i) {
      if (chain.files()[i].get() == run.file) return maps[i] + run.offset;
    }
    return nullptr;
  }

  SnapshotChain chain;
  std::vector<const std::byte*> maps;  // by chain.files() index
  std::vector<size_t> map_lengths;
  std::atomic<bool> stop_prefetch{false};
  std::thread prefetch;
};

}  // namespace upager::internal

#endif  // UPAGER_RUNTIME_SNAPSHOT_SOURCE_H_
