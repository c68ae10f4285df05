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
//   daemon start    -> RestoreAll() with every committed remote snapshot;
//                      it returns at once and restores in the background.
//   Prepare/View/Mounts above remote layers -> CheckServable() first.
//
// Implementations are thread-safe.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/labels.h"
#include "snapshotter/types.h"

namespace accel::snapshotter {

// The label names (kTargetRefLabel, kRemoteKindLabel, ...) are in
// common/labels.h.

// A committed remote snapshot, as restore needs it.
struct RemoteSnapshot {
  std::string name;
  Labels labels;
  std::string mountpoint;
};

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

  // Serves again, after a restart, every snapshot Mount() served before.
  // Returns once the work is queued; layers are restored in the background.
  virtual absl::Status RestoreAll(std::vector<RemoteSnapshot> snapshots) = 0;

  // Unmounts what Mount() or RestoreAll() mounted at `mountpoint`. OK if
  // nothing is mounted there. FailedPrecondition if it is busy.
  virtual absl::Status Unmount(const std::string& mountpoint) = 0;

  // OK unless one of `mountpoints` is a remote layer that cannot be served
  // now (its restore failed): then Unavailable naming the layer and why.
  virtual absl::Status CheckServable(const std::vector<std::string>& mountpoints) = 0;
};

}  // namespace accel::snapshotter
