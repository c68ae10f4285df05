#pragma once

// LayerResolver asks each remote layer source in turn whether it can serve
// a layer (the store first: preloaded layers need no network; then lazy
// eStargz), and routes Restore by the kind recorded at commit time.
// Thread-safe once built (Add() before use).

#include <string>
#include <utility>
#include <vector>

#include "snapshotter/remote_layers.h"

namespace accel::snapshotter {

class LayerResolver final : public RemoteLayers {
 public:
  void Add(std::string kind, RemoteLayers* layers) {
    sources_.emplace_back(std::move(kind), layers);
  }

  absl::StatusOr<std::string> Mount(const Labels& labels, const std::string& parent,
                                    const std::string& mountpoint) override;
  absl::Status Restore(const Labels& labels, const std::string& mountpoint) override;
  absl::Status Unmount(const std::string& mountpoint) override;

 private:
  std::vector<std::pair<std::string, RemoteLayers*>> sources_;
};

}  // namespace accel::snapshotter
