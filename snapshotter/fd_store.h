#pragma once

// FdStore keeps descriptors alive while the daemon is down, so a successor
// gets them back: each FUSE connection's /dev/fuse descriptor (the kernel
// keeps a connection alive while any process holds one; readers of its
// files wait meanwhile) and the listening gRPC socket (connections queue in
// its backlog while no daemon accepts: containerd sees a slow call, not
// "connection refused" and its reconnect backoff).
//
// Two stores:
//  - "holder": a small long-lived process (this binary re-executed as
//    `accel-snapshotter --fd-holder SOCKET`, in a session of its own so a
//    kill -9 of the daemon spares it) holds the descriptors by name and
//    hands them back over a unix socket (SCM_RIGHTS). The daemon starts it
//    when none answers. It drops a descriptor whose FUSE connection the
//    kernel closed. Root only (socket mode 0600, peer uid checked).
//  - "systemd": the service manager's file descriptor store (sd_notify
//    FDSTORE=1 with FDNAME per descriptor; they come back as LISTEN_FDS /
//    LISTEN_FDNAMES). Needs FileDescriptorStoreMax= in the unit.
// "auto" picks systemd when the manager passed stored descriptors or
// announces a store ($FDSTORE, systemd 254+), else the holder; "none"
// keeps nothing (mounts die with the daemon).
//
// Names are at most 255 printable ASCII characters without ':' (systemd's
// rule for FDNAME). Thread-safe.

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace accel::snapshotter {

class FdStore {
 public:
  virtual ~FdStore() = default;
  // "holder", "systemd" or "none".
  virtual std::string kind() const = 0;
  // The descriptors kept by a previous run, by name (taken once, at start).
  virtual absl::StatusOr<std::map<std::string, UniqueFd>> Fetch() = 0;
  // Keeps a duplicate of `fd` under `name`, replacing one of that name.
  virtual absl::Status Put(const std::string& name, int fd) = 0;
  // Closes the kept descriptor `name` (OK if there is none).
  virtual absl::Status Remove(const std::string& name) = 0;
};

struct FdStoreOptions {
  std::string mode = "auto";  // "auto", "holder", "systemd", "none"
  std::string holder_socket;  // the holder's socket (its pid goes to SOCKET.pid)
  std::string self_exe;       // this binary, to start the holder with
};

// Opens the store `options.mode` names (starting the holder if needed).
// InvalidArgument for an unknown mode; Unavailable if the holder cannot be
// started or reached.
absl::StatusOr<std::unique_ptr<FdStore>> OpenFdStore(const FdStoreOptions& options);

// Validates a descriptor name (see above).
absl::Status ValidateFdName(const std::string& name);

// The holder process's main: serves `socket_path` until SIGTERM/SIGINT.
// Returns the exit code.
int RunFdHolder(const std::string& socket_path);

}  // namespace accel::snapshotter
