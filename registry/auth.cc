#include "registry/auth.h"

#include <toml++/toml.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "common/toml_util.h"
#include "registry/reference.h"

namespace accel::registry {
namespace {

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::StrContains("!#$%&'*+-.^_`|~", c);
}

void SkipSpace(absl::string_view& s) {
  while (!s.empty() && (s[0] == ' ' || s[0] == '\t')) s.remove_prefix(1);
}

absl::string_view TakeToken(absl::string_view& s) {
  size_t n = 0;
  while (n < s.size() && IsTokenChar(s[n])) ++n;
  absl::string_view t = s.substr(0, n);
  s.remove_prefix(n);
  return t;
}

// Host part of a docker config "auths" key: "https://host/v1/" -> "host".
std::string HostFromKey(absl::string_view key) {
  absl::string_view k = key;
  if (!absl::ConsumePrefix(&k, "https://")) absl::ConsumePrefix(&k, "http://");
  k = k.substr(0, k.find('/'));
  return NormalizeRegistryHost(k);
}

absl::Status CredentialsFromAuth(absl::string_view auth, absl::string_view origin,
                                 absl::string_view host, Credentials& out) {
  std::string decoded;
  if (!absl::Base64Unescape(auth, &decoded) || !absl::StrContains(decoded, ':')) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": \"auth\" for ", host, " is not base64 of \"username:password\""));
  }
  size_t colon = decoded.find(':');
  out.username = decoded.substr(0, colon);
  out.password = decoded.substr(colon + 1);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Challenge>> ParseWwwAuthenticate(absl::string_view value) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("malformed WWW-Authenticate header: ", why));
  };
  std::vector<Challenge> out;
  absl::string_view s = value;
  for (;;) {
    SkipSpace(s);
    while (!s.empty() && s[0] == ',') {
      s.remove_prefix(1);
      SkipSpace(s);
    }
    if (s.empty()) break;
    absl::string_view scheme = TakeToken(s);
    if (scheme.empty()) return bad("expected an auth scheme");
    Challenge c;
    c.scheme = absl::AsciiStrToLower(scheme);
    // Parameters: name=value pairs separated by commas, until a token that
    // is not followed by '=' (the next challenge's scheme).
    for (;;) {
      SkipSpace(s);
      absl::string_view save = s;
      absl::string_view name = TakeToken(s);
      SkipSpace(s);
      if (name.empty() || s.empty() || s[0] != '=') {
        s = save;
        break;
      }
      s.remove_prefix(1);
      SkipSpace(s);
      std::string v;
      if (!s.empty() && s[0] == '"') {
        s.remove_prefix(1);
        bool closed = false;
        while (!s.empty()) {
          char ch = s[0];
          s.remove_prefix(1);
          if (ch == '\\' && !s.empty()) {
            v.push_back(s[0]);
            s.remove_prefix(1);
          } else if (ch == '"') {
            closed = true;
            break;
          } else {
            v.push_back(ch);
          }
        }
        if (!closed) return bad("unterminated quoted string");
      } else {
        // token68 values may end in '='.
        v = std::string(TakeToken(s));
        while (!s.empty() && s[0] == '=') {
          v.push_back('=');
          s.remove_prefix(1);
        }
      }
      c.params[absl::AsciiStrToLower(name)] = v;
      SkipSpace(s);
      if (!s.empty() && s[0] == ',') s.remove_prefix(1);
    }
    out.push_back(std::move(c));
  }
  if (out.empty()) return bad("no challenge");
  return out;
}

void CredentialStore::Set(absl::string_view host, Credentials credentials) {
  by_host_[NormalizeRegistryHost(host)] = std::move(credentials);
}

std::optional<Credentials> CredentialStore::Lookup(absl::string_view host) const {
  auto it = by_host_.find(NormalizeRegistryHost(host));
  if (it == by_host_.end()) return std::nullopt;
  return it->second;
}

absl::Status CredentialStore::MergeDockerConfigJson(absl::string_view text,
                                                    absl::string_view origin) {
  using nlohmann::json;
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": not a JSON object"));
  }
  auto auths = j.find("auths");
  if (auths == j.end() || auths->is_null()) return absl::OkStatus();
  if (!auths->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": \"auths\" is not an object"));
  }
  for (auto& [key, entry] : auths->items()) {
    std::string host = HostFromKey(key);
    if (!entry.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": auths entry for ", host, " is not an object"));
    }
    auto str = [&entry = entry](const char* k) -> std::string {
      auto f = entry.find(k);
      return f != entry.end() && f->is_string() ? f->get<std::string>() : std::string();
    };
    Credentials c;
    std::string auth = str("auth");
    if (!auth.empty()) {
      absl::Status s = CredentialsFromAuth(auth, origin, host, c);
      if (!s.ok()) return s;
    }
    if (!str("username").empty()) c.username = str("username");
    if (!str("password").empty()) c.password = str("password");
    c.identity_token = str("identitytoken");
    if (!c.empty()) Set(host, std::move(c));
  }
  return absl::OkStatus();
}

absl::Status CredentialStore::MergeDaemonConfigToml(absl::string_view text,
                                                    absl::string_view origin) {
  ACCEL_ASSIGN_OR_RETURN(toml::table t, ParseToml(text, origin));
  const toml::node* reg = t.get("registry");
  if (reg == nullptr) return absl::OkStatus();
  if (!reg->is_table()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": \"registry\" must be a table"));
  }
  const toml::node* auths = reg->as_table()->get("auths");
  if (auths == nullptr) return absl::OkStatus();
  if (!auths->is_table()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": [registry.auths] must be a table of [registry.auths.\"HOST\"]"));
  }
  for (const auto& [key, node] : *auths->as_table()) {
    std::string host = HostFromKey(std::string(key.str()));
    const toml::table* e = node.as_table();
    if (e == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": [registry.auths.\"", host, "\"] must be a table"));
    }
    Credentials c;
    for (const auto& [k, v] : *e) {
      std::string name(k.str());
      if (!v.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ": [registry.auths.\"", host, "\"] ", name, " must be a string"));
      }
      std::string value = *v.value<std::string>();
      if (name == "username") {
        c.username = value;
      } else if (name == "password") {
        c.password = value;
      } else if (name == "auth") {
        absl::Status s = CredentialsFromAuth(value, origin, host, c);
        if (!s.ok()) return s;
      } else if (name == "identitytoken" || name == "identity_token") {
        c.identity_token = value;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ": [registry.auths.\"", host, "\"]: unknown key \"", name,
                         "\" (want username, password, auth or identitytoken)"));
      }
    }
    Set(host, std::move(c));
  }
  return absl::OkStatus();
}

absl::Status CredentialStore::MergeDockerConfigFile(const std::string& path, bool optional) {
  if (optional && ::access(path.c_str(), F_OK) != 0) return absl::OkStatus();
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return MergeDockerConfigJson(*text, path);
}

absl::Status CredentialStore::MergeDaemonConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return MergeDaemonConfigToml(*text, path);
}

std::string DefaultDockerConfigPath() {
  const char* dc = std::getenv("DOCKER_CONFIG");
  if (dc != nullptr && *dc != '\0') return absl::StrCat(dc, "/config.json");
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return absl::StrCat(home, "/.docker/config.json");
  return "";
}

absl::StatusOr<CredentialStore> LoadCredentials(const std::string& daemon_config) {
  CredentialStore store;
  std::string docker = DefaultDockerConfigPath();
  if (!docker.empty()) {
    absl::Status s = store.MergeDockerConfigFile(docker, /*optional=*/true);
    if (!s.ok()) return s;
  }
  if (!daemon_config.empty()) {
    absl::Status s = store.MergeDaemonConfigFile(daemon_config);
    if (!s.ok()) return s;
  }
  return store;
}

std::string BasicAuthorization(const Credentials& c) {
  return absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(c.username, ":", c.password)));
}

absl::StatusOr<Token> ParseTokenResponse(absl::string_view body, absl::Time now) {
  using nlohmann::json;
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::UnauthenticatedError("token server answer is not a JSON object");
  }
  Token t;
  for (const char* key : {"token", "access_token"}) {
    auto f = j.find(key);
    if (f != j.end() && f->is_string() && !f->get<std::string>().empty()) {
      t.value = f->get<std::string>();
      break;
    }
  }
  if (t.value.empty()) return absl::UnauthenticatedError("token server answer has no token");
  if (t.value.find_first_of("\r\n") != std::string::npos) {
    return absl::UnauthenticatedError("token server answer has a malformed token");
  }
  int64_t expires_in = 60;
  auto e = j.find("expires_in");
  if (e != j.end() && e->is_number_integer()) expires_in = std::max<int64_t>(60, e->get<int64_t>());
  absl::Time issued = now;
  auto ia = j.find("issued_at");
  if (ia != j.end() && ia->is_string()) {
    absl::Time parsed;
    std::string err;
    if (absl::ParseTime(absl::RFC3339_full, ia->get<std::string>(), &parsed, &err) &&
        parsed < now + absl::Minutes(5)) {
      issued = parsed;
    }
  }
  t.expires = issued + absl::Seconds(std::min<int64_t>(expires_in, 86400 * 30));
  return t;
}

std::optional<std::string> TokenCache::Get(const std::string& key, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(key);
  if (it == tokens_.end() || it->second.expires - kExpiryMargin <= now) return std::nullopt;
  return it->second.value;
}

void TokenCache::Put(const std::string& key, Token token) {
  absl::MutexLock lock(&mu_);
  tokens_[key] = std::move(token);
}

void TokenCache::Invalidate(const std::string& key) {
  absl::MutexLock lock(&mu_);
  tokens_.erase(key);
}

}  // namespace accel::registry
