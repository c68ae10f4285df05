#pragma once

// Turning a registry's HTTP answer into a Status: the code containerd's
// callers understand (404 -> NotFound, 401 -> Unauthenticated, 5xx ->
// Unavailable, ...) and a message built from the registry's error body
// ("HTTP 404 MANIFEST_UNKNOWN: manifest unknown"). A registry is untrusted:
// what it says is quoted printable and bounded.
//
// Thread-safety: pure functions.

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "registry/http.h"

namespace accel::registry {

// The Status for an answer that is not the one the operation wanted.
absl::Status HttpError(const HttpResponse& response);

// Printable, bounded text from an untrusted source (non-printable bytes
// become spaces; "..." marks a cut).
std::string Sanitize(absl::string_view s, size_t max = 200);

}  // namespace accel::registry
