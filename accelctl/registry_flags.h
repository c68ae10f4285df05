#pragma once

// Flags shared by every accelctl command that talks to a registry, and the
// registry client they configure.
//
//   --hosts-dir DIR   containerd hosts directory (default /etc/containerd/certs.d)
//   --config FILE     daemon config; its [registry.auths."HOST"] tables give
//                     credentials (see registry/auth.h)
//   --plain-http      talk http, not https, to registries without a hosts.toml
//   --insecure        skip TLS verification
//   --stall-timeout S abandon and retry a transfer idle for S seconds (20)
//   --debug           log retries and host fallbacks on stderr
//
// Credentials also come from $DOCKER_CONFIG/config.json or
// ~/.docker/config.json (the daemon config wins for the same host).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "accelctl/commands.h"
#include "registry/client.h"

namespace accel::ctl {

inline constexpr char kDefaultHostsDir[] = "/etc/containerd/certs.d";

extern const char kRegistryFlagsUsage[];

struct RegistryFlags {
  std::string hosts_dir = kDefaultHostsDir;
  std::string config;
  bool plain_http = false;
  bool insecure = false;
  bool debug = false;
  int stall_timeout_seconds = 20;
};

// If args[i] is a registry flag ("--flag VALUE" or "--flag=VALUE"), consumes
// it (advancing i past a separate value) and returns true. Sets `error` when
// the flag's value is missing.
bool ConsumeRegistryFlag(const Args& args, size_t& i, RegistryFlags& flags, std::string& error);

// Builds a client from the flags (loads credentials; validates the hosts dir).
// `max_transfers` > 0 overrides the client's limit of concurrent transfers.
absl::StatusOr<std::unique_ptr<registry::Client>> MakeRegistryClient(const RegistryFlags& flags,
                                                                     int max_transfers = 0);

// Consumes "--name VALUE" or "--name=VALUE" at args[i]; true if it matched.
bool ConsumeValueFlag(const Args& args, size_t& i, const std::string& name, std::string& value,
                      std::string& error);

}  // namespace accel::ctl
