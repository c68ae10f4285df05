// The fd holder process (fd_store.h): keeps descriptors by name for the
// daemon and hands them back.

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/errno_status.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "snapshotter/fd_message.h"
#include "snapshotter/fd_store.h"

namespace accel::snapshotter {
namespace {

using internal::FdMessage;
using internal::RecvFdMessage;
using internal::SendFdMessage;

// Handles one request from a client; false when the client is gone.
bool Handle(int client, std::map<std::string, UniqueFd>& held) {
  absl::StatusOr<FdMessage> msg = RecvFdMessage(client);
  if (!msg.ok()) return false;
  absl::string_view text = msg->text;
  if (absl::ConsumePrefix(&text, "PUT ")) {
    const std::string name(text);
    if (!ValidateFdName(name).ok() || !msg->fd.valid()) {
      return SendFdMessage(client, "ERR bad PUT").ok();
    }
    held[name] = std::move(msg->fd);
    return SendFdMessage(client, "OK").ok();
  }
  if (absl::ConsumePrefix(&text, "DEL ")) {
    held.erase(std::string(text));
    return SendFdMessage(client, "OK").ok();
  }
  if (text == "LIST") {
    for (const auto& [name, fd] : held) {
      if (!SendFdMessage(client, absl::StrCat("FD ", name), fd.get()).ok()) return false;
    }
    return SendFdMessage(client, "END").ok();
  }
  return SendFdMessage(client, "ERR unknown request").ok();
}

bool PeerAllowed(int client) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(client, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return cred.uid == 0 || cred.uid == geteuid();
}

}  // namespace

int RunFdHolder(const std::string& socket_path) {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);  // SIGTERM ends the holder
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    ACCEL_LOG(kError, "msg=\"fd holder socket path too long\"", LogField("path", socket_path));
    return 2;
  }
  UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!listener.valid()) return 1;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  // Another holder answering: leave it be. A stale socket file: replace it.
  UniqueFd probe(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    ACCEL_LOG(kInfo, "msg=\"an fd holder already runs\"", LogField("socket", socket_path));
    return 0;
  }
  unlink(socket_path.c_str());
  const mode_t old = umask(0077);
  const int bound = bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (bound != 0 || chmod(socket_path.c_str(), 0600) != 0 || listen(listener.get(), 16) != 0) {
    ACCEL_LOG(kError, "msg=\"fd holder cannot listen\"", LogField("socket", socket_path),
              LogField("error", strerror(errno)));
    return 1;
  }
  const std::string pidfile = socket_path + ".pid";
  if (!WriteFileAtomic(pidfile, absl::StrCat(getpid(), "\n"), 0600).ok()) {
    ACCEL_LOG(kWarn, "msg=\"fd holder cannot write its pid file\"", LogField("path", pidfile));
  }
  ACCEL_LOG(kInfo, "msg=\"fd holder serving\"", LogField("socket", socket_path),
            LogField("pid", absl::StrCat(getpid())));
  std::map<std::string, UniqueFd> held;
  std::vector<UniqueFd> clients;
  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({listener.get(), POLLIN, 0});
    for (const UniqueFd& c : clients) fds.push_back({c.get(), POLLIN, 0});
    std::vector<std::string> names;
    for (const auto& [name, fd] : held) {
      // No events asked: only an error (a FUSE connection the kernel
      // aborted or unmounted) or hang-up is reported.
      fds.push_back({fd.get(), 0, 0});
      names.push_back(name);
    }
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      ACCEL_LOG(kError, "msg=\"fd holder poll failed\"", LogField("error", strerror(errno)));
      return 1;
    }
    const size_t first_held = 1 + clients.size();
    for (size_t i = 0; i < names.size(); ++i) {
      if (fds[first_held + i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        ACCEL_LOG(kInfo, "msg=\"fd holder drops a closed connection\"", LogField("name", names[i]));
        held.erase(names[i]);
      }
    }
    std::vector<UniqueFd> keep;
    for (size_t i = 0; i < clients.size(); ++i) {
      const short ev = fds[1 + i].revents;
      if (ev == 0 || ((ev & POLLIN) && Handle(clients[i].get(), held))) {
        keep.push_back(std::move(clients[i]));
      }
    }
    clients = std::move(keep);
    if (fds[0].revents & POLLIN) {
      UniqueFd c(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (c.valid() && PeerAllowed(c.get())) clients.push_back(std::move(c));
    }
  }
}

}  // namespace accel::snapshotter
