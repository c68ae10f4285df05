#pragma once

// MountTable is the one owner of remote-layer mounts: what is mounted
// where, of which kind, for which committed snapshot, with which FUSE
// connection parameters, and in which state. It is the RemoteLayers the
// Snapshotter uses; every mount and unmount goes through it, and it routes
// by kind (LayerResolver and its LayerSources load layers, a LayerMounter
// mounts them). Each mount is persisted in the metadata database
// (MountRecords) and its /dev/fuse descriptor is kept in the FdStore, so a
// successor process adopts live connections instead of mounting again.
//
// Restore after a restart (RestoreAll, which returns at once):
//  - a snapshot whose connection the fd store kept is adopted: its readers
//    wait (the connection is not read) until the layer is loaded, then it
//    is served. If the layer cannot be loaded within `restore_wait`, its
//    requests are answered EIO (never an empty or partial tree) while the
//    restore keeps retrying with backoff; it is served once it succeeds.
//  - a snapshot without a live connection (first start after a reboot, a
//    holder that died) gets stale mounts at its mountpoint detached and a
//    fresh mount once loaded, retried likewise.
//  - records and kept descriptors of snapshots that no longer exist are
//    detached and dropped.
// Restores run on `restore_threads` threads; a layer's state, error and
// attempts are in Status() (accelctl status). New snapshots above a layer
// that is failing are refused (CheckServable), naming the layer and cause;
// above one being restored they wait up to `restore_wait`.
//
// Thread-safe. Lock order: mu_ only; never held across loading, mount
// syscalls, the fd store or the database.

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "fuse/protocol.h"
#include "fuse/server.h"
#include "snapshotter/fd_store.h"
#include "snapshotter/layer_resolver.h"
#include "snapshotter/metastore.h"
#include "snapshotter/remote_layers.h"

namespace accel::snapshotter {

// Mounting, as MountTable needs it (FuseServer in the daemon; fakes in
// tests). See fuse/server.h for each operation's contract.
class LayerMounter {
 public:
  virtual ~LayerMounter() = default;
  virtual absl::StatusOr<fuse::proto::ConnParams> Mount(const std::string& mountpoint,
                                                        const LoadedLayer& layer,
                                                        fuse::FuseServer::Pool pool) = 0;
  virtual absl::Status Adopt(const std::string& mountpoint, UniqueFd fd,
                             const fuse::proto::ConnParams& conn, fuse::FuseServer::Pool pool) = 0;
  virtual absl::Status Serve(const std::string& mountpoint, const LoadedLayer& layer) = 0;
  virtual absl::Status Fail(const std::string& mountpoint) = 0;
  virtual absl::Status Unmount(const std::string& mountpoint) = 0;
  virtual absl::StatusOr<UniqueFd> DupDevice(const std::string& mountpoint) = 0;
  // Detaches whatever stale FUSE mount sits at `mountpoint`.
  virtual absl::Status DetachStale(const std::string& mountpoint) = 0;
};
std::unique_ptr<LayerMounter> NewFuseMounter(fuse::FuseServer* server);

// Persistence of mount records (the metadata database in the daemon).
class MountRecords {
 public:
  virtual ~MountRecords() = default;
  virtual absl::StatusOr<std::vector<MountRecord>> List() = 0;
  virtual absl::Status Put(const MountRecord& rec) = 0;
  virtual absl::Status Delete(const std::string& mountpoint) = 0;
};
std::unique_ptr<MountRecords> NewMetaStoreRecords(MetaStore* ms);

struct MountTableOptions {
  absl::Duration restore_wait = absl::Seconds(30);
  int restore_threads = 8;
  absl::Duration retry_initial = absl::Seconds(1);
  absl::Duration retry_max = absl::Seconds(60);
};

struct MountStatus {
  std::string mountpoint;
  std::string snapshot;
  std::string kind;
  std::string layer;
  std::string state;  // "serving", "restoring", "failed"
  std::string error;  // the last restore error
  int attempts = 0;   // restore attempts so far
  bool adopted = false;
};

class MountTable final : public RemoteLayers {
 public:
  // Every pointer must outlive the table. `held`: the descriptors the fd
  // store kept (the table takes those named after its mounts and drops the
  // other FUSE ones).
  MountTable(LayerResolver* resolver, LayerMounter* mounter, MountRecords* records, FdStore* fds,
             std::map<std::string, UniqueFd> held, MountTableOptions options);
  ~MountTable() override;

  absl::StatusOr<std::string> Mount(const Labels& labels, const std::string& parent,
                                    const std::string& mountpoint) override;
  absl::Status RestoreAll(std::vector<RemoteSnapshot> snapshots) override;
  absl::Status Unmount(const std::string& mountpoint) override;
  absl::Status CheckServable(const std::vector<std::string>& mountpoints) override;

  std::vector<MountStatus> Status() const;

  // The fd store name of the connection mounted at `mountpoint`.
  static std::string FdName(const std::string& mountpoint);
  // Names of the fd store that belong to mounts (FdName's form).
  static bool IsMountFdName(const std::string& name);

 private:
  enum class State { kServing, kRestoring, kFailed };
  struct Entry {
    std::string snapshot;
    std::string kind;
    std::string layer;
    Labels labels;
    State state = State::kRestoring;
    bool registered = false;  // the mounter serves or holds this mountpoint
    bool adopted = false;
    bool busy = false;  // a restore attempt is running
    bool eio = false;   // the mounter answers EIO for it
    std::string error;
    int attempts = 0;
    absl::Time since;
    absl::Time next_try;
  };

  void RestoreLoop();
  void WatchdogLoop();
  // One restore attempt of `mp` (not under mu_). Returns the error.
  absl::Status RestoreOne(const std::string& mp, const Entry& entry);
  absl::Status Persist(const std::string& mp, const std::string& snapshot, const std::string& kind,
                       const std::string& layer, const fuse::proto::ConnParams& conn);

  LayerResolver* const resolver_;
  LayerMounter* const mounter_;
  MountRecords* const records_;
  FdStore* const fds_;
  const MountTableOptions options_;

  mutable absl::Mutex mu_;
  std::map<std::string, UniqueFd> held_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);  // by mountpoint
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int wakeups_ ABSL_GUARDED_BY(mu_) = 0;  // bumped when work may be due
  std::vector<std::thread> threads_;
};

}  // namespace accel::snapshotter
