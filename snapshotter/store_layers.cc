#include "snapshotter/store_layers.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace accel::snapshotter {
namespace {

const std::string* Find(const Labels& labels, const char* key) {
  auto it = labels.find(key);
  return it == labels.end() ? nullptr : &it->second;
}

}  // namespace

StoreLayers::StoreLayers(std::string store_dir, fuse::FuseServer* server)
    : store_dir_(std::move(store_dir)), server_(server) {}

absl::StatusOr<std::shared_ptr<const store::Store>> StoreLayers::GetStore() {
  absl::StatusOr<std::unique_ptr<store::Store>> opened = store::Store::Open(store_dir_, false);
  absl::MutexLock lock(&mu_);
  if (!opened.ok()) {
    std::string error(opened.status().message());
    if (error != store_error_) {
      ACCEL_LOG(kWarn, "msg=\"store unreachable; layers fall back to download\"",
                LogField("store", store_dir_), LogField("error", error));
    }
    store_error_ = error;
    return opened.status();
  }
  if (!store_error_.empty())
    ACCEL_LOG(kInfo, "msg=\"store reachable again\"", LogField("store", store_dir_));
  store_error_.clear();
  return std::shared_ptr<const store::Store>(std::move(*opened));
}

absl::StatusOr<StoreLayers::Layer> StoreLayers::LoadLayer(const store::Store& store,
                                                          const std::string& diff_id) {
  ACCEL_ASSIGN_OR_RETURN(store::OpenLayer opened, store.Open(diff_id));
  const uint64_t data_size = opened.index.data_size;
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<const fuse::LayerTree> tree,
                         fuse::LayerTree::Build(std::move(opened.index.entries)));
  Layer layer;
  layer.tree = std::move(tree);
  layer.source = fuse::MakeDataFileSource(std::move(opened.data), data_size);
  return layer;
}

absl::Status StoreLayers::MountLayer(const store::Store& store, const std::string& diff_id,
                                     const std::string& mountpoint) {
  Layer layer;
  {
    absl::MutexLock lock(&mu_);
    auto it = layers_.find(diff_id);
    if (it != layers_.end()) layer = it->second;
  }
  if (layer.tree == nullptr) {
    // Loading can take a while for a big layer: not under the lock. Two
    // loads of one layer may race; the first one stored wins.
    absl::Time start = absl::Now();
    ACCEL_ASSIGN_OR_RETURN(layer, LoadLayer(store, diff_id));
    ACCEL_LOG(kDebug, "msg=\"loaded store layer\"", LogField("layer", diff_id),
              LogField("entries", absl::StrCat(layer.tree->node_count())),
              LogField("took", absl::FormatDuration(absl::Now() - start)));
  }
  ACCEL_RETURN_IF_ERROR(server_->Mount(mountpoint, layer.tree, layer.source,
                                       absl::StrCat("accel-store:", diff_id.substr(0, 19))));
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = layers_.try_emplace(diff_id, layer);
  it->second.mounts++;
  mounted_[mountpoint] = diff_id;
  return absl::OkStatus();
}

absl::StatusOr<std::string> StoreLayers::Mount(const Labels& labels, const std::string& parent,
                                               const std::string& mountpoint) {
  const std::string* diff_id = Find(labels, kStoreLayerLabel);
  if (diff_id == nullptr || store_dir_.empty()) return std::string();
  if (!store::ValidateDiffId(*diff_id).ok()) {
    ACCEL_LOG(kWarn, "msg=\"invalid store layer label; downloading the layer\"",
              LogField("label", diff_id->substr(0, 100)));
    return std::string();
  }
  // containerd commits a layer under its chain id: diff id for the bottom
  // layer, sha256("<parent chain id> <diff id>") above. A target that is
  // not this layer's chain id means the image's annotations do not match
  // its config: never mount under someone else's name.
  // containerd's metadata layer names backend snapshots "ns/id/name"; a
  // parent committed by the remote path has its bare chain id as name.
  const std::string parent_chain =
      parent.substr(parent.rfind('/') == std::string::npos ? 0 : parent.rfind('/') + 1);
  const std::string* target = Find(labels, kTargetRefLabel);
  const std::string chain =
      parent.empty() ? *diff_id : Sha256::Of(absl::StrCat(parent_chain, " ", *diff_id));
  if (target == nullptr || *target != chain) {
    ACCEL_LOG(kWarn,
              "msg=\"store layer label does not match the layer's chain id; downloading it\"",
              LogField("layer", *diff_id), LogField("target", target ? *target : ""),
              LogField("parent", parent));
    return std::string();
  }
  absl::StatusOr<std::shared_ptr<const store::Store>> store = GetStore();
  if (!store.ok()) return std::string();
  const std::string* want_id = Find(labels, kStoreIdLabel);
  if (want_id != nullptr && *want_id != (*store)->id()) {
    ACCEL_LOG(kInfo, "msg=\"layer was converted into another store; downloading it\"",
              LogField("layer", *diff_id), LogField("want_store", *want_id),
              LogField("have_store", (*store)->id()));
    return std::string();
  }
  if (!(*store)->HasLayer(*diff_id)) {
    ACCEL_LOG(kInfo, "msg=\"layer not in the store; downloading it\"", LogField("layer", *diff_id));
    return std::string();
  }
  ACCEL_RETURN_IF_ERROR(
      Annotate(MountLayer(**store, *diff_id, mountpoint), "mount store layer ", *diff_id));
  return std::string(kStoreKind);
}

absl::Status StoreLayers::Restore(const Labels& labels, const std::string& mountpoint) {
  const std::string* diff_id = Find(labels, kStoreLayerLabel);
  if (diff_id == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("no ", kStoreLayerLabel, " label"));
  }
  if (store_dir_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("layer ", *diff_id, " came from a store, but no store is configured"));
  }
  ACCEL_ASSIGN_OR_RETURN(std::shared_ptr<const store::Store> store, GetStore());
  return Annotate(MountLayer(*store, *diff_id, mountpoint), "restore store layer ", *diff_id);
}

absl::Status StoreLayers::Unmount(const std::string& mountpoint) {
  ACCEL_RETURN_IF_ERROR(server_->Unmount(mountpoint));
  absl::MutexLock lock(&mu_);
  auto m = mounted_.find(mountpoint);
  if (m == mounted_.end()) return absl::OkStatus();
  auto it = layers_.find(m->second);
  if (it != layers_.end() && --it->second.mounts <= 0) layers_.erase(it);
  mounted_.erase(m);
  return absl::OkStatus();
}

StoreLayersStatus StoreLayers::Status() {
  StoreLayersStatus status;
  status.dir = store_dir_;
  if (!store_dir_.empty()) {
    absl::StatusOr<std::shared_ptr<const store::Store>> store = GetStore();
    status.reachable = store.ok();
    if (store.ok()) {
      status.id = (*store)->id();
    } else {
      status.error = std::string(store.status().message());
    }
  }
  absl::MutexLock lock(&mu_);
  for (const auto& [mp, diff_id] : mounted_) status.mounted.push_back({mp, diff_id});
  return status;
}

}  // namespace accel::snapshotter
