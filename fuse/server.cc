#include "fuse/server.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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
#include "fuse/mountinfo.h"
#include "fuse/ops.h"
#include "fuse/splice_reply.h"

namespace accel::fuse {
namespace {

using internal::ServedLayer;

constexpr uint64_t kStopToken = 0;  // epoll data of the stop eventfd; mount ids start at 1
constexpr int kMaxThreads = 256;
constexpr absl::Duration kInitTimeout = absl::Seconds(10);

// Receive buffer per worker: the kernel wants room for its largest request
// (a write of max_pages pages plus headers) whatever we negotiated.
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

// Writes one whole reply. The kernel takes a reply in one write or not at
// all; ENOENT means it no longer waits for that request (interrupted).
void WriteReply(int fd, const char* data, size_t len) {
  ssize_t n;
  do {
    n = write(fd, data, len);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != ENOENT && errno != ENODEV) {
    ACCEL_LOG(kWarn, "msg=\"cannot write FUSE reply\"", LogField("error", strerror(errno)));
  }
}

}  // namespace

class FuseServer::Impl {
 public:
  explicit Impl(const Options& options) : options_(options) {}
  ~Impl();

  absl::Status Init();
  absl::StatusOr<proto::ConnParams> Mount(const std::string& mountpoint, Layer layer, Pool pool,
                                          const std::string& fsname);
  absl::Status Adopt(const std::string& mountpoint, UniqueFd fd, const proto::ConnParams& conn,
                     Pool pool);
  absl::Status Serve(const std::string& mountpoint, Layer layer);
  absl::Status Fail(const std::string& mountpoint);
  absl::Status Unmount(const std::string& mountpoint);
  absl::StatusOr<UniqueFd> DupDevice(const std::string& mountpoint) const;
  size_t mount_count() const;
  std::vector<std::string> Mountpoints() const;
  int thread_count() const { return options_.threads + options_.network_threads; }

 private:
  enum class State { kInit, kPending, kServing, kFailed };
  struct MountRec {
    uint64_t id = 0;
    std::string mountpoint;
    std::string dev;  // "major:minor" of our superblock, from mountinfo
    UniqueFd fd;
    Pool pool = Pool::kLocal;
    // Guarded by mu_.
    State state = State::kInit;
    bool armed = false;  // registered in the pool's epoll set
    std::shared_ptr<const ServedLayer> layer;
    proto::ConnParams conn;
    int inflight = 0;         // workers inside this mount
    bool closing = false;     // Unmount/shutdown started: take no more requests
    bool unmounting = false;  // our umount2 is running (the kernel may close it)
    bool dead = false;        // the kernel closed the connection
    bool error_logged = false;
  };
  // What a worker needs of a mount for one request (copied under mu_).
  struct Ticket {
    MountRec* m = nullptr;
    State state = State::kInit;
    std::shared_ptr<const ServedLayer> layer;
    proto::ConnParams conn;
  };
  struct PoolRec {
    UniqueFd epoll;
    std::vector<std::thread> workers;
  };

  void WorkerLoop(Pool pool, int index);
  void Process(const Ticket& t, const char* buf, size_t len, internal::WorkerIo* io,
               proto::ReplyBuf* out);
  bool Acquire(uint64_t id, Ticket* t);
  void Release(MountRec* m);
  void Rearm(MountRec* m);
  // Registers `m` in its pool's epoll set. REQUIRES: mu_ not held.
  absl::Status Arm(MountRec* m);
  MountRec* Find(const std::string& mp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops serving `m`, waits for its in-flight requests, closes its
  // descriptor and forgets it. REQUIRES: admin_mu_.
  void Teardown(MountRec* m);
  absl::Status Register(std::unique_ptr<MountRec> rec, MountRec** out);

  const Options options_;
  UniqueFd stop_fd_;
  size_t recv_size_ = 0;
  size_t max_read_ = 0;  // mount option max_read (0: kernel default)
  size_t splice_min_ = 0;
  PoolRec pools_[2];

  // Lock order: admin_mu_ before mu_. Neither is held across a reply;
  // admin_mu_ is held across mount(2)/umount2(2), mu_ never across a syscall
  // other than the short epoll_ctl in Rearm.
  absl::Mutex admin_mu_;  // serializes Mount, Adopt, Unmount and shutdown
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<MountRec>> mounts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> by_path_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

absl::Status FuseServer::Impl::Init() {
  RaiseFileLimit();
  recv_size_ = ReceiveBufferSize();
  max_read_ = internal::MaxSplicedRead();
  splice_min_ = max_read_ > 0 ? 2 * static_cast<size_t>(getpagesize()) : 0;
  stop_fd_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_.valid()) return ErrnoToStatus(errno, "eventfd");
  const int counts[2] = {options_.threads, options_.network_threads};
  for (int p = 0; p < 2; ++p) {
    PoolRec& pool = pools_[p];
    pool.epoll.Reset(epoll_create1(EPOLL_CLOEXEC));
    if (!pool.epoll.valid()) return ErrnoToStatus(errno, "epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: wakes every worker once written
    ev.data.u64 = kStopToken;
    if (epoll_ctl(pool.epoll.get(), EPOLL_CTL_ADD, stop_fd_.get(), &ev) != 0) {
      return ErrnoToStatus(errno, "epoll_ctl stop fd");
    }
    for (int i = 0; i < counts[p]; ++i) {
      pool.workers.emplace_back([this, p, i] { WorkerLoop(static_cast<Pool>(p), i); });
    }
  }
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
  if (options_.unmount_on_destroy) {
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
  }
  if (stop_fd_.valid()) {
    uint64_t one = 1;
    if (write(stop_fd_.get(), &one, sizeof(one)) != sizeof(one)) {
      ACCEL_LOG(kError, "msg=\"cannot stop FUSE workers\"", LogField("error", strerror(errno)));
    }
  }
  // Workers finish the request they are serving, then exit: nothing read
  // is left unanswered.
  for (PoolRec& pool : pools_) {
    for (std::thread& t : pool.workers) t.join();
  }
  absl::MutexLock l(&mu_);
  mounts_.clear();  // closes the descriptors
  by_path_.clear();
}

bool FuseServer::Impl::Acquire(uint64_t id, Ticket* t) {
  absl::MutexLock l(&mu_);
  auto it = mounts_.find(id);
  if (it == mounts_.end()) return false;
  MountRec* m = it->second.get();
  if (m->closing || m->dead) return false;
  ++m->inflight;
  t->m = m;
  t->state = m->state;
  t->layer = m->layer;
  t->conn = m->conn;
  return true;
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
  if (epoll_ctl(pools_[static_cast<int>(m->pool)].epoll.get(), EPOLL_CTL_MOD, m->fd.get(), &ev) !=
          0 &&
      errno != ENOENT) {
    ACCEL_LOG(kError, "msg=\"cannot re-arm FUSE descriptor\"",
              LogField("mountpoint", m->mountpoint), LogField("error", strerror(errno)));
  }
}

absl::Status FuseServer::Impl::Arm(MountRec* m) {
  {
    absl::MutexLock l(&mu_);
    if (m->armed) return absl::OkStatus();
    m->armed = true;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = m->id;
  if (epoll_ctl(pools_[static_cast<int>(m->pool)].epoll.get(), EPOLL_CTL_ADD, m->fd.get(), &ev) !=
      0) {
    const int err = errno;
    absl::MutexLock l(&mu_);
    m->armed = false;
    return ErrnoToStatus(err, "epoll_ctl add /dev/fuse");
  }
  return absl::OkStatus();
}

void FuseServer::Impl::Process(const Ticket& t, const char* buf, size_t len, internal::WorkerIo* io,
                               proto::ReplyBuf* out) {
  absl::StatusOr<proto::Request> req = proto::ParseRequest(buf, len);
  if (!req.ok()) {
    ACCEL_LOG(kError, "msg=\"malformed FUSE request\"", LogField("mountpoint", t.m->mountpoint),
              LogField("error", req.status().ToString()));
    return;
  }
  const int fd = t.m->fd.get();
  if (req->opcode == FUSE_INIT) {
    out->Start(req->unique, proto::OurMinor());
    if (t.conn.initialized()) {
      out->Error(EPROTO);  // INIT twice on one connection
      WriteReply(fd, out->data(), out->size());
      return;
    }
    absl::StatusOr<proto::InitResult> init = proto::NegotiateInit(*req, proto::InitOptions{});
    if (!init.ok()) {
      ACCEL_LOG(kError, "msg=\"cannot initialise FUSE connection\"",
                LogField("mountpoint", t.m->mountpoint),
                LogField("error", init.status().ToString()));
      out->Error(EPROTO);
      WriteReply(fd, out->data(), out->size());
      return;
    }
    if (init->done) {
      // Recorded before the reply: the first request after it may already
      // be read by another worker.
      absl::MutexLock l(&mu_);
      t.m->conn = init->conn;
      if (t.m->state == State::kInit) t.m->state = State::kServing;
    }
    WriteReply(fd, init->reply.data(), init->reply.size());
    return;
  }
  if (proto::IsNoReplyOp(req->opcode)) return;
  out->Start(req->unique, t.conn.minor);
  if (!t.conn.initialized() || t.state == State::kFailed || t.layer == nullptr) {
    out->Error(t.conn.initialized() ? EIO : EPROTO);
    WriteReply(fd, out->data(), out->size());
    return;
  }
  internal::Outcome o = internal::Handle(*t.layer, *req, out, splice_min_);
  switch (o.kind) {
    case internal::Outcome::kNoReply:
      return;
    case internal::Outcome::kSplice:
      if (internal::SpliceReadReply(io, fd, req->unique, o.fd, o.pos, o.len)) return;
      internal::ReadByCopy(*t.layer, *o.node, o.offset, o.len, out);
      break;
    case internal::Outcome::kReply:
      break;
  }
  WriteReply(fd, out->data(), out->size());
}

void FuseServer::Impl::WorkerLoop(Pool pool, int index) {
  pthread_setname_np(
      pthread_self(),
      absl::StrCat(pool == Pool::kLocal ? "accel-fuse-" : "accel-lazy-", index).c_str());
  const int epfd = pools_[static_cast<int>(pool)].epoll.get();
  std::vector<char> buf(recv_size_);
  proto::ReplyBuf out;
  internal::WorkerIo io;  // this worker's splice pipe, shared by all mounts
  internal::InitWorkerIo(&io);
  while (true) {
    epoll_event ev{};
    int n = epoll_wait(epfd, &ev, 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      ACCEL_LOG(kError, "msg=\"epoll_wait failed, FUSE worker exits\"",
                LogField("error", strerror(errno)));
      break;
    }
    if (n == 0) continue;
    if (ev.data.u64 == kStopToken) break;
    Ticket t;
    if (!Acquire(ev.data.u64, &t)) continue;
    MountRec* m = t.m;
    ssize_t res = read(m->fd.get(), buf.data(), buf.size());
    const int err = res < 0 ? errno : 0;
    if (res > 0) {
      Rearm(m);  // let another worker take this mount's next request now
      Process(t, buf.data(), static_cast<size_t>(res), &io, &out);
    } else if (err == EAGAIN || err == EINTR || err == ENOENT) {
      Rearm(m);
    } else {
      // 0 or ENODEV: the kernel closed the connection (unmounted or aborted).
      absl::MutexLock l(&mu_);
      if (res == 0 || err == ENODEV) {
        m->dead = true;
        if (!m->closing && !m->unmounting) {
          ACCEL_LOG(kWarn, "msg=\"FUSE connection closed by the kernel\"",
                    LogField("mountpoint", m->mountpoint));
        }
      } else {
        if (!m->error_logged) {
          m->error_logged = true;
          ACCEL_LOG(kError, "msg=\"reading FUSE requests failed\"",
                    LogField("mountpoint", m->mountpoint), LogField("error", strerror(err)));
        }
        Rearm(m);
      }
    }
    Release(m);
  }
}

FuseServer::Impl::MountRec* FuseServer::Impl::Find(const std::string& mp) {
  auto it = by_path_.find(mp);
  return it == by_path_.end() ? nullptr : mounts_.at(it->second).get();
}

absl::Status FuseServer::Impl::Register(std::unique_ptr<MountRec> rec, MountRec** out) {
  absl::MutexLock l(&mu_);
  if (by_path_.contains(rec->mountpoint)) {
    return absl::AlreadyExistsError(
        absl::StrCat("a layer is already mounted at ", rec->mountpoint));
  }
  rec->id = next_id_++;
  *out = rec.get();
  by_path_[rec->mountpoint] = rec->id;
  mounts_[rec->id] = std::move(rec);
  return absl::OkStatus();
}

absl::StatusOr<proto::ConnParams> FuseServer::Impl::Mount(const std::string& mountpoint,
                                                          Layer layer, Pool pool,
                                                          const std::string& fsname) {
  if (layer.tree == nullptr || layer.source == nullptr) {
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
  ACCEL_RETURN_IF_ERROR(DetachStaleMounts(mp, absl::Seconds(1)));

  UniqueFd fd(open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK));
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

  auto rec = std::make_unique<MountRec>();
  rec->mountpoint = mp;
  rec->fd = std::move(fd);
  rec->pool = pool;
  rec->state = State::kInit;
  auto served = std::make_shared<ServedLayer>();
  served->tree = std::move(layer.tree);
  served->source = std::move(layer.source);
  served->name = mp;
  rec->layer = std::move(served);
  if (absl::StatusOr<std::vector<MountInfoEntry>> mounts = ReadMountInfo(); mounts.ok()) {
    const MountInfoEntry* top = TopMountAt(*mounts, mp);
    if (top != nullptr && absl::StartsWith(top->fstype, "fuse")) rec->dev = top->dev;
  }
  if (rec->dev.empty()) {
    ACCEL_LOG(kWarn, "msg=\"new FUSE mount not found in mountinfo\"", LogField("mountpoint", mp));
  }
  MountRec* m = nullptr;
  ACCEL_RETURN_IF_ERROR(Register(std::move(rec), &m));
  std::move(undo_mount).Cancel();
  absl::Status armed = Arm(m);
  // Wait until a worker answered INIT, then check that the root answers, so
  // a mount that cannot serve fails here rather than in a container.
  bool initialized = false;
  if (armed.ok()) {
    absl::MutexLock l(&mu_);
    auto ready = [m]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return m->conn.initialized() || m->dead; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), kInitTimeout);
    initialized = m->conn.initialized();
  }
  struct stat st;
  if (!armed.ok() || !initialized || stat(mp.c_str(), &st) != 0) {
    const int err = errno;
    umount2(mp.c_str(), MNT_DETACH);
    Teardown(m);
    if (!armed.ok()) return armed;
    if (!initialized) {
      return absl::UnavailableError(absl::StrCat("new FUSE mount at ", mp, " sent no INIT"));
    }
    return ErrnoToStatus(err, absl::StrCat("new FUSE mount at ", mp, " does not answer"));
  }
  if (!m->dev.empty()) RaiseReadahead(m->dev, mp);
  ACCEL_LOG(kDebug, "msg=\"mounted layer\"", LogField("mountpoint", mp), LogField("fsname", src));
  absl::MutexLock l(&mu_);
  return m->conn;
}

absl::Status FuseServer::Impl::Adopt(const std::string& mountpoint, UniqueFd fd,
                                     const proto::ConnParams& conn, Pool pool) {
  if (!conn.initialized()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot adopt the connection at ", mountpoint, " without its parameters"));
  }
  if (!fd.valid()) return absl::InvalidArgumentError("Adopt needs a descriptor");
  ACCEL_ASSIGN_OR_RETURN(std::string mp, NormalizeMountpoint(mountpoint));
  absl::MutexLock admin(&admin_mu_);
  int fl = fcntl(fd.get(), F_GETFL);
  if (fl < 0 || fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    return ErrnoToStatus(errno, "set O_NONBLOCK on /dev/fuse");
  }
  auto rec = std::make_unique<MountRec>();
  rec->mountpoint = mp;
  rec->fd = std::move(fd);
  rec->pool = pool;
  rec->state = State::kPending;
  rec->conn = conn;
  if (absl::StatusOr<std::vector<MountInfoEntry>> mounts = ReadMountInfo(); mounts.ok()) {
    const MountInfoEntry* top = TopMountAt(*mounts, mp);
    if (top != nullptr && absl::StartsWith(top->fstype, "fuse")) rec->dev = top->dev;
  }
  const int raw = rec->fd.get();
  MountRec* m = nullptr;
  ACCEL_RETURN_IF_ERROR(Register(std::move(rec), &m));
  // Requests the previous server read and never answered are queued again
  // (they then wait like the others until Serve or Fail).
  std::vector<char> resend = proto::NotifyResendMessage();
  if (write(raw, resend.data(), resend.size()) < 0) {
    ACCEL_LOG(kDebug, "msg=\"kernel cannot resend unanswered FUSE requests\"",
              LogField("mountpoint", mp), LogField("error", strerror(errno)));
  }
  ACCEL_LOG(kDebug, "msg=\"adopted FUSE connection\"", LogField("mountpoint", mp),
            LogField("conn", conn.Serialize()));
  return absl::OkStatus();
}

absl::Status FuseServer::Impl::Serve(const std::string& mountpoint, Layer layer) {
  if (layer.tree == nullptr || layer.source == nullptr) {
    return absl::InvalidArgumentError("Serve needs a tree and a file source");
  }
  ACCEL_ASSIGN_OR_RETURN(std::string mp, NormalizeMountpoint(mountpoint));
  auto served = std::make_shared<ServedLayer>();
  served->tree = std::move(layer.tree);
  served->source = std::move(layer.source);
  served->name = mp;
  MountRec* m;
  {
    absl::MutexLock l(&mu_);
    m = Find(mp);
    if (m == nullptr) return absl::NotFoundError(absl::StrCat("nothing is mounted at ", mp));
    m->layer = std::move(served);
    m->state = State::kServing;
  }
  return Arm(m);
}

absl::Status FuseServer::Impl::Fail(const std::string& mountpoint) {
  ACCEL_ASSIGN_OR_RETURN(std::string mp, NormalizeMountpoint(mountpoint));
  MountRec* m;
  {
    absl::MutexLock l(&mu_);
    m = Find(mp);
    if (m == nullptr) return absl::NotFoundError(absl::StrCat("nothing is mounted at ", mp));
    m->layer.reset();
    m->state = State::kFailed;
  }
  return Arm(m);
}

void FuseServer::Impl::Teardown(MountRec* m) {
  bool armed;
  {
    absl::MutexLock l(&mu_);
    m->closing = true;
    armed = m->armed;
  }
  if (armed)
    epoll_ctl(pools_[static_cast<int>(m->pool)].epoll.get(), EPOLL_CTL_DEL, m->fd.get(), nullptr);
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(
      +[](MountRec* r) { return r->inflight == 0; }, m));
  by_path_.erase(m->mountpoint);
  mounts_.erase(m->id);  // closes the descriptor
}

absl::Status FuseServer::Impl::Unmount(const std::string& mountpoint) {
  ACCEL_ASSIGN_OR_RETURN(std::string mp, NormalizeMountpoint(mountpoint));
  absl::MutexLock admin(&admin_mu_);
  MountRec* m = nullptr;
  {
    absl::MutexLock l(&mu_);
    m = Find(mp);
    if (m == nullptr) return absl::OkStatus();
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

absl::StatusOr<UniqueFd> FuseServer::Impl::DupDevice(const std::string& mountpoint) const {
  ACCEL_ASSIGN_OR_RETURN(std::string mp, NormalizeMountpoint(mountpoint));
  absl::MutexLock l(&mu_);
  auto it = by_path_.find(mp);
  if (it == by_path_.end()) return absl::NotFoundError(absl::StrCat("nothing is mounted at ", mp));
  UniqueFd dup(fcntl(mounts_.at(it->second)->fd.get(), F_DUPFD_CLOEXEC, 3));
  if (!dup.valid()) return ErrnoToStatus(errno, "dup /dev/fuse descriptor");
  return dup;
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
  for (int n : {options.threads, options.network_threads}) {
    if (n < 1 || n > kMaxThreads) {
      return absl::InvalidArgumentError(
          absl::StrCat("FUSE threads must be in [1, ", kMaxThreads, "], got ", n));
    }
  }
  auto impl = std::make_unique<Impl>(options);
  ACCEL_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<FuseServer>(new FuseServer(std::move(impl)));
}

FuseServer::FuseServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FuseServer::~FuseServer() = default;

absl::StatusOr<proto::ConnParams> FuseServer::Mount(const std::string& mountpoint, Layer layer,
                                                    Pool pool, const std::string& fsname) {
  return impl_->Mount(mountpoint, std::move(layer), pool, fsname);
}
absl::Status FuseServer::Adopt(const std::string& mountpoint, UniqueFd fd,
                               const proto::ConnParams& conn, Pool pool) {
  return impl_->Adopt(mountpoint, std::move(fd), conn, pool);
}
absl::Status FuseServer::Serve(const std::string& mountpoint, Layer layer) {
  return impl_->Serve(mountpoint, std::move(layer));
}
absl::Status FuseServer::Fail(const std::string& mountpoint) { return impl_->Fail(mountpoint); }
absl::Status FuseServer::Unmount(const std::string& mountpoint) {
  return impl_->Unmount(mountpoint);
}
absl::StatusOr<UniqueFd> FuseServer::DupDevice(const std::string& mountpoint) const {
  return impl_->DupDevice(mountpoint);
}
size_t FuseServer::mount_count() const { return impl_->mount_count(); }
std::vector<std::string> FuseServer::Mountpoints() const { return impl_->Mountpoints(); }
int FuseServer::thread_count() const { return impl_->thread_count(); }

}  // namespace accel::fuse
