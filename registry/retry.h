#pragma once

// Retry policy for registry requests: which failures are worth another try,
// how long to wait before it (exponential backoff with jitter, or the
// server's Retry-After, capped), and RetryRequest, the one retry loop every
// registry request goes through (the client's requests and the token
// server's alike). The policy functions are pure; RetryRequest sleeps
// through the sleeper it is given.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "registry/http.h"

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

// How the client waits between retries (tests pass a fake).
using Sleeper = std::function<void(absl::Duration)>;

// How RetryRequest treats one request.
struct RetryOptions {
  // False for steps that must not be repeated (upload PUT/PATCH): one try.
  bool retry = true;
  // Another host can take over: a refused connection is final here.
  bool connect_failure_is_final = false;
  // Monotonic count of useful bytes so far (a download): when it moves,
  // the failure budget starts afresh.
  std::function<int64_t()> progress;
  // Names the host in log lines.
  std::string origin;
};

// Runs `attempt` until it gives a final answer: transport failures
// (IsRetryableTransportError) and retryable HTTP statuses are tried again
// after BackoffDelay/RetryDelay (Retry-After honoured), until `policy`'s
// max_attempts fail in a row. Returns the last answer: a transport error,
// or an HttpResponse with any status (the caller judges it).
absl::StatusOr<HttpResponse> RetryRequest(
    const RetryPolicy& policy, const Sleeper& sleep, const RetryOptions& options,
    const std::function<absl::StatusOr<HttpResponse>()>& attempt);

// Runs `attempt`, a whole operation of several requests (an upload), again
// after BackoffDelay while it fails with a status `retryable` accepts, at
// most policy.max_attempts times; returns the last status.
absl::Status RetryOperation(const RetryPolicy& policy, const Sleeper& sleep,
                            const std::function<bool(const absl::Status&)>& retryable,
                            const std::function<absl::Status()>& attempt);

}  // namespace accel::registry
