#pragma once

// Authenticator answers, for each request to a registry host, which
// Authorization header to send, and handles the host's 401s: it keeps the
// last challenge each host sent, the bearer tokens it obtained (cached
// until expiry, refreshed on a 401), and the credentials to use (runtime
// overrides from SetCredentials, else the static CredentialStore). Token
// requests go through the `send` function it is given, so they share the
// client's transport, TLS settings and retry loop.
//
// Where credentials come from (docker config.json, the daemon config) is
// registry/auth.h; this file only uses them. Credentials and tokens never
// appear in a Status message or a log line.
//
// Thread-safe. No lock is held across a network call.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "registry/auth.h"
#include "registry/hosts.h"
#include "registry/http.h"

namespace accel::registry {

class Authenticator {
 public:
  // Sends a token request on behalf of `host` (with its TLS settings and
  // retries) and returns the answer.
  using TokenSender =
      std::function<absl::StatusOr<HttpResponse>(const RegistryHost& host, const HttpRequest&)>;

  Authenticator(CredentialStore credentials, TokenSender send);

  // The Authorization header value for a request to `host` needing
  // `scopes` ("" = anonymous): nothing until the host has challenged us;
  // then basic credentials, or a bearer token (fetched if none is cached).
  absl::StatusOr<std::string> Authorization(const RegistryHost& host,
                                            const std::vector<std::string>& scopes);

  // Handles a 401 from `host`: records its challenge (bearer preferred over
  // basic) and, for bearer, fetches a fresh token for `scopes`. OK means
  // "send again". Unauthenticated when there is nothing better to send (no
  // credentials, or the same ones refused), Unimplemented for an unknown
  // scheme.
  absl::Status Authenticate(const RegistryHost& host, const std::vector<std::string>& scopes,
                            const HttpResponse& response);

  // The credentials for `host`: the runtime override, else the static store.
  std::optional<Credentials> CredentialsFor(absl::string_view host);

  // Runtime credentials for registry `host` (see Client::SetCredentials);
  // empty `credentials` remove the override. The host's challenges are
  // forgotten, so the next request authenticates afresh.
  void SetCredentials(absl::string_view host, Credentials credentials);

 private:
  absl::StatusOr<Token> FetchToken(const RegistryHost& host, const Challenge& challenge,
                                   const std::vector<std::string>& scopes);

  // Constant after construction.
  const CredentialStore credentials_;
  const TokenSender send_;
  TokenCache tokens_;

  absl::Mutex mu_;
  // Last challenge seen per host (scheme://host).
  absl::flat_hash_map<std::string, Challenge> challenges_ ABSL_GUARDED_BY(mu_);
  // SetCredentials, by normalised host.
  absl::flat_hash_map<std::string, Credentials> runtime_credentials_ ABSL_GUARDED_BY(mu_);
};

// The token request for `challenge` (a bearer challenge with an http(s)
// realm) asking for `scopes` (plus the challenge's own scope), with
// `credentials` if any: a GET with basic auth, or, with an identity token,
// the OAuth2 refresh-token POST. InvalidArgument without a usable realm.
absl::StatusOr<HttpRequest> TokenRequest(const Challenge& challenge,
                                         const std::vector<std::string>& scopes,
                                         const std::optional<Credentials>& credentials);

}  // namespace accel::registry
