#pragma once

// Registry hosts, containerd's way (the "hosts directory", usually
// /etc/containerd/certs.d):
//
//   DIR/<registry host>/hosts.toml       e.g. DIR/docker.io/hosts.toml,
//                                        DIR/127.0.0.1:5000/hosts.toml
//   DIR/<host>_<port>_/hosts.toml        the same for a host with a port
//   DIR/_default/hosts.toml              used when the above do not exist
//
//   server = "https://registry-1.docker.io"   # the upstream (default https://<host>)
//   [host."http://127.0.0.1:5001"]            # mirrors, tried in file order
//     capabilities = ["pull", "resolve"]      # default: pull, resolve, push
//     skip_verify = false
//     ca = "/etc/certs/mirror-ca.pem"         # or a list; relative to the file's dir
//     client = [["/etc/certs/c.pem", "/etc/certs/c.key"]]   # or "c.pem" (key inside)
//     override_path = true                    # the URL's path is the API root
//     [host."http://127.0.0.1:5001".header]
//       x-custom = "value"                     # or a list of values
//
// Top-level keys other than `server` (capabilities, ca, ...) configure the
// upstream server. Hosts are tried in file order, the upstream last. A URL's
// path gets "/v2" appended unless it already ends in /v2 or override_path is
// set (the cloud-mirror prefix rule: "https://mirror/v2/gcr.io" +
// override_path serves gcr.io's images under that prefix).
//
// Pure parsing; no network. Thread-compatible.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accel::registry {

enum Capability : uint32_t {
  kCapPull = 1,     // fetch blobs and manifests by digest
  kCapResolve = 2,  // resolve a tag to a digest
  kCapPush = 4,     // upload blobs and manifests
};
inline constexpr uint32_t kCapAll = kCapPull | kCapResolve | kCapPush;

struct RegistryHost {
  std::string scheme = "https";  // "http" or "https"
  std::string host;              // "mirror.example.com:5000"
  std::string path = "/v2";      // API root, no trailing '/'
  uint32_t capabilities = kCapAll;
  bool skip_verify = false;
  std::vector<std::string> ca_files;
  std::vector<std::pair<std::string, std::string>> client_certs;  // (cert, key or "")
  std::vector<std::pair<std::string, std::string>> headers;       // (name, value)
  bool upstream = false;  // the registry itself, not a mirror

  // scheme://host + path, e.g. "http://127.0.0.1:5001/v2".
  std::string BaseUrl() const;
  // scheme://host, for logs and errors.
  std::string Origin() const { return scheme + "://" + host; }
};

struct HostsOptions {
  std::string hosts_dir;    // "" = no hosts directory
  bool plain_http = false;  // the default upstream uses http instead of https
  bool insecure = false;    // skip TLS verification on every host
};

// Parses hosts.toml text for registry `registry_host` ("docker.io",
// "127.0.0.1:5000"). `dir` resolves relative certificate paths; `origin`
// names the file in errors. Returns mirrors in file order, then the upstream.
absl::StatusOr<std::vector<RegistryHost>> ParseHostsToml(absl::string_view text,
                                                         absl::string_view registry_host,
                                                         absl::string_view dir,
                                                         absl::string_view origin,
                                                         const HostsOptions& options);

// The default upstream for `registry_host` (docker.io ->
// https://registry-1.docker.io; http when options.plain_http).
RegistryHost DefaultUpstream(absl::string_view registry_host, const HostsOptions& options);

// Looks up the hosts.toml for `registry_host` in options.hosts_dir (see the
// search order above) and parses it; without one, just the default upstream.
// A malformed file is an error (never silently ignored).
absl::StatusOr<std::vector<RegistryHost>> ConfigureHosts(absl::string_view registry_host,
                                                         const HostsOptions& options);

// Parses "http[s]://host[:port][/path]" into scheme/host/path (path without
// "/v2" handling). InvalidArgument for anything else, including user info.
absl::StatusOr<RegistryHost> ParseHostUrl(absl::string_view url);

}  // namespace accel::registry
