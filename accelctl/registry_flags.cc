#include "accelctl/registry_flags.h"

#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/version.h"

namespace accel::ctl {

const char kRegistryFlagsUsage[] = R"(Registry flags:
  --hosts-dir DIR   containerd hosts directory with DIR/<host>/hosts.toml mirror
                    files (default /etc/containerd/certs.d)
  --config FILE     daemon config (TOML); credentials from its
                    [registry.auths."HOST"] tables (username/password, auth,
                    or identitytoken)
  --plain-http      use http:// for registries without a hosts.toml entry
  --insecure        skip TLS certificate verification
  --stall-timeout SECONDS
                    give up on (and retry) a transfer that moved no data for
                    this long (default 20)
  --debug           log retries and mirror fallbacks on stderr
Credentials are also read from $DOCKER_CONFIG/config.json or ~/.docker/config.json.
)";

bool ConsumeValueFlag(const Args& args, size_t& i, const std::string& name, std::string& value,
                      std::string& error) {
  const std::string& a = args[i];
  if (a == name) {
    if (i + 1 >= args.size()) {
      error = absl::StrCat(name, " needs a value");
      return true;
    }
    value = args[++i];
    return true;
  }
  if (absl::StartsWith(a, name + "=")) {
    value = a.substr(name.size() + 1);
    return true;
  }
  return false;
}

bool ConsumeRegistryFlag(const Args& args, size_t& i, RegistryFlags& flags, std::string& error) {
  const std::string& a = args[i];
  if (a == "--plain-http") {
    flags.plain_http = true;
    return true;
  }
  if (a == "--insecure") {
    flags.insecure = true;
    return true;
  }
  if (a == "--debug") {
    flags.debug = true;
    return true;
  }
  std::string stall;
  if (ConsumeValueFlag(args, i, "--stall-timeout", stall, error)) {
    if (error.empty() && (!absl::SimpleAtoi(stall, &flags.stall_timeout_seconds) ||
                          flags.stall_timeout_seconds < 1)) {
      error = "--stall-timeout must be a positive number of seconds";
    }
    return true;
  }
  return ConsumeValueFlag(args, i, "--hosts-dir", flags.hosts_dir, error) ||
         ConsumeValueFlag(args, i, "--config", flags.config, error);
}

absl::StatusOr<std::unique_ptr<registry::Client>> MakeRegistryClient(const RegistryFlags& flags,
                                                                     int max_transfers) {
  SetLogLevel(flags.debug ? LogLevel::kDebug : LogLevel::kWarn);
  registry::ClientOptions o;
  o.hosts.hosts_dir = flags.hosts_dir;
  struct stat st;
  if (!flags.hosts_dir.empty() && ::stat(flags.hosts_dir.c_str(), &st) != 0) {
    if (flags.hosts_dir != kDefaultHostsDir) {
      return absl::NotFoundError(
          absl::StrCat("--hosts-dir ", flags.hosts_dir, ": no such directory"));
    }
    o.hosts.hosts_dir.clear();  // the default may simply not exist
  }
  o.hosts.plain_http = flags.plain_http;
  o.hosts.insecure = flags.insecure;
  absl::StatusOr<registry::CredentialStore> creds = registry::LoadCredentials(flags.config);
  if (!creds.ok()) return creds.status();
  o.credentials = *std::move(creds);
  o.transport.user_agent = absl::StrCat("accelctl/", Version());
  o.transport.connect_timeout = absl::Seconds(10);
  o.transport.low_speed_limit = 1;
  o.transport.low_speed_time = absl::Seconds(flags.stall_timeout_seconds);
  if (max_transfers > 0) o.max_concurrent_transfers = max_transfers;
  return registry::Client::Create(std::move(o));
}

}  // namespace accel::ctl
