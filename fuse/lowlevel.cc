// The libfuse low-level callbacks: thin glue from a request to the LayerTree
// and FileSource, then exactly one reply. Every callback runs its body through
// Serve(), the one place where failures become an errno reply and where no
// exception can escape into libfuse.

#define FUSE_USE_VERSION 312

#include "fuse/lowlevel.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "fuse/splice_reply.h"

namespace accel::fuse::internal {
namespace {

constexpr uint32_t kBlockSize = 4096;

MountContext& Ctx(fuse_req_t req) { return *static_cast<MountContext*>(fuse_req_userdata(req)); }

// Runs `body`, which either sends the reply and returns 0, or returns the
// errno to reply with. Bodies reply as their last step, so an exception
// (allocation failure) always arrives before any reply was sent.
template <typename Body>
void Serve(fuse_req_t req, const char* op, Body&& body) {
  int err;
  try {
    err = body();
  } catch (const std::exception& e) {
    ACCEL_LOG(kError, "msg=\"fuse operation failed\"", LogField("op", op),
              LogField("error", e.what()));
    err = EIO;
  } catch (...) {
    ACCEL_LOG(kError, "msg=\"fuse operation failed\"", LogField("op", op));
    err = EIO;
  }
  if (err != 0) fuse_reply_err(req, err);
}

void FillStat(const Node& n, struct stat* st) {
  *st = {};
  st->st_ino = n.ino;
  st->st_mode = n.mode;
  st->st_nlink = n.nlink;
  st->st_uid = n.uid;
  st->st_gid = n.gid;
  st->st_rdev = n.rdev;
  st->st_size = static_cast<off_t>(n.size);
  st->st_blksize = kBlockSize;
  st->st_blocks = static_cast<blkcnt_t>((n.size + 511) / 512);
  st->st_mtim.tv_sec = n.mtime_sec;
  st->st_mtim.tv_nsec = n.mtime_nsec;
  st->st_atim = st->st_mtim;
  st->st_ctim = st->st_mtim;
}

void FillEntry(const Node& n, fuse_entry_param* e) {
  *e = {};
  e->ino = n.ino;
  e->generation = 1;
  FillStat(n, &e->attr);
  e->attr_timeout = kCacheTimeoutSeconds;
  e->entry_timeout = kCacheTimeoutSeconds;
}

const Node* GetNode(fuse_req_t req, fuse_ino_t ino) { return Ctx(req).tree->Get(ino); }

void Init(void* /*userdata*/, fuse_conn_info* conn) {
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_CACHE_SYMLINKS);
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_PARALLEL_DIROPS);
  // Requests are read into memory (one buffer per worker). Read replies are
  // spliced by splice_reply.h through the worker's own pipe; libfuse's splice
  // (per-thread, per-session pipes that leak when a session ends while its
  // workers live on) stays off, so libfuse never creates a pipe.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  // A layer never changes: never drop cached pages because an mtime "changed".
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  // Always readdirplus (not the kernel's adaptive mode): a walk of a cold
  // tree then costs one request per directory block, not one LOOKUP per name.
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  // The kernel offers its largest readahead and only accepts lowering it, so
  // max_readahead stays as offered. More background requests keep readahead
  // of several files in flight.
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  conn->time_gran = 1;
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Serve(req, "lookup", [&] {
    const LayerTree& tree = *Ctx(req).tree;
    const Node* dir = tree.Get(parent);
    if (dir == nullptr) return ENOENT;
    if (!S_ISDIR(dir->mode)) return ENOTDIR;
    fuse_entry_param e{};
    if (const Node* n = tree.Lookup(parent, name)) {
      FillEntry(*n, &e);
    } else {
      e.ino = 0;  // a negative entry, cached as long as a positive one
      e.entry_timeout = kCacheTimeoutSeconds;
    }
    fuse_reply_entry(req, &e);
    return 0;
  });
}

// Nodes live as long as the mount: nothing to forget.
void Forget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }
void ForgetMulti(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Serve(req, "getattr", [&] {
    const Node* n = GetNode(req, ino);
    if (n == nullptr) return ENOENT;
    struct stat st;
    FillStat(*n, &st);
    fuse_reply_attr(req, &st, kCacheTimeoutSeconds);
    return 0;
  });
}

void ReadLink(fuse_req_t req, fuse_ino_t ino) {
  Serve(req, "readlink", [&] {
    const Node* n = GetNode(req, ino);
    if (n == nullptr) return ENOENT;
    if (!S_ISLNK(n->mode)) return EINVAL;
    fuse_reply_readlink(req, Ctx(req).tree->LinkTarget(*n).data());  // NUL-terminated
    return 0;
  });
}

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Serve(req, "open", [&] {
    const Node* n = GetNode(req, ino);
    if (n == nullptr) return ENOENT;
    if (S_ISDIR(n->mode)) return EISDIR;
    if (!S_ISREG(n->mode)) return EINVAL;
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return EROFS;
    fi->keep_cache = 1;  // contents never change: keep the page cache across opens
    fi->noflush = 1;     // nothing to flush on close
    fuse_reply_open(req, fi);
    return 0;
  });
}

void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Serve(req, "read", [&] {
    MountContext& ctx = Ctx(req);
    const Node* n = ctx.tree->Get(ino);
    if (n == nullptr) return ENOENT;
    if (!S_ISREG(n->mode)) return EISDIR;
    if (off < 0) return EINVAL;
    const uint64_t pos = static_cast<uint64_t>(off);
    if (pos >= n->size) {
      fuse_reply_buf(req, nullptr, 0);
      return 0;
    }
    const size_t len = static_cast<size_t>(std::min<uint64_t>(size, n->size - pos));
    int fd = -1;
    uint64_t fd_offset = 0;
    if (ctx.source->SpliceSource(*n, &fd, &fd_offset) &&
        SpliceReadReply(fd, fd_offset + pos, len)) {
      fuse_reply_none(req);  // answered on /dev/fuse already: only free the request
      return 0;
    }
    thread_local std::vector<char> buf;
    if (buf.size() < len) buf.resize(len);
    absl::StatusOr<size_t> got = ctx.source->ReadAt(*n, pos, buf.data(), len);
    if (!got.ok()) {
      if (!ctx.read_error_logged.exchange(true)) {
        ACCEL_LOG(kError, "msg=\"read failed, replying EIO (logged once per mount)\"",
                  LogField("mountpoint", ctx.mountpoint), " ino=", ino,
                  LogField("error", got.status().ToString()));
      }
      return EIO;
    }
    fuse_reply_buf(req, buf.data(), *got);
    return 0;
  });
}

void Release(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Serve(req, "opendir", [&] {
    const Node* n = GetNode(req, ino);
    if (n == nullptr) return ENOENT;
    if (!S_ISDIR(n->mode)) return ENOTDIR;
    fi->keep_cache = 1;
    fi->cache_readdir = 1;
    fuse_reply_open(req, fi);
    return 0;
  });
}

// Offsets are positions in [".", "..", children...]; an entry's offset is the
// position of the one after it.
void DoReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  Serve(req, plus ? "readdirplus" : "readdir", [&] {
    const LayerTree& tree = *Ctx(req).tree;
    const Node* dir = tree.Get(ino);
    if (dir == nullptr) return ENOENT;
    if (!S_ISDIR(dir->mode)) return ENOTDIR;
    if (off < 0) return EINVAL;
    thread_local std::vector<char> buf;
    if (buf.size() < size) buf.resize(size);
    size_t used = 0;
    const uint64_t total = 2 + uint64_t{dir->child_count};
    for (uint64_t i = static_cast<uint64_t>(off); i < total; ++i) {
      const char* name;
      const Node* n;
      if (i < 2) {
        name = i == 0 ? "." : "..";
        n = tree.Get(i == 0 ? dir->ino : dir->parent);
      } else {
        DirEntry d = tree.Child(*dir, i - 2);
        name = d.name.data();  // NUL-terminated
        n = tree.Get(d.ino);
      }
      const size_t room = size - used;
      const off_t next = static_cast<off_t>(i + 1);
      size_t need;
      if (plus) {
        fuse_entry_param e{};
        if (i < 2) {
          // ino 0: the kernel neither links "." / ".." nor counts a lookup.
          e.attr.st_ino = n->ino;
          e.attr.st_mode = n->mode;
        } else {
          FillEntry(*n, &e);  // counts as a lookup (forget is a no-op anyway)
        }
        need = fuse_add_direntry_plus(req, buf.data() + used, room, name, &e, next);
      } else {
        struct stat st {};
        st.st_ino = n->ino;
        st.st_mode = n->mode;
        need = fuse_add_direntry(req, buf.data() + used, room, name, &st, next);
      }
      if (need > room) break;
      used += need;
    }
    fuse_reply_buf(req, buf.data(), used);
    return 0;
  });
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  DoReadDir(req, ino, size, off, /*plus=*/false);
}

void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  DoReadDir(req, ino, size, off, /*plus=*/true);
}

void ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void StatFs(fuse_req_t req, fuse_ino_t) {
  Serve(req, "statfs", [&] {
    const LayerTree& tree = *Ctx(req).tree;
    struct statvfs s {};
    s.f_bsize = kBlockSize;
    s.f_frsize = kBlockSize;
    s.f_blocks = (tree.total_file_bytes() + kBlockSize - 1) / kBlockSize;
    s.f_files = tree.node_count();
    s.f_namemax = 255;
    fuse_reply_statfs(req, &s);
    return 0;
  });
}

// Replies a value under the getxattr/listxattr size rules: size 0 asks for
// the length, a smaller buffer gets ERANGE.
int ReplyXattrValue(fuse_req_t req, size_t size, const char* data, size_t len) {
  if (size == 0) {
    fuse_reply_xattr(req, len);
    return 0;
  }
  if (size < len) return ERANGE;
  fuse_reply_buf(req, data, len);
  return 0;
}

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Serve(req, "getxattr", [&] {
    const Node* n = GetNode(req, ino);
    if (n == nullptr) return ENOENT;
    absl::string_view value;
    if (!Ctx(req).tree->FindXattr(*n, name, &value)) return ENODATA;
    return ReplyXattrValue(req, size, value.data(), value.size());
  });
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Serve(req, "listxattr", [&] {
    const Node* n = GetNode(req, ino);
    if (n == nullptr) return ENOENT;
    const LayerTree& tree = *Ctx(req).tree;
    std::string names;
    for (size_t i = 0; i < n->xattr_count; ++i) {
      absl::string_view name = tree.GetXattr(*n, i).name;
      names.append(name.data(), name.size());
      names.push_back('\0');
    }
    return ReplyXattrValue(req, size, names.data(), names.size());
  });
}

// Everything that would modify the layer.
void SetAttr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void MkNod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { fuse_reply_err(req, EROFS); }
void MkDir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { fuse_reply_err(req, EROFS); }
void Unlink(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void RmDir(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void SymLink(fuse_req_t req, const char*, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void Rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned int) {
  fuse_reply_err(req, EROFS);
}
void Link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void Write(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void Create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void SetXattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
  fuse_reply_err(req, EROFS);
}
void RemoveXattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void Fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void CopyFileRange(fuse_req_t req, fuse_ino_t, off_t, fuse_file_info*, fuse_ino_t, off_t,
                   fuse_file_info*, size_t, int) {
  fuse_reply_err(req, EROFS);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = Init;
  ops.lookup = Lookup;
  ops.forget = Forget;
  ops.forget_multi = ForgetMulti;
  ops.getattr = GetAttr;
  ops.readlink = ReadLink;
  ops.open = Open;
  ops.read = Read;
  ops.release = Release;
  ops.opendir = OpenDir;
  ops.readdir = ReadDir;
  ops.readdirplus = ReadDirPlus;
  ops.releasedir = ReleaseDir;
  ops.statfs = StatFs;
  ops.getxattr = GetXattr;
  ops.listxattr = ListXattr;
  ops.setattr = SetAttr;
  ops.mknod = MkNod;
  ops.mkdir = MkDir;
  ops.unlink = Unlink;
  ops.rmdir = RmDir;
  ops.symlink = SymLink;
  ops.rename = Rename;
  ops.link = Link;
  ops.write = Write;
  ops.create = Create;
  ops.setxattr = SetXattr;
  ops.removexattr = RemoveXattr;
  ops.fallocate = Fallocate;
  ops.copy_file_range = CopyFileRange;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& LowlevelOps() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace accel::fuse::internal
