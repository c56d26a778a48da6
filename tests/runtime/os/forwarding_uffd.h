// A Uffd that forwards every call to a real one: the base of the test fakes
// at the OS seam, which override only the calls they change.
#ifndef UPAGER_TESTS_RUNTIME_OS_FORWARDING_UFFD_H_
#define UPAGER_TESTS_RUNTIME_OS_FORWARDING_UFFD_H_

#include <memory>
#include <utility>

#include "runtime/os/userfaultfd.h"

namespace upager::testing {

class ForwardingUffd : public internal::os::Uffd {
 public:
  using Result = internal::os::UffdResult;

  explicit ForwardingUffd(std::unique_ptr<internal::os::Uffd> real)
      : real_(std::move(real)) {}

  int fd() const override { return real_->fd(); }
  internal::os::UffdOpenPath path() const override { return real_->path(); }
  uint64_t features() const override { return real_->features(); }
  uint64_t supported_features() const override {
    return real_->supported_features();
  }
  absl::Status Register(uint64_t a, uint64_t l, uint32_t m) override {
    return real_->Register(a, l, m);
  }
  absl::Status Unregister(uint64_t a, uint64_t l) override {
    return real_->Unregister(a, l);
  }
  internal::os::ReadResult ReadEvents(
      absl::Span<internal::os::UffdEvent> out) override {
    return real_->ReadEvents(out);
  }
  Result Copy(uint64_t d, const void* s, uint64_t l, bool w, bool wp) override {
    return real_->Copy(d, s, l, w, wp);
  }
  Result ZeroPage(uint64_t d, uint64_t l, bool w) override {
    return real_->ZeroPage(d, l, w);
  }
  Result Wake(uint64_t a, uint64_t l) override { return real_->Wake(a, l); }
  Result WriteProtect(uint64_t a, uint64_t l, bool p, bool w) override {
    return real_->WriteProtect(a, l, p, w);
  }
  Result Move(uint64_t d, uint64_t s, uint64_t l, bool w, bool h) override {
    return real_->Move(d, s, l, w, h);
  }
  Result Poison(uint64_t a, uint64_t l, bool w) override {
    return real_->Poison(a, l, w);
  }

 protected:
  internal::os::Uffd& real() { return *real_; }
  const internal::os::Uffd& real() const { return *real_; }

 private:
  std::unique_ptr<internal::os::Uffd> real_;
};

}  // namespace upager::testing

#endif  // UPAGER_TESTS_RUNTIME_OS_FORWARDING_UFFD_H_
