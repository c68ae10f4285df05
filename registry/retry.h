#pragma once

// Retry policy for registry requests: which failures are worth another try,
// and how long to wait before it (exponential backoff with jitter, or the
// server's Retry-After, capped). Pure functions; the client does the sleeping.

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace accel::registry {

struct RetryPolicy {
  // Attempts per host for one request (1 = no retry). Progress made by an
  // interrupted download does not use up attempts (see Client).
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(10);
  double multiplier = 2.0;
  // A Retry-After longer than this is cut to it (a server must not park us).
  absl::Duration max_retry_after = absl::Seconds(60);
};

// 408, 429, 500, 502, 503 and 504 are retried; everything else is final.
bool IsRetryableHttpStatus(long status);

// Transport failures (connection refused/reset, timeouts, stalls) are
// retried: the client marks them Unavailable or DeadlineExceeded.
bool IsRetryableTransportError(const absl::Status& status);

// Delay before retry number `retry` (0 = the first retry):
// initial_backoff * multiplier^retry, capped at max_backoff, then scaled by
// `jitter` in [0.5, 1.0] (pass 1.0 for no jitter).
absl::Duration BackoffDelay(const RetryPolicy& policy, int retry, double jitter = 1.0);

// Parses a Retry-After value: delay-seconds ("120") or an HTTP-date
// ("Wed, 21 Oct 2015 07:28:00 GMT", relative to `now`; past dates give 0).
// nullopt if unparseable.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now);

// The wait before retrying a response with `status` and optional
// Retry-After header value `retry_after` ("" if absent): the larger of the
// backoff and Retry-After, capped at policy.max_retry_after.
absl::Duration RetryDelay(const RetryPolicy& policy, int retry, absl::string_view retry_after,
                          absl::Time now, double jitter = 1.0);

}  // namespace accel::registry
