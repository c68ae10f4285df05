#include "snapshotter/layer_resolver.h"

#include "absl/strings/str_cat.h"
#include "common/chain_id.h"
#include "common/labels.h"
#include "common/log.h"
#include "snapshotter/remote_layers.h"

namespace accel::snapshotter {

absl::StatusOr<std::optional<LayerResolver::Resolved>> LayerResolver::Resolve(
    const Labels& labels, const std::string& parent) {
  absl::Status last = absl::OkStatus();
  auto target_it = labels.find(kTargetRefLabel);
  const std::string target = target_it == labels.end() ? "" : target_it->second;
  // containerd's metadata layer names backend snapshots "ns/id/name"; a
  // parent committed by the remote path has its bare chain id as name.
  const size_t slash = parent.rfind('/');
  const std::string parent_chain = slash == std::string::npos ? parent : parent.substr(slash + 1);
  for (LayerSource* source : sources_) {
    std::optional<LayerMatch> match = source->Identify(labels);
    if (!match) continue;
    if (!match->diff_id.empty() && target != ChainId(parent_chain, match->diff_id)) {
      ACCEL_LOG(kWarn,
                "msg=\"the target does not match the layer's chain id; not served remotely\"",
                LogField("kind", match->kind), LogField("layer", match->layer),
                LogField("target", target), LogField("parent", parent));
      continue;
    }
    absl::StatusOr<std::optional<LoadedLayer>> loaded = source->Load(labels, *match, false);
    if (!loaded.ok()) {
      ACCEL_LOG(kWarn, "msg=\"remote layer source failed\"", LogField("kind", match->kind),
                LogField("layer", match->layer), LogField("error", loaded.status().ToString()));
      last = loaded.status();
      continue;
    }
    if (!loaded->has_value()) continue;
    return Resolved{source, *std::move(match), **std::move(loaded)};
  }
  if (!last.ok()) return last;
  return std::nullopt;
}

LayerSource* LayerResolver::Find(const std::string& kind) const {
  for (LayerSource* s : sources_) {
    if (s->kind() == kind) return s;
  }
  return nullptr;
}

}  // namespace accel::snapshotter
