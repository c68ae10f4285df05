#pragma once

// LayerSource is one kind of remote layer (the store, lazy eStargz; later
// EROFS): it recognises its layers from Prepare labels and loads them (the
// layer's tree and where its file contents come from). LayerResolver asks
// the sources in order (the store first: preloaded layers need no network)
// and checks, for every kind, that the snapshot name containerd asks for is
// the layer's chain id above its parent, so an image cannot commit a layer
// under another layer's name.
//
// Neither mounts anything: MountTable (mount_table.h) owns mounts.
// Thread-safe once built (Add() before use).

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "fuse/server.h"
#include "snapshotter/types.h"

namespace accel::snapshotter {

// A layer a source recognised in Prepare labels.
struct LayerMatch {
  std::string kind;
  std::string layer;    // the layer's digest as the kind names it (diff id, blob digest)
  std::string diff_id;  // the uncompressed digest when the labels tell it, else ""
};

// A loaded layer, ready to serve.
struct LoadedLayer {
  fuse::FuseServer::Layer layer;
  std::string fsname;  // the mount's source in /proc/mounts
  std::string id;      // LayerMatch::layer
};

class LayerSource {
 public:
  virtual ~LayerSource() = default;
  virtual std::string kind() const = 0;
  // The FUSE worker pool its reads belong on (kNetwork if they may wait on
  // a registry).
  virtual fuse::FuseServer::Pool pool() const = 0;

  // The layer `labels` describe, if it is of this kind; no I/O.
  virtual std::optional<LayerMatch> Identify(const Labels& labels) = 0;

  // Loads the layer (store index, registry TOC: I/O that may be slow).
  // With `strict` false (a new mount), nullopt means the layer cannot be
  // served this way and is downloaded instead; with `strict` (restoring a
  // layer that was served before) every such case is an error naming why.
  virtual absl::StatusOr<std::optional<LoadedLayer>> Load(const Labels& labels,
                                                          const LayerMatch& match, bool strict) = 0;

  // Told when a loaded layer is mounted at `mountpoint` / unmounted (e.g.
  // to start and stop a background fetch).
  virtual void Mounted(const std::string& mountpoint, const LoadedLayer& layer) {
    (void)mountpoint;
    (void)layer;
  }
  virtual void Unmounted(const std::string& mountpoint) { (void)mountpoint; }
};

class LayerResolver {
 public:
  // Sources are asked in the order added; `source` must outlive this.
  void Add(LayerSource* source) { sources_.push_back(source); }

  struct Resolved {
    LayerSource* source = nullptr;
    LayerMatch match;
    LoadedLayer loaded;
  };
  // The first source that recognises and loads the layer of `labels`, or
  // nullopt (download it). `parent` is the parent snapshot's name
  // (containerd's "ns/id/name" form or a bare chain id) and the target
  // (containerd.io/snapshot.ref) must be the layer's chain id above it when
  // the layer's diff id is known. A source that fails is logged and the
  // next one asked; the last error is returned if none served it.
  absl::StatusOr<std::optional<Resolved>> Resolve(const Labels& labels, const std::string& parent);

  // The source of kind `kind`, or nullptr.
  LayerSource* Find(const std::string& kind) const;

 private:
  std::vector<LayerSource*> sources_;
};

}  // namespace accel::snapshotter
