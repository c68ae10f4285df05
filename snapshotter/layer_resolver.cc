#include "snapshotter/layer_resolver.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace accel::snapshotter {

absl::StatusOr<std::string> LayerResolver::Mount(const Labels& labels, const std::string& parent,
                                                 const std::string& mountpoint) {
  absl::Status last = absl::OkStatus();
  for (const auto& [kind, source] : sources_) {
    absl::StatusOr<std::string> got = source->Mount(labels, parent, mountpoint);
    if (got.ok() && !got->empty()) return got;
    if (!got.ok()) {
      ACCEL_LOG(kWarn, "msg=\"remote layer source failed\"", LogField("kind", kind),
                LogField("error", got.status().ToString()));
      last = got.status();
    }
  }
  if (!last.ok()) return last;
  return std::string();
}

absl::Status LayerResolver::Restore(const Labels& labels, const std::string& mountpoint) {
  auto it = labels.find(kRemoteKindLabel);
  const std::string kind = it == labels.end() ? "" : it->second;
  for (const auto& [k, source] : sources_) {
    if (k == kind) return source->Restore(labels, mountpoint);
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no remote layer source of kind \"", kind, "\" is enabled"));
}

absl::Status LayerResolver::Unmount(const std::string& mountpoint) {
  absl::Status first = absl::OkStatus();
  for (const auto& [kind, source] : sources_) {
    absl::Status s = source->Unmount(mountpoint);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

}  // namespace accel::snapshotter
