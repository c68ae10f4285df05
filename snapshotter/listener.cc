#include "snapshotter/listener.h"

#include <errno.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace accel::snapshotter {
namespace {

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path ", path, " is longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace

bool IsListenerFor(int fd, const std::string& path) {
  int listening = 0;
  socklen_t len = sizeof(listening);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) return false;
  sockaddr_un addr{};
  len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      addr.sun_family != AF_UNIX) {
    return false;
  }
  if (std::string(addr.sun_path) != path) return false;
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

absl::Status PrepareSocketPath(const std::string& path) {
  ACCEL_ASSIGN_OR_RETURN(sockaddr_un addr, Address(path));
  auto slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    ACCEL_RETURN_IF_ERROR(MkdirAll(path.substr(0, slash), 0700));
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoToStatus(errno, "socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("another process is serving on ", path, " (is accel-snapshotter running?)"));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("remove stale socket ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> Listen(const std::string& path) {
  ACCEL_ASSIGN_OR_RETURN(sockaddr_un addr, Address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoToStatus(errno, "socket");
  const mode_t old = ::umask(0077);  // root-only from the first moment
  const int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (bound != 0) return ErrnoToStatus(errno, absl::StrCat("bind ", path));
  if (::chmod(path.c_str(), 0600) != 0) return ErrnoToStatus(errno, absl::StrCat("chmod ", path));
  if (::listen(fd.get(), 512) != 0) return ErrnoToStatus(errno, absl::StrCat("listen ", path));
  return fd;
}

absl::StatusOr<std::unique_ptr<AcceptLoop>> AcceptLoop::Start(int listener, grpc::Server* server) {
  std::unique_ptr<AcceptLoop> loop(new AcceptLoop());
  loop->listener_ = listener;
  loop->server_ = server;
  loop->stop_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!loop->stop_.valid()) return ErrnoToStatus(errno, "eventfd");
  AcceptLoop* raw = loop.get();
  loop->thread_ = std::thread([raw] { raw->Run(); });
  return loop;
}

AcceptLoop::~AcceptLoop() {
  uint64_t one = 1;
  if (write(stop_.get(), &one, sizeof(one)) != sizeof(one)) {
    ACCEL_LOG(kError, "msg=\"cannot stop the accept loop\"", LogField("error", strerror(errno)));
  }
  thread_.join();
}

void AcceptLoop::Run() {
  while (true) {
    pollfd fds[2] = {{listener_, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      ACCEL_LOG(kError, "msg=\"accept loop poll failed\"", LogField("error", strerror(errno)));
      return;
    }
    if (fds[1].revents & POLLIN) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        ACCEL_LOG(kWarn, "msg=\"accept failed\"", LogField("error", strerror(errno)));
        absl::SleepFor(absl::Milliseconds(10));
      }
      continue;
    }
    grpc::AddInsecureChannelFromFd(server_, fd);  // takes the descriptor
  }
}

}  // namespace accel::snapshotter
