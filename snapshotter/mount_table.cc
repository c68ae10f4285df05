#include "snapshotter/mount_table.h"

#include <sys/mount.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace accel::snapshotter {
namespace {

constexpr char kFdPrefix[] = "fuse-";

class FuseMounter final : public LayerMounter {
 public:
  explicit FuseMounter(fuse::FuseServer* server) : server_(server) {}
  absl::StatusOr<fuse::proto::ConnParams> Mount(const std::string& mp, const LoadedLayer& layer,
                                                fuse::FuseServer::Pool pool) override {
    return server_->Mount(mp, layer.layer, pool, layer.fsname);
  }
  absl::Status Adopt(const std::string& mp, UniqueFd fd, const fuse::proto::ConnParams& conn,
                     fuse::FuseServer::Pool pool) override {
    return server_->Adopt(mp, std::move(fd), conn, pool);
  }
  absl::Status Serve(const std::string& mp, const LoadedLayer& layer) override {
    return server_->Serve(mp, layer.layer);
  }
  absl::Status Fail(const std::string& mp) override { return server_->Fail(mp); }
  absl::Status Unmount(const std::string& mp) override { return server_->Unmount(mp); }
  absl::StatusOr<UniqueFd> DupDevice(const std::string& mp) override {
    return server_->DupDevice(mp);
  }
  absl::Status DetachStale(const std::string& mp) override {
    return fuse::DetachStaleMounts(mp, absl::Seconds(1));
  }

 private:
  fuse::FuseServer* const server_;
};

class MetaStoreRecords final : public MountRecords {
 public:
  explicit MetaStoreRecords(MetaStore* ms) : ms_(ms) {}
  absl::StatusOr<std::vector<MountRecord>> List() override {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(false));
    return ms_->ListMounts(tx);
  }
  absl::Status Put(const MountRecord& rec) override {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(true));
    ACCEL_RETURN_IF_ERROR(ms_->PutMount(tx, rec));
    return tx.Commit();
  }
  absl::Status Delete(const std::string& mp) override {
    ACCEL_ASSIGN_OR_RETURN(Transaction tx, ms_->Begin(true));
    ACCEL_RETURN_IF_ERROR(ms_->DeleteMount(tx, mp));
    return tx.Commit();
  }

 private:
  MetaStore* const ms_;
};

const char* StateName(int s) {
  switch (s) {
    case 0:
      return "serving";
    case 1:
      return "restoring";
    default:
      return "failed";
  }
}

}  // namespace

std::unique_ptr<LayerMounter> NewFuseMounter(fuse::FuseServer* server) {
  return std::make_unique<FuseMounter>(server);
}
std::unique_ptr<MountRecords> NewMetaStoreRecords(MetaStore* ms) {
  return std::make_unique<MetaStoreRecords>(ms);
}

std::string MountTable::FdName(const std::string& mountpoint) {
  return absl::StrCat(kFdPrefix, Sha256::Of(mountpoint).substr(7, 24));
}
bool MountTable::IsMountFdName(const std::string& name) {
  return absl::StartsWith(name, kFdPrefix);
}

MountTable::MountTable(LayerResolver* resolver, LayerMounter* mounter, MountRecords* records,
                       FdStore* fds, std::map<std::string, UniqueFd> held,
                       MountTableOptions options)
    : resolver_(resolver),
      mounter_(mounter),
      records_(records),
      fds_(fds),
      options_(options),
      held_(std::move(held)) {}

MountTable::~MountTable() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    ++wakeups_;
  }
  for (std::thread& t : threads_) t.join();
}

absl::Status MountTable::Persist(const std::string& mp, const std::string& snapshot,
                                 const std::string& kind, const std::string& layer,
                                 const fuse::proto::ConnParams& conn) {
  ACCEL_RETURN_IF_ERROR(records_->Put(MountRecord{mp, snapshot, kind, layer, conn.Serialize()}));
  absl::StatusOr<UniqueFd> dup = mounter_->DupDevice(mp);
  absl::Status kept = dup.ok() ? fds_->Put(FdName(mp), dup->get()) : dup.status();
  if (!kept.ok()) {
    // Serving goes on; only a restart would lose this mount.
    ACCEL_LOG(kWarn, "msg=\"cannot keep the FUSE descriptor across restarts\"",
              LogField("mountpoint", mp), LogField("error", kept.ToString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MountTable::Mount(const Labels& labels, const std::string& parent,
                                              const std::string& mountpoint) {
  auto target = labels.find(kTargetRefLabel);
  if (target == labels.end()) return std::string();
  ACCEL_ASSIGN_OR_RETURN(std::optional<LayerResolver::Resolved> resolved,
                         resolver_->Resolve(labels, parent));
  if (!resolved) return std::string();
  LayerSource* source = resolved->source;
  ACCEL_ASSIGN_OR_RETURN(fuse::proto::ConnParams conn,
                         mounter_->Mount(mountpoint, resolved->loaded, source->pool()));
  absl::Status s = Persist(mountpoint, target->second, source->kind(), resolved->match.layer, conn);
  if (!s.ok()) {
    mounter_->Unmount(mountpoint).IgnoreError();
    return Annotate(s, "record mount of ", resolved->match.layer);
  }
  source->Mounted(mountpoint, resolved->loaded);
  absl::MutexLock l(&mu_);
  Entry& e = entries_[mountpoint];
  e = Entry{};
  e.snapshot = target->second;
  e.kind = source->kind();
  e.layer = resolved->match.layer;
  e.labels = labels;
  e.state = State::kServing;
  e.registered = true;
  e.since = absl::Now();
  return source->kind();
}

absl::Status MountTable::RestoreAll(std::vector<RemoteSnapshot> snapshots) {
  ACCEL_ASSIGN_OR_RETURN(std::vector<MountRecord> rows, records_->List());
  std::map<std::string, MountRecord> by_mp;
  for (MountRecord& r : rows) by_mp[r.mountpoint] = std::move(r);
  std::map<std::string, UniqueFd> held;
  {
    absl::MutexLock l(&mu_);
    held = std::move(held_);
  }
  const absl::Time now = absl::Now();
  std::map<std::string, Entry> restored;
  int adopted = 0;
  for (RemoteSnapshot& snap : snapshots) {
    Entry e;
    e.snapshot = snap.name;
    auto kind = snap.labels.find(kRemoteKindLabel);
    e.kind = kind == snap.labels.end() ? "" : kind->second;
    e.labels = std::move(snap.labels);
    e.since = now;
    e.next_try = now;
    LayerSource* source = resolver_->Find(e.kind);
    if (source != nullptr) {
      if (std::optional<LayerMatch> m = source->Identify(e.labels)) e.layer = m->layer;
    }
    auto row = by_mp.find(snap.mountpoint);
    auto fd = held.find(FdName(snap.mountpoint));
    if (source != nullptr && row != by_mp.end() && fd != held.end()) {
      absl::StatusOr<fuse::proto::ConnParams> conn =
          fuse::proto::ConnParams::Parse(row->second.conn);
      absl::Status s =
          conn.ok() ? mounter_->Adopt(snap.mountpoint, std::move(fd->second), *conn, source->pool())
                    : conn.status();
      if (s.ok()) {
        e.registered = true;
        e.adopted = true;
        ++adopted;
      } else {
        ACCEL_LOG(kWarn, "msg=\"cannot adopt a kept FUSE connection; mounting again\"",
                  LogField("mountpoint", snap.mountpoint), LogField("error", s.ToString()));
      }
      held.erase(fd);
    }
    if (row != by_mp.end()) by_mp.erase(row);
    restored[snap.mountpoint] = std::move(e);
  }
  // What belongs to no snapshot any more: detached and forgotten.
  for (const auto& [mp, row] : by_mp) {
    ACCEL_LOG(kInfo, "msg=\"dropping the mount of a removed snapshot\"", LogField("mountpoint", mp),
              LogField("snapshot", row.snapshot));
    umount2(mp.c_str(), MNT_DETACH);
    records_->Delete(mp).IgnoreError();
  }
  for (auto& [name, fd] : held) {
    if (!IsMountFdName(name)) continue;
    fd.Reset();
    fds_->Remove(name).IgnoreError();
  }
  ACCEL_LOG(kInfo, "msg=\"restoring remote layers in the background\"",
            LogField("layers", absl::StrCat(restored.size())),
            LogField("adopted", absl::StrCat(adopted)));
  {
    absl::MutexLock l(&mu_);
    for (auto& [mp, e] : restored) entries_[mp] = std::move(e);
    ++wakeups_;
  }
  if (threads_.empty()) {
    for (int i = 0; i < std::max(1, options_.restore_threads); ++i) {
      threads_.emplace_back([this] { RestoreLoop(); });
    }
    threads_.emplace_back([this] { WatchdogLoop(); });
  }
  return absl::OkStatus();
}

absl::Status MountTable::RestoreOne(const std::string& mp, const Entry& e) {
  LayerSource* source = resolver_->Find(e.kind);
  if (source == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("no remote layer source of kind \"", e.kind, "\" is enabled"));
  }
  std::optional<LayerMatch> match = source->Identify(e.labels);
  if (!match) {
    return absl::FailedPreconditionError(
        absl::StrCat("the snapshot's labels no longer name a ", e.kind, " layer"));
  }
  ACCEL_ASSIGN_OR_RETURN(std::optional<LoadedLayer> loaded, source->Load(e.labels, *match, true));
  if (!loaded) return absl::FailedPreconditionError("the layer cannot be served");
  if (e.registered) {
    ACCEL_RETURN_IF_ERROR(mounter_->Serve(mp, *loaded));
  } else {
    ACCEL_RETURN_IF_ERROR(mounter_->DetachStale(mp));
    ACCEL_ASSIGN_OR_RETURN(fuse::proto::ConnParams conn,
                           mounter_->Mount(mp, *loaded, source->pool()));
    absl::Status s = Persist(mp, e.snapshot, e.kind, match->layer, conn);
    if (!s.ok()) {
      mounter_->Unmount(mp).IgnoreError();
      return s;
    }
  }
  source->Mounted(mp, *loaded);
  return absl::OkStatus();
}

void MountTable::RestoreLoop() {
  while (true) {
    std::string mp;
    Entry copy;
    {
      absl::MutexLock l(&mu_);
      while (true) {
        if (stopping_) return;
        const absl::Time now = absl::Now();
        absl::Time earliest = absl::InfiniteFuture();
        for (auto& [path, e] : entries_) {
          if (e.state == State::kServing || e.busy) continue;
          if (e.next_try <= now) {
            mp = path;
            break;
          }
          earliest = std::min(earliest, e.next_try);
        }
        if (!mp.empty()) break;
        const int seen = wakeups_;
        auto changed = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return stopping_ || wakeups_ != seen;
        };
        mu_.AwaitWithTimeout(absl::Condition(&changed),
                             std::min(earliest - now, absl::Seconds(60)));
      }
      Entry& e = entries_[mp];
      e.busy = true;
      copy = e;
    }
    absl::Status s = RestoreOne(mp, copy);
    absl::MutexLock l(&mu_);
    Entry& e = entries_[mp];
    e.busy = false;
    ++e.attempts;
    ++wakeups_;
    if (s.ok()) {
      ACCEL_LOG(kInfo, "msg=\"restored remote layer\"", LogField("mountpoint", mp),
                LogField("snapshot", e.snapshot), LogField("kind", e.kind),
                LogField("adopted", e.adopted ? "yes" : "no"),
                LogField("attempts", absl::StrCat(e.attempts)));
      e.state = State::kServing;
      e.registered = true;
      e.eio = false;
      e.error.clear();
      continue;
    }
    if (e.error != s.ToString()) {
      ACCEL_LOG(kError, "msg=\"cannot restore remote layer; retrying\"", LogField("mountpoint", mp),
                LogField("snapshot", e.snapshot), LogField("layer", e.layer),
                LogField("error", s.ToString()));
    }
    e.error = s.ToString();
    absl::Duration backoff = options_.retry_initial;
    for (int i = 1; i < e.attempts && backoff < options_.retry_max; ++i) backoff *= 2;
    e.next_try = absl::Now() + std::min(backoff, options_.retry_max);
  }
}

void MountTable::WatchdogLoop() {
  while (true) {
    std::vector<std::string> fail;
    {
      absl::MutexLock l(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(100));
      if (stopping_) return;
      const absl::Time now = absl::Now();
      for (auto& [mp, e] : entries_) {
        if (e.state != State::kRestoring || now - e.since < options_.restore_wait) continue;
        e.state = State::kFailed;
        ++wakeups_;
        if (e.registered && !e.eio) {
          e.eio = true;
          fail.push_back(mp);
        }
        ACCEL_LOG(kError, "msg=\"layer not restored in time: its reads fail with EIO until it is\"",
                  LogField("mountpoint", mp), LogField("layer", e.layer),
                  LogField("error", e.error));
      }
    }
    for (const std::string& mp : fail) {
      absl::Status s = mounter_->Fail(mp);
      if (!s.ok()) {
        ACCEL_LOG(kWarn, "msg=\"cannot fail a mount\"", LogField("mountpoint", mp),
                  LogField("error", s.ToString()));
      }
    }
  }
}

absl::Status MountTable::Unmount(const std::string& mountpoint) {
  std::string kind;
  bool registered = true;
  {
    absl::MutexLock l(&mu_);
    auto it = entries_.find(mountpoint);
    if (it != entries_.end()) {
      auto idle = [this, &mountpoint]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        auto i = entries_.find(mountpoint);
        return i == entries_.end() || !i->second.busy;
      };
      mu_.Await(absl::Condition(&idle));
      it = entries_.find(mountpoint);
    }
    if (it != entries_.end()) {
      kind = it->second.kind;
      registered = it->second.registered;
      it->second.busy = true;  // no restore attempt starts meanwhile
    }
  }
  absl::Status s = registered ? mounter_->Unmount(mountpoint) : absl::OkStatus();
  if (s.ok()) {
    fds_->Remove(FdName(mountpoint)).IgnoreError();
    s = records_->Delete(mountpoint);
    if (LayerSource* source = resolver_->Find(kind)) source->Unmounted(mountpoint);
  }
  absl::MutexLock l(&mu_);
  auto it = entries_.find(mountpoint);
  if (it != entries_.end()) {
    it->second.busy = false;
    if (s.ok()) entries_.erase(it);
  }
  ++wakeups_;
  return s;
}

absl::Status MountTable::CheckServable(const std::vector<std::string>& mountpoints) {
  absl::MutexLock l(&mu_);
  for (const std::string& mp : mountpoints) {
    auto it = entries_.find(mp);
    if (it == entries_.end()) continue;
    // A layer being restored without a live connection (its mountpoint is
    // an empty directory meanwhile): wait for it, bounded.
    auto settled = [this, &mp]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      auto i = entries_.find(mp);
      return stopping_ || i == entries_.end() || i->second.state != State::kRestoring ||
             i->second.registered;
    };
    mu_.AwaitWithTimeout(absl::Condition(&settled), options_.restore_wait);
    it = entries_.find(mp);
    if (it == entries_.end()) continue;
    const Entry& e = it->second;
    if (e.state == State::kFailed || (e.state == State::kRestoring && !e.registered)) {
      return absl::UnavailableError(
          absl::StrCat(e.kind, " layer ", e.layer,
                       " cannot be served: ", e.error.empty() ? "still being restored" : e.error));
    }
  }
  return absl::OkStatus();
}

std::vector<MountStatus> MountTable::Status() const {
  absl::MutexLock l(&mu_);
  std::vector<MountStatus> out;
  for (const auto& [mp, e] : entries_) {
    out.push_back(MountStatus{mp, e.snapshot, e.kind, e.layer, StateName(static_cast<int>(e.state)),
                              e.error, e.attempts, e.adopted});
  }
  return out;
}

}  // namespace accel::snapshotter
