#include "registry/http.h"

#include <curl/curl.h>

#include <cstring>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"

namespace accel::registry {
namespace {

constexpr const char* kSystemCaBundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
};

// Per-request state shared with the curl callbacks.
struct Exchange {
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  long current_status = 0;
  bool aborted_by_sink = false;
  bool started = false;  // on_start called for the current response
  bool body_too_large = false;
  absl::Status read_error;
  size_t body_offset = 0;  // into request->body
};

size_t HeaderCallback(char* data, size_t size, size_t nitems, void* userdata) {
  auto* ex = static_cast<Exchange*>(userdata);
  size_t n = size * nitems;
  absl::string_view line(data, n);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (the first, or one after a redirect or 100-continue).
    ex->response->headers.clear();
    size_t sp = line.find(' ');
    long code = 0;
    if (sp != absl::string_view::npos) {
      absl::string_view rest = line.substr(sp + 1);
      if (!absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &code)) code = 0;
    }
    ex->current_status = code;
    ex->started = false;
    return n;
  }
  size_t colon = line.find(':');
  if (colon != absl::string_view::npos && colon > 0) {
    ex->response->headers.emplace_back(
        absl::AsciiStrToLower(line.substr(0, colon)),
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  return n;
}

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* userdata) {
  auto* ex = static_cast<Exchange*>(userdata);
  size_t n = size * nmemb;
  long status = ex->current_status;
  if (status >= 300 && status < 400) return n;  // a redirect's body
  absl::string_view chunk(data, n);
  if (status >= 200 && status < 300 && ex->request->on_body) {
    if (!ex->started) {
      ex->started = true;
      ex->response->status = status;
      if (ex->request->on_start && !ex->request->on_start(*ex->response)) {
        ex->aborted_by_sink = true;
        return CURL_WRITEFUNC_ERROR;
      }
    }
    if (!ex->request->on_body(chunk)) {
      ex->aborted_by_sink = true;
      return CURL_WRITEFUNC_ERROR;
    }
    ex->response->body_bytes += n;
    return n;
  }
  if (static_cast<int64_t>(ex->response->body.size() + n) > ex->request->max_body_bytes) {
    ex->body_too_large = true;
    return CURL_WRITEFUNC_ERROR;
  }
  ex->response->body.append(chunk.data(), chunk.size());
  ex->response->body_bytes += n;
  return n;
}

size_t ReadCallback(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* ex = static_cast<Exchange*>(userdata);
  size_t max = size * nitems;
  const HttpRequest& r = *ex->request;
  if (r.body_reader) {
    absl::StatusOr<size_t> got = r.body_reader(buffer, max);
    if (!got.ok()) {
      ex->read_error = got.status();
      return CURL_READFUNC_ABORT;
    }
    return *got;
  }
  size_t left = r.body.size() - ex->body_offset;
  size_t k = std::min(left, max);
  std::memcpy(buffer, r.body.data() + ex->body_offset, k);
  ex->body_offset += k;
  return k;
}

// Seeking back is needed when curl resends a body (e.g. after a 401 on a
// reused connection). Only in-memory bodies can rewind.
int SeekCallback(void* userdata, curl_off_t offset, int origin) {
  auto* ex = static_cast<Exchange*>(userdata);
  if (ex->request->body_reader || origin != SEEK_SET || offset < 0 ||
      static_cast<size_t>(offset) > ex->request->body.size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  ex->body_offset = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

absl::Status CurlError(CURLcode code, const char* errbuf, const std::string& what) {
  std::string detail = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(code);
  detail = std::string(absl::StripTrailingAsciiWhitespace(detail));
  std::string msg = absl::StrCat(what, ": ", detail);
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return absl::DeadlineExceededError(absl::StrCat(msg, " (timed out or stalled)"));
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
      return absl::FailedPreconditionError(
          absl::StrCat(msg,
                       " (TLS verification failed: add the registry's CA as `ca` in hosts.toml, "
                       "or use --insecure)"));
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return absl::InvalidArgumentError(msg);
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST: {
      absl::Status s = absl::UnavailableError(msg);
      s.SetPayload(kConnectFailedPayload, absl::Cord("1"));
      return s;
    }
    default:
      return absl::UnavailableError(msg);
  }
}

}  // namespace

bool IsConnectFailure(const absl::Status& status) {
  return status.GetPayload(kConnectFailedPayload).has_value();
}

std::string HttpResponse::Header(absl::string_view name) const {
  std::string n = absl::AsciiStrToLower(name);
  for (const auto& [k, v] : headers) {
    if (k == n) return v;
  }
  return "";
}

absl::StatusOr<std::unique_ptr<HttpTransport>> HttpTransport::Create(TransportOptions options) {
  static std::once_flag once;
  static CURLcode init_result = CURLE_OK;
  std::call_once(once, [] { init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (init_result != CURLE_OK) {
    return absl::InternalError(absl::StrCat("curl_global_init: ", curl_easy_strerror(init_result)));
  }
  std::unique_ptr<HttpTransport> t(new HttpTransport(std::move(options)));
  for (const char* bundle : kSystemCaBundles) {
    absl::StatusOr<std::string> pem = ReadFile(bundle);
    if (pem.ok()) {
      t->system_cas_ = *std::move(pem);
      break;
    }
  }
  return t;
}

HttpTransport::HttpTransport(TransportOptions options) : options_(std::move(options)) {}

HttpTransport::~HttpTransport() {
  absl::MutexLock lock(&mu_);
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* HttpTransport::TakeHandle() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void HttpTransport::ReturnHandle(void* handle) {
  absl::MutexLock lock(&mu_);
  if (idle_.size() < 16) {
    idle_.push_back(handle);
  } else {
    curl_easy_cleanup(static_cast<CURL*>(handle));
  }
}

absl::StatusOr<HttpResponse> HttpTransport::Do(const HttpRequest& request, const TlsOptions& tls) {
  CURL* curl = static_cast<CURL*>(TakeHandle());
  if (curl == nullptr) return absl::ResourceExhaustedError("curl_easy_init failed");
  curl_easy_reset(curl);

  HttpResponse response;
  Exchange ex;
  ex.request = &request;
  ex.response = &response;
  char errbuf[CURL_ERROR_SIZE];
  errbuf[0] = '\0';

  struct curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers) {
    headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
  }
  headers = curl_slist_append(headers, "Expect:");

  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(options_.low_speed_limit));
  // 0 (the default) sets no overall deadline.
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.request_timeout)));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                   std::max<long>(1, absl::ToInt64Seconds(options_.low_speed_time)));
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, HeaderCallback);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &ex);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteCallback);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ex);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, nullptr);  // bytes as stored

  bool has_body = !request.body.empty() || request.body_reader != nullptr;
  const std::string& m = request.method;
  if (m == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (m == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else if (m == "POST" && !has_body) {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
  } else if (m == "PUT" || m == "PATCH" || m == "POST") {
    curl_off_t size =
        request.body_reader ? request.body_size : static_cast<curl_off_t>(request.body.size());
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, size);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, ReadCallback);
    curl_easy_setopt(curl, CURLOPT_READDATA, &ex);
    curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, SeekCallback);
    curl_easy_setopt(curl, CURLOPT_SEEKDATA, &ex);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, m.c_str());
  } else {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, m.c_str());
  }
  if (request.follow_redirects && (m == "GET" || m == "HEAD")) {
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, static_cast<long>(options_.max_redirects));
    // Authorization is not sent to another host on redirect (curl >= 7.58):
    // blob storage gets only the signed URL.
  }

  struct curl_blob ca_blob;
  std::string ca_pem;
  if (tls.skip_verify) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!tls.ca_files.empty()) {
    ca_pem = system_cas_;
    for (const std::string& f : tls.ca_files) {
      absl::StatusOr<std::string> pem = ReadFile(f);
      if (!pem.ok()) {
        curl_slist_free_all(headers);
        ReturnHandle(curl);
        return absl::FailedPreconditionError(
            absl::StrCat("read CA file from hosts.toml: ", pem.status().message()));
      }
      absl::StrAppend(&ca_pem, "\n", *pem, "\n");
    }
    ca_blob.data = ca_pem.data();
    ca_blob.len = ca_pem.size();
    ca_blob.flags = CURL_BLOB_NOCOPY;
    curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca_blob);
  }
  if (!tls.client_cert.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, tls.client_cert.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY,
                     (tls.client_key.empty() ? tls.client_cert : tls.client_key).c_str());
  }

  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  char* eff = nullptr;
  curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &eff);
  if (eff != nullptr) response.effective_url = eff;
  curl_slist_free_all(headers);
  // A failed transfer may leave the connection in a bad state; drop it.
  if (rc == CURLE_OK) {
    ReturnHandle(curl);
  } else {
    curl_easy_cleanup(curl);
  }

  std::string what = absl::StrCat(m, " ", request.url);
  if (rc != CURLE_OK) {
    if (ex.aborted_by_sink) return absl::CancelledError(absl::StrCat(what, ": aborted by reader"));
    if (ex.body_too_large) {
      return absl::ResourceExhaustedError(
          absl::StrCat(what, ": response body larger than ", request.max_body_bytes, " bytes"));
    }
    if (!ex.read_error.ok()) {
      return absl::Status(ex.read_error.code(),
                          absl::StrCat(what, ": reading upload body: ", ex.read_error.message()));
    }
    return CurlError(rc, errbuf, what);
  }
  response.status = status;
  return response;
}

}  // namespace accel::registry
