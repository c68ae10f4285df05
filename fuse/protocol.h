#pragma once

// The FUSE kernel protocol, as the public uapi header <linux/fuse.h>
// describes it: parsing a request read from /dev/fuse into its header and
// argument, negotiating INIT, and building reply bytes. Pure: no
// descriptors, no kernel; unit tests feed it byte buffers.
//
// Why not libfuse: libfuse 3.14 refuses every request of a session until it
// has itself processed INIT, and a connection adopted from a previous
// process (see server.h) never sends INIT again. Serving the protocol here
// lets a successor serve such a connection with the parameters negotiated
// before (ConnParams, persisted by the caller).
//
// Protocol versions: the kernel proposes its major.minor in INIT; this side
// answers with the lower minor of the two (kOurMinor is the header's) and
// both then use the structure sizes of that minor. Minors from 7.9 (Linux
// 2.6.26) up are served; replies use the compat sizes the header defines for
// older minors (entry, attr, statfs, init). A kernel with a major above 7 is
// answered with our major alone and sends INIT again; a lower major fails.
//
// Thread-safety: functions are pure; a ReplyBuf belongs to one thread.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accel::fuse::proto {

inline constexpr uint32_t kOurMajor = 7;
uint32_t OurMinor();                      // the uapi header's FUSE_KERNEL_MINOR_VERSION
inline constexpr uint32_t kMinMinor = 9;  // oldest kernel protocol served
// FUSE_NOTIFY_RESEND (protocol 7.40, Linux 6.9): asks the kernel to queue
// again every request that was read but not answered. Defined here because
// the build's header may predate it.
inline constexpr int32_t kNotifyResend = 7;

// What this process and the kernel agreed on in INIT. A successor that
// serves the same connection must use the same minor (structure sizes).
struct ConnParams {
  uint32_t major = 0;  // 0: not initialised
  uint32_t minor = 0;
  uint32_t flags = 0;  // FUSE_* init flags both sides enabled
  uint32_t max_readahead = 0;
  uint32_t max_write = 0;
  uint32_t max_pages = 0;  // 0: the kernel's default (32)

  bool initialized() const { return major != 0; }
  // "7.38 flags=0x... ra=... mw=... mp=..."; Parse reads it back.
  std::string Serialize() const;
  static absl::StatusOr<ConnParams> Parse(absl::string_view text);
  bool operator==(const ConnParams&) const = default;
};

// What this side asks for in INIT (each only if the kernel offers it).
struct InitOptions {
  uint32_t max_readahead = 1 << 20;
  uint32_t max_write = 128 << 10;
  uint16_t max_pages = 256;  // 1 MiB reads where the kernel allows (FUSE_MAX_PAGES)
  uint16_t max_background = 64;
  uint16_t congestion_threshold = 48;
};

// The fixed part of a request.
struct Request {
  uint32_t opcode = 0;
  uint64_t unique = 0;
  uint64_t nodeid = 0;
  uint32_t uid = 0, gid = 0, pid = 0;
  const char* arg = nullptr;  // the bytes after the header (inside the read buffer)
  size_t arg_len = 0;
};

// Parses the header of `len` bytes read from /dev/fuse. InvalidArgument if
// the buffer is shorter than a header or than the length it declares.
absl::StatusOr<Request> ParseRequest(const char* buf, size_t len);

// Typed views of the arguments the served operations need; each fails with
// InvalidArgument when the argument is too short or a name lacks its NUL.
absl::StatusOr<absl::string_view> NameArg(const Request& req);  // LOOKUP
struct ReadArg {
  uint64_t fh = 0;
  uint64_t offset = 0;
  uint32_t size = 0;
};
absl::StatusOr<ReadArg> ParseReadArg(const Request& req);   // READ, READDIR(PLUS)
absl::StatusOr<uint32_t> OpenFlagsArg(const Request& req);  // OPEN, OPENDIR
struct XattrArg {
  uint32_t size = 0;
  absl::string_view name;  // GETXATTR only
};
absl::StatusOr<XattrArg> ParseXattrArg(const Request& req, bool with_name);

// Result of INIT negotiation: the reply to send and, when `done`, the
// agreed parameters. `done` is false when the kernel proposed a major above
// ours: the reply names our major and the kernel sends INIT again.
struct InitResult {
  std::vector<char> reply;
  ConnParams conn;
  bool done = false;
};
// EPROTO-worthy proposals (major below 7, minor below kMinMinor) are
// returned as FailedPrecondition; the caller replies the error.
absl::StatusOr<InitResult> NegotiateInit(const Request& req, const InitOptions& options);

// Attributes of one inode as the protocol carries them.
struct Attr {
  uint64_t ino = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0, gid = 0;
  uint32_t rdev = 0;  // the kernel's encoding (new_encode_dev)
  uint32_t blksize = 4096;
};

// Builds reply messages: header first, then the body; Finish() fixes the
// length. Reused per request (no allocation once grown).
class ReplyBuf {
 public:
  // Starts a reply to `unique` under connection minor `minor`.
  void Start(uint64_t unique, uint32_t minor);
  // An error reply (`err` is a positive errno); replaces any body.
  void Error(int err);
  // Bodies. Each appends in the wire layout of the connection's minor.
  void Entry(const Attr& attr, uint64_t generation, uint64_t timeout_sec);
  void NegativeEntry(uint64_t timeout_sec);
  void AttrOut(const Attr& attr, uint64_t timeout_sec);
  void Open(uint64_t fh, uint32_t open_flags);
  void Statfs(uint64_t blocks, uint64_t files, uint32_t bsize, uint32_t namelen);
  void XattrSize(uint32_t size);
  void Bytes(const void* data, size_t len);
  // Directory entries for READDIR (plus = false) or READDIRPLUS: appends
  // one entry if it fits within `limit` body bytes and returns true, else
  // returns false and appends nothing. `next_off` is the offset of the entry
  // after this one. For READDIRPLUS, `attr` == nullptr sends a nodeid-0
  // entry (the kernel neither looks it up nor counts a reference).
  bool AddDirent(bool plus, absl::string_view name, uint64_t ino, uint32_t mode, uint64_t next_off,
                 const Attr* attr, uint64_t timeout_sec, size_t limit);
  // Raw space for a body of `len` bytes (e.g. a read), returned for filling.
  char* Grow(size_t len);
  // Drops body bytes past `len` (after a short read into Grow's space).
  void TruncateBody(size_t len);

  // The finished message.
  const char* data() const { return buf_.data(); }
  size_t size() const { return buf_.size(); }
  size_t body_size() const;
  uint64_t unique() const { return unique_; }
  uint32_t proto_minor() const { return minor_; }

 private:
  void Finish();
  std::vector<char> buf_;
  uint64_t unique_ = 0;
  uint32_t minor_ = 0;
};

// Bytes of reply header the kernel expects before a READ's data.
size_t OutHeaderSize();
// Writes a reply header for `unique` with `body_len` bytes of data following
// into `out` (OutHeaderSize() bytes).
void WriteOutHeader(uint64_t unique, size_t body_len, char* out);
// The 16-byte notification asking the kernel to resend unanswered requests.
std::vector<char> NotifyResendMessage();

// Pure rules shared by the operations (unit-tested without a mount).

// How many bytes a READ of `size` at `offset` returns from a file of
// `file_size` bytes: 0 at or past the end.
size_t ClampRead(uint64_t file_size, uint64_t offset, uint32_t size);

// The getxattr/listxattr size rule: `size` 0 asks for the value's length
// (kLength), a smaller buffer than the value is ERANGE (kRange), otherwise
// the value is sent (kValue).
enum class XattrAnswer { kLength, kRange, kValue };
XattrAnswer XattrRule(uint32_t size, size_t value_len);

// The name list listxattr returns: each name followed by a NUL.
std::string XattrNameList(const std::vector<absl::string_view>& names);

// Whether an opcode modifies the file system (answered EROFS).
bool IsModifyingOp(uint32_t opcode);
// Whether the kernel expects no reply to this opcode (FORGET, BATCH_FORGET,
// INTERRUPT is answered by answering the interrupted request).
bool IsNoReplyOp(uint32_t opcode);
// A name for logs ("LOOKUP", "READ", "op 4242").
std::string OpName(uint32_t opcode);

}  // namespace accel::fuse::proto
