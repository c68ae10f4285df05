#pragma once

// Status plumbing that abseil 20220623 does not ship publicly.
//
//   ACCEL_RETURN_IF_ERROR(expr);            returns expr's status if not OK
//   ACCEL_ASSIGN_OR_RETURN(auto x, expr);   unwraps a StatusOr or returns its status
//   Annotate(status, "prepare ", key)       prefixes context, keeps the code

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace accel {

// Returns `status` with `parts...` prepended to its message ("parts: message"),
// keeping the code and payloads. OK stays OK.
template <typename... Parts>
absl::Status Annotate(const absl::Status& status, const Parts&... parts) {
  if (status.ok()) return status;
  absl::Status out(status.code(), absl::StrCat(parts..., ": ", status.message()));
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace accel

#define ACCEL_STATUS_CONCAT_INNER_(a, b) a##b
#define ACCEL_STATUS_CONCAT_(a, b) ACCEL_STATUS_CONCAT_INNER_(a, b)

#define ACCEL_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status accel_status_ = (expr);         \
    if (!accel_status_.ok()) return accel_status_; \
  } while (0)

#define ACCEL_ASSIGN_OR_RETURN(lhs, expr) \
  ACCEL_ASSIGN_OR_RETURN_IMPL_(ACCEL_STATUS_CONCAT_(accel_statusor_, __LINE__), lhs, expr)

#define ACCEL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
