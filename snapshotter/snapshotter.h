#pragma once

// Snapshotter implements containerd's snapshotter semantics, error for error
// as containerd's built-in overlayfs snapshotter:
//
//   ROOT/metadata.db           snapshot records (MetaStore, SQLite WAL)
//   ROOT/snapshots/ID/fs       the snapshot's directory (upperdir when active)
//   ROOT/snapshots/ID/work     overlay workdir (active snapshots only)
//
// Ids are small integers so that a 128-layer lowerdir stays short.
//
// Crash safety: a snapshot directory is created under a temporary name and
// renamed to its id inside the metadata transaction, before the commit; a
// removal commits the metadata first and deletes the directory after. A crash
// at any point leaves at most a directory that no record references, which
// Cleanup() removes; never a record without its directory.
//
// Thread-safe. Errors use containerd's vocabulary: NotFound, AlreadyExists,
// FailedPrecondition, InvalidArgument; every message names the key.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "snapshotter/metastore.h"
#include "snapshotter/mount_planner.h"
#include "snapshotter/remote_layers.h"
#include "snapshotter/types.h"

namespace accel::snapshotter {

struct SnapshotterOptions {
  std::string root;  // created if missing (mode 0700)
  // Serves remote layers (see remote_layers.h); null for plain layers only.
  // Not owned; must outlive the Snapshotter.
  RemoteLayers* remote = nullptr;
  // The metadata database; null: opened at ROOT/metadata.db. Shared with
  // the mount table in the daemon.
  std::shared_ptr<MetaStore> metastore = nullptr;
};

class Snapshotter {
 public:
  // Opens (or creates) the state under options.root and, with a
  // RemoteLayers, hands it every committed remote snapshot to restore in
  // the background (RemoteLayers::RestoreAll).
  static absl::StatusOr<std::unique_ptr<Snapshotter>> Open(const SnapshotterOptions& options);

  // Creates an active snapshot `key` above the committed `parent` ("" for
  // none) and returns its mounts. AlreadyExists if `key` exists, NotFound if
  // `parent` does not, InvalidArgument if `key` is empty or `parent` is not
  // committed. With the label kTargetRefLabel and a RemoteLayers that can
  // serve the layer, commits it remotely and answers AlreadyExists (see
  // remote_layers.h).
  absl::StatusOr<std::vector<Mount>> Prepare(const std::string& key, const std::string& parent,
                                             const Labels& labels);
  // Like Prepare, but the mounts are read-only and the snapshot cannot be
  // committed.
  absl::StatusOr<std::vector<Mount>> View(const std::string& key, const std::string& parent,
                                          const Labels& labels);
  // Mounts of an existing snapshot. NotFound if missing.
  absl::StatusOr<std::vector<Mount>> Mounts(const std::string& key);
  // Commits the active snapshot `key` as `name` (the key is gone afterwards).
  // AlreadyExists if `name` is taken, NotFound if `key` is missing,
  // FailedPrecondition if `key` is not active.
  absl::Status Commit(const std::string& name, const std::string& key, const Labels& labels);
  // Removes `key` and its directory. NotFound if missing, FailedPrecondition
  // if it has children.
  absl::Status Remove(const std::string& key);
  absl::StatusOr<Info> Stat(const std::string& key);
  // See MetaStore::UpdateInfo for `paths`.
  absl::StatusOr<Info> Update(const Info& info, const std::vector<std::string>& paths);
  // Calls `fn` for each snapshot matching `filters` (containerd filter
  // syntax; InvalidArgument if malformed).
  absl::Status Walk(const std::vector<std::string>& filters,
                    const std::function<absl::Status(const Info&)>& fn);
  // Bytes and inodes of the snapshot's own directory: measured now for an
  // active snapshot, as recorded at commit for a committed one.
  absl::StatusOr<Usage> GetUsage(const std::string& key);
  // Removes every directory under ROOT/snapshots that no snapshot references.
  absl::Status Cleanup();

  const std::string& root() const { return root_; }
  std::string FsPath(int64_t id) const;
  std::string WorkPath(int64_t id) const;

 private:
  Snapshotter(std::string root, std::shared_ptr<MetaStore> ms, MountPlanOptions plan,
              RemoteLayers* remote)
      : root_(std::move(root)), ms_(std::move(ms)), plan_(plan), remote_(remote) {}

  absl::StatusOr<SnapshotRecord> CreateSnapshot(Kind kind, const std::string& key,
                                                const std::string& parent, const Labels& labels);
  // The remote path of Prepare. Returns the mounts of a plain active
  // snapshot when the layer is not remote, AlreadyExists when it was
  // committed remotely.
  absl::StatusOr<std::vector<Mount>> PrepareRemote(const std::string& key,
                                                   const std::string& parent, const Labels& labels,
                                                   const std::string& target);
  absl::Status RestoreRemote();
  // Unavailable when a remote layer among `lower_ids` (or below `parent`)
  // cannot be served; checked before anything is created.
  absl::Status CheckLayers(const std::string& key, std::vector<int64_t> lower_ids);
  absl::Status CheckParent(const std::string& key, const std::string& parent);
  std::vector<Mount> MountsFor(const SnapshotRecord& rec) const;
  std::string SnapshotsDir() const { return root_ + "/snapshots"; }

  // Constant after construction.
  const std::string root_;
  const std::shared_ptr<MetaStore> ms_;
  const MountPlanOptions plan_;
  RemoteLayers* const remote_;
};

}  // namespace accel::snapshotter
