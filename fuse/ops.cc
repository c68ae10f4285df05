#include "fuse/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace accel::fuse::internal {
namespace {

using proto::ReplyBuf;
using proto::Request;

constexpr uint32_t kBlockSize = 4096;

// The kernel's 32-bit device encoding (new_encode_dev).
uint32_t EncodeDev(uint64_t rdev) {
  const uint32_t maj = major(rdev), min = minor(rdev);
  return (min & 0xff) | (maj << 8) | ((min & ~0xffu) << 12);
}

int Lookup(const ServedLayer& l, const Request& req, ReplyBuf* out) {
  absl::StatusOr<absl::string_view> name = proto::NameArg(req);
  if (!name.ok()) return EINVAL;
  const Node* dir = l.tree->Get(req.nodeid);
  if (dir == nullptr) return ENOENT;
  if (!S_ISDIR(dir->mode)) return ENOTDIR;
  if (const Node* n = l.tree->Lookup(req.nodeid, *name)) {
    out->Entry(AttrOf(*n), 1, kCacheTimeoutSeconds);
  } else {
    out->NegativeEntry(kCacheTimeoutSeconds);  // cached as long as a positive one
  }
  return 0;
}

int GetAttr(const ServedLayer& l, const Request& req, ReplyBuf* out) {
  const Node* n = l.tree->Get(req.nodeid);
  if (n == nullptr) return ENOENT;
  out->AttrOut(AttrOf(*n), kCacheTimeoutSeconds);
  return 0;
}

int ReadLink(const ServedLayer& l, const Request& req, ReplyBuf* out) {
  const Node* n = l.tree->Get(req.nodeid);
  if (n == nullptr) return ENOENT;
  if (!S_ISLNK(n->mode)) return EINVAL;
  absl::string_view target = l.tree->LinkTarget(*n);
  out->Bytes(target.data(), target.size());
  return 0;
}

int Open(const ServedLayer& l, const Request& req, ReplyBuf* out, bool dir) {
  absl::StatusOr<uint32_t> flags = proto::OpenFlagsArg(req);
  if (!flags.ok()) return EINVAL;
  const Node* n = l.tree->Get(req.nodeid);
  if (n == nullptr) return ENOENT;
  if (dir) {
    if (!S_ISDIR(n->mode)) return ENOTDIR;
    out->Open(0, FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR);
    return 0;
  }
  if (S_ISDIR(n->mode)) return EISDIR;
  if (!S_ISREG(n->mode)) return EINVAL;
  if ((*flags & O_ACCMODE) != O_RDONLY || (*flags & O_TRUNC)) return EROFS;
  // Contents never change: keep the page cache across opens; nothing to
  // flush on close. No file handle: a read names its inode, which means the
  // same in a successor process (fh 0 is valid after a restart too).
  uint32_t open_flags = FOPEN_KEEP_CACHE;
  if (out->proto_minor() >= 35) open_flags |= FOPEN_NOFLUSH;
  out->Open(0, open_flags);
  return 0;
}

// Offsets are positions in [".", "..", children...]; an entry's offset is
// the position of the one after it.
int ReadDir(const ServedLayer& l, const Request& req, ReplyBuf* out, bool plus) {
  absl::StatusOr<proto::ReadArg> arg = proto::ParseReadArg(req);
  if (!arg.ok()) return EINVAL;
  const LayerTree& tree = *l.tree;
  const Node* dir = tree.Get(req.nodeid);
  if (dir == nullptr) return ENOENT;
  if (!S_ISDIR(dir->mode)) return ENOTDIR;
  const uint64_t total = 2 + uint64_t{dir->child_count};
  for (uint64_t i = arg->offset; i < total; ++i) {
    absl::string_view name;
    const Node* n;
    if (i < 2) {
      name = i == 0 ? "." : "..";
      n = tree.Get(i == 0 ? dir->ino : dir->parent);
    } else {
      DirEntry d = tree.Child(*dir, i - 2);
      name = d.name;
      n = tree.Get(d.ino);
    }
    if (n == nullptr) return EIO;
    proto::Attr attr;
    // "." and ".." go without attributes: the kernel neither links them
    // nor counts a lookup.
    if (plus && i >= 2) attr = AttrOf(*n);
    if (!out->AddDirent(plus, name, n->ino, n->mode, i + 1, plus && i >= 2 ? &attr : nullptr,
                        kCacheTimeoutSeconds, arg->size)) {
      break;
    }
  }
  return 0;
}

int StatFs(const ServedLayer& l, ReplyBuf* out) {
  out->Statfs((l.tree->total_file_bytes() + kBlockSize - 1) / kBlockSize, l.tree->node_count(),
              kBlockSize, 255);
  return 0;
}

int ReplyXattr(uint32_t size, absl::string_view value, ReplyBuf* out) {
  switch (proto::XattrRule(size, value.size())) {
    case proto::XattrAnswer::kLength:
      out->XattrSize(static_cast<uint32_t>(value.size()));
      return 0;
    case proto::XattrAnswer::kRange:
      return ERANGE;
    case proto::XattrAnswer::kValue:
      out->Bytes(value.data(), value.size());
      return 0;
  }
  return EIO;
}

int GetXattr(const ServedLayer& l, const Request& req, ReplyBuf* out) {
  absl::StatusOr<proto::XattrArg> arg = proto::ParseXattrArg(req, true);
  if (!arg.ok()) return EINVAL;
  const Node* n = l.tree->Get(req.nodeid);
  if (n == nullptr) return ENOENT;
  absl::string_view value;
  if (!l.tree->FindXattr(*n, arg->name, &value)) return ENODATA;
  return ReplyXattr(arg->size, value, out);
}

int ListXattr(const ServedLayer& l, const Request& req, ReplyBuf* out) {
  absl::StatusOr<proto::XattrArg> arg = proto::ParseXattrArg(req, false);
  if (!arg.ok()) return EINVAL;
  const Node* n = l.tree->Get(req.nodeid);
  if (n == nullptr) return ENOENT;
  std::vector<absl::string_view> names;
  for (size_t i = 0; i < n->xattr_count; ++i) names.push_back(l.tree->GetXattr(*n, i).name);
  return ReplyXattr(arg->size, proto::XattrNameList(names), out);
}

Outcome Read(const ServedLayer& l, const Request& req, ReplyBuf* out, size_t splice_min) {
  Outcome o;
  absl::StatusOr<proto::ReadArg> arg = proto::ParseReadArg(req);
  const Node* n = arg.ok() ? l.tree->Get(req.nodeid) : nullptr;
  int err = !arg.ok() ? EINVAL : n == nullptr ? ENOENT : !S_ISREG(n->mode) ? EISDIR : 0;
  if (err != 0) {
    out->Error(err);
    return o;
  }
  const size_t len = proto::ClampRead(n->size, arg->offset, arg->size);
  if (len == 0) return o;  // at or past the end: an empty reply
  int fd = -1;
  uint64_t fd_offset = 0;
  if (splice_min > 0 && len >= splice_min && l.source->SpliceSource(*n, &fd, &fd_offset)) {
    o.kind = Outcome::kSplice;
    o.fd = fd;
    o.pos = fd_offset + arg->offset;
    o.len = len;
    o.node = n;
    o.offset = arg->offset;
    return o;
  }
  ReadByCopy(l, *n, arg->offset, len, out);
  return o;
}

}  // namespace

proto::Attr AttrOf(const Node& n) {
  proto::Attr a;
  a.ino = n.ino;
  a.size = n.size;
  a.blocks = (n.size + 511) / 512;
  a.mtime_sec = n.mtime_sec;
  a.mtime_nsec = n.mtime_nsec;
  a.mode = n.mode;
  a.nlink = n.nlink;
  a.uid = n.uid;
  a.gid = n.gid;
  a.rdev = EncodeDev(n.rdev);
  a.blksize = kBlockSize;
  return a;
}

void ReadByCopy(const ServedLayer& l, const Node& node, uint64_t offset, size_t len,
                ReplyBuf* out) {
  out->TruncateBody(0);
  char* buf = out->Grow(len);
  absl::StatusOr<size_t> got = l.source->ReadAt(node, offset, buf, len);
  if (!got.ok()) {
    if (!l.read_error_logged.exchange(true)) {
      ACCEL_LOG(kError, "msg=\"read failed, replying EIO (logged once per mount)\"",
                LogField("mountpoint", l.name), " ino=", node.ino,
                LogField("error", got.status().ToString()));
    }
    out->Error(EIO);
    return;
  }
  out->TruncateBody(*got);
}

Outcome Handle(const ServedLayer& l, const Request& req, ReplyBuf* out, size_t splice_min) {
  Outcome o;
  if (proto::IsNoReplyOp(req.opcode)) {
    // Nodes live as long as the mount: nothing to forget. An interrupted
    // request is simply answered when done (the kernel drops late answers).
    o.kind = Outcome::kNoReply;
    return o;
  }
  int err = 0;
  try {
    switch (req.opcode) {
      case FUSE_LOOKUP:
        err = Lookup(l, req, out);
        break;
      case FUSE_GETATTR:
        err = GetAttr(l, req, out);
        break;
      case FUSE_READLINK:
        err = ReadLink(l, req, out);
        break;
      case FUSE_OPEN:
        err = Open(l, req, out, false);
        break;
      case FUSE_OPENDIR:
        err = Open(l, req, out, true);
        break;
      case FUSE_READ:
        return Read(l, req, out, splice_min);
      case FUSE_READDIR:
        err = ReadDir(l, req, out, false);
        break;
      case FUSE_READDIRPLUS:
        err = ReadDir(l, req, out, true);
        break;
      case FUSE_STATFS:
        err = StatFs(l, out);
        break;
      case FUSE_GETXATTR:
        err = GetXattr(l, req, out);
        break;
      case FUSE_LISTXATTR:
        err = ListXattr(l, req, out);
        break;
      case FUSE_RELEASE:
      case FUSE_RELEASEDIR:
      case FUSE_FLUSH:
      case FUSE_ACCESS:  // default_permissions: the kernel checks modes itself
      case FUSE_DESTROY:
        break;
      default:
        err = proto::IsModifyingOp(req.opcode) ? EROFS : ENOSYS;
        break;
    }
  } catch (const std::exception& e) {
    ACCEL_LOG(kError, "msg=\"fuse operation failed\"", LogField("op", proto::OpName(req.opcode)),
              LogField("error", e.what()));
    err = EIO;
  }
  if (err != 0) out->Error(err);
  return o;
}

}  // namespace accel::fuse::internal
