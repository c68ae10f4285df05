// accel-snapshotter: containerd's proxy snapshotter daemon.

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/version.h"
#include "snapshotter/config.h"
#include "snapshotter/daemon.h"
#include "snapshotter/fd_store.h"

namespace {

constexpr char kUsage[] = R"(Usage: accel-snapshotter [flags]

containerd proxy snapshotter that serves containerd's snapshots API on a unix
socket (mode 0600). Register it in containerd's config:

  [proxy_plugins.accel]
    type = "snapshot"
    address = "/run/accel-snapshotter/snapshotter.sock"

Flags (each overrides the config file):
  --config FILE       TOML config file (keys: root, address, log_level,
                      max_rpc_threads, store, fuse_threads, fuse_lazy_threads,
                      lazy, hosts_dir, fd_store, restore_wait_seconds,
                      restore_threads, registry_request_timeout_seconds,
                      chunk_cache_mib, background_fetch_mibps, prefetch,
                      cri_image_address, cri_upstream, [registry])
  --root DIR          state directory
                      (default /var/lib/containerd/io.containerd.snapshotter.v1.accel)
  --address SOCKET    unix socket to serve on
                      (default /run/accel-snapshotter/snapshotter.sock)
  --store DIR         shared store of preloaded layers (converted by
                      `accelctl convert`); without one, layers of target
                      images are downloaded like any other
  --cri-image-address SOCKET
                      also serve the Kubernetes CRI ImageService on this unix
                      socket (mode 0600) as a proxy in front of containerd's:
                      point kubelet's --image-service-endpoint at it, so the
                      credentials of a pull (imagePullSecrets) reach accel,
                      which keeps them in memory only for lazy eStargz reads
                      from that registry (default: off)
  --cri-upstream SOCKET
                      containerd's socket the proxy forwards to
                      (default /run/containerd/containerd.sock)
  --fd-store MODE     where FUSE connections and the socket outlive a restart:
                      auto (default), holder, systemd or none
  --log-level LEVEL   debug, info, warn or error (default info)
  --version           print the version and exit
  -h, --help          print this help and exit

Signals: SIGTERM or SIGINT stop it cleanly (in-flight requests finish).
Mounted layers and the socket stay for the next start (see --fd-store).
)";

int Fail(const std::string& msg) {
  std::fprintf(stderr, "accel-snapshotter: %s\n", msg.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using accel::snapshotter::Config;
  // The fd holder (snapshotter/fd_store.h), started by the daemon itself.
  if (argc == 3 && std::strcmp(argv[1], "--fd-holder") == 0) {
    return accel::snapshotter::RunFdHolder(argv[2]);
  }
  accel::snapshotter::BlockTerminationSignals();

  std::string config_path, root, address, log_level, store, cri_image_address, cri_upstream,
      fd_store;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto take = [&](std::string& out) -> bool {
      if (has_value) {
        out = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--version") {
      std::printf("accel-snapshotter %s\n", accel::Version());
      return 0;
    } else if (arg == "--config") {
      if (!take(config_path)) return Fail("--config needs a file");
    } else if (arg == "--root") {
      if (!take(root)) return Fail("--root needs a directory");
    } else if (arg == "--address") {
      if (!take(address)) return Fail("--address needs a socket path");
    } else if (arg == "--store") {
      if (!take(store)) return Fail("--store needs a directory");
    } else if (arg == "--cri-image-address") {
      if (!take(cri_image_address)) return Fail("--cri-image-address needs a socket path");
    } else if (arg == "--cri-upstream") {
      if (!take(cri_upstream)) return Fail("--cri-upstream needs a socket path");
    } else if (arg == "--fd-store") {
      if (!take(fd_store)) return Fail("--fd-store needs auto, holder, systemd or none");
    } else if (arg == "--log-level") {
      if (!take(log_level)) return Fail("--log-level needs a level");
    } else {
      return Fail(absl::StrCat("unknown argument \"", arg, "\" (see --help)"));
    }
  }

  Config config;
  if (!config_path.empty()) {
    auto loaded = accel::snapshotter::LoadConfig(config_path);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    config = *loaded;
  }
  if (!root.empty()) config.root = root;
  if (!address.empty()) config.address = address;
  if (!log_level.empty()) config.log_level = log_level;
  if (!store.empty()) config.store = store;
  if (!cri_image_address.empty()) config.cri_image_address = cri_image_address;
  if (!cri_upstream.empty()) config.cri_upstream = cri_upstream;
  if (!fd_store.empty()) config.fd_store = fd_store;
  auto level = accel::ParseLogLevel(config.log_level);
  if (!level.ok()) return Fail(std::string(level.status().message()));
  accel::SetLogLevel(*level);

  absl::Status s = accel::snapshotter::RunDaemon(config);
  if (!s.ok()) {
    ACCEL_LOG(kError, "msg=\"daemon failed\"", accel::LogField("error", s.ToString()));
    return 1;
  }
  return 0;
}
