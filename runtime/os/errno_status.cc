#include "runtime/os/errno_status.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace upager::internal::os {

absl::Status ErrnoToStatus(int err, absl::string_view what) {
  const std::string msg =
      absl::StrCat(what, ": ", std::strerror(err), " (errno ", err, ")");
  switch (err) {
    case 0:
      return absl::OkStatus();
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(msg);
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(msg);
    case ENOENT:
    case ESRCH:
      return absl::NotFoundError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case EAGAIN:
      return absl::UnavailableError(msg);
    case ENOSYS:
    case EOPNOTSUPP:
      return absl::UnimplementedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace upager::internal::os
