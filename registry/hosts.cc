#include "registry/hosts.h"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "common/toml_util.h"
#include "registry/reference.h"

namespace accel::registry {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string Resolve(absl::string_view dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || dir.empty()) return path;
  return absl::StrCat(dir, "/", path);
}

absl::Status Bad(absl::string_view origin, absl::string_view where, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ": ", where, ": ", why));
}

// Applies the per-host keys of `t` to `h`.
absl::Status ApplyHostKeys(const toml::table& t, absl::string_view dir, absl::string_view origin,
                           absl::string_view where, bool top_level, RegistryHost& h) {
  bool override_path = false;
  for (const auto& [key, node] : t) {
    std::string k(key.str());
    if (k == "capabilities") {
      const toml::array* arr = node.as_array();
      if (arr == nullptr) return Bad(origin, where, "\"capabilities\" must be a list of strings");
      h.capabilities = 0;
      for (const toml::node& c : *arr) {
        std::optional<std::string> v = c.value<std::string>();
        if (!v || !c.is_string()) return Bad(origin, where, "\"capabilities\" must be strings");
        std::string cap = absl::AsciiStrToLower(*v);
        if (cap == "pull") {
          h.capabilities |= kCapPull;
        } else if (cap == "resolve") {
          h.capabilities |= kCapResolve;
        } else if (cap == "push") {
          h.capabilities |= kCapPush;
        } else {
          return Bad(origin, where,
                     absl::StrCat("unknown capability \"", cap, "\" (want pull, resolve, push)"));
        }
      }
    } else if (k == "skip_verify") {
      if (!node.is_boolean()) return Bad(origin, where, "\"skip_verify\" must be true or false");
      h.skip_verify = *node.value<bool>();
    } else if (k == "override_path") {
      if (!node.is_boolean()) return Bad(origin, where, "\"override_path\" must be true or false");
      override_path = *node.value<bool>();
    } else if (k == "ca") {
      if (node.is_string()) {
        h.ca_files.push_back(Resolve(dir, *node.value<std::string>()));
      } else if (const toml::array* arr = node.as_array()) {
        for (const toml::node& c : *arr) {
          if (!c.is_string()) return Bad(origin, where, "\"ca\" entries must be strings");
          h.ca_files.push_back(Resolve(dir, *c.value<std::string>()));
        }
      } else {
        return Bad(origin, where, "\"ca\" must be a path or a list of paths");
      }
    } else if (k == "client") {
      auto pair_from = [&](const toml::node& n) -> absl::Status {
        if (n.is_string()) {
          h.client_certs.emplace_back(Resolve(dir, *n.value<std::string>()), "");
          return absl::OkStatus();
        }
        const toml::array* p = n.as_array();
        if (p == nullptr || p->size() != 2 || !(*p)[0].is_string() || !(*p)[1].is_string()) {
          return Bad(origin, where, "\"client\" must be \"cert\", [cert, key] or a list of those");
        }
        h.client_certs.emplace_back(Resolve(dir, *(*p)[0].value<std::string>()),
                                    Resolve(dir, *(*p)[1].value<std::string>()));
        return absl::OkStatus();
      };
      const toml::array* arr = node.as_array();
      if (arr != nullptr && !arr->empty() && (*arr)[0].is_array()) {
        for (const toml::node& n : *arr) {
          absl::Status s = pair_from(n);
          if (!s.ok()) return s;
        }
      } else {
        absl::Status s = pair_from(node);
        if (!s.ok()) return s;
      }
    } else if (k == "header") {
      const toml::table* ht = node.as_table();
      if (ht == nullptr) return Bad(origin, where, "\"header\" must be a table");
      for (const auto& [hk, hv] : *ht) {
        std::string name(hk.str());
        if (name.empty() || name.find_first_of(":\r\n ") != std::string::npos) {
          return Bad(origin, where, absl::StrCat("bad header name \"", name, "\""));
        }
        auto add = [&](const toml::node& v) -> absl::Status {
          if (!v.is_string()) return Bad(origin, where, "header values must be strings");
          std::string value = *v.value<std::string>();
          if (value.find_first_of("\r\n") != std::string::npos) {
            return Bad(origin, where, "header values must be one line");
          }
          h.headers.emplace_back(name, value);
          return absl::OkStatus();
        };
        if (const toml::array* va = hv.as_array()) {
          for (const toml::node& v : *va) {
            absl::Status s = add(v);
            if (!s.ok()) return s;
          }
        } else {
          absl::Status s = add(hv);
          if (!s.ok()) return s;
        }
      }
    } else if (top_level && (k == "server" || k == "host")) {
      // Handled by the caller.
    } else {
      return Bad(origin, where, absl::StrCat("unknown key \"", k, "\""));
    }
  }
  // API root: containerd appends /v2 unless the path already ends in it or
  // override_path says the path is the root as given.
  std::string path(absl::StripSuffix(h.path, "/"));
  if (path.empty()) {
    path = "/v2";
  } else if (!override_path && !absl::EndsWith(path, "/v2")) {
    path += "/v2";
  }
  h.path = path;
  return absl::OkStatus();
}

}  // namespace

std::string RegistryHost::BaseUrl() const { return absl::StrCat(scheme, "://", host, path); }

absl::StatusOr<RegistryHost> ParseHostUrl(absl::string_view url) {
  RegistryHost h;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "https://")) {
    h.scheme = "https";
  } else if (absl::ConsumePrefix(&rest, "http://")) {
    h.scheme = "http";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("host URL \"", url.substr(0, 200), "\" must start with http:// or https://"));
  }
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  if (authority.empty() || absl::StrContains(authority, '@') ||
      authority.find_first_of(" \t\r\n?#") != absl::string_view::npos) {
    // Do not echo: a URL with user info may carry a password.
    return absl::InvalidArgumentError(
        "host URL must be scheme://host[:port][/path] without user info");
  }
  h.host = absl::AsciiStrToLower(authority);
  h.path = slash == absl::string_view::npos ? "" : std::string(rest.substr(slash));
  if (h.path.find_first_of(" ?#\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("host URL path must not contain spaces, '?' or '#'");
  }
  return h;
}

RegistryHost DefaultUpstream(absl::string_view registry_host, const HostsOptions& options) {
  RegistryHost h;
  h.scheme = options.plain_http ? "http" : "https";
  std::string host = NormalizeRegistryHost(registry_host);
  h.host = host == kDockerHubDomain ? kDockerHubApiHost : host;
  h.path = "/v2";
  h.capabilities = kCapAll;
  h.skip_verify = options.insecure;
  h.upstream = true;
  return h;
}

absl::StatusOr<std::vector<RegistryHost>> ParseHostsToml(absl::string_view text,
                                                         absl::string_view registry_host,
                                                         absl::string_view dir,
                                                         absl::string_view origin,
                                                         const HostsOptions& options) {
  ACCEL_ASSIGN_OR_RETURN(toml::table t, ParseToml(text, origin));

  RegistryHost upstream = DefaultUpstream(registry_host, options);
  if (const toml::node* server = t.get("server")) {
    if (!server->is_string()) return Bad(origin, "server", "must be a URL string");
    absl::StatusOr<RegistryHost> u = ParseHostUrl(*server->value<std::string>());
    if (!u.ok()) return Bad(origin, "server", u.status().message());
    upstream.scheme = u->scheme;
    upstream.host = u->host;
    upstream.path = u->path;
  } else {
    upstream.path = "";
  }
  absl::Status s = ApplyHostKeys(t, dir, origin, "server", /*top_level=*/true, upstream);
  if (!s.ok()) return s;
  if (options.insecure) upstream.skip_verify = true;

  std::vector<std::pair<toml::source_position, RegistryHost>> mirrors;
  if (const toml::node* hosts = t.get("host")) {
    const toml::table* ht = hosts->as_table();
    if (ht == nullptr) return Bad(origin, "host", "must be a table of [host.\"URL\"] entries");
    for (const auto& [key, node] : *ht) {
      std::string url(key.str());
      std::string where = absl::StrCat("[host.\"", url, "\"]");
      const toml::table* entry = node.as_table();
      if (entry == nullptr) return Bad(origin, where, "must be a table");
      absl::StatusOr<RegistryHost> h = ParseHostUrl(url);
      if (!h.ok()) return Bad(origin, where, h.status().message());
      s = ApplyHostKeys(*entry, dir, origin, where, /*top_level=*/false, *h);
      if (!s.ok()) return s;
      if (options.insecure) h->skip_verify = true;
      mirrors.emplace_back(node.source().begin, *std::move(h));
    }
  }
  // toml++ keeps keys sorted; containerd tries hosts in file order.
  std::stable_sort(mirrors.begin(), mirrors.end(), [](const auto& a, const auto& b) {
    return a.first.line != b.first.line ? a.first.line < b.first.line
                                        : a.first.column < b.first.column;
  });
  std::vector<RegistryHost> out;
  for (auto& [pos, h] : mirrors) out.push_back(std::move(h));
  out.push_back(std::move(upstream));
  return out;
}

absl::StatusOr<std::vector<RegistryHost>> ConfigureHosts(absl::string_view registry_host,
                                                         const HostsOptions& options) {
  if (!options.hosts_dir.empty()) {
    std::string host = NormalizeRegistryHost(registry_host);
    std::vector<std::string> dirs;
    size_t colon = host.rfind(':');
    if (colon != std::string::npos && host.back() != ']') {
      dirs.push_back(absl::StrCat(options.hosts_dir, "/", host.substr(0, colon), "_",
                                  host.substr(colon + 1), "_"));
    }
    dirs.push_back(absl::StrCat(options.hosts_dir, "/", host));
    dirs.push_back(absl::StrCat(options.hosts_dir, "/_default"));
    for (const std::string& d : dirs) {
      std::string file = d + "/hosts.toml";
      if (!FileExists(file)) continue;
      absl::StatusOr<std::string> text = ReadFile(file);
      if (!text.ok()) return text.status();
      return ParseHostsToml(*text, registry_host, d, file, options);
    }
  }
  return std::vector<RegistryHost>{DefaultUpstream(registry_host, options)};
}

}  // namespace accel::registry
