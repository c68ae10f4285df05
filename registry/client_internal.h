#pragma once

// Internal to registry/: what client.cc and client_blobs.cc share.

#include <functional>
#include <string>

#include "absl/strings/string_view.h"
#include "registry/client.h"

namespace accel::registry {

struct Client::SendOptions {
  bool retry = true;  // false for non-idempotent steps (upload PUT/PATCH)
  // Monotonic count of useful bytes; progress resets the failure budget.
  std::function<int64_t()> progress;
  // Send the Authorization header (false for URLs on another origin).
  bool authorize = true;
  // Another host can take over: a refused connection is not retried here.
  bool has_fallback = false;
};

// Scopes of a token for pulling from, or pushing to, `repo`.
std::string PullScope(absl::string_view repo);
std::string PushScope(absl::string_view repo);

}  // namespace accel::registry
