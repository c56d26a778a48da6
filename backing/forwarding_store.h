// A BackingStore that forwards every call to another one: the base of
// wrappers that watch or alter some requests (the runtime's request
// counter around the application's store, the tests' failing and delaying
// stores) and leave the rest alone. A wrapper overrides only what it
// changes.
//
// Thread-safety: that of the wrapped store.
#ifndef UPAGER_BACKING_FORWARDING_STORE_H_
#define UPAGER_BACKING_FORWARDING_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "upager/backing_store.h"

namespace upager {

class ForwardingStore : public BackingStore {
 public:
  explicit ForwardingStore(std::shared_ptr<BackingStore> real)
      : real_(std::move(real)) {}

  size_t page_size() const override { return real_->page_size(); }
  uint64_t capacity_slots() const override { return real_->capacity_slots(); }
  absl::StatusOr<uint64_t> AllocateSlot() override {
    return real_->AllocateSlot();
  }
  void FreeSlot(uint64_t slot) override { real_->FreeSlot(slot); }
  absl::Status RegisterBuffers(std::byte* base, size_t len) override {
    return real_->RegisterBuffers(base, len);
  }
  absl::Status Submit(absl::Span<const Request> requests) override {
    return real_->Submit(requests);
  }
  size_t Reap(absl::Span<Completion> out) override {
    return real_->Reap(out);
  }
  size_t Wait(absl::Span<Completion> out, absl::Duration timeout) override {
    return real_->Wait(out, timeout);
  }
  int completion_fd() const override { return real_->completion_fd(); }
  BackingStoreStats stats() const override { return real_->stats(); }

 protected:
  BackingStore& real() const { return *real_; }

 private:
  const std::shared_ptr<BackingStore> real_;
};

}  // namespace upager

#endif  // UPAGER_BACKING_FORWARDING_STORE_H_
