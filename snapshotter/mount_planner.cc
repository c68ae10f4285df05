#include "snapshotter/mount_planner.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace accel::snapshotter {

std::vector<Mount> PlanMounts(Kind kind, int64_t id, const std::vector<int64_t>& parent_ids,
                              const SnapshotPaths& paths, const MountPlanOptions& options) {
  if (parent_ids.empty()) {
    return {Mount{"bind", paths.fs(id), {kind == Kind::kView ? "ro" : "rw", "rbind"}}};
  }
  std::vector<std::string> opts;
  if (options.index_off) opts.push_back("index=off");
  if (options.userxattr) opts.push_back("userxattr");
  if (kind == Kind::kActive) {
    opts.push_back(absl::StrCat("workdir=", paths.work(id)));
    opts.push_back(absl::StrCat("upperdir=", paths.fs(id)));
  } else if (parent_ids.size() == 1) {
    return {Mount{"bind", paths.fs(parent_ids[0]), {"ro", "rbind"}}};
  }
  std::vector<std::string> lower;
  lower.reserve(parent_ids.size());
  for (int64_t pid : parent_ids) lower.push_back(paths.fs(pid));
  opts.push_back(absl::StrCat("lowerdir=", absl::StrJoin(lower, ":")));
  return {Mount{"overlay", "overlay", std::move(opts)}};
}

}  // namespace accel::snapshotter
