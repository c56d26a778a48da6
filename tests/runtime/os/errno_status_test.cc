#include "runtime/os/errno_status.h"

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace upager::internal::os {
namespace {

TEST(ErrnoToStatusTest, MapsCodesAndNamesTheCall) {
  EXPECT_TRUE(ErrnoToStatus(0, "x").ok());
  const struct {
    int err;
    absl::StatusCode code;
  } cases[] = {{EINVAL, absl::StatusCode::kInvalidArgument},
               {EPERM, absl::StatusCode::kPermissionDenied},
               {ENOMEM, absl::StatusCode::kResourceExhausted},
               {ENOSPC, absl::StatusCode::kResourceExhausted},
               {ENOENT, absl::StatusCode::kNotFound},
               {EEXIST, absl::StatusCode::kAlreadyExists},
               {EAGAIN, absl::StatusCode::kUnavailable},
               {ENOSYS, absl::StatusCode::kUnimplemented},
               {EIO, absl::StatusCode::kInternal}};
  for (const auto& c : cases) {
    const absl::Status s = ErrnoToStatus(c.err, "ioctl(UFFDIO_COPY)");
    EXPECT_EQ(s.code(), c.code) << c.err;
    EXPECT_THAT(s.message(), ::testing::HasSubstr("ioctl(UFFDIO_COPY)"));
    EXPECT_THAT(s.message(),
                ::testing::HasSubstr("errno " + std::to_string(c.err)));
  }
}

}  // namespace
}  // namespace upager::internal::os
