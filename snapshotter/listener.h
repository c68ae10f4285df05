#pragma once

// The daemon's listening unix socket for gRPC, kept across restarts: a new
// daemon takes the socket the fd store held (connections that arrived while
// no daemon ran wait in its backlog) or makes one, and accepts on it
// itself, handing each connection to the gRPC server
// (grpc::AddInsecureChannelFromFd: gRPC 1.51 cannot listen on a given fd).

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace grpc {
class Server;
}

namespace accel::snapshotter {

// True if `fd` is a listening unix stream socket bound to `path`, and
// `path` is still a socket file.
bool IsListenerFor(int fd, const std::string& path);

// Prepares `path` for a new listener: creates its directory (0700 if new),
// refuses if another process answers on it, removes a stale socket.
absl::Status PrepareSocketPath(const std::string& path);

// Creates a listening socket at `path` (mode 0600 from the start).
absl::StatusOr<UniqueFd> Listen(const std::string& path);

// Accepts connections on `listener` for `server` on a thread of its own
// until destroyed. The listening socket itself is never shut down (a
// successor may hold it).
class AcceptLoop {
 public:
  static absl::StatusOr<std::unique_ptr<AcceptLoop>> Start(int listener, grpc::Server* server);
  ~AcceptLoop();

 private:
  AcceptLoop() = default;
  void Run();
  int listener_ = -1;
  grpc::Server* server_ = nullptr;
  UniqueFd stop_;
  std::thread thread_;
};

}  // namespace accel::snapshotter
