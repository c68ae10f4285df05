#include "snapshotter/snapshotter.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "snapshotter/filters.h"

namespace accel::snapshotter {
namespace {

// The kernel understands overlay's "index=" option when the module exposes
// the parameter (containerd adds index=off then).
bool OverlaySupportsIndex() { return ::access("/sys/module/overlay/parameters/index", F_OK) == 0; }

// In a user namespace overlay needs "userxattr".
bool InUserNamespace() {
  std::ifstream in("/proc/self/uid_map");
  long inside = -1, outside = -1, length = -1;
  if (!(in >> inside >> outside >> length)) return false;
  return !(inside == 0 && outside == 0 && length == 4294967295L);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Snapshotter>> Snapshotter::Open(const SnapshotterOptions& options) {
  if (options.root.empty() || options.root[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("root must be an absolute path, got \"", options.root, "\""));
  }
  ACCEL_RETURN_IF_ERROR(MkdirAll(options.root, 0700));
  ACCEL_RETURN_IF_ERROR(MkdirAll(options.root + "/snapshots", 0700));
  std::shared_ptr<MetaStore> ms = options.metastore;
  if (ms == nullptr) {
    ACCEL_ASSIGN_OR_RETURN(ms, MetaStore::Open(options.root + "/metadata.db"));
  }
  MountPlanOptions plan;
  plan.index_off = OverlaySupportsIndex();
  plan.userxattr = InUserNamespace();
  std::unique_ptr<Snapshotter> sn(
      new Snapshotter(options.root, std::move(ms), plan, options.remote));
  if (sn->remote_ != nullptr) ACCEL_RETURN_IF_ERROR(sn->RestoreRemote());
  return sn;
}

absl::Status Snapshotter::RestoreRemote() {
  std::vector<SnapshotRecord> remote;
  {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
    ACCEL_RETURN_IF_ERROR(ms_->Walk(tx, [&](const SnapshotRecord& rec) {
      if (rec.info.kind == Kind::kCommitted && rec.info.labels.contains(kRemoteKindLabel)) {
        remote.push_back(rec);
      }
      return absl::OkStatus();
    }));
  }
  std::vector<RemoteSnapshot> snapshots;
  for (const SnapshotRecord& rec : remote) {
    snapshots.push_back(RemoteSnapshot{rec.info.name, rec.info.labels, FsPath(rec.id)});
  }
  return remote_->RestoreAll(std::move(snapshots));
}

absl::Status Snapshotter::CheckLayers(const std::string& key, std::vector<int64_t> lower_ids) {
  if (remote_ == nullptr || lower_ids.empty()) return absl::OkStatus();
  std::vector<std::string> lower;
  for (int64_t id : lower_ids) lower.push_back(FsPath(id));
  return Annotate(remote_->CheckServable(lower), "snapshot ", key);
}

absl::Status Snapshotter::CheckParent(const std::string& key, const std::string& parent) {
  if (remote_ == nullptr || parent.empty()) return absl::OkStatus();
  std::vector<int64_t> ids;
  {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
    absl::StatusOr<SnapshotRecord> rec = ms_->Get(tx, parent);
    if (!rec.ok()) return absl::OkStatus();  // CreateSnapshot reports it
    ids.push_back(rec->id);
    ids.insert(ids.end(), rec->parent_ids.begin(), rec->parent_ids.end());
  }
  return CheckLayers(key, std::move(ids));
}

std::string Snapshotter::FsPath(int64_t id) const {
  return absl::StrCat(root_, "/snapshots/", id, "/fs");
}
std::string Snapshotter::WorkPath(int64_t id) const {
  return absl::StrCat(root_, "/snapshots/", id, "/work");
}

std::vector<Mount> Snapshotter::MountsFor(const SnapshotRecord& rec) const {
  SnapshotPaths paths{[this](int64_t id) { return FsPath(id); },
                      [this](int64_t id) { return WorkPath(id); }};
  return PlanMounts(rec.info.kind, rec.id, rec.parent_ids, paths, plan_);
}

absl::StatusOr<SnapshotRecord> Snapshotter::CreateSnapshot(Kind kind, const std::string& key,
                                                           const std::string& parent,
                                                           const Labels& labels) {
  ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(true));
  // The temporary directory is made under the write transaction, so Cleanup
  // (which also takes it) never sees an in-flight one.
  std::string tmpl = SnapshotsDir() + "/new-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("create snapshot directory in ", SnapshotsDir()));
  }
  std::string td = tmpl;
  absl::Cleanup remove_td = [&td] {
    if (!td.empty()) RemoveAll(td).IgnoreError();
  };
  if (::chmod(td.c_str(), 0700) != 0 || ::mkdir((td + "/fs").c_str(), 0755) != 0 ||
      (kind == Kind::kActive && ::mkdir((td + "/work").c_str(), 0711) != 0)) {
    return ErrnoToStatus(errno, absl::StrCat("prepare snapshot directory ", td));
  }
  ACCEL_ASSIGN_OR_RETURN(SnapshotRecord rec,
                         ms_->CreateSnapshot(tx, kind, key, parent, labels, absl::Now()));
  if (!rec.parent_ids.empty()) {
    // The new upper directory's root takes the owner of the parent's root.
    struct stat st;
    std::string pfs = FsPath(rec.parent_ids[0]);
    if (::stat(pfs.c_str(), &st) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("stat parent directory ", pfs));
    }
    if (::lchown((td + "/fs").c_str(), st.st_uid, st.st_gid) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("chown ", td, "/fs"));
    }
  }
  std::string path = absl::StrCat(SnapshotsDir(), "/", rec.id);
  if (::rename(td.c_str(), path.c_str()) != 0) {
    if (errno != EEXIST && errno != ENOTEMPTY) {
      return ErrnoToStatus(errno, absl::StrCat("rename ", td, " to ", path));
    }
    // A crash between a rename and its commit left this id's directory
    // behind; no committed record can own it (ids are never reused).
    ACCEL_LOG(kWarn, "msg=\"removing stale snapshot directory\"", LogField("path", path));
    ACCEL_RETURN_IF_ERROR(RemoveAll(path));
    if (::rename(td.c_str(), path.c_str()) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("rename ", td, " to ", path));
    }
  }
  td.clear();
  absl::Status committed = tx.Commit();
  if (!committed.ok()) {
    RemoveAll(path).IgnoreError();
    return committed;
  }
  return rec;
}

absl::StatusOr<std::vector<Mount>> Snapshotter::Prepare(const std::string& key,
                                                        const std::string& parent,
                                                        const Labels& labels) {
  auto target = labels.find(kTargetRefLabel);
  if (remote_ != nullptr && target != labels.end() && !target->second.empty()) {
    return PrepareRemote(key, parent, labels, target->second);
  }
  ACCEL_RETURN_IF_ERROR(CheckParent(key, parent));
  ACCEL_ASSIGN_OR_RETURN(SnapshotRecord rec, CreateSnapshot(Kind::kActive, key, parent, labels));
  return MountsFor(rec);
}

absl::StatusOr<std::vector<Mount>> Snapshotter::PrepareRemote(const std::string& key,
                                                              const std::string& parent,
                                                              const Labels& labels,
                                                              const std::string& target) {
  {
    // Committed already (by another pull, maybe in another namespace)?
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
    auto existing = ms_->Get(tx, target);
    if (existing.ok() && existing->info.kind == Kind::kCommitted &&
        existing->info.parent == parent) {
      return absl::AlreadyExistsError(absl::StrCat("target snapshot ", target, " already exists"));
    }
  }
  ACCEL_ASSIGN_OR_RETURN(SnapshotRecord rec, CreateSnapshot(Kind::kActive, key, parent, labels));
  absl::StatusOr<std::string> kind = remote_->Mount(labels, parent, FsPath(rec.id));
  if (!kind.ok()) {
    ACCEL_LOG(kWarn, "msg=\"remote layer unavailable, falling back to download\"",
              LogField("key", key), LogField("target", target),
              LogField("error", kind.status().ToString()));
    return MountsFor(rec);
  }
  if (kind->empty()) return MountsFor(rec);

  Labels committed = labels;
  committed[kRemoteKindLabel] = *kind;
  absl::Status s = [&]() -> absl::Status {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(true));
    ACCEL_RETURN_IF_ERROR(
        ms_->CommitActive(tx, key, target, committed, Usage{}, absl::Now()).status());
    return tx.Commit();
  }();
  if (!s.ok()) {
    // Most likely a concurrent Prepare committed the same target first.
    remote_->Unmount(FsPath(rec.id)).IgnoreError();
    Remove(key).IgnoreError();
    if (absl::IsAlreadyExists(s)) {
      return absl::AlreadyExistsError(absl::StrCat("target snapshot ", target, " already exists"));
    }
    return Annotate(s, "commit remote snapshot ", target);
  }
  ACCEL_LOG(kInfo, "msg=\"remote snapshot committed\"", LogField("key", key),
            LogField("target", target), LogField("kind", *kind));
  return absl::AlreadyExistsError(absl::StrCat("target snapshot ", target, " already exists"));
}

absl::StatusOr<std::vector<Mount>> Snapshotter::View(const std::string& key,
                                                     const std::string& parent,
                                                     const Labels& labels) {
  ACCEL_RETURN_IF_ERROR(CheckParent(key, parent));
  ACCEL_ASSIGN_OR_RETURN(SnapshotRecord rec, CreateSnapshot(Kind::kView, key, parent, labels));
  return MountsFor(rec);
}

absl::StatusOr<std::vector<Mount>> Snapshotter::Mounts(const std::string& key) {
  ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
  ACCEL_ASSIGN_OR_RETURN(SnapshotRecord rec, ms_->Get(tx, key));
  tx.Commit().IgnoreError();
  ACCEL_RETURN_IF_ERROR(CheckLayers(key, rec.parent_ids));
  return MountsFor(rec);
}

absl::Status Snapshotter::Commit(const std::string& name, const std::string& key,
                                 const Labels& labels) {
  int64_t id = 0;
  {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
    ACCEL_ASSIGN_OR_RETURN(SnapshotRecord rec, ms_->Get(tx, key));
    if (rec.info.kind != Kind::kActive) {
      return absl::FailedPreconditionError(absl::StrCat("snapshot ", key, " is not active"));
    }
    id = rec.id;
  }
  // Measure outside the transaction: a big layer takes a while to walk.
  ACCEL_ASSIGN_OR_RETURN(DiskUsageResult du, DiskUsage(FsPath(id)));
  ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(true));
  ACCEL_ASSIGN_OR_RETURN(
      int64_t committed_id,
      ms_->CommitActive(tx, key, name, labels, Usage{du.bytes, du.inodes}, absl::Now()));
  if (committed_id != id) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", key, " changed while it was being committed"));
  }
  return tx.Commit();
}

absl::Status Snapshotter::Remove(const std::string& key) {
  int64_t id = 0;
  {
    // Everything that can refuse is checked before anything is unmounted or
    // deleted: a refused Remove leaves the snapshot whole.
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
    ACCEL_ASSIGN_OR_RETURN(SnapshotRecord rec, ms_->Get(tx, key));
    ACCEL_ASSIGN_OR_RETURN(std::string child, ms_->FirstChild(tx, key));
    if (!child.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot remove snapshot ", key, " with child (", child, ")"));
    }
    tx.Commit().IgnoreError();
    if (remote_ != nullptr && rec.info.labels.contains(kRemoteKindLabel)) {
      // A remote layer is unmounted first; if it is busy the snapshot stays.
      ACCEL_RETURN_IF_ERROR(Annotate(remote_->Unmount(FsPath(rec.id)), "remove ", key));
    }
  }
  {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(true));
    ACCEL_ASSIGN_OR_RETURN(auto removed, ms_->Remove(tx, key));
    id = removed.first;
    ACCEL_RETURN_IF_ERROR(tx.Commit());
  }
  // The record is gone; if this fails, Cleanup reclaims the directory.
  std::string dir = absl::StrCat(SnapshotsDir(), "/", id);
  absl::Status s = RemoveAll(dir);
  if (!s.ok()) {
    ACCEL_LOG(kWarn, "msg=\"failed to remove snapshot directory, Cleanup will retry\"",
              LogField("key", key), LogField("error", s.ToString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Info> Snapshotter::Stat(const std::string& key) {
  ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
  ACCEL_ASSIGN_OR_RETURN(SnapshotRecord rec, ms_->Get(tx, key));
  return rec.info;
}

absl::StatusOr<Info> Snapshotter::Update(const Info& info, const std::vector<std::string>& paths) {
  ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(true));
  ACCEL_ASSIGN_OR_RETURN(Info updated, ms_->UpdateInfo(tx, info, paths, absl::Now()));
  ACCEL_RETURN_IF_ERROR(tx.Commit());
  return updated;
}

absl::Status Snapshotter::Walk(const std::vector<std::string>& filters,
                               const std::function<absl::Status(const Info&)>& fn) {
  ACCEL_ASSIGN_OR_RETURN(auto filter, ParseFilters(filters));
  std::vector<Info> matched;
  {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
    ACCEL_RETURN_IF_ERROR(ms_->Walk(tx, [&](const SnapshotRecord& rec) {
      if (filter->Match(rec.info)) matched.push_back(rec.info);
      return absl::OkStatus();
    }));
  }
  // `fn` runs without the metadata lock held (it may stream to a slow client).
  for (const Info& info : matched) ACCEL_RETURN_IF_ERROR(fn(info));
  return absl::OkStatus();
}

absl::StatusOr<Usage> Snapshotter::GetUsage(const std::string& key) {
  SnapshotRecord rec;
  {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
    ACCEL_ASSIGN_OR_RETURN(rec, ms_->Get(tx, key));
  }
  if (rec.info.kind != Kind::kActive) return rec.usage;
  ACCEL_ASSIGN_OR_RETURN(DiskUsageResult du, DiskUsage(FsPath(rec.id)));
  return Usage{du.bytes, du.inodes};
}

absl::Status Snapshotter::Cleanup() {
  std::vector<std::string> doomed;
  {
    // Under the write transaction no create or remove is in flight, so every
    // directory not named after a live id is garbage.
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(true));
    ACCEL_ASSIGN_OR_RETURN(std::vector<int64_t> ids, ms_->Ids(tx));
    absl::flat_hash_set<int64_t> live(ids.begin(), ids.end());
    DIR* d = ::opendir(SnapshotsDir().c_str());
    if (d == nullptr) return ErrnoToStatus(errno, absl::StrCat("open ", SnapshotsDir()));
    while (struct dirent* e = ::readdir(d)) {
      absl::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      int64_t id = 0;
      if (absl::SimpleAtoi(name, &id) && live.contains(id) && absl::StrCat(id) == name) continue;
      doomed.push_back(absl::StrCat(SnapshotsDir(), "/", name));
    }
    ::closedir(d);
    // A leftover mount (a remote layer whose record is gone) is detached so
    // the directory can go.
    for (const std::string& path : doomed) {
      std::string fs = path + "/fs";
      if (IsMountPoint(fs)) ::umount2(fs.c_str(), MNT_DETACH);
    }
    // Rename first so that a failed removal is never mistaken for a live id.
    for (std::string& path : doomed) {
      if (path.find("/rm-") != std::string::npos) continue;
      std::string tomb = absl::StrCat(SnapshotsDir(), "/rm-", path.substr(path.rfind('/') + 1));
      if (::rename(path.c_str(), tomb.c_str()) == 0) path = tomb;
    }
  }
  absl::Status first;
  for (const std::string& path : doomed) {
    absl::Status s = RemoveAll(path);
    if (!s.ok()) {
      ACCEL_LOG(kWarn, "msg=\"cleanup: failed to remove\"", LogField("path", path),
                LogField("error", s.ToString()));
      if (first.ok()) first = s;
    } else {
      ACCEL_LOG(kInfo, "msg=\"cleanup: removed unreferenced directory\"", LogField("path", path));
    }
  }
  return first;
}

}  // namespace accel::snapshotter
