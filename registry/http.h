#pragma once

// A small blocking HTTP client on libcurl (OpenSSL): one request at a time
// per call, easy handles pooled so connections are reused.
//
// Transport failures (DNS, refused, reset, TLS, connect timeout, stalled
// transfer) come back as a non-OK Status: Unavailable, or DeadlineExceeded
// for timeouts and stalls; TLS verification failures as Unavailable with a
// hint. Any HTTP status, including 4xx/5xx, is a successful exchange and
// comes back in HttpResponse.
//
// Thread-safe: many threads may call Do() at once.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace accel::registry {

// Payload set on statuses for failures to connect at all (refused, no such
// host): the client then moves on to the next host without retrying.
inline constexpr char kConnectFailedPayload[] = "accel.registry/connect-failed";
bool IsConnectFailure(const absl::Status& status);

struct TlsOptions {
  bool skip_verify = false;
  std::vector<std::string> ca_files;  // added to the system's trusted CAs
  std::string client_cert;            // PEM file ("" for none)
  std::string client_key;             // PEM file ("" = inside client_cert)
};

struct HttpResponse;

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, PUT, POST, PATCH, DELETE
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  bool follow_redirects = true;  // for GET/HEAD (blob storage redirects)

  // Request body: either `body`, or `body_size` bytes produced by
  // `body_reader(buf, max)` (returns bytes written, 0 at the end, or an
  // error to abort).
  std::string body;
  int64_t body_size = -1;
  std::function<absl::StatusOr<size_t>(char* buf, size_t max)> body_reader;

  // Response body of a 2xx answer: streamed to `on_body` when set (return
  // false to abort the transfer), else collected in HttpResponse::body.
  // Non-2xx bodies are always collected (capped) for error messages.
  std::function<bool(absl::string_view chunk)> on_body;
  // Called once per 2xx response, before its first on_body chunk, with the
  // response's status and headers (return false to abort).
  std::function<bool(const HttpResponse& head)> on_start;
  // Collected bodies larger than this abort the transfer (ResourceExhausted).
  int64_t max_body_bytes = 8 << 20;
};

struct HttpResponse {
  long status = 0;
  // Headers of the final response (after redirects); names lowercased.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string effective_url;
  int64_t body_bytes = 0;  // bytes of the final body delivered (either way)

  // First value of header `name` (case-insensitive), or "".
  std::string Header(absl::string_view name) const;
};

struct TransportOptions {
  absl::Duration connect_timeout = absl::Seconds(30);
  // A transfer slower than low_speed_limit bytes/s for low_speed_time is
  // abandoned as stalled (DeadlineExceeded).
  int64_t low_speed_limit = 1;
  absl::Duration low_speed_time = absl::Seconds(30);
  // Deadline of each request as a whole (connect, first byte, full
  // transfer; DeadlineExceeded past it). Zero: none.
  absl::Duration request_timeout = absl::ZeroDuration();
  std::string user_agent = "accel";
  int max_redirects = 5;
};

class HttpTransport {
 public:
  static absl::StatusOr<std::unique_ptr<HttpTransport>> Create(TransportOptions options);
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // Performs `request`. See the file comment for how failures are reported.
  // If `on_body` returned false, the result is Cancelled.
  absl::StatusOr<HttpResponse> Do(const HttpRequest& request, const TlsOptions& tls);

 private:
  explicit HttpTransport(TransportOptions options);
  void* TakeHandle();
  void ReturnHandle(void* handle);

  const TransportOptions options_;
  // System CA bundle, read once (for combining with extra `ca` files).
  std::string system_cas_;

  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);  // CURL* handles
};

}  // namespace accel::registry
