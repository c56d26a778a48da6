#include "bench/out_of_core_fixture.h"

#include <cstdlib>

namespace upager::bench {
namespace {

struct Slot {
  std::string key;
  std::unique_ptr<OocFixture> fixture;
};

// Never destroyed (Google style for statics); ReleaseOocFixture, registered
// with atexit, empties it, so the swap files and the kernel side's cgroup
// and swap area go away at a normal exit.
Slot& TheSlot() {
  static Slot* slot = [] {
    std::atexit(ReleaseOocFixture);
    return new Slot;
  }();
  return *slot;
}

}  // namespace

OocFixture* LiveOocFixture(absl::string_view key) {
  Slot& slot = TheSlot();
  if (slot.fixture == nullptr || slot.key != key || slot.fixture->exhausted()) {
    return nullptr;
  }
  return slot.fixture.get();
}

void InstallOocFixture(std::string key, std::unique_ptr<OocFixture> fixture) {
  Slot& slot = TheSlot();
  slot.fixture.reset();
  slot.key = std::move(key);
  slot.fixture = std::move(fixture);
}

void ReleaseOocFixture() {
  Slot& slot = TheSlot();
  slot.fixture.reset();
  slot.key.clear();
}

}  // namespace upager::bench
