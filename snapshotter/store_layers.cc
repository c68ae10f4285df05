#include "snapshotter/store_layers.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/labels.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "fuse/file_source.h"
#include "fuse/layer_tree.h"

namespace accel::snapshotter {
namespace {

const std::string* Find(const Labels& labels, const char* key) {
  auto it = labels.find(key);
  return it == labels.end() ? nullptr : &it->second;
}

}  // namespace

StoreLayers::StoreLayers(std::string store_dir) : store_dir_(std::move(store_dir)) {}

absl::StatusOr<std::shared_ptr<const store::Store>> StoreLayers::GetStore() {
  if (store_dir_.empty()) return absl::FailedPreconditionError("no store is configured");
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

std::optional<LayerMatch> StoreLayers::Identify(const Labels& labels) {
  const std::string* diff_id = Find(labels, kStoreLayerLabel);
  if (diff_id == nullptr) return std::nullopt;
  if (!store::ValidateDiffId(*diff_id).ok()) {
    ACCEL_LOG(kWarn, "msg=\"invalid store layer label; not served from the store\"",
              LogField("label", diff_id->substr(0, 100)));
    return std::nullopt;
  }
  return LayerMatch{kStoreKind, *diff_id, *diff_id};
}

absl::StatusOr<LoadedLayer> StoreLayers::LoadLayer(const store::Store& store,
                                                   const std::string& diff_id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = layers_.find(diff_id);
    if (it != layers_.end()) return it->second.loaded;
  }
  // Loading can take a while for a big layer: not under the lock. Two
  // loads of one layer may race; the first one kept wins.
  absl::Time start = absl::Now();
  ACCEL_ASSIGN_OR_RETURN(store::OpenLayer opened, store.Open(diff_id));
  const uint64_t data_size = opened.index.data_size;
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<const fuse::LayerTree> tree,
                         fuse::LayerTree::Build(std::move(opened.index.entries)));
  LoadedLayer loaded;
  loaded.layer.tree = std::move(tree);
  loaded.layer.source = fuse::MakeDataFileSource(std::move(opened.data), data_size);
  loaded.fsname = absl::StrCat("accel-store:", diff_id.substr(0, 19));
  loaded.id = diff_id;
  ACCEL_LOG(kDebug, "msg=\"loaded store layer\"", LogField("layer", diff_id),
            LogField("entries", absl::StrCat(loaded.layer.tree->node_count())),
            LogField("took", absl::FormatDuration(absl::Now() - start)));
  return loaded;
}

absl::StatusOr<std::optional<LoadedLayer>> StoreLayers::Load(const Labels& labels,
                                                             const LayerMatch& match, bool strict) {
  const std::string& diff_id = match.layer;
  if (store_dir_.empty()) {
    if (!strict) return std::nullopt;
    return absl::FailedPreconditionError(
        absl::StrCat("layer ", diff_id, " came from a store, but no store is configured"));
  }
  absl::StatusOr<std::shared_ptr<const store::Store>> store = GetStore();
  if (!store.ok()) {
    if (!strict) return std::nullopt;
    return Annotate(store.status(), "store layer ", diff_id);
  }
  const std::string* want_id = Find(labels, kStoreIdLabel);
  if (!strict && want_id != nullptr && *want_id != (*store)->id()) {
    ACCEL_LOG(kInfo, "msg=\"layer was converted into another store; downloading it\"",
              LogField("layer", diff_id), LogField("want_store", *want_id),
              LogField("have_store", (*store)->id()));
    return std::nullopt;
  }
  if (!strict && !(*store)->HasLayer(diff_id)) {
    ACCEL_LOG(kInfo, "msg=\"layer not in the store; downloading it\"", LogField("layer", diff_id));
    return std::nullopt;
  }
  absl::StatusOr<LoadedLayer> loaded = LoadLayer(**store, diff_id);
  if (!loaded.ok()) return Annotate(loaded.status(), "load store layer ", diff_id);
  return std::optional<LoadedLayer>(*std::move(loaded));
}

void StoreLayers::Mounted(const std::string& mountpoint, const LoadedLayer& layer) {
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = layers_.try_emplace(layer.id, Shared{layer, 0});
  it->second.mounts++;
  mounted_[mountpoint] = layer.id;
}

void StoreLayers::Unmounted(const std::string& mountpoint) {
  absl::MutexLock lock(&mu_);
  auto m = mounted_.find(mountpoint);
  if (m == mounted_.end()) return;
  auto it = layers_.find(m->second);
  if (it != layers_.end() && --it->second.mounts <= 0) layers_.erase(it);
  mounted_.erase(m);
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
  return status;
}

}  // namespace accel::snapshotter
