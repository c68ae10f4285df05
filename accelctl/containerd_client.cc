#include "accelctl/containerd_client.h"

#include <chrono>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/labels.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace accel::ctl {
namespace {

namespace contentpb = ::containerd::services::content::v1;
namespace diffpb = ::containerd::services::diff::v1;
namespace imagespb = ::containerd::services::images::v1;
namespace leasespb = ::containerd::services::leases::v1;
namespace snapspb = ::containerd::services::snapshots::v1;

using registry::Descriptor;

constexpr size_t kWriteChunk = 1 << 20;
constexpr int kWriteWindow = 4;

}  // namespace

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

absl::Status SnapshotterError(const grpc::Status& s, const std::string& sn,
                              absl::string_view what) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(
        absl::StrCat(what, ": the snapshotter \"", sn, "\" is not answering containerd (",
                     s.error_message(), "); is accel-snapshotter running?"));
  }
  return FromGrpc(s, what);
}

Containerd::Containerd(const std::string& address, std::string ns, LeaseBox* box)
    : address_(address), ns_(std::move(ns)), box_(box) {
  channel_ =
      grpc::CreateChannel(absl::StrCat("unix:", address), grpc::InsecureChannelCredentials());
  content_ = contentpb::Content::NewStub(channel_);
  diff_ = diffpb::Diff::NewStub(channel_);
  images_ = imagespb::Images::NewStub(channel_);
  leases_ = leasespb::Leases::NewStub(channel_);
  snapshots_ = snapspb::Snapshots::NewStub(channel_);
}

absl::Status Containerd::Connect() {
  if (!channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    return absl::UnavailableError(absl::StrCat("cannot connect to containerd at ", address_,
                                               " (is it running? see --address)"));
  }
  return absl::OkStatus();
}

void Containerd::Setup(grpc::ClientContext& ctx) const {
  ctx.AddMetadata("containerd-namespace", ns_);
  if (!lease_.empty()) ctx.AddMetadata("containerd-lease", lease_);
}

absl::Status Containerd::CreateLease() {
  grpc::ClientContext ctx;
  Setup(ctx);
  leasespb::CreateRequest req;
  req.set_id(absl::StrCat("accelctl-pull-", RandomHex(8)));
  // Deleted at the end; the expiry (containerd's client uses 24 hours
  // too) only frees what a crashed pull left.
  (*req.mutable_labels())[kGcExpireLabel] =
      absl::FormatTime(absl::RFC3339_sec, absl::Now() + absl::Hours(24), absl::UTCTimeZone());
  leasespb::CreateResponse resp;
  ACCEL_RETURN_IF_ERROR(FromGrpc(leases_->Create(&ctx, req, &resp), "create lease"));
  lease_ = resp.lease().id();
  if (box_ != nullptr) box_->Set(lease_);
  return absl::OkStatus();
}

absl::Status Containerd::LeaseSnapshot(const std::string& sn, const std::string& key) {
  grpc::ClientContext ctx;
  Setup(ctx);
  leasespb::AddResourceRequest req;
  req.set_id(lease_);
  req.mutable_resource()->set_id(key);
  req.mutable_resource()->set_type(absl::StrCat("snapshots/", sn));
  google::protobuf::Empty resp;
  return FromGrpc(leases_->AddResource(&ctx, req, &resp), absl::StrCat("lease snapshot ", key));
}

void Containerd::DeleteLease(bool sync) {
  if (lease_.empty()) return;
  std::string id = lease_;
  lease_.clear();
  if (box_ == nullptr) {
    DeleteLeaseId(id, sync);
    return;
  }
  // The interrupt handler may have taken it (and be deleting it).
  box_->TakeAndRun([&](const std::string& taken) {
    if (!taken.empty()) DeleteLeaseId(taken, sync);
  });
}

void Containerd::DeleteLeaseId(const std::string& id, bool sync, absl::Duration deadline) {
  grpc::ClientContext ctx;
  Setup(ctx);
  if (deadline != absl::InfiniteDuration())
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  leasespb::DeleteRequest req;
  req.set_id(id);
  req.set_sync(sync);
  google::protobuf::Empty resp;
  grpc::Status s = leases_->Delete(&ctx, req, &resp);
  if (!s.ok()) {
    std::fprintf(stderr, "accelctl: pull: delete lease %s: %s\n", id.c_str(),
                 s.error_message().c_str());
  }
}

absl::StatusOr<bool> Containerd::WriteBlob(
    const Descriptor& d, const std::function<absl::Status(const BlobSink&)>& produce) {
  grpc::ClientContext ctx;
  Setup(ctx);
  auto stream = content_->Write(&ctx);
  const std::string ref = absl::StrCat("accelctl-pull-", RandomHex(8), "-", d.digest);
  contentpb::WriteContentResponse resp;
  auto finish = [&](absl::string_view what) -> absl::Status {
    stream->WritesDone();
    // Finish waits for every message to be read (containerd answers a
    // commit twice).
    contentpb::WriteContentResponse rest;
    while (stream->Read(&rest)) {
    }
    grpc::Status s = stream->Finish();
    return FromGrpc(s, absl::StrCat(what, " ", d.digest));
  };
  contentpb::WriteContentRequest req;
  req.set_action(contentpb::STAT);
  req.set_ref(ref);
  req.set_total(d.size);
  req.set_expected(d.digest);
  if (!stream->Write(req) || !stream->Read(&resp)) {
    absl::Status s = finish("write content");
    if (absl::IsAlreadyExists(s)) return false;
    if (s.ok())
      s = absl::InternalError(absl::StrCat("content write of ", d.digest, " ended early"));
    return s;
  }
  int64_t offset = resp.offset();
  // The whole blob is already there (shared content from another
  // namespace): commit it without downloading; containerd checks its size
  // and digest. Anything less under a fresh ref cannot be ours: start at 0.
  const bool have_all = offset == d.size && d.size > 0;
  if (!have_all) offset = 0;
  bool broken = false;
  // Every write is answered: send whole kWriteChunk messages, not the
  // small pieces a download delivers, and keep up to kWriteWindow of them
  // unanswered so the download does not wait for containerd's disk.
  std::string pending;
  int unanswered = 0;
  auto answered = [&](int keep) -> absl::Status {
    for (; unanswered > keep; --unanswered) {
      if (!stream->Read(&resp)) {
        broken = true;
        return absl::UnavailableError("content store stream closed");
      }
    }
    return absl::OkStatus();
  };
  auto send = [&]() -> absl::Status {
    contentpb::WriteContentRequest w;
    w.set_action(contentpb::WRITE);
    w.set_ref(ref);
    w.set_offset(offset);
    w.set_data(std::move(pending));
    pending.clear();
    if (!stream->Write(w)) {
      broken = true;
      return absl::UnavailableError("content store stream closed");
    }
    ++unanswered;
    offset += static_cast<int64_t>(w.data().size());
    return answered(kWriteWindow);
  };
  auto sink = [&](absl::string_view data) -> absl::Status {
    while (!data.empty()) {
      size_t n = std::min(data.size(), kWriteChunk - pending.size());
      pending.append(data.data(), n);
      data.remove_prefix(n);
      if (pending.size() == kWriteChunk) ACCEL_RETURN_IF_ERROR(send());
    }
    return absl::OkStatus();
  };
  absl::Status produced = have_all ? absl::OkStatus() : produce(sink);
  if (produced.ok() && !pending.empty()) produced = send();
  if (produced.ok()) produced = answered(0);
  if (broken) {
    absl::Status s = finish("write content");
    return s.ok() ? produced : s;
  }
  if (!produced.ok()) {
    ctx.TryCancel();
    finish("write content").IgnoreError();
    return produced;
  }
  contentpb::WriteContentRequest c;
  c.set_action(contentpb::COMMIT);
  c.set_ref(ref);
  c.set_offset(offset);
  c.set_total(d.size);
  c.set_expected(d.digest);
  if (!stream->Write(c) || !stream->Read(&resp)) {
    absl::Status s = finish("commit content");
    if (absl::IsAlreadyExists(s)) return false;
    if (s.ok()) s = absl::InternalError(absl::StrCat("commit of ", d.digest, " got no answer"));
    return s;
  }
  absl::Status s = finish("commit content");
  if (absl::IsAlreadyExists(s)) return false;
  ACCEL_RETURN_IF_ERROR(s);
  return true;
}

absl::Status Containerd::LabelBlob(const std::string& digest,
                                   const std::map<std::string, std::string>& labels) {
  grpc::ClientContext ctx;
  Setup(ctx);
  contentpb::UpdateRequest req;
  req.mutable_info()->set_digest(digest);
  for (const auto& [k, v] : labels) {
    (*req.mutable_info()->mutable_labels())[k] = v;
    req.mutable_update_mask()->add_paths(absl::StrCat("labels.", k));
  }
  contentpb::UpdateResponse resp;
  return FromGrpc(content_->Update(&ctx, req, &resp), absl::StrCat("label content ", digest));
}

absl::StatusOr<bool> Containerd::SnapshotExists(const std::string& sn, const std::string& key) {
  grpc::ClientContext ctx;
  Setup(ctx);
  snapspb::StatSnapshotRequest req;
  req.set_snapshotter(sn);
  req.set_key(key);
  snapspb::StatSnapshotResponse resp;
  grpc::Status s = snapshots_->Stat(&ctx, req, &resp);
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return false;
  if (!s.ok() && absl::StrContains(s.error_message(), "snapshotter not loaded")) {
    return absl::FailedPreconditionError(
        absl::StrCat("containerd has no snapshotter \"", sn, "\" (", s.error_message(),
                     "); is it configured as a proxy plugin and running?"));
  }
  ACCEL_RETURN_IF_ERROR(SnapshotterError(s, sn, absl::StrCat("stat snapshot ", key)));
  return true;
}

grpc::Status Containerd::Prepare(const snapspb::PrepareSnapshotRequest& req,
                                 snapspb::PrepareSnapshotResponse& resp) {
  grpc::ClientContext ctx;
  Setup(ctx);
  return snapshots_->Prepare(&ctx, req, &resp);
}

absl::Status Containerd::Commit(const std::string& sn, const std::string& name,
                                const std::string& key) {
  grpc::ClientContext ctx;
  Setup(ctx);
  snapspb::CommitSnapshotRequest req;
  req.set_snapshotter(sn);
  req.set_name(name);
  req.set_key(key);
  google::protobuf::Empty resp;
  return SnapshotterError(snapshots_->Commit(&ctx, req, &resp), sn,
                          absl::StrCat("commit snapshot ", name));
}

void Containerd::Remove(const std::string& sn, const std::string& key) {
  grpc::ClientContext ctx;
  Setup(ctx);
  snapspb::RemoveSnapshotRequest req;
  req.set_snapshotter(sn);
  req.set_key(key);
  google::protobuf::Empty resp;
  snapshots_->Remove(&ctx, req, &resp);
}

absl::StatusOr<std::string> Containerd::Apply(
    const Descriptor& d,
    const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts) {
  grpc::ClientContext ctx;
  Setup(ctx);
  diffpb::ApplyRequest req;
  req.mutable_diff()->set_media_type(d.media_type);
  req.mutable_diff()->set_digest(d.digest);
  req.mutable_diff()->set_size(d.size);
  *req.mutable_mounts() = mounts;
  diffpb::ApplyResponse resp;
  ACCEL_RETURN_IF_ERROR(
      FromGrpc(diff_->Apply(&ctx, req, &resp), absl::StrCat("apply layer ", d.digest)));
  return resp.applied().digest();
}

absl::Status Containerd::PutImage(const std::string& name, const Descriptor& target) {
  imagespb::Image image;
  image.set_name(name);
  image.mutable_target()->set_media_type(target.media_type);
  image.mutable_target()->set_digest(target.digest);
  image.mutable_target()->set_size(target.size);
  {
    grpc::ClientContext ctx;
    Setup(ctx);
    imagespb::CreateImageRequest req;
    *req.mutable_image() = image;
    imagespb::CreateImageResponse resp;
    grpc::Status s = images_->Create(&ctx, req, &resp);
    if (s.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
      return FromGrpc(s, absl::StrCat("create image ", name));
    }
  }
  grpc::ClientContext ctx;
  Setup(ctx);
  imagespb::UpdateImageRequest req;
  *req.mutable_image() = image;
  req.mutable_update_mask()->add_paths("target");
  imagespb::UpdateImageResponse resp;
  return FromGrpc(images_->Update(&ctx, req, &resp), absl::StrCat("update image ", name));
}

}  // namespace accel::ctl
