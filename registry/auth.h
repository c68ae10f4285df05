#pragma once

// Registry authentication pieces that need no network: WWW-Authenticate
// challenge parsing, the credential store (docker config.json and the
// daemon's config), bearer token responses and their cache.
//
// Secrets (passwords, tokens, identity tokens) never appear in a Status
// message or a log line produced here: errors name the file and the host.
//
// CredentialStore is immutable once built and then safe to share between
// threads; TokenCache is thread-safe.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace accel::registry {

struct Challenge {
  std::string scheme;                         // lowercased: "basic", "bearer"
  std::map<std::string, std::string> params;  // keys lowercased: realm, service, scope
};

// Parses a WWW-Authenticate value, which may hold several challenges
// ("Basic realm=\"x\", Bearer realm=\"https://a/token\",service=\"r\"").
// InvalidArgument if it holds none or is malformed.
absl::StatusOr<std::vector<Challenge>> ParseWwwAuthenticate(absl::string_view value);

struct Credentials {
  std::string username;
  std::string password;
  std::string identity_token;  // an OAuth2 refresh token (docker's "identitytoken")
  bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
};

// Credentials per registry host ("docker.io", "127.0.0.1:5000").
//
// Sources, later ones overriding earlier ones for the same host:
//  1. docker's config.json ($DOCKER_CONFIG/config.json or ~/.docker/config.json):
//       {"auths": {"HOST": {"auth": "base64(user:pass)"} | {"username","password"}
//                          | {"identitytoken"}}}
//     HOST may be a URL ("https://index.docker.io/v1/" means docker.io).
//     credsStore/credHelpers are not supported (ignored).
//  2. the daemon's config (TOML), section [registry.auths."HOST"]:
//       [registry.auths."registry.example.com"]
//       username = "robot"
//       password = "secret"          # or: auth = "base64(user:pass)"
//                                    # or: identitytoken = "..."
//     Other tables and keys of the daemon config are ignored here.
class CredentialStore {
 public:
  CredentialStore() = default;

  // Sets the credentials for `host` (normalised as NormalizeRegistryHost).
  void Set(absl::string_view host, Credentials credentials);

  // The credentials for `host`, if any.
  std::optional<Credentials> Lookup(absl::string_view host) const;

  size_t size() const { return by_host_.size(); }

  // Merge a docker config.json document. `origin` names it in errors.
  absl::Status MergeDockerConfigJson(absl::string_view text, absl::string_view origin);
  // Merge the [registry.auths] section of a daemon config (TOML).
  absl::Status MergeDaemonConfigToml(absl::string_view text, absl::string_view origin);

  // Reads `path` and merges it; a missing file is OK when `optional`.
  absl::Status MergeDockerConfigFile(const std::string& path, bool optional);
  absl::Status MergeDaemonConfigFile(const std::string& path);

 private:
  std::map<std::string, Credentials> by_host_;
};

// The docker config.json to use: $DOCKER_CONFIG/config.json if DOCKER_CONFIG
// is set, else $HOME/.docker/config.json ("" if neither is known).
std::string DefaultDockerConfigPath();

// Builds the usual store: docker config (optional), then `daemon_config`
// ("" for none; must exist if given).
absl::StatusOr<CredentialStore> LoadCredentials(const std::string& daemon_config);

// "Basic base64(user:pass)".
std::string BasicAuthorization(const Credentials& credentials);

struct Token {
  std::string value;
  absl::Time expires;
};

// Parses a token server's JSON answer: "token" or "access_token",
// "expires_in" (seconds, default and minimum 60), optional "issued_at"
// (RFC 3339, else `now`). Error messages never include the body.
absl::StatusOr<Token> ParseTokenResponse(absl::string_view body, absl::Time now);

// Bearer tokens by key (host + scopes), until shortly before they expire.
class TokenCache {
 public:
  // Tokens are dropped this long before their stated expiry.
  static constexpr absl::Duration kExpiryMargin = absl::Seconds(10);

  std::optional<std::string> Get(const std::string& key, absl::Time now) const;
  void Put(const std::string& key, Token token);
  void Invalidate(const std::string& key);

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Token> tokens_ ABSL_GUARDED_BY(mu_);
};

}  // namespace accel::registry
