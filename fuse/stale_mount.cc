// DetachStaleMounts (server.h): recognising a FUSE mount nobody serves.

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"
#include "fuse/mountinfo.h"
#include "fuse/server.h"

namespace accel::fuse {
namespace {

constexpr int kMaxStaleMounts = 16;  // dead mounts stacked at one path that are detached

enum class Probe { kServed, kDead, kUnanswered, kOther };

// statfs goes to the FUSE server every time (it is never answered from
// cached attributes, unlike stat), so it tells a live connection from an
// aborted one (ENOTCONN). On a connection that is alive but not served it
// blocks: it runs on a thread of its own and is given up after `timeout`.
Probe ProbeConnection(const std::string& mp, absl::Duration timeout, int* err_out) {
  struct Shared {
    absl::Mutex mu;
    bool done = false;
    int err = 0;
  };
  auto shared = std::make_shared<Shared>();
  std::thread([shared, mp] {
    struct statfs st;
    const int err = statfs(mp.c_str(), &st) == 0 ? 0 : errno;
    absl::MutexLock l(&shared->mu);
    shared->done = true;
    shared->err = err;
  }).detach();
  absl::MutexLock l(&shared->mu);
  shared->mu.AwaitWithTimeout(absl::Condition(&shared->done), timeout);
  if (!shared->done) return Probe::kUnanswered;
  *err_out = shared->err;
  if (shared->err == 0) return Probe::kServed;
  if (shared->err == ENOTCONN || shared->err == ECONNABORTED) return Probe::kDead;
  return Probe::kOther;
}

// Aborts the connection of superblock `dev` ("0:NN") through the FUSE
// control file system, if it is mounted; readers then get ENOTCONN instead
// of waiting forever. Best effort.
void AbortConnection(const std::string& dev, const std::string& mp) {
  const size_t colon = dev.find(':');
  if (colon == std::string::npos) return;
  const std::string path =
      absl::StrCat("/sys/fs/fuse/connections/", dev.substr(colon + 1), "/abort");
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid() || write(fd.get(), "1", 1) != 1) {
    ACCEL_LOG(kWarn, "msg=\"cannot abort an unserved FUSE connection (fusectl not mounted?)\"",
              LogField("mountpoint", mp), LogField("error", strerror(errno)));
  }
}

}  // namespace

absl::Status DetachStaleMounts(const std::string& mp, absl::Duration probe_timeout) {
  for (int i = 0; i <= kMaxStaleMounts; ++i) {
    ACCEL_ASSIGN_OR_RETURN(std::vector<MountInfoEntry> mounts, ReadMountInfo());
    const MountInfoEntry* top = TopMountAt(mounts, mp);
    if (top == nullptr || !absl::StartsWith(top->fstype, "fuse")) {
      struct stat st;
      if (stat(mp.c_str(), &st) != 0) {
        return ErrnoToStatus(errno, absl::StrCat("stat mountpoint ", mp));
      }
      if (!S_ISDIR(st.st_mode)) {
        return absl::FailedPreconditionError(
            absl::StrCat("mountpoint ", mp, " is not a directory"));
      }
      return absl::OkStatus();
    }
    const std::string dev = top->dev;
    int err = 0;
    switch (ProbeConnection(mp, probe_timeout, &err)) {
      case Probe::kServed:
        return absl::FailedPreconditionError(
            absl::StrCat("a FUSE file system served by another process is mounted at ", mp));
      case Probe::kUnanswered:
        ACCEL_LOG(kWarn, "msg=\"FUSE mount nobody serves; aborting and detaching it\"",
                  LogField("mountpoint", mp));
        AbortConnection(dev, mp);
        break;
      case Probe::kDead:
        ACCEL_LOG(kWarn, "msg=\"detaching a dead FUSE mount\"", LogField("mountpoint", mp));
        break;
      case Probe::kOther:
        ACCEL_LOG(kWarn, "msg=\"detaching a FUSE mount that fails statfs\"",
                  LogField("mountpoint", mp), LogField("error", strerror(err)));
        break;
    }
    if (umount2(mp.c_str(), MNT_DETACH) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("detach stale mount at ", mp));
    }
  }
  return absl::FailedPreconditionError(absl::StrCat("too many stale mounts at ", mp));
}

}  // namespace accel::fuse
