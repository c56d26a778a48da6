// Helpers shared by the paging tests: a page pattern per (page, generation)
// written every 64 bytes and checked byte for byte, an in-memory store, and
// a count of pages the kernel has in memory.
#ifndef UPAGER_TESTS_RUNTIME_PAGING_TEST_UTIL_H_
#define UPAGER_TESTS_RUNTIME_PAGING_TEST_UTIL_H_

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "upager/upager.h"

namespace upager::testing {

inline constexpr size_t kPage = 4096;

inline std::shared_ptr<BackingStore> MemoryStore(uint64_t bytes) {
  auto s = NewMemoryStore(bytes);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::shared_ptr<BackingStore>(std::move(*s)) : nullptr;
}

inline unsigned char Byte(uint64_t page, uint64_t i, uint64_t gen) {
  return static_cast<unsigned char>((page * 131 + i * 7 + gen * 29) % 251 + 1);
}

// Not instrumented under ThreadSanitizer: a write to a page userfaultfd
// holds happens only once the fault is served, but TSan records it when
// the thread attempts it, so a snapshot reading the page meanwhile (what
// write protection is for) would be reported as a race. The kernel orders
// these bytes, not anything TSan sees; PageIs checks them (see
// scripts/tsan.supp).
__attribute__((no_sanitize("thread"))) inline void FillPage(std::byte* p,
                                                            uint64_t page,
                                                            uint64_t gen) {
  for (uint64_t i = 0; i < kPage; i += 64) {
    p[i] = std::byte{Byte(page, i, gen)};
  }
}

// Checks one page against what FillPage(gen) wrote (gen 0: never written,
// reads zero).
inline ::testing::AssertionResult PageIs(const std::byte* p, uint64_t page,
                                         uint64_t gen) {
  for (uint64_t i = 0; i < kPage; ++i) {
    const unsigned char want =
        gen == 0 || i % 64 != 0 ? 0 : Byte(page, i, gen);
    if (static_cast<unsigned char>(p[i]) != want) {
      return ::testing::AssertionFailure()
             << "page " << page << " byte " << i << " reads "
             << static_cast<int>(p[i]) << ", want " << static_cast<int>(want)
             << " (generation " << gen << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// FillPage(gen) for pages [first, first + count) of the region at p.
inline void FillPages(std::byte* p, uint64_t first, uint64_t count,
                      uint64_t gen) {
  for (uint64_t i = first; i < first + count; ++i) {
    FillPage(p + i * kPage, i, gen);
  }
}

// PageIs(gen) for pages [first, first + count): the first that differs.
inline ::testing::AssertionResult PagesAre(const std::byte* p, uint64_t first,
                                           uint64_t count, uint64_t gen) {
  for (uint64_t i = first; i < first + count; ++i) {
    if (::testing::AssertionResult r = PageIs(p + i * kPage, i, gen); !r) {
      return r;
    }
  }
  return ::testing::AssertionSuccess();
}

// A region of `pages` pages named `name`, every page written with
// generation 1 (FillPages); null, with a test failure, if Map fails.
inline Region* MapFilled(Runtime& rt, uint64_t pages, const char* name) {
  absl::StatusOr<Region*> r = rt.Map({.size = pages * kPage, .name = name});
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return nullptr;
  FillPages((*r)->data(), 0, pages, 1);
  return *r;
}

// Pages of [p, p + pages) the kernel has in memory (mincore).
inline uint64_t PresentPages(const std::byte* p, uint64_t pages) {
  std::vector<unsigned char> v(pages);
  EXPECT_EQ(mincore(const_cast<std::byte*>(p), pages * kPage, v.data()), 0);
  uint64_t n = 0;
  for (unsigned char c : v) n += c & 1;
  return n;
}

}  // namespace upager::testing

#endif  // UPAGER_TESTS_RUNTIME_PAGING_TEST_UTIL_H_
