#include "registry/authenticator.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "registry/http_error.h"
#include "registry/reference.h"

namespace accel::registry {
namespace {

// The token cache key: one token per host, service and scope set.
std::string TokenKey(const RegistryHost& host, const Challenge& challenge,
                     const std::vector<std::string>& scopes) {
  auto service = challenge.params.find("service");
  return absl::StrCat(host.Origin(), "|", service == challenge.params.end() ? "" : service->second,
                      "|", absl::StrJoin(scopes, " "));
}

}  // namespace

Authenticator::Authenticator(CredentialStore credentials, TokenSender send)
    : credentials_(std::move(credentials)), send_(std::move(send)) {}

void Authenticator::SetCredentials(absl::string_view host, Credentials credentials) {
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

std::optional<Credentials> Authenticator::CredentialsFor(absl::string_view host) {
  {
    absl::MutexLock lock(&mu_);
    auto it = runtime_credentials_.find(NormalizeRegistryHost(host));
    if (it != runtime_credentials_.end()) return it->second;
  }
  return credentials_.Lookup(host);
}

absl::StatusOr<std::string> Authenticator::Authorization(const RegistryHost& host,
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
  const std::string key = TokenKey(host, *challenge, scopes);
  std::optional<std::string> cached = tokens_.Get(key, absl::Now());
  if (cached) return absl::StrCat("Bearer ", *cached);
  ACCEL_ASSIGN_OR_RETURN(Token t, FetchToken(host, *challenge, scopes));
  std::string value = t.value;
  tokens_.Put(key, std::move(t));
  return absl::StrCat("Bearer ", value);
}

absl::Status Authenticator::Authenticate(const RegistryHost& host,
                                         const std::vector<std::string>& scopes,
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
  const Challenge c = *chosen;
  const std::string key = TokenKey(host, c, scopes);
  tokens_.Invalidate(key);
  ACCEL_ASSIGN_OR_RETURN(Token t, FetchToken(host, c, scopes));
  tokens_.Put(key, std::move(t));
  return absl::OkStatus();
}

absl::StatusOr<HttpRequest> TokenRequest(const Challenge& challenge,
                                         const std::vector<std::string>& scopes,
                                         const std::optional<Credentials>& creds) {
  auto it = challenge.params.find("realm");
  if (it == challenge.params.end() ||
      !(absl::StartsWith(it->second, "https://") || absl::StartsWith(it->second, "http://"))) {
    return absl::InvalidArgumentError("a bearer challenge without an http(s) realm");
  }
  const std::string& realm = it->second;
  std::vector<std::string> all_scopes = scopes;
  auto sc = challenge.params.find("scope");
  if (sc != challenge.params.end() && !sc->second.empty() &&
      std::find(all_scopes.begin(), all_scopes.end(), sc->second) == all_scopes.end()) {
    all_scopes.push_back(sc->second);
  }
  auto service = challenge.params.find("service");

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
  return req;
}

absl::StatusOr<Token> Authenticator::FetchToken(const RegistryHost& host,
                                                const Challenge& challenge,
                                                const std::vector<std::string>& scopes) {
  std::optional<Credentials> creds = CredentialsFor(host.host);
  absl::StatusOr<HttpRequest> req = TokenRequest(challenge, scopes, creds);
  if (!req.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat(host.Origin(), " sent ", req.status().message()));
  }
  absl::StatusOr<HttpResponse> resp = send_(host, *req);
  if (!resp.ok()) return Annotate(resp.status(), "token server");
  if (resp->status != 200) {
    return absl::UnauthenticatedError(absl::StrCat(
        "token server for ", host.host, " refused",
        creds ? " the configured credentials" : " anonymous access", " (HTTP ", resp->status, ")"));
  }
  return ParseTokenResponse(resp->body, absl::Now());
}

}  // namespace accel::registry
