#include "snapshotter/daemon.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"
#include "common/version.h"
#include "fuse/chunk_cache.h"
#include "fuse/server.h"
#include "registry/auth.h"
#include "registry/client.h"
#include "snapshotter/cri_proxy.h"
#include "snapshotter/estargz_layers.h"
#include "snapshotter/grpc_service.h"
#include "snapshotter/layer_resolver.h"
#include "snapshotter/snapshotter.h"
#include "snapshotter/store_layers.h"

namespace accel::snapshotter {
namespace {

// How long in-flight RPCs get to finish after SIGTERM.
constexpr absl::Duration kShutdownGrace = absl::Seconds(30);

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

// Prepares `path` for a new listener: creates its directory (0700 if new),
// refuses if another process answers on it, removes a stale socket.
absl::Status PrepareSocketPath(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path ", path, " is longer than ",
                                                   sizeof(sockaddr_un{}.sun_path) - 1, " bytes"));
  }
  auto slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    ACCEL_RETURN_IF_ERROR(MkdirAll(path.substr(0, slash), 0700));
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoToStatus(errno, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("another process is serving on ", path, " (is accel-snapshotter running?)"));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("remove stale socket ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<registry::Client>> MakeDaemonRegistryClient(const Config& config) {
  registry::ClientOptions o;
  struct stat st;
  if (!config.hosts_dir.empty() && ::stat(config.hosts_dir.c_str(), &st) == 0) {
    o.hosts.hosts_dir = config.hosts_dir;
  }
  ACCEL_ASSIGN_OR_RETURN(o.credentials, registry::LoadCredentials(config.path));
  o.transport.user_agent = absl::StrCat("accel-snapshotter/", Version());
  o.transport.connect_timeout = absl::Seconds(10);
  o.transport.low_speed_time = absl::Seconds(20);
  // A read waits at most about 10 s for an unreachable registry, then
  // fails with EIO; the mount stays and recovers when the registry does.
  o.retry.max_attempts = 4;
  o.retry.max_backoff = absl::Seconds(4);
  return registry::Client::Create(std::move(o));
}

// Builds and starts a gRPC server with `services` on unix socket `path`,
// created root-only (mode 0600, no window in which others can connect).
absl::StatusOr<std::unique_ptr<grpc::Server>> Serve(
    const std::string& path, int max_threads, std::initializer_list<grpc::Service*> services) {
  grpc::ServerBuilder builder;
  grpc::ResourceQuota quota(absl::StrCat("accel-rpc:", path));
  quota.SetMaxThreads(max_threads);
  builder.SetResourceQuota(quota);
  builder.SetMaxReceiveMessageSize(16 << 20);
  builder.AddListeningPort(absl::StrCat("unix:", path), grpc::InsecureServerCredentials());
  for (grpc::Service* s : services) builder.RegisterService(s);
  mode_t old_umask = ::umask(0077);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ::umask(old_umask);
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on unix socket ", path));
  }
  if (::chmod(path.c_str(), 0600) != 0) {
    absl::Status s = ErrnoToStatus(errno, absl::StrCat("chmod ", path));
    server->Shutdown();
    return s;
  }
  return server;
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

absl::Status RunDaemon(const Config& config) {
  ACCEL_LOG(kInfo, "msg=\"starting accel-snapshotter\"", LogField("version", Version()),
            LogField("root", config.root), LogField("address", config.address));
  // Lazy layers' reads use the registry client from FUSE threads: it must
  // outlive the FUSE server, so it is made first (and destroyed last).
  std::unique_ptr<registry::Client> client;
  if (config.lazy) {
    ACCEL_ASSIGN_OR_RETURN(client, MakeDaemonRegistryClient(config));
  }
  // One FUSE server serves every remote layer with a fixed set of threads.
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<fuse::FuseServer> fuse_server,
                         fuse::FuseServer::Start(fuse::FuseServer::Options{config.fuse_threads}));
  StoreLayers store_layers(config.store, fuse_server.get());
  if (config.store.empty()) {
    ACCEL_LOG(kInfo, "msg=\"no store configured: plain layers only\"");
  } else {
    StoreLayersStatus st = store_layers.Status();
    ACCEL_LOG(kInfo, "msg=\"store\"", LogField("dir", st.dir),
              LogField("reachable", st.reachable ? "yes" : "no"), LogField("id", st.id),
              LogField("error", st.error));
  }
  // Lazy eStargz layers: a registry client of the daemon's own (hosts.toml
  // mirrors, [registry] credentials) and the on-disk chunk cache.
  LayerResolver resolver;
  resolver.Add(kStoreKind, &store_layers);
  std::unique_ptr<EstargzLayers> estargz_layers;
  if (config.lazy) {
    ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<fuse::ChunkCache> cache,
                           fuse::ChunkCache::Open({absl::StrCat(config.root, "/chunks"),
                                                   uint64_t(config.chunk_cache_mib) << 20}));
    estargz_layers = std::make_unique<EstargzLayers>(
        client.get(), fuse_server.get(), std::move(cache),
        EstargzOptions{config.prefetch, uint64_t(config.background_fetch_mibps) << 20});
    resolver.Add(kEstargzKind, estargz_layers.get());
  }
  // Open() remounts every remote snapshot before any RPC is served.
  ACCEL_ASSIGN_OR_RETURN(auto sn, Snapshotter::Open(SnapshotterOptions{config.root, &resolver}));

  ACCEL_RETURN_IF_ERROR(PrepareSocketPath(config.address));
  auto snapshots = NewSnapshotsService(sn.get());
  auto daemon = NewDaemonService(
      sn.get(), DaemonInfo{config.address, absl::Now(), &store_layers, estargz_layers.get()});

  ACCEL_ASSIGN_OR_RETURN(
      std::unique_ptr<grpc::Server> server,
      Serve(config.address, config.max_rpc_threads, {snapshots.get(), daemon.get()}));
  // The CRI image proxy, on a socket of its own (kubelet's
  // --image-service-endpoint): PullImage credentials reach `client`.
  std::unique_ptr<grpc::Service> cri_proxy;
  std::unique_ptr<grpc::Server> cri_server;
  if (!config.cri_image_address.empty()) {
    if (auto s = PrepareSocketPath(config.cri_image_address); !s.ok()) {
      server->Shutdown();
      return s;
    }
    cri_proxy = NewCriImageProxy(CriProxyOptions{config.cri_upstream, client.get()});
    absl::StatusOr<std::unique_ptr<grpc::Server>> cs =
        Serve(config.cri_image_address, config.max_rpc_threads, {cri_proxy.get()});
    if (!cs.ok()) {
      server->Shutdown();
      return cs.status();
    }
    cri_server = *std::move(cs);
    ACCEL_LOG(kInfo, "msg=\"serving the CRI image proxy\"",
              LogField("address", config.cri_image_address),
              LogField("upstream", config.cri_upstream),
              LogField("lazy_credentials", client != nullptr ? "yes" : "no (lazy = false)"));
  }
  sd_notify(0, "READY=1\nSTATUS=serving");
  ACCEL_LOG(kInfo, "msg=\"serving\"", LogField("address", config.address));

  sigset_t set = TerminationSignals();
  int sig = 0;
  while (true) {
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      ACCEL_LOG(kInfo, "msg=\"SIGHUP ignored (restart the daemon to reload its config)\"");
      continue;
    }
    break;
  }
  ACCEL_LOG(kInfo, "msg=\"shutting down\"", LogField("signal", strsignal(sig)));
  sd_notify(0, "STOPPING=1");
  // Stops accepting; in-flight RPCs get kShutdownGrace to finish.
  auto deadline =
      std::chrono::system_clock::now() + std::chrono::seconds(absl::ToInt64Seconds(kShutdownGrace));
  if (cri_server != nullptr) {
    cri_server->Shutdown(deadline);
    cri_server->Wait();
    ::unlink(config.cri_image_address.c_str());
  }
  server->Shutdown(deadline);
  server->Wait();
  ::unlink(config.address.c_str());
  ACCEL_LOG(kInfo, "msg=\"stopped\"");
  return absl::OkStatus();
}

}  // namespace accel::snapshotter
