#pragma once

// StoreLayers serves preloaded layers from the shared store (LayerSource
// kind "store"). A target image's layer descriptors carry two annotations,
// which containerd passes to Prepare as labels:
//
//   containerd.io/snapshot/accel.diff-id   the layer's uncompressed digest
//   containerd.io/snapshot/accel.store-id  the id of the store it was converted into
//
// When the store is configured and reachable, its id matches and it holds
// the layer, Load() returns the layer's tree over its data file (reads are
// local I/O: the kLocal pool); otherwise a new mount falls back to a
// download (a target image runs everywhere). The chain-id check is the
// resolver's (layer_resolver.h).
//
// Trees and data files are shared between mounts of the same layer while
// any mount holds them. Thread-safe.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "snapshotter/layer_resolver.h"
#include "store/store.h"

namespace accel::snapshotter {

// The labels naming a store layer (kStoreLayerLabel, kStoreIdLabel) are in
// common/labels.h.
inline constexpr char kStoreKind[] = "store";

// What `accelctl status` shows about the store.
struct StoreLayersStatus {
  std::string dir;
  bool reachable = false;
  std::string id;
  std::string error;  // why it is unreachable
};

class StoreLayers final : public LayerSource {
 public:
  // `store_dir` may be "" (no store: nothing is recognised).
  explicit StoreLayers(std::string store_dir);

  std::string kind() const override { return kStoreKind; }
  fuse::FuseServer::Pool pool() const override { return fuse::FuseServer::Pool::kLocal; }
  std::optional<LayerMatch> Identify(const Labels& labels) override;
  absl::StatusOr<std::optional<LoadedLayer>> Load(const Labels& labels, const LayerMatch& match,
                                                  bool strict) override;
  void Unmounted(const std::string& mountpoint) override;
  void Mounted(const std::string& mountpoint, const LoadedLayer& layer) override;

  StoreLayersStatus Status();

 private:
  // The store, opened again on every call (outside the lock: it is NFS
  // I/O and may hang) so that an unreachable store is noticed.
  absl::StatusOr<std::shared_ptr<const store::Store>> GetStore() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<LoadedLayer> LoadLayer(const store::Store& store, const std::string& diff_id);

  const std::string store_dir_;

  absl::Mutex mu_;
  std::string store_error_ ABSL_GUARDED_BY(mu_);
  // Loaded layers by diff id, shared by their mounts; dropped with the
  // last mount.
  struct Shared {
    LoadedLayer loaded;
    int mounts = 0;
  };
  std::map<std::string, Shared> layers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> mounted_ ABSL_GUARDED_BY(mu_);  // mountpoint -> diff id
};

}  // namespace accel::snapshotter
