#pragma once

// StoreLayers serves preloaded layers from the shared store (RemoteLayers
// kind "store"). A target image's layer descriptors carry two annotations,
// which containerd passes to Prepare as labels:
//
//   containerd.io/snapshot/accel.diff-id   the layer's uncompressed digest
//   containerd.io/snapshot/accel.store-id  the id of the store it was converted into
//
// When the store is configured and reachable, its id matches, it holds the
// layer, and the target name containerd asks for is the chain id of the
// parent and this diff id (so an image cannot commit a store layer under
// another layer's name), Mount() mounts the layer's tree through the FUSE server and
// the snapshotter answers AlreadyExists; otherwise Mount() returns "" and
// containerd downloads the layer as usual (a target image runs everywhere).
//
// Trees and data files are shared between mounts of the same layer.
// Thread-safe.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "fuse/file_source.h"
#include "fuse/layer_tree.h"
#include "fuse/server.h"
#include "snapshotter/remote_layers.h"
#include "store/store.h"

namespace accel::snapshotter {

// The labels naming a store layer (kStoreLayerLabel, kStoreIdLabel) are in
// common/labels.h.
inline constexpr char kStoreKind[] = "store";

// What `accelctl status` shows about the store and the mounts.
struct StoreLayersStatus {
  std::string dir;
  bool reachable = false;
  std::string id;
  std::string error;  // why it is unreachable
  struct Mounted {
    std::string mountpoint;
    std::string diff_id;
  };
  std::vector<Mounted> mounted;
};

class StoreLayers final : public RemoteLayers {
 public:
  // `store_dir` may be "" (no store: every Mount() returns ""). `server`
  // must outlive this object.
  StoreLayers(std::string store_dir, fuse::FuseServer* server);

  absl::StatusOr<std::string> Mount(const Labels& labels, const std::string& parent,
                                    const std::string& mountpoint) override;
  absl::Status Restore(const Labels& labels, const std::string& mountpoint) override;
  absl::Status Unmount(const std::string& mountpoint) override;

  StoreLayersStatus Status();

 private:
  struct Layer {
    std::shared_ptr<const fuse::LayerTree> tree;
    std::shared_ptr<fuse::FileSource> source;
    int mounts = 0;
  };
  // The store, opened again on every call (outside the lock: it is NFS
  // I/O and may hang) so that an unreachable store is noticed.
  absl::StatusOr<std::shared_ptr<const store::Store>> GetStore() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<Layer> LoadLayer(const store::Store& store, const std::string& diff_id);
  absl::Status MountLayer(const store::Store& store, const std::string& diff_id,
                          const std::string& mountpoint);

  const std::string store_dir_;
  fuse::FuseServer* const server_;

  absl::Mutex mu_;
  std::string store_error_ ABSL_GUARDED_BY(mu_);
  // Loaded layers by diff id, shared by their mounts; dropped with the
  // last mount.
  std::map<std::string, Layer> layers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> mounted_ ABSL_GUARDED_BY(mu_);  // mountpoint -> diff id
};

}  // namespace accel::snapshotter
