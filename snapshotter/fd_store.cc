#include "snapshotter/fd_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "snapshotter/fd_message.h"

namespace accel::snapshotter {
namespace {

using internal::FdMessage;
using internal::RecvFdMessage;
using internal::SendFdMessage;

class NoStore final : public FdStore {
 public:
  std::string kind() const override { return "none"; }
  absl::StatusOr<std::map<std::string, UniqueFd>> Fetch() override {
    return std::map<std::string, UniqueFd>();
  }
  absl::Status Put(const std::string&, int) override { return absl::OkStatus(); }
  absl::Status Remove(const std::string&) override { return absl::OkStatus(); }
};

class SystemdStore final : public FdStore {
 public:
  std::string kind() const override { return "systemd"; }
  absl::StatusOr<std::map<std::string, UniqueFd>> Fetch() override {
    std::map<std::string, UniqueFd> out;
    char** names = nullptr;
    const int n = sd_listen_fds_with_names(1, &names);
    if (n < 0) return ErrnoToStatus(-n, "sd_listen_fds_with_names");
    for (int i = 0; i < n; ++i) {
      const int fd = SD_LISTEN_FDS_START + i;
      fcntl(fd, F_SETFD, FD_CLOEXEC);
      std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
      if (!name.empty() && !out.contains(name)) {
        out[name] = UniqueFd(fd);
      } else {
        close(fd);  // unnamed or a duplicate: not ours to keep
      }
    }
    if (names != nullptr) {
      for (int i = 0; i < n; ++i) free(names[i]);
      free(names);
    }
    return out;
  }
  absl::Status Put(const std::string& name, int fd) override {
    ACCEL_RETURN_IF_ERROR(ValidateFdName(name));
    // One entry per name: drop an older one first.
    Remove(name).IgnoreError();
    const std::string msg = absl::StrCat("FDSTORE=1\nFDNAME=", name);
    int r = sd_pid_notify_with_fds(0, 0, msg.c_str(), &fd, 1);
    if (r < 0) return ErrnoToStatus(-r, "sd_notify FDSTORE");
    if (r == 0)
      return absl::FailedPreconditionError("not started by systemd ($NOTIFY_SOCKET unset)");
    return absl::OkStatus();
  }
  absl::Status Remove(const std::string& name) override {
    ACCEL_RETURN_IF_ERROR(ValidateFdName(name));
    const std::string msg = absl::StrCat("FDSTOREREMOVE=1\nFDNAME=", name);
    int r = sd_notify(0, msg.c_str());
    if (r < 0) return ErrnoToStatus(-r, "sd_notify FDSTOREREMOVE");
    return absl::OkStatus();
  }
};

class HolderStore final : public FdStore {
 public:
  explicit HolderStore(FdStoreOptions options) : options_(std::move(options)) {}
  std::string kind() const override { return "holder"; }

  absl::Status Connect() {
    absl::MutexLock l(&mu_);
    return ConnectLocked();
  }

  absl::StatusOr<std::map<std::string, UniqueFd>> Fetch() override {
    absl::MutexLock l(&mu_);
    ACCEL_RETURN_IF_ERROR(ConnectLocked());
    ACCEL_RETURN_IF_ERROR(SendFdMessage(sock_.get(), "LIST"));
    std::map<std::string, UniqueFd> out;
    while (true) {
      absl::StatusOr<FdMessage> msg = RecvFdMessage(sock_.get());
      if (!msg.ok()) {
        sock_.Reset();
        return msg.status();
      }
      absl::string_view text = msg->text;
      if (text == "END") break;
      if (absl::ConsumePrefix(&text, "FD ") && msg->fd.valid()) {
        out[std::string(text)] = std::move(msg->fd);
      }
    }
    return out;
  }

  absl::Status Put(const std::string& name, int fd) override {
    ACCEL_RETURN_IF_ERROR(ValidateFdName(name));
    return Call(absl::StrCat("PUT ", name), fd);
  }
  absl::Status Remove(const std::string& name) override {
    ACCEL_RETURN_IF_ERROR(ValidateFdName(name));
    return Call(absl::StrCat("DEL ", name), -1);
  }

 private:
  absl::Status Call(const std::string& text, int fd) {
    absl::MutexLock l(&mu_);
    // A holder that died is started again once (what it held is lost).
    for (int attempt = 0; attempt < 2; ++attempt) {
      ACCEL_RETURN_IF_ERROR(ConnectLocked());
      absl::Status s = SendFdMessage(sock_.get(), text, fd);
      absl::StatusOr<FdMessage> reply =
          s.ok() ? RecvFdMessage(sock_.get()) : absl::StatusOr<FdMessage>(s);
      if (reply.ok()) {
        if (reply->text == "OK") return absl::OkStatus();
        return absl::InternalError(absl::StrCat("fd holder: ", reply->text));
      }
      sock_.Reset();
      if (attempt == 1) return reply.status();
    }
    return absl::InternalError("unreachable");
  }

  absl::Status TryConnect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    UniqueFd s(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!s.valid()) return ErrnoToStatus(errno, "socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, options_.holder_socket.data(), options_.holder_socket.size());
    if (connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("connect to fd holder ", options_.holder_socket));
    }
    sock_ = std::move(s);
    return absl::OkStatus();
  }

  absl::Status ConnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sock_.valid()) return absl::OkStatus();
    if (options_.holder_socket.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("fd holder socket path too long: ", options_.holder_socket));
    }
    if (TryConnect().ok()) return absl::OkStatus();
    ACCEL_RETURN_IF_ERROR(SpawnHolder());
    absl::Status last;
    for (absl::Time deadline = absl::Now() + absl::Seconds(5); absl::Now() < deadline;) {
      last = TryConnect();
      if (last.ok()) return last;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return absl::UnavailableError(absl::StrCat("fd holder did not start: ", last.message()));
  }

  // Starts `self_exe --fd-holder SOCKET` in a session of its own, not our
  // child (double fork), with nothing of ours open but stdio.
  absl::Status SpawnHolder() {
    const std::string flag = "--fd-holder";
    const pid_t pid = fork();
    if (pid < 0) return ErrnoToStatus(errno, "fork fd holder");
    if (pid == 0) {
      setsid();
      if (fork() != 0) _exit(0);
      // stdin and stdout from /dev/null; stderr (its log lines) stays unless
      // it is a pipe: a holder must not keep whoever reads our output
      // (e.g. a shell's $(...)) waiting for its end.
      int devnull = open("/dev/null", O_RDWR);
      if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        struct stat st;
        if (fstat(2, &st) != 0 || S_ISFIFO(st.st_mode)) dup2(devnull, 2);
      }
      close_range(3, ~0U, 0);
      char* argv[] = {const_cast<char*>("accel-fd-holder"), const_cast<char*>(flag.c_str()),
                      const_cast<char*>(options_.holder_socket.c_str()), nullptr};
      execv(options_.self_exe.c_str(), argv);
      _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ACCEL_LOG(kInfo, "msg=\"started the fd holder\"", LogField("socket", options_.holder_socket));
    return absl::OkStatus();
  }

  const FdStoreOptions options_;
  absl::Mutex mu_;
  UniqueFd sock_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::Status ValidateFdName(const std::string& name) {
  if (name.empty() || name.size() > 255) {
    return absl::InvalidArgumentError(absl::StrCat("bad descriptor name \"", name, "\""));
  }
  for (char c : name) {
    if (c <= ' ' || c > '~' || c == ':') {
      return absl::InvalidArgumentError(absl::StrCat("bad descriptor name \"", name, "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FdStore>> OpenFdStore(const FdStoreOptions& options) {
  std::string mode = options.mode;
  if (mode == "auto") {
    const bool systemd = getenv("NOTIFY_SOCKET") != nullptr &&
                         (getenv("LISTEN_FDNAMES") != nullptr || getenv("FDSTORE") != nullptr);
    mode = systemd ? "systemd" : "holder";
  }
  if (mode == "none") return std::unique_ptr<FdStore>(new NoStore());
  if (mode == "systemd") return std::unique_ptr<FdStore>(new SystemdStore());
  if (mode == "holder") {
    auto store = std::make_unique<HolderStore>(options);
    ACCEL_RETURN_IF_ERROR(store->Connect());
    return std::unique_ptr<FdStore>(std::move(store));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("fd_store must be auto, holder, systemd or none, got \"", options.mode, "\""));
}

}  // namespace accel::snapshotter
