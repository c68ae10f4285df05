#pragma once

// The daemon's configuration: a TOML file, overridden by command-line flags.
//
//   # /etc/accel/config.toml
//   root = "/var/lib/containerd/io.containerd.snapshotter.v1.accel"
//   address = "/run/accel-snapshotter/snapshotter.sock"
//   log_level = "info"          # debug, info, warn, error
//   max_rpc_threads = 64        # bound on concurrent RPC handler threads
//   store = "/mnt/accel-store"  # shared store of preloaded layers ("" = none)
//   fuse_threads = 4            # threads serving store layers' FUSE mounts
//   fuse_lazy_threads = 4       # threads serving lazy layers' FUSE mounts (may wait on a registry)
//   fd_store = "auto"           # where FUSE and socket descriptors outlive the daemon:
//                               # "auto", "holder", "systemd", "none" (see fd_store.h)
//   restore_wait_seconds = 30   # reads of a layer not restored yet wait this long, then EIO
//   restore_threads = 8         # layers restored in parallel after a start
//   registry_request_timeout_seconds = 30  # deadline of one whole registry HTTP request
//   lazy = true                 # mount eStargz layers lazily from the registry
//   hosts_dir = "/etc/containerd/certs.d"   # registry mirrors/TLS (hosts.toml)
//   chunk_cache_mib = 10240     # bound on the on-disk cache of lazy chunks
//   background_fetch_mibps = 20 # rate of fetching the rest of lazy layers (0 = off)
//   prefetch = true             # fetch eStargz prioritized files after mounting
//   cri_image_address = ""      # serve the CRI image proxy here ("" = off)
//   cri_upstream = "/run/containerd/containerd.sock"  # containerd's CRI socket
//
// Unknown keys are an error (a typo must not be silently ignored).

#include <string>

#include "absl/status/statusor.h"

namespace accel::snapshotter {

inline constexpr char kDefaultRoot[] = "/var/lib/containerd/io.containerd.snapshotter.v1.accel";
inline constexpr char kDefaultAddress[] = "/run/accel-snapshotter/snapshotter.sock";
inline constexpr char kDefaultCriUpstream[] = "/run/containerd/containerd.sock";

struct Config {
  std::string root = kDefaultRoot;
  std::string address = kDefaultAddress;
  std::string log_level = "info";
  int max_rpc_threads = 64;
  std::string store;  // "": plain and lazy layers only
  int fuse_threads = 4;
  int fuse_lazy_threads = 4;
  std::string fd_store = "auto";
  int restore_wait_seconds = 30;
  int restore_threads = 8;
  int registry_request_timeout_seconds = 30;
  bool lazy = true;
  std::string hosts_dir = "/etc/containerd/certs.d";
  int chunk_cache_mib = 10240;
  int background_fetch_mibps = 20;
  bool prefetch = true;
  // The CRI image proxy (snapshotter/cri_proxy.h): the unix socket it is
  // served on (mode 0600; kubelet's --image-service-endpoint), "" = off; and
  // containerd's socket it forwards to.
  std::string cri_image_address;
  std::string cri_upstream = kDefaultCriUpstream;
  // The file the config came from ("" if none): [registry] credentials.
  std::string path;
};

// Where accelctl and the daemon look for the config when not told.
inline constexpr char kDefaultConfigPath[] = "/etc/accel/config.toml";

// Parses TOML text; `origin` names it in errors.
absl::StatusOr<Config> ParseConfig(const std::string& text, const std::string& origin);

// Reads and parses the file at `path`.
absl::StatusOr<Config> LoadConfig(const std::string& path);

}  // namespace accel::snapshotter
