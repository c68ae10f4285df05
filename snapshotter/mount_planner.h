#pragma once

// Mount planning, as containerd's overlayfs snapshotter does it. Pure: no
// filesystem access, so the lowerdir order and the options are unit-tested.
//
//   no parents              -> bind mount of the snapshot's own fs ("rw" for
//                              active, "ro" for a view), "rbind"
//   view/committed, 1 parent -> read-only bind mount of the parent's fs
//   otherwise               -> overlay: lowerdir = parents' fs, nearest first
//                              (upperdir/workdir for active)

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "snapshotter/types.h"

namespace accel::snapshotter {

struct MountPlanOptions {
  bool index_off = false;  // add "index=off" (the kernel supports the option)
  bool userxattr = false;  // add "userxattr" (running in a user namespace)
};

// Resolves a snapshot id to its directories.
struct SnapshotPaths {
  std::function<std::string(int64_t id)> fs;    // upper (or layer) directory
  std::function<std::string(int64_t id)> work;  // overlay work directory
};

// `parent_ids` nearest first.
std::vector<Mount> PlanMounts(Kind kind, int64_t id, const std::vector<int64_t>& parent_ids,
                              const SnapshotPaths& paths, const MountPlanOptions& options);

}  // namespace accel::snapshotter
