#include "registry/retry.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace accel::registry {

bool IsRetryableHttpStatus(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

bool IsRetryableTransportError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

absl::Duration BackoffDelay(const RetryPolicy& policy, int retry, double jitter) {
  double factor = std::pow(policy.multiplier, std::min(retry, 62));
  absl::Duration d = policy.initial_backoff * factor;
  if (d > policy.max_backoff || factor > 1e12) d = policy.max_backoff;
  jitter = std::clamp(jitter, 0.5, 1.0);
  return d * jitter;
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now) {
  absl::string_view v = absl::StripAsciiWhitespace(value);
  if (v.empty()) return std::nullopt;
  int64_t secs = 0;
  if (absl::ascii_isdigit(static_cast<unsigned char>(v[0]))) {
    if (!absl::SimpleAtoi(v, &secs) || secs < 0) return std::nullopt;
    return absl::Seconds(std::min<int64_t>(secs, 1 << 30));
  }
  absl::Time t;
  std::string err;
  // IMF-fixdate, the form RFC 9110 requires senders to use.
  if (!absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(v), absl::UTCTimeZone(), &t,
                       &err)) {
    return std::nullopt;
  }
  return std::max(t - now, absl::ZeroDuration());
}

absl::Duration RetryDelay(const RetryPolicy& policy, int retry, absl::string_view retry_after,
                          absl::Time now, double jitter) {
  absl::Duration d = BackoffDelay(policy, retry, jitter);
  std::optional<absl::Duration> ra = ParseRetryAfter(retry_after, now);
  if (ra && *ra > d) d = *ra;
  return std::min(d, policy.max_retry_after);
}

}  // namespace accel::registry
