#define FUSE_USE_VERSION 312

#include "fuse/server.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"
#include "fuse/lowlevel.h"
#include "fuse/mountinfo.h"
#include "fuse/splice_reply.h"

namespace accel::fuse {
namespace {

constexpr uint64_t kStopToken = 0;  // epoll data of the stop eventfd; mount ids start at 1
constexpr int kMaxThreads = 256;
constexpr int kMaxStaleMounts = 16;  // dead mounts stacked at one path that Mount detaches

// Receive buffer per worker: libfuse 3.14 reads whole requests of up to
// 256 pages plus a header page into memory; allocate with room to spare.
size_t ReceiveBufferSize() { return 256 * static_cast<size_t>(getpagesize()) + (64 << 10); }

// Makes `path` canonical lexically: absolute, no empty components, no
// trailing slash. Symlinks are not resolved.
absl::StatusOr<std::string> NormalizeMountpoint(absl::string_view path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("mountpoint \"", path, "\" is not absolute"));
  }
  std::string out;
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

void LibfuseLog(enum fuse_log_level level, const char* fmt, va_list ap) {
  char buf[512];
  vsnprintf(buf, sizeof(buf), fmt, ap);
  absl::string_view msg(buf);
  while (!msg.empty() && msg.back() == '\n') msg.remove_suffix(1);
  if (level <= FUSE_LOG_ERR) {
    ACCEL_LOG(kError, "msg=\"libfuse\"", LogField("detail", msg));
  } else if (level <= FUSE_LOG_NOTICE) {
    ACCEL_LOG(kWarn, "msg=\"libfuse\"", LogField("detail", msg));
  } else {
    ACCEL_LOG(kDebug, "msg=\"libfuse\"", LogField("detail", msg));
  }
}

// A FUSE connection starts with the default readahead (128 KiB) and INIT can
// only lower it; once INIT is done, raise it through the connection's BDI to
// the largest read request (256 pages), so cold sequential reads of big
// files take a quarter of the round trips. Best effort.
void RaiseReadahead(const std::string& dev, absl::string_view mp) {
  const std::string path = absl::StrCat("/sys/class/bdi/", dev, "/read_ahead_kb");
  const std::string kb = absl::StrCat(256 * getpagesize() / 1024);
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid() || write(fd.get(), kb.data(), kb.size()) != static_cast<ssize_t>(kb.size())) {
    ACCEL_LOG(kDebug, "msg=\"cannot raise FUSE readahead\"", LogField("mountpoint", mp),
              LogField("error", strerror(errno)));
  }
}

void RaiseFileLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      ACCEL_LOG(kWarn, "msg=\"cannot raise RLIMIT_NOFILE\"", LogField("error", strerror(errno)));
    }
  }
}

}  // namespace

class FuseServer::Impl {
 public:
  explicit Impl(int threads) : threads_(threads) {}
  ~Impl();

  absl::Status Init();
  absl::Status Mount(const std::string& mountpoint, std::shared_ptr<const LayerTree> tree,
                     std::shared_ptr<FileSource> source, const std::string& fsname);
  absl::Status Unmount(const std::string& mountpoint);
  size_t mount_count() const;
  std::vector<std::string> Mountpoints() const;
  int thread_count() const { return threads_; }

 private:
  struct MountRec {
    uint64_t id = 0;
    std::string mountpoint;
    std::string dev;  // "major:minor" of our superblock, from mountinfo
    fuse_session* se = nullptr;
    int fd = -1;  // owned by `se`
    std::unique_ptr<internal::MountContext> ctx;
    // Guarded by mu_.
    int inflight = 0;         // workers inside this mount's session
    bool closing = false;     // Unmount/shutdown started: take no more requests
    bool unmounting = false;  // our umount2 is running (the kernel may close it)
    bool dead = false;        // the kernel closed the connection
    bool error_logged = false;
  };

  void WorkerLoop(int index);
  // Marks a worker inside `id`'s session; nullptr if it is closing or gone.
  MountRec* Acquire(uint64_t id);
  void Release(MountRec* m);
  void Rearm(MountRec* m);
  // Stops serving `m`, waits for its in-flight requests, destroys the
  // session (closing the descriptor) and forgets it. REQUIRES: admin_mu_.
  void Teardown(MountRec* m);
  absl::Status PrepareMountpoint(const std::string& mp);

  const int threads_;
  UniqueFd epoll_;
  UniqueFd stop_fd_;
  size_t recv_size_ = 0;
  size_t max_read_ = 0;  // mount option max_read (0: kernel default)
  std::vector<std::thread> workers_;

  // Lock order: admin_mu_ before mu_. Neither is held across a FUSE reply;
  // admin_mu_ is held across mount(2)/umount2(2), mu_ never across a syscall
  // other than the short epoll_ctl in Rearm.
  absl::Mutex admin_mu_;  // serializes Mount, Unmount and shutdown
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<MountRec>> mounts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> by_path_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

absl::Status FuseServer::Impl::Init() {
  static std::once_flag log_once;
  std::call_once(log_once, [] { fuse_set_log_func(LibfuseLog); });
  RaiseFileLimit();
  recv_size_ = ReceiveBufferSize();
  max_read_ = internal::MaxSplicedRead();
  epoll_.Reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return ErrnoToStatus(errno, "epoll_create1");
  stop_fd_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_.valid()) return ErrnoToStatus(errno, "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;  // level-triggered: wakes every worker once written
  ev.data.u64 = kStopToken;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_fd_.get(), &ev) != 0) {
    return ErrnoToStatus(errno, "epoll_ctl stop fd");
  }
  for (int i = 0; i < threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
  return absl::OkStatus();
}

FuseServer::Impl::~Impl() {
  absl::MutexLock admin(&admin_mu_);
  std::vector<MountRec*> all;
  {
    absl::MutexLock l(&mu_);
    for (auto& [id, m] : mounts_) {
      m->closing = true;
      all.push_back(m.get());
    }
  }
  // Detach what is still ours at each mountpoint; an overlay or open files
  // keep the superblock until they go, and closing the descriptors below
  // makes their accesses fail instead of hang.
  absl::StatusOr<std::vector<MountInfoEntry>> mounts = ReadMountInfo();
  for (MountRec* m : all) {
    bool mounted = true;
    if (mounts.ok() && !m->dev.empty()) {
      mounted = false;
      for (const MountInfoEntry& e : *mounts) {
        if (e.mountpoint == m->mountpoint && e.dev == m->dev) mounted = true;
      }
    }
    if (mounted && umount2(m->mountpoint.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
      ACCEL_LOG(kWarn, "msg=\"lazy unmount failed\"", LogField("mountpoint", m->mountpoint),
                LogField("error", strerror(errno)));
    }
  }
  if (stop_fd_.valid()) {
    uint64_t one = 1;
    if (write(stop_fd_.get(), &one, sizeof(one)) != sizeof(one)) {
      ACCEL_LOG(kError, "msg=\"cannot stop FUSE workers\"", LogField("error", strerror(errno)));
    }
  }
  for (std::thread& t : workers_) t.join();
  for (MountRec* m : all) fuse_session_destroy(m->se);
  absl::MutexLock l(&mu_);
  mounts_.clear();
  by_path_.clear();
}

FuseServer::Impl::MountRec* FuseServer::Impl::Acquire(uint64_t id) {
  absl::MutexLock l(&mu_);
  auto it = mounts_.find(id);
  if (it == mounts_.end() || it->second->closing || it->second->dead) return nullptr;
  ++it->second->inflight;
  return it->second.get();
}

void FuseServer::Impl::Release(MountRec* m) {
  absl::MutexLock l(&mu_);
  --m->inflight;
}

void FuseServer::Impl::Rearm(MountRec* m) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = m->id;
  // ENOENT: Teardown removed the descriptor meanwhile.
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, m->fd, &ev) != 0 && errno != ENOENT) {
    ACCEL_LOG(kError, "msg=\"cannot re-arm FUSE descriptor\"",
              LogField("mountpoint", m->mountpoint), LogField("error", strerror(errno)));
  }
}

void FuseServer::Impl::WorkerLoop(int index) {
  pthread_setname_np(pthread_self(), absl::StrCat("accel-fuse-", index).c_str());
  // One receive buffer per worker, reused for every mount. Requests are read
  // into memory (splice read is not enabled), replies may splice.
  fuse_buf buf{};
  buf.mem = malloc(recv_size_);
  buf.fd = -1;
  ACCEL_CHECK(buf.mem != nullptr);
  internal::WorkerIo io;  // this worker's splice pipe, shared by all mounts
  internal::InitWorkerIo(&io);
  while (true) {
    epoll_event ev{};
    int n = epoll_wait(epoll_.get(), &ev, 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      ACCEL_LOG(kError, "msg=\"epoll_wait failed, FUSE worker exits\"",
                LogField("error", strerror(errno)));
      break;
    }
    if (n == 0) continue;
    if (ev.data.u64 == kStopToken) break;
    MountRec* m = Acquire(ev.data.u64);
    if (m == nullptr) continue;
    buf.flags = static_cast<fuse_buf_flags>(0);
    int res = fuse_session_receive_buf(m->se, &buf);
    if (res > 0) {
      Rearm(m);  // let another worker take this mount's next request now
      internal::BeginRequest(&io, m->fd, buf.mem, static_cast<size_t>(res));
      fuse_session_process_buf(m->se, &buf);
      internal::EndRequest(&io);
    } else if (res == -EAGAIN || res == -EINTR || res == -ENOENT) {
      Rearm(m);
    } else {
      // 0: the kernel closed the connection (unmounted or aborted).
      absl::MutexLock l(&mu_);
      if (res == 0 || res == -ENODEV) {
        m->dead = true;
        if (!m->closing && !m->unmounting) {
          ACCEL_LOG(kWarn, "msg=\"FUSE connection closed by the kernel\"",
                    LogField("mountpoint", m->mountpoint));
        }
      } else {
        if (!m->error_logged) {
          m->error_logged = true;
          ACCEL_LOG(kError, "msg=\"reading FUSE requests failed\"",
                    LogField("mountpoint", m->mountpoint), LogField("error", strerror(-res)));
        }
        Rearm(m);
      }
    }
    Release(m);
  }
  free(buf.mem);
}

absl::Status FuseServer::Impl::PrepareMountpoint(const std::string& mp) {
  for (int i = 0; i <= kMaxStaleMounts; ++i) {
    struct stat st;
    if (stat(mp.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        return absl::FailedPreconditionError(
            absl::StrCat("mountpoint ", mp, " is not a directory"));
      }
      return absl::OkStatus();
    }
    const int err = errno;
    if (err != ENOTCONN && err != ECONNABORTED) {
      return ErrnoToStatus(err, absl::StrCat("stat mountpoint ", mp));
    }
    ACCEL_LOG(kWarn, "msg=\"detaching a dead FUSE mount\"", LogField("mountpoint", mp));
    if (umount2(mp.c_str(), MNT_DETACH) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("detach dead mount at ", mp));
    }
  }
  return absl::FailedPreconditionError(absl::StrCat("too many dead mounts at ", mp));
}

absl::Status FuseServer::Impl::Mount(const std::string& mountpoint,
                                     std::shared_ptr<const LayerTree> tree,
                                     std::shared_ptr<FileSource> source,
                                     const std::string& fsname) {
  if (tree == nullptr || source == nullptr) {
    return absl::InvalidArgumentError("Mount needs a tree and a file source");
  }
  ACCEL_ASSIGN_OR_RETURN(std::string mp, NormalizeMountpoint(mountpoint));
  absl::MutexLock admin(&admin_mu_);
  {
    absl::MutexLock l(&mu_);
    if (by_path_.contains(mp)) {
      return absl::AlreadyExistsError(absl::StrCat("a layer is already mounted at ", mp));
    }
  }
  ACCEL_RETURN_IF_ERROR(PrepareMountpoint(mp));

  auto ctx = std::make_unique<internal::MountContext>();
  ctx->mountpoint = mp;
  ctx->tree = std::move(tree);
  ctx->source = std::move(source);

  char arg0[] = "accel";
  char* argv[] = {arg0, nullptr};
  fuse_args args = FUSE_ARGS_INIT(1, argv);
  fuse_session* se =
      fuse_session_new(&args, &internal::LowlevelOps(), sizeof(fuse_lowlevel_ops), ctx.get());
  fuse_opt_free_args(&args);
  if (se == nullptr) return absl::InternalError("fuse_session_new failed");
  absl::Cleanup destroy_session = [se] { fuse_session_destroy(se); };

  UniqueFd fd(open("/dev/fuse", O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, "open /dev/fuse");
  std::string data =
      absl::StrFormat("fd=%d,rootmode=40000,user_id=%u,group_id=%u,allow_other,default_permissions",
                      fd.get(), geteuid(), getegid());
  // Read requests no larger than a worker's pipe can splice in one reply.
  if (max_read_ > 0) absl::StrAppend(&data, ",max_read=", max_read_);
  const char* src = fsname.empty() ? "accel" : fsname.c_str();
  const unsigned long flags = MS_RDONLY | MS_NOATIME;
  if (::mount(src, mp.c_str(), "fuse.accel", flags, data.c_str()) != 0) {
    const int err = errno;
    // Kernels without FUSE subtypes reject "fuse.accel"; plain "fuse" works.
    if ((err != ENODEV && err != EINVAL) ||
        ::mount(src, mp.c_str(), "fuse", flags, data.c_str()) != 0) {
      return ErrnoToStatus(err, absl::StrCat("mount FUSE at ", mp));
    }
  }
  // Until the mount is registered, failing means: detach it (closing `fd`
  // then aborts the connection).
  absl::Cleanup undo_mount = [&mp] { umount2(mp.c_str(), MNT_DETACH); };

  // libfuse adopts a descriptor passed as /dev/fd/N (and closes it in
  // fuse_session_destroy).
  if (fuse_session_mount(se, absl::StrCat("/dev/fd/", fd.get()).c_str()) != 0) {
    return absl::InternalError(absl::StrCat("fuse_session_mount failed for ", mp));
  }
  const int raw_fd = fd.Release();
  std::move(destroy_session).Cancel();
  absl::Cleanup destroy_adopted = [se] { fuse_session_destroy(se); };  // also closes raw_fd
  int fl = fcntl(raw_fd, F_GETFL);
  if (fl < 0 || fcntl(raw_fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    return ErrnoToStatus(errno, "set O_NONBLOCK on /dev/fuse");
  }

  auto rec = std::make_unique<MountRec>();
  rec->mountpoint = mp;
  rec->se = se;
  rec->fd = raw_fd;
  rec->ctx = std::move(ctx);
  if (absl::StatusOr<std::vector<MountInfoEntry>> mounts = ReadMountInfo(); mounts.ok()) {
    const MountInfoEntry* top = TopMountAt(*mounts, mp);
    if (top != nullptr && absl::StartsWith(top->fstype, "fuse")) rec->dev = top->dev;
  }
  if (rec->dev.empty()) {
    ACCEL_LOG(kWarn, "msg=\"new FUSE mount not found in mountinfo\"", LogField("mountpoint", mp));
  }
  MountRec* m = rec.get();
  {
    absl::MutexLock l(&mu_);
    m->id = next_id_++;
    by_path_[mp] = m->id;
    mounts_[m->id] = std::move(rec);
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = m->id;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, raw_fd, &ev) != 0) {
    const int err = errno;
    absl::MutexLock l(&mu_);
    by_path_.erase(mp);
    mounts_.erase(m->id);  // no worker can have seen it
    return ErrnoToStatus(err, "epoll_ctl add /dev/fuse");
  }
  std::move(destroy_adopted).Cancel();
  std::move(undo_mount).Cancel();
  // Wait until the workers answered INIT and the root's attributes, so a
  // mount that cannot serve fails here rather than in a container.
  struct stat st;
  if (stat(mp.c_str(), &st) != 0) {
    const int err = errno;
    umount2(mp.c_str(), MNT_DETACH);
    Teardown(m);
    return ErrnoToStatus(err, absl::StrCat("new FUSE mount at ", mp, " does not answer"));
  }
  if (!m->dev.empty()) RaiseReadahead(m->dev, mp);
  ACCEL_LOG(kDebug, "msg=\"mounted layer\"", LogField("mountpoint", mp), LogField("fsname", src));
  return absl::OkStatus();
}

void FuseServer::Impl::Teardown(MountRec* m) {
  {
    absl::MutexLock l(&mu_);
    m->closing = true;
  }
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, m->fd, nullptr);
  {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](MountRec* r) { return r->inflight == 0; }, m));
  }
  fuse_session_destroy(m->se);  // closes the descriptor
  absl::MutexLock l(&mu_);
  by_path_.erase(m->mountpoint);
  mounts_.erase(m->id);
}

absl::Status FuseServer::Impl::Unmount(const std::string& mountpoint) {
  ACCEL_ASSIGN_OR_RETURN(std::string mp, NormalizeMountpoint(mountpoint));
  absl::MutexLock admin(&admin_mu_);
  MountRec* m = nullptr;
  {
    absl::MutexLock l(&mu_);
    auto it = by_path_.find(mp);
    if (it == by_path_.end()) return absl::OkStatus();
    m = mounts_.at(it->second).get();
  }
  ACCEL_ASSIGN_OR_RETURN(std::vector<MountInfoEntry> mounts, ReadMountInfo());
  const MountInfoEntry* ours = nullptr;
  for (const MountInfoEntry& e : mounts) {
    if (e.mountpoint == mp && (e.dev == m->dev || m->dev.empty())) ours = &e;
  }
  if (ours != nullptr) {
    // A lower layer of an overlay is not pinned by the overlay (overlayfs
    // clones its layers' mounts), so umount2 alone would succeed and then
    // pull the layer from under it: check the mount table first.
    const std::string below = mp == "/" ? mp : mp + "/";
    for (const MountInfoEntry& e : mounts) {
      if (&e == ours) continue;
      if (e.dev == ours->dev) {
        return absl::FailedPreconditionError(
            absl::StrCat(mp, " is busy: also mounted at ", e.mountpoint));
      }
      if (e.parent_id == ours->id) {
        return absl::FailedPreconditionError(
            absl::StrCat(mp, " is busy: ", e.mountpoint, " is mounted on it"));
      }
      for (const std::string& dir : OverlayDirs(e)) {
        if (dir == mp || absl::StartsWith(dir, below)) {
          return absl::FailedPreconditionError(
              absl::StrCat(mp, " is busy: the overlay at ", e.mountpoint, " uses it"));
        }
      }
    }
    {
      absl::MutexLock l(&mu_);
      m->unmounting = true;
    }
    if (umount2(mp.c_str(), 0) != 0) {
      const int err = errno;
      absl::MutexLock l(&mu_);
      m->unmounting = false;
      if (err == EBUSY) {
        return absl::FailedPreconditionError(absl::StrCat(mp, " is busy (open files?)"));
      }
      if (err != EINVAL) return ErrnoToStatus(err, absl::StrCat("unmount ", mp));
      // EINVAL: no longer a mount point; it went away meanwhile.
    }
  }
  Teardown(m);
  ACCEL_LOG(kDebug, "msg=\"unmounted layer\"", LogField("mountpoint", mp));
  return absl::OkStatus();
}

size_t FuseServer::Impl::mount_count() const {
  absl::MutexLock l(&mu_);
  return mounts_.size();
}

std::vector<std::string> FuseServer::Impl::Mountpoints() const {
  absl::MutexLock l(&mu_);
  std::vector<std::string> out;
  out.reserve(by_path_.size());
  for (const auto& [path, id] : by_path_) out.push_back(path);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::unique_ptr<FuseServer>> FuseServer::Start(const Options& options) {
  if (options.threads < 1 || options.threads > kMaxThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("FUSE threads must be in [1, ", kMaxThreads, "], got ", options.threads));
  }
  auto impl = std::make_unique<Impl>(options.threads);
  ACCEL_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<FuseServer>(new FuseServer(std::move(impl)));
}

FuseServer::FuseServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FuseServer::~FuseServer() = default;

absl::Status FuseServer::Mount(const std::string& mountpoint, std::shared_ptr<const LayerTree> tree,
                               std::shared_ptr<FileSource> source, const std::string& fsname) {
  return impl_->Mount(mountpoint, std::move(tree), std::move(source), fsname);
}

absl::Status FuseServer::Unmount(const std::string& mountpoint) {
  return impl_->Unmount(mountpoint);
}

size_t FuseServer::mount_count() const { return impl_->mount_count(); }
std::vector<std::string> FuseServer::Mountpoints() const { return impl_->Mountpoints(); }
int FuseServer::thread_count() const { return impl_->thread_count(); }

}  // namespace accel::fuse
