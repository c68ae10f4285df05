#pragma once

// The gRPC adapters: containerd's Snapshots service and accel's Daemon
// service over a Snapshotter. Only this file's .cc sees protobuf; it converts
// messages to snapshotter/types.h and absl::Status to grpc::Status, nothing
// else. Every failed call is logged once, here, with its key and error.

#include <grpcpp/impl/codegen/service_type.h>
#include <grpcpp/impl/codegen/status.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "snapshotter/snapshotter.h"

namespace accel::snapshotter {

// Maps a canonical absl code to the same gRPC code, keeping the message.
grpc::Status ToGrpcStatus(const absl::Status& status);

class StoreLayers;
class EstargzLayers;
class MountTable;

struct DaemonInfo {
  std::string address;
  absl::Time started;
  StoreLayers* store_layers = nullptr;      // reported in GetStatus when set
  EstargzLayers* estargz_layers = nullptr;  // likewise
  MountTable* mounts = nullptr;             // likewise
  std::string fd_store;                     // the fd store's kind
};

// Creates the containerd.services.snapshots.v1.Snapshots service. `sn` must
// outlive it.
std::unique_ptr<grpc::Service> NewSnapshotsService(Snapshotter* sn);

// Creates the accel.v1.Daemon service.
std::unique_ptr<grpc::Service> NewDaemonService(Snapshotter* sn, DaemonInfo info);

}  // namespace accel::snapshotter
