#include "upager/runtime.h"

#include <utility>

#include "runtime/engine.h"
#include "upager/status_macros.h"

namespace upager {

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(
    const RuntimeOptions& options) {
  UPAGER_ASSIGN_OR_RETURN(auto engine, internal::Engine::Create(options));
  return std::unique_ptr<Runtime>(new Runtime(std::move(engine)));
}

Runtime::Runtime(std::unique_ptr<internal::Engine> engine)
    : engine_(std::move(engine)) {}

Runtime::~Runtime() = default;

absl::StatusOr<Region*> Runtime::Map(const RegionOptions& options) {
  return engine_->Map(options);
}

absl::Status Runtime::Unmap(Region* region) { return engine_->Unmap(region); }

absl::StatusOr<Region*> Runtime::MapSnapshot(
    const std::string& path, const MapSnapshotOptions& options) {
  return engine_->MapSnapshot(path, options);
}

absl::Status Runtime::Advise(Region* region, size_t offset, size_t length,
                             Advice advice) {
  return engine_->Advise(region, offset, length, advice);
}

Region* Runtime::FindRegion(const void* addr) const {
  return engine_->FindRegion(addr);
}

Stats Runtime::stats() const { return engine_->stats(); }

absl::Status Runtime::status() const { return engine_->status(); }

size_t Runtime::page_size() const { return engine_->page_size(); }

}  // namespace upager
