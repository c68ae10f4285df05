#include "fuse/protocol.h"

#include <linux/fuse.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace accel::fuse::proto {
namespace {

// Flags this side asks for, each only if the kernel offers it. Deliberately
// absent: AUTO_INVAL_DATA (a layer never changes, so an mtime that "moved"
// must not drop cached pages), READDIRPLUS_AUTO (always readdirplus: a walk
// of a cold tree then costs one request per directory block, not one LOOKUP
// per name), WRITEBACK_CACHE, POSIX_ACL, locks.
constexpr uint32_t kWantedFlags = FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_PARALLEL_DIROPS |
                                  FUSE_CACHE_SYMLINKS | FUSE_MAX_PAGES;

template <typename T>
bool ReadStruct(const Request& req, T* out, size_t min_size = sizeof(T)) {
  if (req.arg_len < min_size) return false;
  *out = T{};
  std::memcpy(out, req.arg, std::min(sizeof(T), req.arg_len));
  return true;
}

absl::Status Short(const Request& req, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(OpName(req.opcode), " request ", req.unique,
                                                 ": argument too short for ", what, " (",
                                                 req.arg_len, " bytes)"));
}

fuse_attr ToWire(const Attr& a) {
  fuse_attr w{};
  w.ino = a.ino;
  w.size = a.size;
  w.blocks = a.blocks;
  w.atime = w.mtime = w.ctime = static_cast<uint64_t>(a.mtime_sec);
  w.atimensec = w.mtimensec = w.ctimensec = a.mtime_nsec;
  w.mode = a.mode;
  w.nlink = a.nlink;
  w.uid = a.uid;
  w.gid = a.gid;
  w.rdev = a.rdev;
  w.blksize = a.blksize;
  return w;
}

size_t EntryOutSize(uint32_t minor) {
  return minor < 9 ? FUSE_COMPAT_ENTRY_OUT_SIZE : sizeof(fuse_entry_out);
}
size_t AttrOutSize(uint32_t minor) {
  return minor < 9 ? FUSE_COMPAT_ATTR_OUT_SIZE : sizeof(fuse_attr_out);
}

}  // namespace

uint32_t OurMinor() { return FUSE_KERNEL_MINOR_VERSION; }

std::string ConnParams::Serialize() const {
  return absl::StrFormat("%u.%u flags=0x%x ra=%u mw=%u mp=%u", major, minor, flags, max_readahead,
                         max_write, max_pages);
}

absl::StatusOr<ConnParams> ConnParams::Parse(absl::string_view text) {
  ConnParams c;
  std::vector<absl::string_view> parts = absl::StrSplit(text, ' ', absl::SkipEmpty());
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("bad FUSE connection parameters \"", text, "\""));
  };
  if (parts.size() != 5) return bad();
  std::pair<absl::string_view, absl::string_view> version = absl::StrSplit(parts[0], '.');
  if (!absl::SimpleAtoi(version.first, &c.major) || !absl::SimpleAtoi(version.second, &c.minor)) {
    return bad();
  }
  struct Field {
    const char* key;
    uint32_t* value;
    bool hex;
  } fields[] = {{"flags=0x", &c.flags, true},
                {"ra=", &c.max_readahead, false},
                {"mw=", &c.max_write, false},
                {"mp=", &c.max_pages, false}};
  for (size_t i = 0; i < 4; ++i) {
    absl::string_view p = parts[i + 1];
    if (!absl::ConsumePrefix(&p, fields[i].key)) return bad();
    bool ok = fields[i].hex ? absl::SimpleHexAtoi(p, fields[i].value)
                            : absl::SimpleAtoi(p, fields[i].value);
    if (!ok) return bad();
  }
  if (c.major != kOurMajor || c.minor < kMinMinor || c.minor > OurMinor()) return bad();
  return c;
}

absl::StatusOr<Request> ParseRequest(const char* buf, size_t len) {
  if (len < sizeof(fuse_in_header)) {
    return absl::InvalidArgumentError(
        absl::StrCat("FUSE request of ", len, " bytes is shorter than its header"));
  }
  fuse_in_header h;
  std::memcpy(&h, buf, sizeof(h));
  if (h.len < sizeof(h) || h.len > len) {
    return absl::InvalidArgumentError(
        absl::StrCat("FUSE request declares ", h.len, " bytes but ", len, " were read"));
  }
  Request r;
  r.opcode = h.opcode;
  r.unique = h.unique;
  r.nodeid = h.nodeid;
  r.uid = h.uid;
  r.gid = h.gid;
  r.pid = h.pid;
  r.arg = buf + sizeof(h);
  r.arg_len = h.len - sizeof(h);
  return r;
}

absl::StatusOr<absl::string_view> NameArg(const Request& req) {
  const void* nul = std::memchr(req.arg, '\0', req.arg_len);
  if (nul == nullptr) return Short(req, "a NUL-terminated name");
  return absl::string_view(req.arg, static_cast<const char*>(nul) - req.arg);
}

absl::StatusOr<ReadArg> ParseReadArg(const Request& req) {
  // fh, offset, size, read_flags: the part every minor has (24 bytes).
  fuse_read_in in;
  if (!ReadStruct(req, &in, offsetof(fuse_read_in, lock_owner))) return Short(req, "fuse_read_in");
  return ReadArg{in.fh, in.offset, in.size};
}

absl::StatusOr<uint32_t> OpenFlagsArg(const Request& req) {
  fuse_open_in in;
  if (!ReadStruct(req, &in, sizeof(in.flags))) return Short(req, "fuse_open_in");
  return in.flags;
}

absl::StatusOr<XattrArg> ParseXattrArg(const Request& req, bool with_name) {
  fuse_getxattr_in in;
  if (!ReadStruct(req, &in)) return Short(req, "fuse_getxattr_in");
  XattrArg out;
  out.size = in.size;
  if (with_name) {
    Request rest = req;
    rest.arg += sizeof(in);
    rest.arg_len -= sizeof(in);
    absl::StatusOr<absl::string_view> name = NameArg(rest);
    if (!name.ok()) return name.status();
    out.name = *name;
  }
  return out;
}

absl::StatusOr<InitResult> NegotiateInit(const Request& req, const InitOptions& options) {
  // major, minor, max_readahead, flags: what every kernel since 7.6 sends.
  fuse_init_in in;
  if (!ReadStruct(req, &in, offsetof(fuse_init_in, flags2))) return Short(req, "fuse_init_in");
  InitResult result;
  fuse_init_out out{};
  out.major = kOurMajor;
  out.minor = OurMinor();
  if (in.major > kOurMajor) {
    // The kernel speaks a newer major: tell it ours; it sends INIT again.
    ReplyBuf r;
    r.Start(req.unique, OurMinor());
    r.Bytes(&out, FUSE_COMPAT_INIT_OUT_SIZE);
    result.reply.assign(r.data(), r.data() + r.size());
    return result;
  }
  if (in.major < kOurMajor || in.minor < kMinMinor) {
    return absl::FailedPreconditionError(
        absl::StrCat("kernel FUSE protocol ", in.major, ".", in.minor,
                     " is older than the oldest served, ", kOurMajor, ".", kMinMinor));
  }
  const uint32_t minor = std::min(in.minor, OurMinor());
  out.minor = minor;
  out.flags = in.flags & kWantedFlags;
  out.max_readahead = std::min(in.max_readahead, options.max_readahead);
  out.max_write = std::max<uint32_t>(options.max_write, 4096);
  out.max_background = options.max_background;
  out.congestion_threshold = options.congestion_threshold;
  out.time_gran = 1;
  if (out.flags & FUSE_MAX_PAGES) out.max_pages = options.max_pages;
  const size_t size = minor < 23 ? FUSE_COMPAT_22_INIT_OUT_SIZE : sizeof(out);
  ReplyBuf r;
  r.Start(req.unique, minor);
  r.Bytes(&out, size);
  result.reply.assign(r.data(), r.data() + r.size());
  result.conn.major = kOurMajor;
  result.conn.minor = minor;
  result.conn.flags = out.flags;
  result.conn.max_readahead = out.max_readahead;
  result.conn.max_write = out.max_write;
  result.conn.max_pages = out.max_pages;
  result.done = true;
  return result;
}

void ReplyBuf::Start(uint64_t unique, uint32_t minor) {
  unique_ = unique;
  minor_ = minor;
  buf_.assign(sizeof(fuse_out_header), 0);
  Finish();
}

void ReplyBuf::Finish() {
  fuse_out_header h{};
  h.len = static_cast<uint32_t>(buf_.size());
  h.unique = unique_;
  int32_t error;
  std::memcpy(&error, buf_.data() + offsetof(fuse_out_header, error), sizeof(error));
  h.error = error;
  std::memcpy(buf_.data(), &h, sizeof(h));
}

void ReplyBuf::Error(int err) {
  buf_.resize(sizeof(fuse_out_header));
  const int32_t e = -err;
  std::memcpy(buf_.data() + offsetof(fuse_out_header, error), &e, sizeof(e));
  Finish();
}

size_t ReplyBuf::body_size() const { return buf_.size() - sizeof(fuse_out_header); }

void ReplyBuf::Bytes(const void* data, size_t len) {
  const size_t at = buf_.size();
  buf_.resize(at + len);
  if (len > 0) std::memcpy(buf_.data() + at, data, len);
  Finish();
}

char* ReplyBuf::Grow(size_t len) {
  const size_t at = buf_.size();
  buf_.resize(at + len);
  Finish();
  return buf_.data() + at;
}

void ReplyBuf::TruncateBody(size_t len) {
  buf_.resize(sizeof(fuse_out_header) + std::min(len, body_size()));
  Finish();
}

void ReplyBuf::Entry(const Attr& attr, uint64_t generation, uint64_t timeout_sec) {
  fuse_entry_out e{};
  e.nodeid = attr.ino;
  e.generation = generation;
  e.entry_valid = timeout_sec;
  e.attr_valid = timeout_sec;
  e.attr = ToWire(attr);
  Bytes(&e, EntryOutSize(minor_));
}

void ReplyBuf::NegativeEntry(uint64_t timeout_sec) {
  // nodeid 0 with a timeout: the kernel caches the absence that long.
  fuse_entry_out e{};
  e.entry_valid = timeout_sec;
  Bytes(&e, EntryOutSize(minor_));
}

void ReplyBuf::AttrOut(const Attr& attr, uint64_t timeout_sec) {
  fuse_attr_out a{};
  a.attr_valid = timeout_sec;
  a.attr = ToWire(attr);
  Bytes(&a, AttrOutSize(minor_));
}

void ReplyBuf::Open(uint64_t fh, uint32_t open_flags) {
  fuse_open_out o{};
  o.fh = fh;
  o.open_flags = open_flags;
  Bytes(&o, sizeof(o));
}

void ReplyBuf::Statfs(uint64_t blocks, uint64_t files, uint32_t bsize, uint32_t namelen) {
  fuse_statfs_out s{};
  s.st.blocks = blocks;
  s.st.files = files;
  s.st.bsize = bsize;
  s.st.frsize = bsize;
  s.st.namelen = namelen;
  Bytes(&s, minor_ < 4 ? FUSE_COMPAT_STATFS_SIZE : sizeof(s));
}

void ReplyBuf::XattrSize(uint32_t size) {
  fuse_getxattr_out o{};
  o.size = size;
  Bytes(&o, sizeof(o));
}

bool ReplyBuf::AddDirent(bool plus, absl::string_view name, uint64_t ino, uint32_t mode,
                         uint64_t next_off, const Attr* attr, uint64_t timeout_sec, size_t limit) {
  const size_t head = plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET;
  const size_t need = FUSE_DIRENT_ALIGN(head + name.size());
  if (body_size() + need > limit) return false;
  const size_t at = buf_.size();
  buf_.resize(at + need, 0);
  char* p = buf_.data() + at;
  if (plus) {
    fuse_entry_out e{};
    if (attr != nullptr) {
      e.nodeid = attr->ino;
      e.generation = 1;
      e.entry_valid = timeout_sec;
      e.attr_valid = timeout_sec;
      e.attr = ToWire(*attr);
    }
    std::memcpy(p, &e, sizeof(e));
    p += sizeof(e);
  }
  fuse_dirent d{};
  d.ino = ino;
  d.off = next_off;
  d.namelen = static_cast<uint32_t>(name.size());
  d.type = (mode & S_IFMT) >> 12;
  std::memcpy(p, &d, FUSE_NAME_OFFSET);
  std::memcpy(p + FUSE_NAME_OFFSET, name.data(), name.size());
  Finish();
  return true;
}

size_t OutHeaderSize() { return sizeof(fuse_out_header); }

void WriteOutHeader(uint64_t unique, size_t body_len, char* out) {
  fuse_out_header h{};
  h.len = static_cast<uint32_t>(sizeof(h) + body_len);
  h.unique = unique;
  std::memcpy(out, &h, sizeof(h));
}

std::vector<char> NotifyResendMessage() {
  fuse_out_header h{};
  h.len = sizeof(h);
  h.error = kNotifyResend;  // notifications carry their code here, unique 0
  std::vector<char> out(sizeof(h));
  std::memcpy(out.data(), &h, sizeof(h));
  return out;
}

size_t ClampRead(uint64_t file_size, uint64_t offset, uint32_t size) {
  if (offset >= file_size) return 0;
  return static_cast<size_t>(std::min<uint64_t>(size, file_size - offset));
}

XattrAnswer XattrRule(uint32_t size, size_t value_len) {
  if (size == 0) return XattrAnswer::kLength;
  if (size < value_len) return XattrAnswer::kRange;
  return XattrAnswer::kValue;
}

std::string XattrNameList(const std::vector<absl::string_view>& names) {
  std::string out;
  for (absl::string_view n : names) {
    out.append(n.data(), n.size());
    out.push_back('\0');
  }
  return out;
}

bool IsModifyingOp(uint32_t opcode) {
  switch (opcode) {
    case FUSE_SETATTR:
    case FUSE_SYMLINK:
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_RENAME:
    case FUSE_RENAME2:
    case FUSE_LINK:
    case FUSE_WRITE:
    case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR:
    case FUSE_CREATE:
    case FUSE_FALLOCATE:
    case FUSE_COPY_FILE_RANGE:
    case FUSE_TMPFILE:
      return true;
    default:
      return false;
  }
}

bool IsNoReplyOp(uint32_t opcode) {
  return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET || opcode == FUSE_INTERRUPT;
}

std::string OpName(uint32_t opcode) {
  switch (opcode) {
    case FUSE_INIT:
      return "INIT";
    case FUSE_DESTROY:
      return "DESTROY";
    case FUSE_LOOKUP:
      return "LOOKUP";
    case FUSE_FORGET:
      return "FORGET";
    case FUSE_BATCH_FORGET:
      return "BATCH_FORGET";
    case FUSE_GETATTR:
      return "GETATTR";
    case FUSE_READLINK:
      return "READLINK";
    case FUSE_OPEN:
      return "OPEN";
    case FUSE_READ:
      return "READ";
    case FUSE_RELEASE:
      return "RELEASE";
    case FUSE_OPENDIR:
      return "OPENDIR";
    case FUSE_READDIR:
      return "READDIR";
    case FUSE_READDIRPLUS:
      return "READDIRPLUS";
    case FUSE_RELEASEDIR:
      return "RELEASEDIR";
    case FUSE_STATFS:
      return "STATFS";
    case FUSE_GETXATTR:
      return "GETXATTR";
    case FUSE_LISTXATTR:
      return "LISTXATTR";
    case FUSE_ACCESS:
      return "ACCESS";
    case FUSE_FLUSH:
      return "FLUSH";
    case FUSE_INTERRUPT:
      return "INTERRUPT";
    default:
      return absl::StrCat("op ", opcode);
  }
}

}  // namespace accel::fuse::proto
