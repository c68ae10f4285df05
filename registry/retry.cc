#include "registry/retry.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace accel::registry {
namespace {

double Jitter() {
  thread_local std::mt19937 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.5, 1.0)(rng);
}

void Wait(const Sleeper& sleep, absl::Duration d) {
  if (sleep) {
    sleep(d);
  } else {
    absl::SleepFor(d);
  }
}

}  // namespace

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

absl::StatusOr<HttpResponse> RetryRequest(
    const RetryPolicy& policy, const Sleeper& sleep, const RetryOptions& options,
    const std::function<absl::StatusOr<HttpResponse>()>& attempt) {
  int failures = 0;
  int64_t last_progress = options.progress ? options.progress() : 0;
  for (;;) {
    absl::StatusOr<HttpResponse> resp = attempt();
    if (options.progress) {
      const int64_t p = options.progress();
      if (p != last_progress) {
        // Progress: an interrupted transfer earns a fresh budget.
        failures = 0;
        last_progress = p;
      }
    }
    if (!resp.ok()) {
      if (!options.retry || !IsRetryableTransportError(resp.status()) ||
          (options.connect_failure_is_final && IsConnectFailure(resp.status())) ||
          ++failures >= policy.max_attempts) {
        return resp;
      }
      const absl::Duration d = BackoffDelay(policy, failures - 1, Jitter());
      ACCEL_LOG(kDebug, "msg=\"registry request failed, retrying\"",
                LogField("host", options.origin), LogField("error", resp.status().message()),
                LogField("delay", absl::FormatDuration(d)));
      Wait(sleep, d);
      continue;
    }
    if (options.retry && IsRetryableHttpStatus(resp->status) &&
        failures + 1 < policy.max_attempts) {
      ++failures;
      const absl::Duration d =
          RetryDelay(policy, failures - 1, resp->Header("retry-after"), absl::Now(), Jitter());
      ACCEL_LOG(kDebug, "msg=\"registry busy, retrying\"", LogField("host", options.origin),
                LogField("status", absl::StrCat(resp->status)),
                LogField("delay", absl::FormatDuration(d)));
      Wait(sleep, d);
      continue;
    }
    return resp;
  }
}

absl::Status RetryOperation(const RetryPolicy& policy, const Sleeper& sleep,
                            const std::function<bool(const absl::Status&)>& retryable,
                            const std::function<absl::Status()>& attempt) {
  absl::Status s;
  for (int tried = 0; tried < policy.max_attempts; ++tried) {
    if (tried > 0) Wait(sleep, BackoffDelay(policy, tried - 1, Jitter()));
    s = attempt();
    if (s.ok() || !retryable(s)) break;
  }
  return s;
}

}  // namespace accel::registry
