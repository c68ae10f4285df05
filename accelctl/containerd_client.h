#pragma once

// accelctl's client of containerd's own gRPC services (content, diff,
// images, leases, snapshots), for `accelctl pull`: what containerd's Go
// client does for a pull, one call per method, in one namespace and under
// one lease.
//
// Errors keep containerd's gRPC codes (NotFound, AlreadyExists, ...) as
// absl codes, with what was asked in front of the message.
//
// Thread-safety: a Containerd is used by one thread at a time, except
// WriteBlob, which the pull's download threads call at once (each call has
// its own stream). LeaseBox is thread-safe.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "containerd/services/content/v1/content.grpc.pb.h"
#include "containerd/services/diff/v1/diff.grpc.pb.h"
#include "containerd/services/images/v1/images.grpc.pb.h"
#include "containerd/services/leases/v1/leases.grpc.pb.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "registry/manifest.h"

namespace accel::ctl {

// `s` as an absl::Status (same code), `what` in front of its message.
absl::Status FromGrpc(const grpc::Status& s, absl::string_view what);

// A snapshots call's error; "unavailable" means containerd could not reach
// the proxy snapshotter `sn`, and the message says so.
absl::Status SnapshotterError(const grpc::Status& s, const std::string& sn, absl::string_view what);

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
  // Talks to the containerd socket `address` in namespace `ns`; the lease it
  // creates goes into `box` (if any) for the interrupt handler.
  Containerd(const std::string& address, std::string ns, LeaseBox* box = nullptr);

  // Unavailable if containerd does not answer within 5 seconds.
  absl::Status Connect();

  // Creates the lease every later call runs under (24 hours' expiry, for
  // what a crashed pull leaves).
  absl::Status CreateLease();
  // Holds snapshot `key` (and so its parents) under the lease.
  absl::Status LeaseSnapshot(const std::string& sn, const std::string& key);
  // Deletes the lease; with `sync`, containerd's garbage collection has
  // removed what only the lease held when this returns.
  void DeleteLease(bool sync = false);
  // Deletes lease `id`; with a `deadline`, gives up after it (the interrupt
  // path must end). Errors are printed, not returned.
  void DeleteLeaseId(const std::string& id, bool sync,
                     absl::Duration deadline = absl::InfiniteDuration());

  // A sink for a blob's bytes, in order.
  using BlobSink = std::function<absl::Status(absl::string_view)>;
  // Writes blob `d` into the content store; `produce` is called (unless the
  // store already has the blob) with a sink for the bytes, in order. Returns
  // true if written, false if the store already had it.
  absl::StatusOr<bool> WriteBlob(const registry::Descriptor& d,
                                 const std::function<absl::Status(const BlobSink&)>& produce);
  // Sets `labels` on blob `digest` (other labels are kept).
  absl::Status LabelBlob(const std::string& digest,
                         const std::map<std::string, std::string>& labels);

  // True if snapshot `key` exists; FailedPrecondition if containerd has no
  // snapshotter `sn`.
  absl::StatusOr<bool> SnapshotExists(const std::string& sn, const std::string& key);
  // The raw Prepare (the caller tells AlreadyExists from other errors).
  grpc::Status Prepare(const ::containerd::services::snapshots::v1::PrepareSnapshotRequest& req,
                       ::containerd::services::snapshots::v1::PrepareSnapshotResponse& resp);
  // AlreadyExists if another pull committed `name` first.
  absl::Status Commit(const std::string& sn, const std::string& name, const std::string& key);
  // Removes snapshot `key`, ignoring errors (cleanup).
  void Remove(const std::string& sn, const std::string& key);

  // Unpacks blob `d` (in the content store) onto `mounts`; returns the
  // digest of the uncompressed layer.
  absl::StatusOr<std::string> Apply(
      const registry::Descriptor& d,
      const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& mounts);

  // Creates image `name` pointing at `target`, or moves it there.
  absl::Status PutImage(const std::string& name, const registry::Descriptor& target);

 private:
  // Namespace and lease metadata on a call.
  void Setup(grpc::ClientContext& ctx) const;

  const std::string address_;
  const std::string ns_;
  LeaseBox* const box_;
  std::string lease_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::containerd::services::content::v1::Content::Stub> content_;
  std::unique_ptr<::containerd::services::diff::v1::Diff::Stub> diff_;
  std::unique_ptr<::containerd::services::images::v1::Images::Stub> images_;
  std::unique_ptr<::containerd::services::leases::v1::Leases::Stub> leases_;
  std::unique_ptr<::containerd::services::snapshots::v1::Snapshots::Stub> snapshots_;
};

}  // namespace accel::ctl
