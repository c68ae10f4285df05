#pragma once

// errno <-> absl::Status, in one place (the FUSE and syscall boundaries).
//
// ErrnoToStatus maps ENOENT->NotFound, EEXIST->AlreadyExists,
// ENOTEMPTY/EBUSY->FailedPrecondition, EINVAL->InvalidArgument,
// EACCES/EPERM->PermissionDenied, ENOSPC->ResourceExhausted, EIO->DataLoss-free
// Unavailable, anything else->Internal; the original errno travels as a
// payload so StatusToErrno can give it back exactly.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace accel {

// Builds a status from `err` (an errno value) with "context: strerror".
absl::Status ErrnoToStatus(int err, absl::string_view context);

// Returns the errno that best describes `status` (the exact one if it came
// from ErrnoToStatus). OK gives 0.
int StatusToErrno(const absl::Status& status);

}  // namespace accel
