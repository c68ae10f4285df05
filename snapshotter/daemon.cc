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
#include "snapshotter/fd_store.h"
#include "snapshotter/grpc_service.h"
#include "snapshotter/layer_resolver.h"
#include "snapshotter/listener.h"
#include "snapshotter/metastore.h"
#include "snapshotter/mount_table.h"
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
  o.transport.request_timeout = absl::Seconds(config.registry_request_timeout_seconds);
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

// Layer blobs read from the registry, for lazy eStargz layers.
class RegistryBlobOpener final : public BlobOpener {
 public:
  explicit RegistryBlobOpener(registry::Client* client) : client_(client) {}
  absl::StatusOr<std::shared_ptr<registry::BlobReader>> Open(const registry::Reference& ref,
                                                             const std::string& digest) override {
    ACCEL_ASSIGN_OR_RETURN(std::optional<int64_t> size,
                           client_->StatBlob(ref, digest, registry::kCapPull));
    if (!size) {
      return absl::NotFoundError(absl::StrCat("registry has no blob ", digest, " in ", ref.Name()));
    }
    return OpenSized(ref, digest, *size);
  }
  std::shared_ptr<registry::BlobReader> OpenSized(const registry::Reference& ref,
                                                  const std::string& digest,
                                                  int64_t size) override {
    registry::Descriptor desc;
    desc.digest = digest;
    desc.size = size;
    return client_->OpenBlob(ref, desc);
  }

 private:
  registry::Client* const client_;
};

constexpr char kListenFdName[] = "grpc-listen";

// The listening socket: the one the fd store kept if it still is ours,
// else a new one (kept in the store for the next daemon).
absl::StatusOr<UniqueFd> TakeListener(const std::string& address,
                                      std::map<std::string, UniqueFd>& held, FdStore& fds) {
  auto it = held.find(kListenFdName);
  if (it != held.end()) {
    UniqueFd fd = std::move(it->second);
    held.erase(it);
    if (IsListenerFor(fd.get(), address)) {
      ACCEL_LOG(kInfo, "msg=\"serving on the kept listening socket\"",
                LogField("address", address));
      return fd;
    }
    fds.Remove(kListenFdName).IgnoreError();
  }
  ACCEL_RETURN_IF_ERROR(PrepareSocketPath(address));
  ACCEL_ASSIGN_OR_RETURN(UniqueFd fd, Listen(address));
  absl::Status kept = fds.Put(kListenFdName, fd.get());
  if (!kept.ok()) {
    ACCEL_LOG(kWarn, "msg=\"cannot keep the listening socket across restarts\"",
              LogField("error", kept.ToString()));
  }
  return fd;
}

std::string SelfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

absl::Status RunDaemon(const Config& config) {
  const absl::Time started = absl::Now();
  ACCEL_LOG(kInfo, "msg=\"starting accel-snapshotter\"", LogField("version", Version()),
            LogField("root", config.root), LogField("address", config.address));
  if (config.root.empty() || config.root[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("root must be an absolute path, got \"", config.root, "\""));
  }
  ACCEL_RETURN_IF_ERROR(MkdirAll(config.root, 0700));
  // Descriptors that outlive the daemon: FUSE connections and the socket.
  std::unique_ptr<FdStore> fds;
  {
    absl::StatusOr<std::unique_ptr<FdStore>> opened = OpenFdStore(
        FdStoreOptions{config.fd_store, absl::StrCat(config.root, "/fd-holder.sock"), SelfExe()});
    if (!opened.ok()) {
      ACCEL_LOG(kError, "msg=\"no fd store: mounts will not survive a restart\"",
                LogField("error", opened.status().ToString()));
      ACCEL_ASSIGN_OR_RETURN(fds, OpenFdStore(FdStoreOptions{"none", "", ""}));
    } else {
      fds = *std::move(opened);
    }
  }
  using HeldFds = std::map<std::string, UniqueFd>;
  ACCEL_ASSIGN_OR_RETURN(HeldFds held, fds->Fetch());
  ACCEL_ASSIGN_OR_RETURN(UniqueFd listener, TakeListener(config.address, held, *fds));
  ACCEL_ASSIGN_OR_RETURN(std::shared_ptr<MetaStore> ms,
                         MetaStore::Open(absl::StrCat(config.root, "/metadata.db")));
  // Lazy layers' reads use the registry client from FUSE threads: it must
  // outlive the FUSE server, so it is made first (and destroyed last).
  std::unique_ptr<registry::Client> client;
  if (config.lazy) {
    ACCEL_ASSIGN_OR_RETURN(client, MakeDaemonRegistryClient(config));
  }
  // Two worker pools: store layers, and lazy layers that may wait on a
  // registry. Mounts stay when this process ends: a successor adopts them.
  fuse::FuseServer::Options fuse_options;
  fuse_options.threads = config.fuse_threads;
  fuse_options.network_threads = config.fuse_lazy_threads;
  fuse_options.unmount_on_destroy = false;
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<fuse::FuseServer> fuse_server,
                         fuse::FuseServer::Start(fuse_options));
  StoreLayers store_layers(config.store);
  LayerResolver resolver;
  if (config.store.empty()) {
    ACCEL_LOG(kInfo, "msg=\"no store configured: plain layers only\"");
  } else {
    resolver.Add(&store_layers);
  }
  // Lazy eStargz layers: a registry client of the daemon's own (hosts.toml
  // mirrors, [registry] credentials) and the on-disk chunk cache.
  std::unique_ptr<RegistryBlobOpener> blobs;
  std::unique_ptr<EstargzLayers> estargz_layers;
  if (config.lazy) {
    ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<fuse::ChunkCache> cache,
                           fuse::ChunkCache::Open({absl::StrCat(config.root, "/chunks"),
                                                   uint64_t(config.chunk_cache_mib) << 20}));
    blobs = std::make_unique<RegistryBlobOpener>(client.get());
    estargz_layers = std::make_unique<EstargzLayers>(
        blobs.get(), std::move(cache),
        EstargzOptions{config.prefetch, uint64_t(config.background_fetch_mibps) << 20,
                       absl::StrCat(config.root, "/tocs")});
    resolver.Add(estargz_layers.get());
  }
  std::unique_ptr<LayerMounter> mounter = NewFuseMounter(fuse_server.get());
  std::unique_ptr<MountRecords> records = NewMetaStoreRecords(ms.get());
  MountTableOptions table_options;
  table_options.restore_wait = absl::Seconds(config.restore_wait_seconds);
  table_options.restore_threads = config.restore_threads;
  MountTable table(&resolver, mounter.get(), records.get(), fds.get(), std::move(held),
                   table_options);
  // Remote snapshots are restored in the background: RPCs are served now.
  ACCEL_ASSIGN_OR_RETURN(auto sn, Snapshotter::Open(SnapshotterOptions{config.root, &table, ms}));

  auto snapshots = NewSnapshotsService(sn.get());
  auto daemon = NewDaemonService(
      sn.get(), DaemonInfo{config.address, started, config.store.empty() ? nullptr : &store_layers,
                           estargz_layers.get(), &table, fds->kind()});
  std::unique_ptr<grpc::Server> server;
  {
    grpc::ServerBuilder builder;
    grpc::ResourceQuota quota(absl::StrCat("accel-rpc:", config.address));
    quota.SetMaxThreads(config.max_rpc_threads);
    builder.SetResourceQuota(quota);
    builder.SetMaxReceiveMessageSize(16 << 20);
    builder.RegisterService(snapshots.get());
    builder.RegisterService(daemon.get());
    server = builder.BuildAndStart();
    if (server == nullptr) return absl::UnavailableError("cannot start the gRPC server");
  }
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<AcceptLoop> accept,
                         AcceptLoop::Start(listener.get(), server.get()));
  // The CRI image proxy, on a socket of its own (kubelet's
  // --image-service-endpoint): PullImage credentials reach `client`.
  std::unique_ptr<grpc::Service> cri_proxy;
  std::unique_ptr<grpc::Server> cri_server;
  if (!config.cri_image_address.empty()) {
    if (auto s = PrepareSocketPath(config.cri_image_address); !s.ok()) {
      return s;
    }
    cri_proxy = NewCriImageProxy(CriProxyOptions{config.cri_upstream, client.get()});
    absl::StatusOr<std::unique_ptr<grpc::Server>> cs =
        Serve(config.cri_image_address, config.max_rpc_threads, {cri_proxy.get()});
    if (!cs.ok()) return cs.status();
    cri_server = *std::move(cs);
    ACCEL_LOG(kInfo, "msg=\"serving the CRI image proxy\"",
              LogField("address", config.cri_image_address),
              LogField("upstream", config.cri_upstream),
              LogField("lazy_credentials", client != nullptr ? "yes" : "no (lazy = false)"));
  }
  sd_notify(0, "READY=1\nSTATUS=serving");
  ACCEL_LOG(kInfo, "msg=\"serving\"", LogField("address", config.address),
            LogField("fd_store", fds->kind()),
            LogField("ready_after", absl::FormatDuration(absl::Now() - started)));

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
  accept.reset();  // no new connections; they wait in the kept socket's backlog
  server->Shutdown(deadline);
  server->Wait();
  // A kept socket stays for the next daemon; otherwise it goes.
  if (fds->kind() == "none") ::unlink(config.address.c_str());
  ACCEL_LOG(kInfo, "msg=\"stopped\"");
  return absl::OkStatus();
}

}  // namespace accel::snapshotter
