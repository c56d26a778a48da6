// UPAGER_RETURN_IF_ERROR / UPAGER_ASSIGN_OR_RETURN: early return on a
// non-OK absl::Status (Abseil 20220623 ships no such macros). Public so
// applications and the samples can use them; not part of upager/upager.h.
// The enclosing function must return absl::Status or an absl::StatusOr<T>
// (the error converts to either). Each expression is evaluated once.
#ifndef UPAGER_STATUS_MACROS_H_
#define UPAGER_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define UPAGER_RETURN_IF_ERROR(expr)                  \
  do {                                                \
    ::absl::Status upager_status_ = (expr);           \
    if (!upager_status_.ok()) return upager_status_;  \
  } while (0)

#define UPAGER_STATUS_CONCAT_INNER_(a, b) a##b
#define UPAGER_STATUS_CONCAT_(a, b) UPAGER_STATUS_CONCAT_INNER_(a, b)

// UPAGER_ASSIGN_OR_RETURN(auto x, Foo()); or (x, Foo()) for an existing x.
// Expands to several statements: not usable as the body of an unbraced
// if/else, and at most once per line (the temporary is named by __LINE__).
#define UPAGER_ASSIGN_OR_RETURN(lhs, rexpr) \
  UPAGER_ASSIGN_OR_RETURN_IMPL_(            \
      UPAGER_STATUS_CONCAT_(upager_statusor_, __LINE__), lhs, rexpr)

#define UPAGER_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // UPAGER_STATUS_MACROS_H_
