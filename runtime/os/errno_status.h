// errno -> absl::Status, in one place. The OS layer is the only code that
// sees errno; everything above it sees absl::Status or an outcome enum.
#ifndef UPAGER_RUNTIME_OS_ERRNO_STATUS_H_
#define UPAGER_RUNTIME_OS_ERRNO_STATUS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace upager::internal::os {

// `what` names the call and its arguments, e.g. "mmap(len=0x1000)".
// Maps EINVAL->InvalidArgument, EPERM/EACCES->PermissionDenied,
// ENOMEM/ENOSPC/EMFILE/ENFILE->ResourceExhausted, ENOENT/ESRCH->NotFound,
// EEXIST->AlreadyExists, EAGAIN->Unavailable, ENOSYS/EOPNOTSUPP->Unimplemented,
// EIO and the rest->Internal. Message: "<what>: <strerror> (errno N)".
absl::Status ErrnoToStatus(int err, absl::string_view what);

}  // namespace upager::internal::os

#endif  // UPAGER_RUNTIME_OS_ERRNO_STATUS_H_
