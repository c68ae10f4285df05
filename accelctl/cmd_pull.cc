// accelctl pull: pulls an image into containerd through a snapshotter
// (accel by default), as containerd's own pull would, but asking the
// snapshotter first for each layer: layers it can mount remotely (from the
// shared store, or lazily as eStargz) are never downloaded; the others are
// downloaded into containerd's content store and unpacked with its diff
// service.

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "accelctl/commands.h"
#include "accelctl/registry_flags.h"
#include "accelctl/transfer.h"
#include "common/chain_id.h"
#include "common/labels.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "containerd/services/content/v1/content.grpc.pb.h"
#include "containerd/services/diff/v1/diff.grpc.pb.h"
#include "containerd/services/images/v1/images.grpc.pb.h"
#include "containerd/services/leases/v1/leases.grpc.pb.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace accel::ctl {
namespace {

namespace contentpb = ::containerd::services::content::v1;
namespace diffpb = ::containerd::services::diff::v1;
namespace imagespb = ::containerd::services::images::v1;
namespace leasespb = ::containerd::services::leases::v1;
namespace snapspb = ::containerd::services::snapshots::v1;

using registry::Client;
using registry::Descriptor;
using registry::Reference;

constexpr char kPullUsage[] =
    R"(Usage: accelctl pull [--address SOCKET] [--namespace NS] [--snapshotter NAME]
                     [--platform OS/ARCH[/VARIANT]] [registry flags] REF

Pulls image REF into containerd and unpacks it for snapshotter NAME, layer
by layer from the bottom. Each layer is first offered to the snapshotter:
layers it mounts remotely (converted into accel's store, or eStargz) are
not downloaded; the others are downloaded into containerd's content store
and unpacked there. The image record REF then points at the manifest, so
'ctr run --snapshotter NAME REF' starts it. Layers to download are
fetched --parallel at a time while the ones below them are unpacked. One
line per layer on stdout, and a byte counter on a terminal. Interrupted
(Ctrl-C, SIGTERM), it deletes its lease so containerd removes what it wrote.

  --address SOCKET   containerd's socket ($CONTAINERD_ADDRESS, else
                     /run/containerd/containerd.sock)
  --namespace NS     containerd namespace ($CONTAINERD_NAMESPACE, else default)
  --snapshotter NAME snapshotter to unpack for (default accel)
  --platform P       platform to pick from an index (default: this host's)
  --parallel N       layer downloads at once, 1-16 (default 3)

)";

constexpr size_t kWriteChunk = 1 << 20;
constexpr int kWriteWindow = 4;

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

// A snapshots call's error; "unavailable" means containerd could not reach
// a proxy snapshotter.
absl::Status SnapshotterError(const grpc::Status& s, const std::string& sn,
                              absl::string_view what) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(
        absl::StrCat(what, ": the snapshotter \"", sn, "\" is not answering containerd (",
                     s.error_message(), "); is accel-snapshotter running?"));
  }
  return FromGrpc(s, what);
}

// The id of the pull's lease, shared with the interrupt handler's thread.
// Whoever deletes the lease takes it out of the box and holds the box
// while deleting, so the main thread's delete and the interrupt handler's
// never overlap and the second one finds nothing to do.
class LeaseBox {
 public:
  void Set(std::string id) {
    absl::MutexLock lock(&mu_);
    id_ = std::move(id);
  }
  // Runs `fn` with the lease id taken out of the box ("" if there is none
  // or it was taken already), holding the box meanwhile.
  void TakeAndRun(const std::function<void(const std::string&)>& fn) {
    absl::MutexLock lock(&mu_);
    std::string id = std::move(id_);
    id_.clear();
    fn(id);
  }
  void MarkInterrupted() { interrupted_ = true; }
  bool interrupted() const { return interrupted_; }

 private:
  absl::Mutex mu_;
  std::string id_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> interrupted_{false};
};

// The calls to one containerd, in one namespace, under one lease.
class Containerd {
 public:
  Containerd(const std::string& address, std::string ns, LeaseBox* box = nullptr)
      : address_(address), ns_(std::move(ns)), box_(box) {
    channel_ =
        grpc::CreateChannel(absl::StrCat("unix:", address), grpc::InsecureChannelCredentials());
    content_ = contentpb::Content::NewStub(channel_);
    diff_ = diffpb::Diff::NewStub(channel_);
    images_ = imagespb::Images::NewStub(channel_);
    leases_ = leasespb::Leases::NewStub(channel_);
    snapshots_ = snapspb::Snapshots::NewStub(channel_);
  }

  absl::Status Connect() {
    if (!channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
      return absl::UnavailableError(absl::StrCat("cannot connect to containerd at ", address_,
                                                 " (is it running? see --address)"));
    }
    return absl::OkStatus();
  }

  void Setup(grpc::ClientContext& ctx) const {
    ctx.AddMetadata("containerd-namespace", ns_);
    if (!lease_.empty()) ctx.AddMetadata("containerd-lease", lease_);
  }

  absl::Status CreateLease() {
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

  // Holds snapshot `key` (and so its parents) under the lease.
  absl::Status LeaseSnapshot(const std::string& sn, const std::string& key) {
    grpc::ClientContext ctx;
    Setup(ctx);
    leasespb::AddResourceRequest req;
    req.set_id(lease_);
    req.mutable_resource()->set_id(key);
    req.mutable_resource()->set_type(absl::StrCat("snapshots/", sn));
    google::protobuf::Empty resp;
    return FromGrpc(leases_->AddResource(&ctx, req, &resp), absl::StrCat("lease snapshot ", key));
  }

  // Deletes the lease; with `sync`, containerd's garbage collection has
  // removed what only the lease held when this returns.
  void DeleteLease(bool sync = false) {
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

  // With a `deadline`, gives up after it (the interrupt path must end).
  void DeleteLeaseId(const std::string& id, bool sync,
                     absl::Duration deadline = absl::InfiniteDuration()) {
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

  // Writes blob `d` into the content store; `produce` is called (unless the
  // store already has the blob) with a sink for the bytes, in order. Returns
  // true if written, false if the store already had it.
  absl::StatusOr<bool> WriteBlob(
      const Descriptor& d,
      const std::function<absl::Status(const std::function<absl::Status(absl::string_view)>&)>&
          produce) {
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

  // Sets `labels` on blob `digest` (other labels are kept).
  absl::Status LabelBlob(const std::string& digest,
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

  // True if snapshot `key` exists.
  absl::StatusOr<bool> SnapshotExists(const std::string& sn, const std::string& key) {
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

  grpc::Status Prepare(const snapspb::PrepareSnapshotRequest& req,
                       snapspb::PrepareSnapshotResponse& resp) {
    grpc::ClientContext ctx;
    Setup(ctx);
    return snapshots_->Prepare(&ctx, req, &resp);
  }

  // AlreadyExists if another pull committed `name` first.
  absl::Status Commit(const std::string& sn, const std::string& name, const std::string& key) {
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

  void Remove(const std::string& sn, const std::string& key) {
    grpc::ClientContext ctx;
    Setup(ctx);
    snapspb::RemoveSnapshotRequest req;
    req.set_snapshotter(sn);
    req.set_key(key);
    google::protobuf::Empty resp;
    snapshots_->Remove(&ctx, req, &resp);
  }

  // Unpacks blob `d` (in the content store) onto `mounts`; returns the
  // digest of the uncompressed layer.
  absl::StatusOr<std::string> Apply(
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

  // Creates image `name` pointing at `target`, or moves it there.
  absl::Status PutImage(const std::string& name, const Descriptor& target) {
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

 private:
  const std::string address_;
  const std::string ns_;
  LeaseBox* const box_;
  std::string lease_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<contentpb::Content::Stub> content_;
  std::unique_ptr<diffpb::Diff::Stub> diff_;
  std::unique_ptr<imagespb::Images::Stub> images_;
  std::unique_ptr<leasespb::Leases::Stub> leases_;
  std::unique_ptr<snapspb::Snapshots::Stub> snapshots_;
};

struct PullOptions {
  std::string snapshotter;
  std::string name;  // image record name (REF, normalized)
  registry::Platform platform;
  int parallel = 3;  // concurrent layer downloads
};

// True if the manifest marks the layer for a remote snapshotter (accel's
// store annotations, eStargz's TOC digest): such a layer is offered to the
// snapshotter before anything is downloaded.
bool HintedRemote(const Descriptor& layer) {
  for (const auto& [k, v] : layer.annotations) {
    if (absl::StartsWith(k, kSnapshotLabelPrefix)) return true;
  }
  return false;
}

// Downloads layer blobs into containerd's content store ahead of their
// unpacking, `parallel` at a time, in the order queued; unpacking stays
// serial (each layer is applied onto its parent). Stops and joins on
// destruction.
class Prefetcher {
 public:
  Prefetcher(Client& client, Containerd& ctd, const Reference& ref,
             const std::vector<Descriptor>& layers, int parallel, Progress& progress)
      : client_(client),
        ctd_(ctd),
        ref_(ref),
        layers_(layers),
        progress_(progress),
        slots_(layers.size()) {
    for (int t = 0; t < parallel; ++t) workers_.emplace_back([this] { Work(); });
  }
  ~Prefetcher() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    cancelled_ = true;
    for (std::thread& t : workers_) t.join();
  }

  // Queues layer i for download (once).
  void Queue(size_t i) {
    absl::MutexLock lock(&mu_);
    if (slots_[i]) return;
    slots_[i] = std::make_unique<Slot>();
    queue_.push_back(i);
    progress_.AddTotal(1, layers_[i].size);
  }

  // Waits for layer i's blob to be in the content store (queuing it first
  // if needed).
  absl::Status Wait(size_t i) {
    Queue(i);
    Slot* slot;
    {
      absl::MutexLock lock(&mu_);
      slot = slots_[i].get();
    }
    slot->done.WaitForNotification();
    return slot->status;
  }

 private:
  struct Slot {
    absl::Notification done;
    absl::Status status;
  };

  void Work() {
    for (;;) {
      size_t i;
      Slot* slot;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]()
                         ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;
        i = queue_.front();
        queue_.pop_front();
        slot = slots_[i].get();
      }
      slot->status = Download(i);
      slot->done.Notify();
    }
  }

  absl::Status Download(size_t i) {
    if (cancelled_) return absl::CancelledError("pull stopped");
    const Descriptor& d = layers_[i];
    int64_t got = 0;
    absl::StatusOr<bool> written = ctd_.WriteBlob(d, [&](const auto& sink) {
      if (cancelled_) return absl::CancelledError("pull stopped");
      return client_.FetchBlob(ref_, d, [&](absl::string_view data) -> absl::Status {
        if (cancelled_) return absl::CancelledError("pull stopped");
        got += static_cast<int64_t>(data.size());
        progress_.Bytes(static_cast<int64_t>(data.size()));
        return sink(data);
      });
    });
    // What containerd already had counts as done.
    if (written.ok() && got < d.size) progress_.Bytes(d.size - got);
    return written.status();
  }

  Client& client_;
  Containerd& ctd_;
  const Reference& ref_;
  const std::vector<Descriptor>& layers_;
  Progress& progress_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  std::deque<size_t> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> cancelled_{false};
  std::vector<std::thread> workers_;
};

// The value of cri.image-layers for layer i, as containerd's CRI plugin
// builds it: the digests from layer i upward, as many as fit containerd's
// limit of 4096 bytes for a label's key and value.
std::string ImageLayersLabel(const std::vector<Descriptor>& layers, size_t i) {
  std::string out;
  for (size_t k = i; k < layers.size(); ++k) {
    const size_t add = layers[k].digest.size() + (out.empty() ? 0 : 1);
    if (std::strlen(kCriImageLayersLabel) + out.size() + add > kMaxLabelBytes) break;
    if (!out.empty()) out += ',';
    out += layers[k].digest;
  }
  return out;
}

absl::Status Pull(Client& client, Containerd& ctd, const Reference& ref, const PullOptions& opts,
                  Progress& progress) {
  ACCEL_ASSIGN_OR_RETURN(Client::ResolvedImage image, client.ResolveImage(ref, opts.platform));
  const registry::Manifest& manifest = image.parsed;
  ACCEL_ASSIGN_OR_RETURN(std::string config, client.FetchBlobBytes(ref, manifest.config));
  ACCEL_ASSIGN_OR_RETURN(std::vector<std::string> diff_ids,
                         registry::ConfigDiffIds(config, manifest));
  const size_t n = manifest.layers.size();
  const std::vector<std::string> chains = ChainIds(diff_ids);
  progress.Line(absl::StrCat("pulling ", ref.String(), " (", image.manifest.descriptor.digest,
                             "): ", n, " layer(s) for snapshotter ", opts.snapshotter));

  // The highest layer already unpacked (its whole chain is then there). The
  // first Stat also fails early, with a clear message, when the snapshotter
  // is not there.
  size_t have = 0;
  for (size_t i = n; i > 0; --i) {
    ACCEL_ASSIGN_OR_RETURN(bool exists, ctd.SnapshotExists(opts.snapshotter, chains[i - 1]));
    if (exists) {
      have = i;
      break;
    }
  }

  ACCEL_RETURN_IF_ERROR(ctd.CreateLease());
  // What is already unpacked stays while the lease lives (a parent holds
  // nothing, its child holds it).
  if (have > 0) {
    absl::Status s = ctd.LeaseSnapshot(opts.snapshotter, chains[have - 1]);
    if (absl::IsNotFound(s))
      have = 0;  // removed meanwhile: unpack it again
    else
      ACCEL_RETURN_IF_ERROR(s);
  }

  // Layers that are not marked for a remote snapshotter will be downloaded:
  // start on them now, while the layers below are being prepared.
  Prefetcher prefetcher(client, ctd, ref, manifest.layers, opts.parallel, progress);
  for (size_t i = have; i < n; ++i) {
    if (!HintedRemote(manifest.layers[i])) prefetcher.Queue(i);
  }

  for (size_t i = 0; i < n; ++i) {
    const Descriptor& layer = manifest.layers[i];
    const std::string& chain = chains[i];
    const std::string parent = i == 0 ? "" : chains[i - 1];
    std::string prefix = absl::StrCat("layer ", i + 1, "/", n, " ", layer.digest, " ");
    if (i < have) {
      progress.Line(absl::StrCat(prefix, "already unpacked"));
      continue;
    }
    const std::string key = absl::StrCat("extract-", RandomHex(8), " ", chain);
    snapspb::PrepareSnapshotRequest prep;
    prep.set_snapshotter(opts.snapshotter);
    prep.set_key(key);
    prep.set_parent(parent);
    auto& labels = *prep.mutable_labels();
    for (const auto& [k, v] : layer.annotations) {
      if (absl::StartsWith(k, kSnapshotLabelPrefix)) labels[k] = v;
    }
    labels[kTargetRefLabel] = chain;
    labels[kCriRefLabel] = ref.String();
    labels[kCriDigestLabel] = layer.digest;
    labels[kCriImageLayersLabel] = ImageLayersLabel(manifest.layers, i);
    snapspb::PrepareSnapshotResponse prepared;
    grpc::Status ps = ctd.Prepare(prep, prepared);
    if (ps.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
      // The snapshotter mounted it, or (for a layer nothing marks as remote)
      // another pull committed it since the Stat above.
      progress.Line(absl::StrCat(
          prefix, HintedRemote(layer) ? "mounted remotely" : "unpacked by another pull meanwhile"));
      continue;
    }
    ACCEL_RETURN_IF_ERROR(SnapshotterError(
        ps, opts.snapshotter, absl::StrCat("prepare snapshot for layer ", layer.digest)));
    if (HintedRemote(layer)) {
      // Marked for a remote snapshotter but declined (store or registry not
      // reachable from the daemon, say): the ones above likely will be too.
      prefetcher.Queue(i);  // first in line
      for (size_t k = i + 1; k < n; ++k) prefetcher.Queue(k);
    }
    bool raced = false;
    absl::Status s = [&]() -> absl::Status {
      ACCEL_RETURN_IF_ERROR(prefetcher.Wait(i));
      ACCEL_ASSIGN_OR_RETURN(std::string applied, ctd.Apply(layer, prepared.mounts()));
      if (applied != diff_ids[i]) {
        return absl::DataLossError(absl::StrCat("layer ", layer.digest, " unpacked to ", applied,
                                                ", but the config says ", diff_ids[i]));
      }
      // Recorded as containerd's unpacker does.
      ACCEL_RETURN_IF_ERROR(ctd.LabelBlob(layer.digest, {{kUncompressedLabel, applied}}));
      absl::Status committed = ctd.Commit(opts.snapshotter, chain, key);
      if (absl::IsAlreadyExists(committed)) {
        raced = true;  // another pull unpacked it first: use theirs
        return absl::OkStatus();
      }
      return committed;
    }();
    if (!s.ok() || raced) ctd.Remove(opts.snapshotter, key);
    ACCEL_RETURN_IF_ERROR(s);
    progress.Step();
    progress.Line(absl::StrCat(
        prefix, raced ? "unpacked by another pull meanwhile" : "downloaded and unpacked", " (",
        absl::StrFormat("%.1f", layer.size / 1048576.0), " MiB)"));
  }

  // The config, then the manifest, with the labels that keep what they
  // reference from containerd's garbage collection once the lease is gone.
  auto bytes_of = [](const std::string& b) {
    return [&b](const std::function<absl::Status(absl::string_view)>& sink) { return sink(b); };
  };
  ACCEL_RETURN_IF_ERROR(ctd.WriteBlob(manifest.config, bytes_of(config)).status());
  if (n > 0) {
    ACCEL_RETURN_IF_ERROR(
        ctd.LabelBlob(manifest.config.digest,
                      {{absl::StrCat(kGcRefSnapshotPrefix, opts.snapshotter), chains.back()}}));
  }
  std::map<std::string, std::string> manifest_labels = {
      {kGcRefContentConfig, manifest.config.digest}};
  for (size_t i = 0; i < n; ++i) {
    manifest_labels[absl::StrCat(kGcRefContentLayerPrefix, i)] = manifest.layers[i].digest;
  }
  const Descriptor& md = image.manifest.descriptor;
  ACCEL_RETURN_IF_ERROR(ctd.WriteBlob(md, bytes_of(image.manifest.bytes)).status());
  ACCEL_RETURN_IF_ERROR(ctd.LabelBlob(md.digest, manifest_labels));
  Descriptor target = md;
  if (image.index) {
    // Keep the index as the image's target, as containerd does.
    const Descriptor& id = image.index->descriptor;
    ACCEL_RETURN_IF_ERROR(ctd.WriteBlob(id, bytes_of(image.index->bytes)).status());
    ACCEL_RETURN_IF_ERROR(
        ctd.LabelBlob(id.digest, {{absl::StrCat(kGcRefContentManifestPrefix, 0), md.digest}}));
    target = id;
  }
  ACCEL_RETURN_IF_ERROR(ctd.PutImage(opts.name, target));
  return absl::OkStatus();
}

// SIGINT, SIGTERM or SIGHUP during a pull: deletes the pull's lease with a
// synchronous garbage collection, so containerd removes every blob and
// snapshot the pull wrote and nothing half-done is left, then exits with
// 128 + the signal. The handler only writes the signal number to a pipe;
// a thread of its own does the rest. Signals ignored when the pull starts
// (a background job's SIGINT, nohup's SIGHUP) stay ignored.
std::atomic<int> g_interrupt_pipe{-1};

void OnInterrupt(int sig) {
  const int saved = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  const int fd = g_interrupt_pipe.load();
  if (fd >= 0) [[maybe_unused]]
    ssize_t n = ::write(fd, &b, 1);
  errno = saved;
}

class InterruptCleanup {
 public:
  InterruptCleanup(std::string address, std::string ns, LeaseBox& box) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;  // no cleanup on signals; the lease still expires
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    ::fcntl(write_fd_, F_SETFL, O_NONBLOCK);  // the handler never blocks
    g_interrupt_pipe = write_fd_;
    for (int sig : kSignals) {
      struct sigaction old {};
      ::sigaction(sig, nullptr, &old);
      if (old.sa_handler == SIG_IGN) continue;
      struct sigaction sa {};
      sa.sa_handler = OnInterrupt;
      sa.sa_flags = SA_RESETHAND;  // a second signal kills at once (if cleanup hangs)
      sigemptyset(&sa.sa_mask);
      ::sigaction(sig, &sa, nullptr);
      installed_.push_back({sig, old});
    }
    thread_ = std::thread([this, address = std::move(address), ns = std::move(ns), &box] {
      unsigned char b = 0;
      while (::read(read_fd_, &b, 1) < 0 && errno == EINTR) {
      }
      if (b == 0) return;  // the pull ended
      const int sig = b;
      box.MarkInterrupted();  // the main thread now stays quiet and waits for the exit
      box.TakeAndRun([&](const std::string& lease) {
        std::fprintf(stderr, "\naccelctl: pull: interrupted (%s)%s\n", strsignal(sig),
                     lease.empty() ? "" : "; removing what it wrote");
        if (!lease.empty()) {
          Containerd(address, ns).DeleteLeaseId(lease, /*sync=*/true, absl::Seconds(60));
        }
      });
      std::fflush(stdout);
      std::_Exit(128 + sig);
    });
  }
  ~InterruptCleanup() {
    if (read_fd_ < 0) return;
    for (const auto& [sig, old] : installed_) ::sigaction(sig, &old, nullptr);
    g_interrupt_pipe = -1;  // before closing: a late handler must not write to a reused fd
    const unsigned char zero = 0;
    [[maybe_unused]] ssize_t n = ::write(write_fd_, &zero, 1);
    thread_.join();  // if a signal came first, this never returns: the thread exits
    ::close(read_fd_);
    ::close(write_fd_);
  }

 private:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::vector<std::pair<int, struct sigaction>> installed_;
  std::thread thread_;
};

}  // namespace

int RunPull(const Args& args) {
  RegistryFlags rf;
  const char* env_address = std::getenv("CONTAINERD_ADDRESS");
  const char* env_ns = std::getenv("CONTAINERD_NAMESPACE");
  std::string address =
      env_address && *env_address ? env_address : "/run/containerd/containerd.sock";
  std::string ns = env_ns && *env_ns ? env_ns : "default";
  std::string snapshotter = "accel";
  std::string platform_text;
  std::string parallel_text = "3";
  std::vector<std::string> refs;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string error;
    if (a == "-h" || a == "--help") {
      std::printf("%s%s", kPullUsage, kRegistryFlagsUsage);
      return 0;
    } else if (ConsumeValueFlag(args, i, "--address", address, error) ||
               ConsumeValueFlag(args, i, "--namespace", ns, error) ||
               ConsumeValueFlag(args, i, "--snapshotter", snapshotter, error) ||
               ConsumeValueFlag(args, i, "--platform", platform_text, error) ||
               ConsumeValueFlag(args, i, "--parallel", parallel_text, error) ||
               ConsumeRegistryFlag(args, i, rf, error)) {
      if (!error.empty()) return Fail(absl::StrCat("pull: ", error), 2);
    } else if (!a.empty() && a[0] == '-') {
      return Fail(absl::StrCat("pull: unknown flag \"", a, "\" (see --help)"), 2);
    } else {
      refs.push_back(a);
    }
  }
  if (refs.size() != 1) return Fail("pull: want exactly one image reference (see --help)", 2);
  if (address.empty() || ns.empty() || snapshotter.empty()) {
    return Fail("pull: --address, --namespace and --snapshotter must not be empty", 2);
  }
  absl::StatusOr<Reference> ref = registry::ParseReference(refs[0]);
  if (!ref.ok()) return Fail(absl::StrCat("pull: ", ref.status().message()), 2);
  PullOptions opts;
  opts.snapshotter = snapshotter;
  opts.name = ref->String();
  if (!absl::SimpleAtoi(parallel_text, &opts.parallel) || opts.parallel < 1 || opts.parallel > 16) {
    return Fail(
        absl::StrCat("pull: --parallel wants a number from 1 to 16, not \"", parallel_text, "\""),
        2);
  }
  opts.platform = registry::DefaultPlatform();
  if (!platform_text.empty()) {
    absl::StatusOr<registry::Platform> p = registry::ParsePlatform(platform_text);
    if (!p.ok()) return Fail(absl::StrCat("pull: ", p.status().message()), 2);
    opts.platform = *p;
  }
  LeaseBox lease_box;
  InterruptCleanup interrupt(address, ns, lease_box);
  // As many registry transfers at once as download workers.
  absl::StatusOr<std::unique_ptr<Client>> client = MakeRegistryClient(rf, opts.parallel);
  if (!client.ok()) return Fail(absl::StrCat("pull: ", client.status().message()));
  Containerd ctd(address, ns, &lease_box);
  if (absl::Status s = ctd.Connect(); !s.ok()) return Fail(absl::StrCat("pull: ", s.message()));
  absl::Time start = absl::Now();
  Progress progress(::isatty(STDOUT_FILENO) == 1);
  absl::Status s = Pull(**client, ctd, *ref, opts, progress);
  // Interrupted: the handler's thread deletes the lease and exits; what
  // failed here meanwhile (the lease vanished) is not news.
  while (lease_box.interrupted()) absl::SleepFor(absl::Seconds(1));
  progress.Finish();
  ctd.DeleteLease();
  if (!s.ok()) return Fail(absl::StrCat("pull: ", s.message()));
  std::printf("pulled %s in %.1fs\n", opts.name.c_str(),
              absl::ToDoubleSeconds(absl::Now() - start));
  return 0;
}

}  // namespace accel::ctl
