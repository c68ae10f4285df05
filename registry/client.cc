#include "registry/client.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "registry/range.h"

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

Client::SendOptions Client::WithFallback(const HostCall& call) {
  SendOptions so;
  so.has_fallback = call.has_fallback;
  return so;
}

// Holds one of the client's transfer slots for its lifetime.
class Client::TransferSlot {
 public:
  explicit TransferSlot(Client* c) : c_(c) {
    c_->slots_mu_.LockWhen(absl::Condition(
        +[](int* free) { return *free > 0; }, &c_->free_slots_));
    --c_->free_slots_;
    c_->slots_mu_.Unlock();
  }
  ~TransferSlot() {
    absl::MutexLock lock(&c_->slots_mu_);
    ++c_->free_slots_;
  }
  TransferSlot(const TransferSlot&) = delete;
  TransferSlot& operator=(const TransferSlot&) = delete;

 private:
  Client* c_;
};

namespace {

using nlohmann::json;

std::string PullScope(absl::string_view repo) { return absl::StrCat("repository:", repo, ":pull"); }
std::string PushScope(absl::string_view repo) {
  return absl::StrCat("repository:", repo, ":pull,push");
}

// Printable, bounded text from an untrusted source.
std::string Sanitize(absl::string_view s, size_t max = 200) {
  std::string out;
  for (char c : s.substr(0, max)) {
    out.push_back(absl::ascii_isprint(static_cast<unsigned char>(c)) ? c : ' ');
  }
  if (s.size() > max) out += "...";
  return out;
}

absl::StatusCode CodeForHttp(long status) {
  switch (status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 405:
      return absl::StatusCode::kUnimplemented;
    case 409:
      return absl::StatusCode::kAlreadyExists;
    case 416:
      return absl::StatusCode::kOutOfRange;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    default:
      return status >= 500 ? absl::StatusCode::kUnavailable : absl::StatusCode::kUnknown;
  }
}

// "HTTP 404 MANIFEST_UNKNOWN: manifest unknown" from a registry error body.
absl::Status HttpError(const HttpResponse& r) {
  std::string msg = absl::StrCat("HTTP ", r.status);
  json j = json::parse(r.body, nullptr, false);
  bool described = false;
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const json& e : j["errors"]) {
      if (!e.is_object()) continue;
      std::string code =
          e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
      std::string m =
          e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
      absl::StrAppend(&msg, " ", Sanitize(code), code.empty() || m.empty() ? "" : ": ",
                      Sanitize(m));
      described = true;
      break;
    }
  }
  if (!described) {
    switch (r.status) {
      case 401:
        msg += " unauthorized";
        break;
      case 403:
        msg += " forbidden";
        break;
      case 404:
        msg += " not found";
        break;
      case 429:
        msg += " too many requests";
        break;
      default:
        break;
    }
  }
  return absl::Status(CodeForHttp(r.status), msg);
}

double Jitter() {
  thread_local std::mt19937 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.5, 1.0)(rng);
}

// Resolves an upload Location against the host.
std::string ResolveLocation(const RegistryHost& host, const std::string& location) {
  if (absl::StartsWith(location, "http://") || absl::StartsWith(location, "https://")) {
    return location;
  }
  if (absl::StartsWith(location, "/")) return absl::StrCat(host.Origin(), location);
  return absl::StrCat(host.BaseUrl(), "/", location);
}

std::string WithQuery(const std::string& url, absl::string_view key, absl::string_view value) {
  // Only used with digests, which need no escaping.
  return absl::StrCat(url, absl::StrContains(url, '?') ? "&" : "?", key, "=", value);
}

bool SameOrigin(const RegistryHost& host, const std::string& url) {
  std::string origin = host.Origin();
  return absl::StartsWith(url, origin) &&
         (url.size() == origin.size() || url[origin.size()] == '/' || url[origin.size()] == '?');
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.max_concurrent_transfers < 1) {
    return absl::InvalidArgumentError("max_concurrent_transfers must be at least 1");
  }
  if (options.retry.max_attempts < 1) options.retry.max_attempts = 1;
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<HttpTransport> transport,
                         HttpTransport::Create(options.transport));
  return std::unique_ptr<Client>(new Client(std::move(options), std::move(transport)));
}

Client::Client(ClientOptions options, std::unique_ptr<HttpTransport> transport)
    : options_(std::move(options)),
      transport_(std::move(transport)),
      free_slots_(options_.max_concurrent_transfers) {}

Client::~Client() = default;

void Client::Sleep(absl::Duration d) const {
  if (options_.sleep) {
    options_.sleep(d);
  } else {
    absl::SleepFor(d);
  }
}

TlsOptions Client::TlsFor(const RegistryHost& host) const {
  TlsOptions t;
  t.skip_verify = host.skip_verify || options_.hosts.insecure;
  t.ca_files = host.ca_files;
  if (!host.client_certs.empty()) {
    t.client_cert = host.client_certs[0].first;
    t.client_key = host.client_certs[0].second;
  }
  return t;
}

absl::StatusOr<std::vector<RegistryHost>> Client::HostsFor(absl::string_view domain) {
  std::string key = NormalizeRegistryHost(domain);
  {
    absl::MutexLock lock(&mu_);
    auto it = hosts_.find(key);
    if (it != hosts_.end()) return it->second;
  }
  ACCEL_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, ConfigureHosts(key, options_.hosts));
  absl::MutexLock lock(&mu_);
  hosts_[key] = hosts;
  return hosts;
}

absl::Status Client::ForEachHost(
    absl::string_view domain, uint32_t capability, absl::string_view what,
    const std::function<absl::Status(const RegistryHost&, HostCall& call)>& fn) {
  ACCEL_ASSIGN_OR_RETURN(std::vector<RegistryHost> all, HostsFor(domain));
  std::vector<RegistryHost> hosts, down;
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    for (RegistryHost& h : all) {
      if ((h.capabilities & capability) == 0) continue;
      auto it = down_until_.find(h.Origin());
      (it != down_until_.end() && it->second > now ? down : hosts).push_back(std::move(h));
    }
  }
  hosts.insert(hosts.end(), down.begin(), down.end());
  std::vector<std::string> errors;
  absl::Status last;
  bool any = false;
  for (size_t i = 0; i < hosts.size(); ++i) {
    const RegistryHost& h = hosts[i];
    any = true;
    HostCall call;
    call.has_fallback = i + 1 < hosts.size();
    absl::Status s = fn(h, call);
    if (IsConnectFailure(s)) {
      absl::MutexLock lock(&mu_);
      down_until_[h.Origin()] = absl::Now() + absl::Seconds(30);
    } else if (s.ok()) {
      absl::MutexLock lock(&mu_);
      down_until_.erase(h.Origin());
    }
    bool stop = call.stop;
    if (s.ok()) return s;
    ACCEL_LOG(kDebug, "msg=\"registry host failed\"", LogField("op", what),
              LogField("host", h.Origin()), LogField("error", s.message()));
    errors.push_back(absl::StrCat(h.Origin(), ": ", s.message()));
    last = s;
    if (stop || s.code() == absl::StatusCode::kDataLoss ||
        s.code() == absl::StatusCode::kCancelled) {
      break;
    }
  }
  if (!any) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": no host for ", domain, " has the capability needed"));
  }
  return absl::Status(last.code(), absl::StrCat(what, ": ", absl::StrJoin(errors, "; ")));
}

absl::StatusOr<HttpResponse> Client::Send(const RegistryHost& host,
                                          const std::vector<std::string>& scopes,
                                          const std::function<HttpRequest()>& build,
                                          const SendOptions& so) {
  const RetryPolicy& policy = options_.retry;
  int failures = 0;
  bool reauthenticated = false;
  int64_t last_progress = so.progress ? so.progress() : 0;
  for (;;) {
    HttpRequest req = build();
    for (const auto& [k, v] : host.headers) req.headers.emplace_back(k, v);
    if (so.authorize) {
      ACCEL_ASSIGN_OR_RETURN(std::string auth, Authorization(host, scopes));
      if (!auth.empty()) req.headers.emplace_back("Authorization", auth);
    }
    absl::StatusOr<HttpResponse> resp = transport_->Do(req, TlsFor(host));
    if (so.progress) {
      int64_t p = so.progress();
      if (p != last_progress) {
        // Progress: an interrupted transfer earns a fresh budget.
        failures = 0;
        reauthenticated = false;
        last_progress = p;
      }
    }
    if (!resp.ok()) {
      if (!so.retry || !IsRetryableTransportError(resp.status()) ||
          (so.has_fallback && IsConnectFailure(resp.status())) ||
          ++failures >= policy.max_attempts) {
        return resp.status();
      }
      absl::Duration d = BackoffDelay(policy, failures - 1, Jitter());
      ACCEL_LOG(kDebug, "msg=\"registry request failed, retrying\"",
                LogField("host", host.Origin()), LogField("error", resp.status().message()),
                LogField("delay", absl::FormatDuration(d)));
      Sleep(d);
      continue;
    }
    if (resp->status == 401 && !reauthenticated) {
      reauthenticated = true;
      ACCEL_RETURN_IF_ERROR(Authenticate(host, scopes, *resp));
      continue;
    }
    if (resp->status == 401) {
      // Refused again with fresh credentials or a fresh token.
      bool have = CredentialsFor(host.host).has_value();
      return absl::UnauthenticatedError(
          have ? absl::StrCat(host.host, " refused the credentials configured for it")
               : absl::StrCat(host.host,
                              " refused anonymous access; configure credentials "
                              "(docker config.json, or [registry.auths.\"",
                              host.host, "\"] in --config)"));
    }
    if (so.retry && IsRetryableHttpStatus(resp->status) && failures + 1 < policy.max_attempts) {
      ++failures;
      absl::Duration d =
          RetryDelay(policy, failures - 1, resp->Header("retry-after"), absl::Now(), Jitter());
      ACCEL_LOG(kDebug, "msg=\"registry busy, retrying\"", LogField("host", host.Origin()),
                LogField("status", absl::StrCat(resp->status)),
                LogField("delay", absl::FormatDuration(d)));
      Sleep(d);
      continue;
    }
    return resp;
  }
}

void Client::SetCredentials(absl::string_view host, Credentials credentials) {
  std::string key = NormalizeRegistryHost(host);
  absl::MutexLock lock(&mu_);
  if (credentials.empty()) {
    runtime_credentials_.erase(key);
  } else {
    runtime_credentials_[key] = std::move(credentials);
  }
  // Forget the challenges of this host (any scheme): the next request goes
  // out without a header, and its 401 leads to fresh basic auth or a fresh
  // token with these credentials.
  for (auto it = challenges_.begin(); it != challenges_.end();) {
    absl::string_view origin = it->first;
    size_t sep = origin.find("://");
    absl::string_view h = sep == absl::string_view::npos ? origin : origin.substr(sep + 3);
    if (NormalizeRegistryHost(h) == key) {
      challenges_.erase(it++);
    } else {
      ++it;
    }
  }
}

std::optional<Credentials> Client::CredentialsFor(absl::string_view host) {
  {
    absl::MutexLock lock(&mu_);
    auto it = runtime_credentials_.find(NormalizeRegistryHost(host));
    if (it != runtime_credentials_.end()) return it->second;
  }
  return options_.credentials.Lookup(host);
}

absl::StatusOr<std::string> Client::Authorization(const RegistryHost& host,
                                                  const std::vector<std::string>& scopes) {
  std::optional<Challenge> challenge;
  {
    absl::MutexLock lock(&mu_);
    auto it = challenges_.find(host.Origin());
    if (it != challenges_.end()) challenge = it->second;
  }
  if (!challenge) return std::string();
  std::optional<Credentials> creds = CredentialsFor(host.host);
  if (challenge->scheme == "basic") {
    if (!creds || creds->username.empty()) return std::string();
    return BasicAuthorization(*creds);
  }
  std::string key = absl::StrCat(host.Origin(), "|", challenge->params["service"], "|",
                                 absl::StrJoin(scopes, " "));
  std::optional<std::string> cached = tokens_.Get(key, absl::Now());
  if (cached) return absl::StrCat("Bearer ", *cached);
  ACCEL_ASSIGN_OR_RETURN(Token t, FetchToken(host, *challenge, scopes));
  std::string value = t.value;
  tokens_.Put(key, std::move(t));
  return absl::StrCat("Bearer ", value);
}

absl::Status Client::Authenticate(const RegistryHost& host, const std::vector<std::string>& scopes,
                                  const HttpResponse& response) {
  std::string header = response.Header("www-authenticate");
  std::optional<Credentials> creds = CredentialsFor(host.host);
  if (header.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat(host.Origin(), " answered 401 without a WWW-Authenticate challenge"));
  }
  ACCEL_ASSIGN_OR_RETURN(std::vector<Challenge> challenges, ParseWwwAuthenticate(header));
  const Challenge* chosen = nullptr;
  for (const Challenge& c : challenges) {
    if (c.scheme == "bearer") chosen = &c;
  }
  for (const Challenge& c : challenges) {
    if (chosen == nullptr && c.scheme == "basic") chosen = &c;
  }
  if (chosen == nullptr) {
    return absl::UnimplementedError(absl::StrCat(host.Origin(),
                                                 " asks for an unsupported auth scheme \"",
                                                 Sanitize(challenges[0].scheme, 40), "\""));
  }
  bool had_challenge;
  {
    absl::MutexLock lock(&mu_);
    auto it = challenges_.find(host.Origin());
    had_challenge = it != challenges_.end() && it->second.scheme == chosen->scheme;
    challenges_[host.Origin()] = *chosen;
  }
  if (chosen->scheme == "basic") {
    if (!creds || creds->username.empty()) {
      return absl::UnauthenticatedError(
          absl::StrCat(host.host,
                       " requires authentication and there are no credentials for it "
                       "(docker config.json, or [registry.auths.\"",
                       host.host, "\"] in --config)"));
    }
    if (had_challenge) {
      // We already sent these credentials and they were refused.
      return absl::UnauthenticatedError(
          absl::StrCat(host.host, " refused the credentials configured for it"));
    }
    return absl::OkStatus();
  }
  // Bearer: drop any cached token for these scopes and fetch a fresh one.
  Challenge c = *chosen;
  tokens_.Invalidate(
      absl::StrCat(host.Origin(), "|", c.params["service"], "|", absl::StrJoin(scopes, " ")));
  ACCEL_ASSIGN_OR_RETURN(Token t, FetchToken(host, c, scopes));
  tokens_.Put(
      absl::StrCat(host.Origin(), "|", c.params["service"], "|", absl::StrJoin(scopes, " ")),
      std::move(t));
  return absl::OkStatus();
}

absl::StatusOr<Token> Client::FetchToken(const RegistryHost& host, const Challenge& challenge,
                                         const std::vector<std::string>& scopes) {
  auto it = challenge.params.find("realm");
  if (it == challenge.params.end() ||
      !(absl::StartsWith(it->second, "https://") || absl::StartsWith(it->second, "http://"))) {
    return absl::UnauthenticatedError(
        absl::StrCat(host.Origin(), " sent a bearer challenge without an http(s) realm"));
  }
  const std::string& realm = it->second;
  std::vector<std::string> all_scopes = scopes;
  auto sc = challenge.params.find("scope");
  if (sc != challenge.params.end() && !sc->second.empty() &&
      std::find(all_scopes.begin(), all_scopes.end(), sc->second) == all_scopes.end()) {
    all_scopes.push_back(sc->second);
  }
  auto service = challenge.params.find("service");
  std::optional<Credentials> creds = CredentialsFor(host.host);

  HttpRequest req;
  req.max_body_bytes = 1 << 20;
  std::string query;
  auto add = [&](std::string& q, absl::string_view k, absl::string_view v) {
    std::string enc;
    for (char ch : v) {
      if (absl::ascii_isalnum(static_cast<unsigned char>(ch)) || absl::StrContains("-._~", ch)) {
        enc.push_back(ch);
      } else {
        absl::StrAppend(&enc, absl::StrFormat("%%%02X", static_cast<unsigned char>(ch)));
      }
    }
    absl::StrAppend(&q, q.empty() ? "" : "&", k, "=", enc);
  };
  if (service != challenge.params.end()) add(query, "service", service->second);
  for (const std::string& s : all_scopes) add(query, "scope", s);
  if (creds && !creds->identity_token.empty()) {
    // OAuth2 refresh-token grant (docker's identity token).
    req.method = "POST";
    std::string form = query;
    add(form, "grant_type", "refresh_token");
    add(form, "refresh_token", creds->identity_token);
    add(form, "client_id", "accel");
    req.url = realm;
    req.body = std::move(form);
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  } else {
    req.url = query.empty() ? realm
                            : absl::StrCat(realm, absl::StrContains(realm, '?') ? "&" : "?", query);
    if (creds && !creds->username.empty()) {
      req.headers.emplace_back("Authorization", BasicAuthorization(*creds));
    }
  }
  // The token server is reached with the registry host's TLS settings.
  absl::StatusOr<HttpResponse> resp;
  for (int attempt = 0;; ++attempt) {
    resp = transport_->Do(req, TlsFor(host));
    bool retry = (!resp.ok() && IsRetryableTransportError(resp.status())) ||
                 (resp.ok() && IsRetryableHttpStatus(resp->status));
    if (!retry || attempt + 1 >= options_.retry.max_attempts) break;
    Sleep(BackoffDelay(options_.retry, attempt, Jitter()));
  }
  if (!resp.ok()) return Annotate(resp.status(), "token server");
  if (resp->status != 200) {
    return absl::UnauthenticatedError(absl::StrCat(
        "token server for ", host.host, " refused",
        creds ? " the configured credentials" : " anonymous access", " (HTTP ", resp->status, ")"));
  }
  return ParseTokenResponse(resp->body, absl::Now());
}

absl::StatusOr<Client::FetchedManifest> Client::FetchManifest(const Reference& ref) {
  bool by_digest = !ref.digest.empty();
  FetchedManifest out;
  std::string what = absl::StrCat("fetch manifest ", ref.String());
  absl::Status s = ForEachHost(
      ref.domain, by_digest ? kCapPull : kCapResolve, what,
      [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        std::string url =
            absl::StrCat(host.BaseUrl(), "/", ref.repository, "/manifests/", ref.Object());
        ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                      host, {PullScope(ref.repository)},
                                                      [&] {
                                                        HttpRequest r;
                                                        r.url = url;
                                                        r.headers.emplace_back(
                                                            "Accept", media::kManifestAccept);
                                                        r.max_body_bytes = kMaxManifestSize;
                                                        return r;
                                                      },
                                                      WithFallback(call)));
        if (resp.status != 200) return HttpError(resp);
        std::string digest;
        if (by_digest) {
          ACCEL_ASSIGN_OR_RETURN(DigestVerifier v, DigestVerifier::Create(ref.digest));
          v.Update(resp.body);
          ACCEL_RETURN_IF_ERROR(Annotate(v.Verify(), "manifest"));
          digest = ref.digest;
        } else {
          digest = Sha256::Of(resp.body);
          std::string claimed = resp.Header("docker-content-digest");
          if (absl::StartsWith(claimed, "sha256:") && claimed != digest) {
            return absl::DataLossError(absl::StrCat("manifest digest mismatch: registry says ",
                                                    Sanitize(claimed, 80), ", content is ",
                                                    digest));
          }
        }
        ACCEL_ASSIGN_OR_RETURN(std::string mt,
                               DetectManifestMediaType(resp.body, resp.Header("content-type")));
        out.descriptor.media_type = mt;
        out.descriptor.digest = digest;
        out.descriptor.size = static_cast<int64_t>(resp.body.size());
        out.bytes = std::move(resp.body);
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<Client::ResolvedImage> Client::ResolveImage(const Reference& ref,
                                                           const Platform& platform) {
  ResolvedImage out;
  ACCEL_ASSIGN_OR_RETURN(FetchedManifest top, FetchManifest(ref));
  if (IsIndexMediaType(top.descriptor.media_type)) {
    ACCEL_ASSIGN_OR_RETURN(Index idx, ParseIndex(top.bytes, top.descriptor.media_type));
    absl::StatusOr<Descriptor> d = SelectPlatform(idx, platform);
    if (!d.ok()) return Annotate(d.status(), ref.String());
    if (!IsManifestMediaType(d->media_type)) {
      return absl::UnimplementedError(
          absl::StrCat(ref.String(), ": nested index for ", platform.String(), " not supported"));
    }
    ACCEL_ASSIGN_OR_RETURN(out.manifest, FetchManifest(ref.WithDigest(d->digest)));
    if (out.manifest.descriptor.size != d->size) {
      return absl::DataLossError(absl::StrCat(ref.String(), ": manifest ", d->digest, " has ",
                                              out.manifest.descriptor.size,
                                              " bytes, the index says ", d->size));
    }
    out.index = std::move(top);
  } else {
    out.manifest = std::move(top);
  }
  if (!IsManifestMediaType(out.manifest.descriptor.media_type)) {
    return absl::InvalidArgumentError(absl::StrCat(
        ref.String(), ": expected an image manifest, got ", out.manifest.descriptor.media_type));
  }
  absl::StatusOr<Manifest> m =
      ParseManifest(out.manifest.bytes, out.manifest.descriptor.media_type);
  if (!m.ok()) return Annotate(m.status(), ref.String());
  out.parsed = *std::move(m);
  return out;
}

absl::Status Client::FetchBlobFromHost(
    const RegistryHost& host, const HostCall& call, const Reference& repo, const Descriptor& desc,
    int64_t first, int64_t last, int64_t& received,
    const std::function<absl::Status(absl::string_view)>& consume) {
  std::string url = absl::StrCat(host.BaseUrl(), "/", repo.repository, "/blobs/", desc.digest);
  // `received` counts bytes of [first, last] already consumed.
  const int64_t want = last >= 0 ? last - first + 1 : desc.size - first;
  absl::Status abort_reason;
  int64_t skip = 0;
  int short_bodies = 0;
  while (received < want) {
    abort_reason = absl::OkStatus();
    SendOptions so;
    so.has_fallback = call.has_fallback;
    so.progress = [&received] { return received; };
    absl::StatusOr<HttpResponse> resp = Send(
        host, {PullScope(repo.repository)},
        [&] {
          HttpRequest r;
          r.url = url;
          int64_t from = first + received;
          bool whole = from == 0 && last < 0;
          if (!whole) r.headers.emplace_back("Range", RangeHeader(from, last));
          r.on_start = [&, from](const HttpResponse& head) {
            absl::StatusOr<RangePlan> plan =
                PlanRangeResponse(head.status, head.Header("content-range"), from, last, desc.size);
            if (!plan.ok()) {
              abort_reason = plan.status();
              return false;
            }
            skip = plan->skip;
            return true;
          };
          r.on_body = [&](absl::string_view chunk) {
            if (skip > 0) {
              int64_t k = std::min<int64_t>(skip, chunk.size());
              chunk.remove_prefix(k);
              skip -= k;
            }
            if (chunk.empty()) return true;
            if (received + static_cast<int64_t>(chunk.size()) > want) {
              if (last >= 0) {
                // A range answer may run past what we asked for; keep ours.
                chunk = chunk.substr(0, want - received);
              } else {
                abort_reason = absl::DataLossError(absl::StrCat("blob ", desc.digest,
                                                                " is larger than its descriptor's ",
                                                                desc.size, " bytes"));
                return false;
              }
            }
            absl::Status s = consume(chunk);
            if (!s.ok()) {
              abort_reason = s;
              return false;
            }
            received += static_cast<int64_t>(chunk.size());
            return received < want || last < 0;
          };
          return r;
        },
        so);
    if (!abort_reason.ok()) return abort_reason;
    if (!resp.ok()) {
      // A range read that stopped itself early once it had everything.
      if (resp.status().code() == absl::StatusCode::kCancelled && received >= want) break;
      return resp.status();
    }
    if (resp->status != 200 && resp->status != 206) return HttpError(*resp);
    if (received < want) {
      // The body ended early without a transport error; ask for the rest.
      if (++short_bodies >= options_.retry.max_attempts) {
        return absl::UnavailableError(absl::StrCat("blob ", desc.digest, " ended after ",
                                                   first + received, " bytes, want ",
                                                   first + want));
      }
      ACCEL_LOG(kDebug, "msg=\"short blob body, resuming\"", LogField("digest", desc.digest));
    }
  }
  return absl::OkStatus();
}

absl::Status Client::FetchBlob(const Reference& repo, const Descriptor& desc,
                               const std::function<absl::Status(absl::string_view)>& sink,
                               const ProgressFn& progress) {
  ACCEL_ASSIGN_OR_RETURN(DigestVerifier verifier, DigestVerifier::Create(desc.digest));
  if (desc.size < 0) return absl::InvalidArgumentError("blob descriptor with negative size");
  TransferSlot slot(this);
  int64_t received = 0;
  std::string what = absl::StrCat("fetch blob ", desc.digest, " from ", repo.Name());
  auto consume = [&](absl::string_view chunk) -> absl::Status {
    verifier.Update(chunk);
    ACCEL_RETURN_IF_ERROR(sink(chunk));
    if (progress) progress(received + static_cast<int64_t>(chunk.size()));
    return absl::OkStatus();
  };
  if (desc.size == 0) return Annotate(verifier.Verify(), what);
  ACCEL_RETURN_IF_ERROR(ForEachHost(
      repo.domain, kCapPull, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        if (received > 0) {
          ACCEL_LOG(kInfo, "msg=\"resuming blob on next host\"", LogField("digest", desc.digest),
                    LogField("host", host.Origin()), LogField("offset", absl::StrCat(received)));
        }
        return FetchBlobFromHost(host, call, repo, desc, 0, -1, received, consume);
      }));
  return Annotate(verifier.Verify(), what);
}

absl::StatusOr<std::string> Client::FetchBlobBytes(const Reference& repo, const Descriptor& desc,
                                                   int64_t max_size) {
  if (desc.size > max_size) {
    return absl::ResourceExhaustedError(absl::StrCat("blob ", desc.digest, " has ", desc.size,
                                                     " bytes, more than the ", max_size,
                                                     " allowed here"));
  }
  std::string out;
  out.reserve(static_cast<size_t>(std::max<int64_t>(desc.size, 0)));
  ACCEL_RETURN_IF_ERROR(FetchBlob(repo, desc, [&](absl::string_view c) {
    out.append(c.data(), c.size());
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::string> Client::ReadBlobRange(const Reference& repo, const Descriptor& desc,
                                                  int64_t offset, int64_t length) {
  if (offset < 0 || length < 0) return absl::InvalidArgumentError("negative offset or length");
  if (offset > desc.size) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " past the end of blob ",
                                              desc.digest, " (", desc.size, " bytes)"));
  }
  length = std::min(length, desc.size - offset);
  std::string out;
  if (length == 0) return out;
  out.reserve(static_cast<size_t>(length));
  TransferSlot slot(this);
  int64_t received = 0;
  std::string what =
      absl::StrCat("read ", RangeHeader(offset, offset + length - 1), " of blob ", desc.digest);
  ACCEL_RETURN_IF_ERROR(ForEachHost(
      repo.domain, kCapPull, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        return FetchBlobFromHost(host, call, repo, desc, offset, offset + length - 1, received,
                                 [&](absl::string_view c) {
                                   out.append(c.data(), c.size());
                                   return absl::OkStatus();
                                 });
      }));
  return out;
}

namespace {

class RegistryBlobReader : public BlobReader {
 public:
  RegistryBlobReader(Client* client, Reference repo, Descriptor desc)
      : client_(client), repo_(std::move(repo)), desc_(std::move(desc)) {}
  int64_t size() const override { return desc_.size; }
  absl::StatusOr<std::string> ReadAt(int64_t offset, int64_t length) override {
    return client_->ReadBlobRange(repo_, desc_, offset, length);
  }

 private:
  Client* const client_;
  const Reference repo_;
  const Descriptor desc_;
};

}  // namespace

std::unique_ptr<BlobReader> Client::OpenBlob(const Reference& repo, const Descriptor& desc) {
  return std::make_unique<RegistryBlobReader>(this, repo, desc);
}

absl::StatusOr<std::optional<int64_t>> Client::StatBlob(const Reference& repo,
                                                        absl::string_view digest,
                                                        Capability capability) {
  ACCEL_RETURN_IF_ERROR(ValidateDigest(digest));
  std::optional<int64_t> out;
  std::string what = absl::StrCat("check blob ", digest, " in ", repo.Name());
  std::vector<std::string> scopes = {capability == kCapPush ? PushScope(repo.repository)
                                                            : PullScope(repo.repository)};
  ACCEL_RETURN_IF_ERROR(ForEachHost(
      repo.domain, capability, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        std::string url = absl::StrCat(host.BaseUrl(), "/", repo.repository, "/blobs/", digest);
        ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                      host, scopes,
                                                      [&] {
                                                        HttpRequest r;
                                                        r.method = "HEAD";
                                                        r.url = url;
                                                        return r;
                                                      },
                                                      WithFallback(call)));
        if (resp.status == 404) {
          call.stop = capability == kCapPush;  // the push host is the one that matters
          out.reset();
          return capability == kCapPush ? absl::OkStatus() : HttpError(resp);
        }
        if (resp.status != 200) return HttpError(resp);
        int64_t size = -1;
        if (!absl::SimpleAtoi(resp.Header("content-length"), &size)) size = -1;
        out = size;
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<bool> Client::MountBlob(const Reference& repo, const Descriptor& desc,
                                       absl::string_view from_repository) {
  ACCEL_RETURN_IF_ERROR(ValidateDigest(desc.digest));
  bool mounted = false;
  std::string what = absl::StrCat("mount blob ", desc.digest, " into ", repo.Name());
  std::vector<std::string> scopes = {PushScope(repo.repository), PullScope(from_repository)};
  ACCEL_RETURN_IF_ERROR(ForEachHost(
      repo.domain, kCapPush, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        call.stop = true;  // only the first push host
        std::string url =
            absl::StrCat(host.BaseUrl(), "/", repo.repository,
                         "/blobs/uploads/?mount=", desc.digest, "&from=", from_repository);
        ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                      host, scopes,
                                                      [&] {
                                                        HttpRequest r;
                                                        r.method = "POST";
                                                        r.url = url;
                                                        return r;
                                                      },
                                                      WithFallback(call)));
        if (resp.status == 201) {
          mounted = true;
          return absl::OkStatus();
        }
        if (resp.status == 202) {
          // Declined; an upload session was opened instead. Cancel it.
          std::string loc = resp.Header("location");
          if (!loc.empty()) {
            std::string del = ResolveLocation(host, loc);
            SendOptions so;
            so.retry = false;
            so.authorize = SameOrigin(host, del);
            (void)Send(
                host, scopes,
                [&] {
                  HttpRequest r;
                  r.method = "DELETE";
                  r.url = del;
                  return r;
                },
                so);
          }
          return absl::OkStatus();
        }
        return HttpError(resp);
      }));
  return mounted;
}

absl::Status Client::PushBlob(const Reference& repo, const Descriptor& desc, BlobReader& source,
                              const ProgressFn& progress) {
  ACCEL_RETURN_IF_ERROR(ValidateDigest(desc.digest));
  if (source.size() != desc.size) {
    return absl::InvalidArgumentError(absl::StrCat("push blob ", desc.digest, ": source has ",
                                                   source.size(), " bytes, descriptor says ",
                                                   desc.size));
  }
  TransferSlot slot(this);
  std::string what = absl::StrCat("push blob ", desc.digest, " to ", repo.Name());
  std::vector<std::string> scopes = {PushScope(repo.repository)};
  const int64_t chunk = options_.upload_chunk_size;

  // One full upload attempt on `host`: POST, PUT or PATCHes + PUT.
  auto upload = [&](const RegistryHost& host) -> absl::Status {
    std::string start = absl::StrCat(host.BaseUrl(), "/", repo.repository, "/blobs/uploads/");
    ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                  host, scopes,
                                                  [&] {
                                                    HttpRequest r;
                                                    r.method = "POST";
                                                    r.url = start;
                                                    return r;
                                                  },
                                                  SendOptions{}));
    if (resp.status != 202) return Annotate(HttpError(resp), "start upload");
    std::string location = resp.Header("location");
    if (location.empty()) return absl::UnavailableError("start upload: no Location in the answer");
    location = ResolveLocation(host, location);

    ACCEL_ASSIGN_OR_RETURN(DigestVerifier verifier, DigestVerifier::Create(desc.digest));
    // Sends bytes [from, to) of the source as the body of `method` to `url`.
    auto send_part = [&](const std::string& method, const std::string& url, int64_t from,
                         int64_t to, bool content_range) -> absl::StatusOr<HttpResponse> {
      int64_t pos = from;
      SendOptions so;
      so.retry = false;
      so.authorize = SameOrigin(host, url);
      return Send(
          host, scopes,
          [&] {
            HttpRequest r;
            r.method = method;
            r.url = url;
            r.headers.emplace_back("Content-Type", "application/octet-stream");
            if (content_range && to > from) {
              r.headers.emplace_back("Content-Range", absl::StrCat(from, "-", to - 1));
            }
            r.body_size = to - from;
            pos = from;
            r.body_reader = [&](char* buf, size_t max) -> absl::StatusOr<size_t> {
              int64_t n = std::min<int64_t>(static_cast<int64_t>(max), to - pos);
              if (n <= 0) return size_t{0};
              ACCEL_ASSIGN_OR_RETURN(std::string data, source.ReadAt(pos, n));
              if (data.empty()) return absl::DataLossError("source ended early");
              std::memcpy(buf, data.data(), data.size());
              verifier.Update(data);
              pos += static_cast<int64_t>(data.size());
              if (progress) progress(pos);
              if (pos == desc.size) ACCEL_RETURN_IF_ERROR(verifier.Verify());
              return data.size();
            };
            return r;
          },
          so);
    };

    if (chunk <= 0 || desc.size <= chunk) {
      ACCEL_ASSIGN_OR_RETURN(
          HttpResponse put,
          send_part("PUT", WithQuery(location, "digest", desc.digest), 0, desc.size, false));
      if (put.status != 201) return Annotate(HttpError(put), "upload");
      return absl::OkStatus();
    }
    for (int64_t off = 0; off < desc.size; off += chunk) {
      int64_t end = std::min(desc.size, off + chunk);
      ACCEL_ASSIGN_OR_RETURN(HttpResponse patch, send_part("PATCH", location, off, end, true));
      if (patch.status != 202) return Annotate(HttpError(patch), "upload chunk");
      std::string next = patch.Header("location");
      if (!next.empty()) location = ResolveLocation(host, next);
    }
    ACCEL_ASSIGN_OR_RETURN(
        HttpResponse put,
        send_part("PUT", WithQuery(location, "digest", desc.digest), desc.size, desc.size, false));
    if (put.status != 201) return Annotate(HttpError(put), "finish upload");
    return absl::OkStatus();
  };

  return ForEachHost(
      repo.domain, kCapPush, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        call.stop = true;  // pushes go to the first push host only
        absl::Status s;
        for (int attempt = 0; attempt < options_.retry.max_attempts; ++attempt) {
          s = upload(host);
          if (s.ok() || s.code() == absl::StatusCode::kDataLoss ||
              !(IsRetryableTransportError(s) || s.code() == absl::StatusCode::kResourceExhausted)) {
            break;
          }
          Sleep(BackoffDelay(options_.retry, attempt, Jitter()));
        }
        return s;
      });
}

absl::Status Client::PushManifest(const Reference& ref, absl::string_view media_type,
                                  absl::string_view bytes) {
  if (static_cast<int64_t>(bytes.size()) > kMaxManifestSize) {
    return absl::InvalidArgumentError("manifest too large to push");
  }
  std::string what = absl::StrCat("push manifest ", ref.String());
  std::string body(bytes);
  std::string mt(media_type);
  return ForEachHost(
      ref.domain, kCapPush, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        call.stop = true;
        std::string url =
            absl::StrCat(host.BaseUrl(), "/", ref.repository, "/manifests/", ref.Object());
        ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                      host, {PushScope(ref.repository)},
                                                      [&] {
                                                        HttpRequest r;
                                                        r.method = "PUT";
                                                        r.url = url;
                                                        r.body = body;
                                                        r.headers.emplace_back("Content-Type", mt);
                                                        return r;
                                                      },
                                                      WithFallback(call)));
        if (resp.status != 201 && resp.status != 200) return HttpError(resp);
        return absl::OkStatus();
      });
}

}  // namespace accel::registry
