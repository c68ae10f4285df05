#pragma once

// RemoteLayers is the seam between containerd's snapshot semantics
// (Snapshotter) and layers that are served without a download: preloaded
// layers from the shared store and lazy eStargz layers, both mounted
// read-only through FUSE. Snapshotter implements containerd's remote
// snapshot protocol around it:
//
//   Prepare(key, parent, labels{containerd.io/snapshot.ref: TARGET, ...})
//     -> if a committed TARGET above `parent` exists: AlreadyExists
//     -> else create the active snapshot `key`, ask Mount() to serve the
//        layer on its fs directory; if it can, commit it as TARGET (with
//        kRemoteKindLabel recording how) and answer AlreadyExists, so
//        containerd skips the download; if it cannot, `key` stays a plain
//        active snapshot and containerd unpacks into it.
//   Remove(TARGET)  -> Unmount() before the directory goes.
//   daemon start    -> Restore() every committed remote snapshot before the
//                      first RPC is answered.
//
// Implementations are thread-safe.

#include <string>

#include "absl/status/statusor.h"
#include "common/labels.h"
#include "snapshotter/types.h"

namespace accel::snapshotter {

// The label names (kTargetRefLabel, kRemoteKindLabel, ...) are in
// common/labels.h.

class RemoteLayers {
 public:
  virtual ~RemoteLayers() = default;

  // Mounts the layer described by `labels` read-only at `mountpoint` (an
  // existing empty directory) if it can be served remotely, and returns the
  // kind that serves it. Returns "" when the layer is not remote (the plain
  // path applies). On error nothing is left mounted; the caller falls back
  // to the plain path and logs the error. `parent` is the parent snapshot's
  // name: containerd names committed layers by chain id, so the target
  // (kTargetRefLabel) must be the chain id of `parent` and this layer.
  virtual absl::StatusOr<std::string> Mount(const Labels& labels, const std::string& parent,
                                            const std::string& mountpoint) = 0;

  // Mounts again, after a restart, a layer that Mount() served before;
  // `labels` are the committed snapshot's labels.
  virtual absl::Status Restore(const Labels& labels, const std::string& mountpoint) = 0;

  // Unmounts what Mount() or Restore() mounted at `mountpoint`. OK if
  // nothing is mounted there. FailedPrecondition if it is busy.
  virtual absl::Status Unmount(const std::string& mountpoint) = 0;
};

}  // namespace accel::snapshotter
