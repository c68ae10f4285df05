#include "snapshotter/grpc_service.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "accel/v1/status.grpc.pb.h"
#include "common/log.h"
#include "common/version.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "snapshotter/estargz_layers.h"
#include "snapshotter/mount_table.h"
#include "snapshotter/store_layers.h"

namespace accel::snapshotter {
namespace {

namespace pb = ::containerd::services::snapshots::v1;
namespace types_pb = ::containerd::types;

// Snapshots sent per List message (containerd batches the same way).
constexpr int kListBatch = 100;

Labels FromProto(const google::protobuf::Map<std::string, std::string>& m) {
  return Labels(m.begin(), m.end());
}

void ToProto(const Mount& m, types_pb::Mount* out) {
  out->set_type(m.type);
  out->set_source(m.source);
  for (const std::string& o : m.options) out->add_options(o);
}

template <typename Response>
void MountsToProto(const std::vector<Mount>& mounts, Response* resp) {
  for (const Mount& m : mounts) ToProto(m, resp->add_mounts());
}

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out) {
  int64_t ns = absl::ToUnixNanos(t);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

void ToProto(const Info& info, pb::Info* out) {
  out->set_name(info.name);
  out->set_parent(info.parent);
  out->set_kind(static_cast<pb::Kind>(info.kind));
  TimeToProto(info.created, out->mutable_created_at());
  TimeToProto(info.updated, out->mutable_updated_at());
  for (const auto& [k, v] : info.labels) (*out->mutable_labels())[k] = v;
}

// Logs the outcome of one RPC and converts its status.
grpc::Status Finish(absl::string_view rpc, absl::string_view key, const absl::Status& s) {
  if (s.ok()) {
    ACCEL_LOG(kDebug, "msg=\"", rpc, "\"", LogField("key", key));
  } else if (absl::IsNotFound(s) || absl::IsAlreadyExists(s)) {
    // Expected answers (containerd probes with Stat and relies on
    // AlreadyExists); not errors of the daemon.
    ACCEL_LOG(kDebug, "msg=\"", rpc, "\"", LogField("key", key), LogField("error", s.ToString()));
  } else {
    ACCEL_LOG(kError, "msg=\"", rpc, " failed\"", LogField("key", key),
              LogField("error", s.ToString()));
  }
  return ToGrpcStatus(s);
}

class SnapshotsService final : public pb::Snapshots::Service {
 public:
  explicit SnapshotsService(Snapshotter* sn) : sn_(sn) {}

  grpc::Status Prepare(grpc::ServerContext*, const pb::PrepareSnapshotRequest* req,
                       pb::PrepareSnapshotResponse* resp) override {
    auto mounts = sn_->Prepare(req->key(), req->parent(), FromProto(req->labels()));
    if (mounts.ok()) MountsToProto(*mounts, resp);
    return Finish("prepare", req->key(), mounts.status());
  }

  grpc::Status View(grpc::ServerContext*, const pb::ViewSnapshotRequest* req,
                    pb::ViewSnapshotResponse* resp) override {
    auto mounts = sn_->View(req->key(), req->parent(), FromProto(req->labels()));
    if (mounts.ok()) MountsToProto(*mounts, resp);
    return Finish("view", req->key(), mounts.status());
  }

  grpc::Status Mounts(grpc::ServerContext*, const pb::MountsRequest* req,
                      pb::MountsResponse* resp) override {
    auto mounts = sn_->Mounts(req->key());
    if (mounts.ok()) MountsToProto(*mounts, resp);
    return Finish("mounts", req->key(), mounts.status());
  }

  grpc::Status Commit(grpc::ServerContext*, const pb::CommitSnapshotRequest* req,
                      google::protobuf::Empty*) override {
    absl::Status s = sn_->Commit(req->name(), req->key(), FromProto(req->labels()));
    return Finish("commit", absl::StrCat(req->key(), " -> ", req->name()), s);
  }

  grpc::Status Remove(grpc::ServerContext*, const pb::RemoveSnapshotRequest* req,
                      google::protobuf::Empty*) override {
    return Finish("remove", req->key(), sn_->Remove(req->key()));
  }

  grpc::Status Stat(grpc::ServerContext*, const pb::StatSnapshotRequest* req,
                    pb::StatSnapshotResponse* resp) override {
    auto info = sn_->Stat(req->key());
    if (info.ok()) ToProto(*info, resp->mutable_info());
    return Finish("stat", req->key(), info.status());
  }

  grpc::Status Update(grpc::ServerContext*, const pb::UpdateSnapshotRequest* req,
                      pb::UpdateSnapshotResponse* resp) override {
    Info in;
    in.name = req->info().name();
    in.labels = FromProto(req->info().labels());
    std::vector<std::string> paths(req->update_mask().paths().begin(),
                                   req->update_mask().paths().end());
    auto info = sn_->Update(in, paths);
    if (info.ok()) ToProto(*info, resp->mutable_info());
    return Finish("update", in.name, info.status());
  }

  grpc::Status List(grpc::ServerContext* ctx, const pb::ListSnapshotsRequest* req,
                    grpc::ServerWriter<pb::ListSnapshotsResponse>* writer) override {
    std::vector<std::string> filters(req->filters().begin(), req->filters().end());
    pb::ListSnapshotsResponse batch;
    absl::Status s = sn_->Walk(filters, [&](const Info& info) -> absl::Status {
      if (ctx->IsCancelled()) return absl::CancelledError("list cancelled by the client");
      ToProto(info, batch.add_info());
      if (batch.info_size() >= kListBatch) {
        if (!writer->Write(batch)) return absl::CancelledError("list stream closed");
        batch.Clear();
      }
      return absl::OkStatus();
    });
    if (s.ok() && batch.info_size() > 0 && !writer->Write(batch)) {
      s = absl::CancelledError("list stream closed");
    }
    return Finish("list", absl::StrCat(filters.size(), " filters"), s);
  }

  grpc::Status Usage(grpc::ServerContext*, const pb::UsageRequest* req,
                     pb::UsageResponse* resp) override {
    auto u = sn_->GetUsage(req->key());
    if (u.ok()) {
      resp->set_size(u->size);
      resp->set_inodes(u->inodes);
    }
    return Finish("usage", req->key(), u.status());
  }

  grpc::Status Cleanup(grpc::ServerContext*, const pb::CleanupRequest*,
                       google::protobuf::Empty*) override {
    return Finish("cleanup", "", sn_->Cleanup());
  }

 private:
  Snapshotter* sn_;
};

class DaemonService final : public ::accel::v1::Daemon::Service {
 public:
  DaemonService(Snapshotter* sn, DaemonInfo info) : sn_(sn), info_(std::move(info)) {}

  grpc::Status GetStatus(grpc::ServerContext*, const ::accel::v1::GetStatusRequest*,
                         ::accel::v1::GetStatusResponse* resp) override {
    resp->set_version(Version());
    resp->set_root(sn_->root());
    resp->set_address(info_.address);
    resp->set_pid(::getpid());
    resp->set_uptime_seconds(absl::ToInt64Seconds(absl::Now() - info_.started));
    resp->set_fd_store(info_.fd_store);
    if (info_.store_layers != nullptr) {
      StoreLayersStatus st = info_.store_layers->Status();
      auto* store = resp->mutable_store();
      store->set_dir(st.dir);
      store->set_reachable(st.reachable);
      store->set_id(st.id);
      store->set_error(st.error);
    }
    std::map<std::string, uint64_t> fetched;
    if (info_.estargz_layers != nullptr) {
      for (const auto& m : info_.estargz_layers->MountedLayers()) {
        fetched[m.mountpoint] = m.bytes_fetched;
      }
    }
    if (info_.mounts != nullptr) {
      for (const MountStatus& m : info_.mounts->Status()) {
        auto* ml = resp->add_mounted_layers();
        ml->set_mountpoint(m.mountpoint);
        ml->set_kind(m.kind);
        ml->set_layer(m.layer);
        ml->set_state(m.state);
        ml->set_error(m.error);
        ml->set_restore_attempts(m.attempts);
        ml->set_snapshot(m.snapshot);
        auto f = fetched.find(m.mountpoint);
        if (f != fetched.end()) ml->set_bytes_fetched(static_cast<int64_t>(f->second));
      }
    }
    auto* counts = resp->mutable_snapshots();
    absl::Status s = sn_->Walk({}, [&](const Info& info) {
      switch (info.kind) {
        case Kind::kActive:
          counts->set_active(counts->active() + 1);
          break;
        case Kind::kCommitted:
          counts->set_committed(counts->committed() + 1);
          break;
        case Kind::kView:
          counts->set_view(counts->view() + 1);
          break;
        default:
          break;
      }
      return absl::OkStatus();
    });
    return Finish("status", "", s);
  }

 private:
  Snapshotter* sn_;
  DaemonInfo info_;
};

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::unique_ptr<grpc::Service> NewSnapshotsService(Snapshotter* sn) {
  return std::make_unique<SnapshotsService>(sn);
}

std::unique_ptr<grpc::Service> NewDaemonService(Snapshotter* sn, DaemonInfo info) {
  return std::make_unique<DaemonService>(sn, std::move(info));
}

}  // namespace accel::snapshotter
