// Build: tar in, eStargz out.
//
//   input --> libarchive reader --(entries)--> Emitter --> libarchive pax writer
//                                                 |            | tar bytes
//                                                 v            v
//                                              TOC JSON    BlobOut: gzip members --> sink
//                                                          (diff id over tar bytes,
//                                                           blob digest over output)
//
// The Emitter decides where gzip members begin: before each chunk of file
// data, before the TOC. libarchive's writer is unblocked (bytes_per_block
// 0), so every byte it produces reaches BlobOut before the call returns and
// the member boundaries fall exactly where the Emitter puts them.

#include "estargz/builder.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <clocale>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/errno_status.h"
#include "common/layer_path.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"
#include "estargz/codec.h"
#include "estargz/footer.h"
#include "estargz/toc.h"

namespace accel::estargz {
namespace {

constexpr size_t kIoBlock = 1 << 20;
constexpr uint64_t kMaxChunkSize = 1ull << 30;
constexpr char kLandmarkByte = 0x0f;

using DataFn = std::function<absl::StatusOr<size_t>(char*, size_t)>;

bool IsFormatName(absl::string_view path) {
  return path == kTocName || path == kPrefetchLandmark || path == kNoPrefetchLandmark;
}

// ---------------------------------------------------------------------------
// Output: gzip members into a buffered sink, with both digests.
class BlobOut {
 public:
  BlobOut(const BlobSinkFn& sink, int level) : sink_(sink), gzip_(level) {}

  absl::Status Init() {
    buf_.reserve(kIoBlock);
    return gzip_.Init();
  }

  // Blob bytes produced so far (flushed or not).
  uint64_t offset() const { return blob_size_; }
  uint64_t uncompressed_size() const { return uncompressed_size_; }

  // Tar bytes into the current member; starts one if none is open.
  absl::Status Write(absl::string_view data) {
    if (data.empty()) return absl::OkStatus();
    if (!gzip_.in_member()) gzip_.Start();
    diff_hash_.Update(data);
    uncompressed_size_ += data.size();
    return gzip_.Write(data, emit_);
  }

  // Ends the current member, if any: the next Write starts a new one at offset().
  absl::Status EndMember() {
    if (!gzip_.in_member()) return absl::OkStatus();
    return gzip_.Finish(emit_);
  }

  // Bytes written to the blob as they are (the footer).
  absl::Status WriteRaw(absl::string_view bytes) { return Emit(bytes); }

  absl::Status Flush() {
    if (buf_.empty()) return absl::OkStatus();
    absl::Status s = sink_(buf_);
    buf_.clear();
    return s;
  }

  std::string blob_digest() const { return blob_hash_.Digest(); }
  std::string diff_id() const { return diff_hash_.Digest(); }

 private:
  absl::Status Emit(absl::string_view bytes) {
    blob_hash_.Update(bytes);
    blob_size_ += bytes.size();
    buf_.append(bytes.data(), bytes.size());
    if (buf_.size() >= kIoBlock) return Flush();
    return absl::OkStatus();
  }

  const BlobSinkFn& sink_;
  internal::GzipMemberWriter gzip_;
  std::function<absl::Status(absl::string_view)> emit_ = [this](absl::string_view b) {
    return Emit(b);
  };
  std::string buf_;
  Sha256 blob_hash_;
  Sha256 diff_hash_;
  uint64_t blob_size_ = 0;
  uint64_t uncompressed_size_ = 0;
};

// ---------------------------------------------------------------------------
// libarchive's pax writer feeding BlobOut, unblocked.
class TarOut {
 public:
  explicit TarOut(BlobOut& out) : out_(out) {}
  ~TarOut() {
    if (a_ != nullptr) {
      // Freeing closes the archive; whatever it still writes is not ours.
      discard_ = true;
      archive_write_free(a_);
    }
  }
  TarOut(const TarOut&) = delete;
  TarOut& operator=(const TarOut&) = delete;

  absl::Status Open() {
    a_ = archive_write_new();
    if (a_ == nullptr) return absl::InternalError("archive_write_new failed");
    if (archive_write_set_format_pax(a_) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(a_, 0) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a_, 1) != ARCHIVE_OK) {
      return Error("configure tar writer");
    }
    if (archive_write_open(a_, this, nullptr, &TarOut::OnWrite, nullptr) != ARCHIVE_OK) {
      return Error("open tar writer");
    }
    return absl::OkStatus();
  }

  absl::Status WriteHeader(struct archive_entry* ae, absl::string_view path) {
    int rc = archive_write_header(a_, ae);
    if (rc < ARCHIVE_WARN) return Error(absl::StrCat("write tar header of \"", path, "\""));
    return absl::OkStatus();
  }

  absl::Status WriteData(const char* p, size_t n) {
    while (n > 0) {
      la_ssize_t w = archive_write_data(a_, p, n);
      if (w <= 0) return Error("write tar data");
      p += w;
      n -= static_cast<size_t>(w);
    }
    return absl::OkStatus();
  }

  // Writes the padding of the entry written last.
  absl::Status FinishEntry() {
    if (archive_write_finish_entry(a_) < ARCHIVE_WARN) return Error("finish tar entry");
    return absl::OkStatus();
  }

  // Writes the end-of-archive marker.
  absl::Status Close() {
    int rc = archive_write_close(a_);
    if (rc < ARCHIVE_WARN) return Error("close tar writer");
    return absl::OkStatus();
  }

 private:
  static la_ssize_t OnWrite(struct archive* a, void* opaque, const void* buf, size_t n) {
    auto* self = static_cast<TarOut*>(opaque);
    if (self->discard_) return static_cast<la_ssize_t>(n);
    absl::Status s = self->out_.Write(absl::string_view(static_cast<const char*>(buf), n));
    if (!s.ok()) {
      self->error_ = s;
      archive_set_error(a, EIO, "%s", std::string(s.message()).c_str());
      return -1;
    }
    return static_cast<la_ssize_t>(n);
  }

  absl::Status Error(absl::string_view what) {
    if (!error_.ok()) return error_;
    const char* msg = a_ ? archive_error_string(a_) : nullptr;
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", msg ? msg : "libarchive error"));
  }

  BlobOut& out_;
  struct archive* a_ = nullptr;
  bool discard_ = false;
  absl::Status error_;
};

// ---------------------------------------------------------------------------
// TOC JSON, written as entries are emitted.
class TocJson {
 public:
  TocJson() { json_ = "{\"version\":1,\"entries\":["; }

  // Appends one entry object (built with Object).
  void Append(const std::string& object) {
    if (count_++ > 0) json_.push_back(',');
    json_.append(object);
  }
  std::string Finish() {
    json_.append("]}");
    return std::move(json_);
  }
  uint64_t size() const { return json_.size(); }
  uint64_t count() const { return count_; }

  // One JSON object, key by key.
  class Object {
   public:
    Object() : s_("{") {}
    Object& Str(absl::string_view key, absl::string_view value) {
      Key(key);
      // Replaces invalid UTF-8 (as Go's encoder does) so the TOC stays JSON.
      s_.append(nlohmann::json(std::string(value))
                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      return *this;
    }
    Object& Int(absl::string_view key, int64_t value) {
      Key(key);
      absl::StrAppend(&s_, value);
      return *this;
    }
    Object& Xattrs(const std::map<std::string, std::string>& xattrs) {
      if (xattrs.empty()) return *this;
      Key("xattrs");
      s_.push_back('{');
      bool first = true;
      for (const auto& [name, value] : xattrs) {
        if (!first) s_.push_back(',');
        first = false;
        s_.append(
            nlohmann::json(name).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        s_.push_back(':');
        s_.append(absl::StrCat("\"", absl::Base64Escape(value), "\""));
      }
      s_.push_back('}');
      return *this;
    }
    std::string Done() {
      s_.push_back('}');
      return std::move(s_);
    }

   private:
    void Key(absl::string_view key) {
      if (s_.size() > 1) s_.push_back(',');
      absl::StrAppend(&s_, "\"", key, "\":");
    }
    std::string s_;
  };

 private:
  std::string json_;
  uint64_t count_ = 0;
};

std::string FormatModtime(int64_t sec, long nsec) {
  const absl::Time t = absl::FromUnixSeconds(sec) + absl::Nanoseconds(nsec);
  return absl::FormatTime(nsec != 0 ? "%Y-%m-%dT%H:%M:%E*SZ" : "%Y-%m-%dT%H:%M:%SZ", t,
                          absl::UTCTimeZone());
}

// ---------------------------------------------------------------------------
// Writes entries: tar header and data into the blob, TOC entries into the JSON.
class Emitter {
 public:
  Emitter(BlobOut& out, TarOut& tar, TocJson& toc, uint64_t chunk_size)
      : out_(out), tar_(tar), toc_(toc), chunk_size_(chunk_size), buf_(kIoBlock) {}

  // `path` is the cleaned name; `data` yields a regular file's bytes.
  absl::Status Emit(struct archive_entry* ae, const std::string& path, const DataFn& data) {
    const std::string quoted = absl::StrCat("tar entry \"", path.substr(0, 200), "\"");
    TocJson::Object obj;
    obj.Str("name", path.empty() ? "./" : path);
    bool regular = false;
    if (const char* hl = archive_entry_hardlink(ae); hl != nullptr) {
      ACCEL_ASSIGN_OR_RETURN(std::string target,
                             CleanLayerPath(hl, absl::StrCat("hard link target of ", quoted)));
      obj.Str("type", "hardlink").Str("linkName", target);
      archive_entry_set_size(ae, 0);
    } else {
      switch (archive_entry_filetype(ae)) {
        case AE_IFREG:
          obj.Str("type", "reg");
          regular = true;
          break;
        case AE_IFDIR:
          obj.Str("type", "dir");
          break;
        case AE_IFLNK: {
          const char* target = archive_entry_symlink(ae);
          obj.Str("type", "symlink").Str("linkName", target ? target : "");
          break;
        }
        case AE_IFCHR:
        case AE_IFBLK:
          obj.Str("type", archive_entry_filetype(ae) == AE_IFCHR ? "char" : "block");
          break;
        case AE_IFIFO:
          obj.Str("type", "fifo");
          break;
        default:
          return absl::InvalidArgumentError(
              absl::StrCat(quoted, " has an unsupported type (", archive_entry_filetype(ae), ")"));
      }
      if (!regular) archive_entry_set_size(ae, 0);
    }
    const int64_t declared = archive_entry_size(ae);
    if (declared < 0 || static_cast<uint64_t>(declared) > kMaxFileSize) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has an unsupported size"));
    }
    const uint64_t size = static_cast<uint64_t>(declared);
    if (regular && size > 0) obj.Int("size", static_cast<int64_t>(size));
    if (archive_entry_mtime_is_set(ae)) {
      const int64_t sec = archive_entry_mtime(ae);
      long nsec = archive_entry_mtime_nsec(ae);
      if (nsec < 0 || nsec >= 1'000'000'000) nsec = 0;
      if (sec != 0 || nsec != 0) obj.Str("modtime", FormatModtime(sec, nsec));
    }
    const uint32_t mode = archive_entry_perm(ae) & 07777;
    if (mode != 0) obj.Int("mode", mode);
    const int64_t uid = archive_entry_uid(ae);
    const int64_t gid = archive_entry_gid(ae);
    if (uid < 0 || uid > 0xffffffffLL || gid < 0 || gid > 0xffffffffLL) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has an out-of-range uid or gid"));
    }
    if (uid != 0) obj.Int("uid", uid);
    if (gid != 0) obj.Int("gid", gid);
    // Names only when they change for an id, as the reference writer does.
    if (const char* u = archive_entry_uname(ae); u != nullptr && *u != '\0') {
      std::string& last = unames_[uid];
      if (last != u) obj.Str("userName", u);
      last = u;
    }
    if (const char* g = archive_entry_gname(ae); g != nullptr && *g != '\0') {
      std::string& last = gnames_[gid];
      if (last != g) obj.Str("groupName", g);
      last = g;
    }
    const unsigned ftype = archive_entry_filetype(ae);
    if (archive_entry_hardlink(ae) == nullptr && (ftype == AE_IFCHR || ftype == AE_IFBLK)) {
      const int64_t major = archive_entry_rdevmajor(ae);
      const int64_t minor = archive_entry_rdevminor(ae);
      if (major != 0) obj.Int("devMajor", major);
      if (minor != 0) obj.Int("devMinor", minor);
    }
    std::map<std::string, std::string> xattrs;
    archive_entry_xattr_reset(ae);
    const char* xname = nullptr;
    const void* xvalue = nullptr;
    size_t xsize = 0;
    while (archive_entry_xattr_next(ae, &xname, &xvalue, &xsize) == ARCHIVE_OK) {
      if (xname == nullptr) continue;
      xattrs[xname] = std::string(static_cast<const char*>(xvalue), xsize);
    }
    obj.Xattrs(xattrs);
    // Holes were read as zeros; the copy is written dense.
    archive_entry_sparse_clear(ae);

    ACCEL_RETURN_IF_ERROR(tar_.WriteHeader(ae, path));
    if (!regular) {
      toc_.Append(obj.Done());
      return absl::OkStatus();
    }
    Sha256 file_hash;
    std::vector<std::string> chunk_objects;
    uint64_t written = 0;
    while (written < size) {
      const uint64_t n = std::min(chunk_size_, size - written);
      ACCEL_RETURN_IF_ERROR(out_.EndMember());
      const uint64_t offset = out_.offset();
      Sha256 chunk_hash;
      uint64_t left = n;
      while (left > 0) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf_.size()));
        ACCEL_ASSIGN_OR_RETURN(size_t got, data(buf_.data(), want));
        if (got == 0) {
          return absl::DataLossError(absl::StrCat(quoted, ": data ends at ", written + (n - left),
                                                  " of ", size, " bytes"));
        }
        ACCEL_RETURN_IF_ERROR(tar_.WriteData(buf_.data(), got));
        chunk_hash.Update(buf_.data(), got);
        file_hash.Update(buf_.data(), got);
        left -= got;
      }
      const bool last = written + n == size;
      if (written == 0) {
        obj.Int("offset", static_cast<int64_t>(offset));
        if (!last) obj.Int("chunkSize", static_cast<int64_t>(n));
        obj.Str("chunkDigest", chunk_hash.Digest());
      } else {
        TocJson::Object c;
        c.Str("name", path).Str("type", "chunk").Int("offset", static_cast<int64_t>(offset));
        c.Int("chunkOffset", static_cast<int64_t>(written));
        if (!last) c.Int("chunkSize", static_cast<int64_t>(n));
        c.Str("chunkDigest", chunk_hash.Digest());
        chunk_objects.push_back(c.Done());
      }
      written += n;
    }
    obj.Str("digest", file_hash.Digest());
    toc_.Append(obj.Done());
    for (const std::string& c : chunk_objects) toc_.Append(c);
    return absl::OkStatus();
  }

  // A landmark: a regular file holding the single byte 0x0f.
  absl::Status EmitLandmark(const char* name) {
    std::unique_ptr<struct archive_entry, void (*)(struct archive_entry*)> ae(archive_entry_new(),
                                                                              archive_entry_free);
    archive_entry_set_pathname(ae.get(), name);
    archive_entry_set_filetype(ae.get(), AE_IFREG);
    archive_entry_set_perm(ae.get(), 0644);
    archive_entry_set_size(ae.get(), 1);
    bool sent = false;
    return Emit(ae.get(), name, [&sent](char* buf, size_t len) -> absl::StatusOr<size_t> {
      if (sent || len == 0) return size_t{0};
      buf[0] = kLandmarkByte;
      sent = true;
      return size_t{1};
    });
  }

 private:
  BlobOut& out_;
  TarOut& tar_;
  TocJson& toc_;
  const uint64_t chunk_size_;
  std::vector<char> buf_;
  absl::flat_hash_map<int64_t, std::string> unames_;
  absl::flat_hash_map<int64_t, std::string> gnames_;
};

// ---------------------------------------------------------------------------
// Input: libarchive's tar reader over a pull callback.
class TarIn {
 public:
  using Pull = std::function<absl::StatusOr<size_t>(char*, size_t)>;
  // `block`: bytes asked of `pull` at a time.
  explicit TarIn(Pull pull, size_t block = kIoBlock) : pull_(std::move(pull)), buf_(block) {}
  ~TarIn() {
    if (a_ != nullptr) archive_read_free(a_);
  }
  TarIn(const TarIn&) = delete;
  TarIn& operator=(const TarIn&) = delete;

  absl::Status Open() {
    a_ = archive_read_new();
    if (a_ == nullptr) return absl::InternalError("archive_read_new failed");
    archive_read_support_format_tar(a_);
    if (archive_read_open(a_, this, nullptr, &TarIn::OnRead, nullptr) != ARCHIVE_OK) {
      return Error("input is not a tar stream");
    }
    return absl::OkStatus();
  }

  // The next entry, or nullptr at the end. Valid until the next call.
  absl::StatusOr<struct archive_entry*> Next() {
    struct archive_entry* ae = nullptr;
    int rc = archive_read_next_header(a_, &ae);
    if (rc == ARCHIVE_EOF) return nullptr;
    if (rc < ARCHIVE_WARN)
      return Error(absl::StrCat("input tar is invalid after ", entries_, " entries"));
    ++entries_;
    return ae;
  }

  // Position of the last header read (its first extended header, if any).
  int64_t header_position() { return archive_read_header_position(a_); }

  // Sequential reader of the current entry's `size` bytes; holes read as zeros.
  DataFn Data(uint64_t size) {
    block_ = nullptr;
    block_len_ = 0;
    block_used_ = 0;
    block_off_ = 0;
    pos_ = 0;
    size_ = size;
    eof_ = false;
    return [this](char* out, size_t n) { return ReadData(out, n); };
  }

 private:
  static la_ssize_t OnRead(struct archive* a, void* opaque, const void** out) {
    auto* self = static_cast<TarIn*>(opaque);
    absl::StatusOr<size_t> n = self->pull_(self->buf_.data(), self->buf_.size());
    if (!n.ok()) {
      self->error_ = n.status();
      archive_set_error(a, EIO, "%s", std::string(n.status().message()).c_str());
      return -1;
    }
    *out = self->buf_.data();
    return static_cast<la_ssize_t>(*n);
  }

  absl::StatusOr<size_t> ReadData(char* out, size_t n) {
    for (;;) {
      if (pos_ >= size_ || n == 0) return size_t{0};
      if (!eof_ && block_used_ == block_len_) {
        const void* b = nullptr;
        size_t len = 0;
        la_int64_t off = 0;
        int rc = archive_read_data_block(a_, &b, &len, &off);
        if (rc == ARCHIVE_EOF) {
          eof_ = true;
        } else if (rc < ARCHIVE_WARN) {
          return Error("input tar data is invalid");
        } else {
          if (off < 0 || static_cast<uint64_t>(off) < pos_ || static_cast<uint64_t>(off) > size_ ||
              len > size_ - static_cast<uint64_t>(off)) {
            return absl::DataLossError("input tar: data block outside its file");
          }
          block_ = static_cast<const char*>(b);
          block_len_ = len;
          block_used_ = 0;
          block_off_ = static_cast<uint64_t>(off);
          if (len == 0) continue;
        }
      }
      // A hole before the next block (or up to the end): zeros.
      const uint64_t data_at = eof_ ? size_ : block_off_;
      if (pos_ < data_at) {
        const size_t k = static_cast<size_t>(std::min<uint64_t>(n, data_at - pos_));
        std::memset(out, 0, k);
        pos_ += k;
        return k;
      }
      const size_t k = std::min(n, block_len_ - block_used_);
      std::memcpy(out, block_ + block_used_, k);
      block_used_ += k;
      block_off_ += k;
      pos_ += k;
      return k;
    }
  }

  absl::Status Error(absl::string_view what) {
    if (!error_.ok()) return error_;
    const char* msg = archive_error_string(a_);
    return absl::DataLossError(absl::StrCat(what, ": ", msg ? msg : "libarchive error"));
  }

  Pull pull_;
  std::vector<char> buf_;
  struct archive* a_ = nullptr;
  absl::Status error_;
  uint64_t entries_ = 0;
  // The current entry's data.
  const char* block_ = nullptr;
  size_t block_len_ = 0;
  size_t block_used_ = 0;
  uint64_t block_off_ = 0;  // file offset of block_[block_used_]
  uint64_t pos_ = 0;
  uint64_t size_ = 0;
  bool eof_ = false;
};

absl::Status WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoToStatus(errno, "write eStargz spool file");
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

// A pull callback reading the spool file from `pos` on.
TarIn::Pull SpoolReader(int fd, int64_t pos) {
  auto at = std::make_shared<int64_t>(pos);
  return [fd, at](char* buf, size_t len) -> absl::StatusOr<size_t> {
    for (;;) {
      ssize_t n = ::pread(fd, buf, len, *at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoToStatus(errno, "read eStargz spool file");
      *at += n;
      return static_cast<size_t>(n);
    }
  };
}

absl::StatusOr<UniqueFd> CreateSpool(const std::string& dir_option) {
  std::string dir = dir_option;
  if (dir.empty()) {
    const char* env = std::getenv("TMPDIR");
    dir = env != nullptr && *env != '\0' ? env : "/tmp";
  }
  std::string path = dir + "/accel-estargz-XXXXXX";
  int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("create spool file in ", dir));
  UniqueFd owned(fd);
  // Unlinked at once: nothing is left behind, whatever happens next.
  if (::unlink(path.c_str()) != 0) return ErrnoToStatus(errno, absl::StrCat("unlink ", path));
  return owned;
}

// One input entry, as the reordering pass records it.
struct Indexed {
  std::string path;
  int64_t header_pos = 0;
  std::string hardlink_target;  // cleaned; "" unless a hard link
};

// Decides which entries go first: each prioritized path's last occurrence,
// after its parents and (for a hard link) its target.
class Prioritizer {
 public:
  explicit Prioritizer(const std::vector<Indexed>& all) : all_(all) {
    for (size_t i = 0; i < all_.size(); ++i) last_[all_[i].path] = i;
  }

  // Returns false if `path` is not in the layer.
  bool Move(const std::string& path) {
    if (path.empty()) {  // the root: moved if the tar has an entry for it
      auto it = last_.find(path);
      if (it != last_.end()) Take(it->second);
      return true;
    }
    auto it = last_.find(path);
    if (it == last_.end()) return false;
    if (!visiting_.insert(path).second) return true;  // a hard-link loop: the parser will say
    Move(std::string(LayerPathParent(path)));
    const Indexed& e = all_[it->second];
    if (!e.hardlink_target.empty()) Move(e.hardlink_target);
    Take(it->second);
    return true;
  }

  const std::vector<size_t>& order() const { return order_; }
  bool moved_path(const std::string& path) const { return moved_paths_.contains(path); }

 private:
  void Take(size_t index) {
    if (moved_paths_.insert(all_[index].path).second) order_.push_back(index);
  }

  const std::vector<Indexed>& all_;
  absl::flat_hash_map<std::string, size_t> last_;
  absl::flat_hash_set<std::string> visiting_;
  absl::flat_hash_set<std::string> moved_paths_;
  std::vector<size_t> order_;
};

absl::Status ValidateOptions(const BuildOptions& options) {
  if (options.chunk_size == 0 || options.chunk_size > kMaxChunkSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk size ", options.chunk_size, " is not in 1..", kMaxChunkSize));
  }
  if (options.gzip_level < -1 || options.gzip_level > 9) {
    return absl::InvalidArgumentError(
        absl::StrCat("gzip level ", options.gzip_level, " is not in -1..9"));
  }
  return absl::OkStatus();
}

// Streams entries of `in` through the emitter, skipping format entries and
// those `skip` says no to.
absl::Status EmitAll(TarIn& in, Emitter& emitter,
                     const std::function<bool(const std::string&)>& skip) {
  for (;;) {
    ACCEL_ASSIGN_OR_RETURN(struct archive_entry * ae, in.Next());
    if (ae == nullptr) return absl::OkStatus();
    ACCEL_ASSIGN_OR_RETURN(std::string path,
                           CleanLayerPath(archive_entry_pathname(ae), "tar entry"));
    if (IsFormatName(path) || (skip && skip(path))) continue;
    const int64_t size = archive_entry_size(ae);
    ACCEL_RETURN_IF_ERROR(
        emitter.Emit(ae, path, in.Data(size > 0 ? static_cast<uint64_t>(size) : 0)));
  }
}

}  // namespace

absl::StatusOr<BuildResult> Build(const TarInputFn& tar_input, const BlobSinkFn& sink,
                                  const BuildOptions& options) {
  ACCEL_RETURN_IF_ERROR(ValidateOptions(options));
  // libarchive converts PAX (UTF-8) names to the locale's charset: make that
  // the identity, so names arrive byte for byte (as store/ does).
  static std::once_flag locale_once;
  std::call_once(locale_once, [] { std::setlocale(LC_CTYPE, "C.UTF-8"); });

  BuildResult result;
  BlobOut out(sink, options.gzip_level);
  ACCEL_RETURN_IF_ERROR(out.Init());
  TarOut tar(out);
  ACCEL_RETURN_IF_ERROR(tar.Open());
  TocJson toc;
  Emitter emitter(out, tar, toc, options.chunk_size);

  if (options.prioritized_paths.empty()) {
    ACCEL_RETURN_IF_ERROR(emitter.EmitLandmark(kNoPrefetchLandmark));
    TarIn in(tar_input);
    ACCEL_RETURN_IF_ERROR(in.Open());
    ACCEL_RETURN_IF_ERROR(EmitAll(in, emitter, nullptr));
  } else {
    // Pass 1: copy the input to the spool while noting where each entry is.
    ACCEL_ASSIGN_OR_RETURN(UniqueFd spool, CreateSpool(options.tmp_dir));
    const int fd = spool.get();
    std::vector<Indexed> all;
    {
      TarIn in([&](char* buf, size_t len) -> absl::StatusOr<size_t> {
        ACCEL_ASSIGN_OR_RETURN(size_t n, tar_input(buf, len));
        ACCEL_RETURN_IF_ERROR(WriteAll(fd, buf, n));
        return n;
      });
      ACCEL_RETURN_IF_ERROR(in.Open());
      for (;;) {
        ACCEL_ASSIGN_OR_RETURN(struct archive_entry * ae, in.Next());
        if (ae == nullptr) break;
        Indexed e;
        ACCEL_ASSIGN_OR_RETURN(e.path, CleanLayerPath(archive_entry_pathname(ae), "tar entry"));
        if (IsFormatName(e.path)) continue;
        e.header_pos = in.header_position();
        if (const char* hl = archive_entry_hardlink(ae); hl != nullptr) {
          ACCEL_ASSIGN_OR_RETURN(e.hardlink_target, CleanLayerPath(hl, "hard link target"));
        }
        all.push_back(std::move(e));
      }
    }
    Prioritizer prioritizer(all);
    for (const std::string& p : options.prioritized_paths) {
      std::string raw = p;
      raw.erase(0, raw.find_first_not_of('/'));
      if (raw.empty()) raw = ".";
      ACCEL_ASSIGN_OR_RETURN(std::string path, CleanLayerPath(raw.c_str(), "prioritized path"));
      if (!prioritizer.Move(path)) {
        if (!options.allow_missing_prioritized) {
          return absl::NotFoundError(
              absl::StrCat("prioritized path \"", p, "\" is not in the layer"));
        }
        result.missing_prioritized.push_back(p);
      }
    }
    // Pass 2: the prioritized entries, each read back from its position.
    for (size_t index : prioritizer.order()) {
      // Small reads: most prioritized entries are small files.
      TarIn one(SpoolReader(fd, all[index].header_pos), 64 << 10);
      ACCEL_RETURN_IF_ERROR(one.Open());
      ACCEL_ASSIGN_OR_RETURN(struct archive_entry * ae, one.Next());
      if (ae == nullptr) return absl::InternalError("spooled tar entry vanished");
      const int64_t size = archive_entry_size(ae);
      ACCEL_RETURN_IF_ERROR(
          emitter.Emit(ae, all[index].path, one.Data(size > 0 ? static_cast<uint64_t>(size) : 0)));
    }
    ACCEL_RETURN_IF_ERROR(emitter.EmitLandmark(prioritizer.order().empty() ? kNoPrefetchLandmark
                                                                           : kPrefetchLandmark));
    // Pass 3: everything else, in input order. Every occurrence of a moved
    // path goes, or an earlier one would override the moved one.
    TarIn rest(SpoolReader(fd, 0));
    ACCEL_RETURN_IF_ERROR(rest.Open());
    ACCEL_RETURN_IF_ERROR(EmitAll(
        rest, emitter, [&](const std::string& path) { return prioritizer.moved_path(path); }));
  }

  // The TOC: its own member, a tar with one entry, then the end marker.
  ACCEL_RETURN_IF_ERROR(tar.FinishEntry());
  ACCEL_RETURN_IF_ERROR(out.EndMember());
  const uint64_t toc_offset = out.offset();
  if (toc.count() > kMaxTocEntries || toc.size() > kMaxTocSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer too large for an eStargz TOC (", toc.count(), " entries, ", toc.size(), " bytes)"));
  }
  std::string json = toc.Finish();
  // Check the TOC as a reader will, so no reader rejects what we write.
  {
    absl::StatusOr<Toc> check = ParseToc(json, Compression::kGzip, toc_offset);
    if (!check.ok()) return Annotate(check.status(), "layer cannot be written as eStargz");
    result.toc_digest = check->digest;
  }
  std::unique_ptr<struct archive_entry, void (*)(struct archive_entry*)> ae(archive_entry_new(),
                                                                            archive_entry_free);
  archive_entry_set_pathname(ae.get(), kTocName);
  archive_entry_set_filetype(ae.get(), AE_IFREG);
  archive_entry_set_perm(ae.get(), 0644);
  archive_entry_set_size(ae.get(), static_cast<la_int64_t>(json.size()));
  ACCEL_RETURN_IF_ERROR(tar.WriteHeader(ae.get(), kTocName));
  ACCEL_RETURN_IF_ERROR(tar.WriteData(json.data(), json.size()));
  ACCEL_RETURN_IF_ERROR(tar.Close());
  ACCEL_RETURN_IF_ERROR(out.EndMember());
  ACCEL_RETURN_IF_ERROR(out.WriteRaw(EncodeEstargzFooter(toc_offset)));
  ACCEL_RETURN_IF_ERROR(out.Flush());

  result.blob_digest = out.blob_digest();
  result.blob_size = out.offset();
  result.diff_id = out.diff_id();
  result.uncompressed_size = out.uncompressed_size();
  return result;
}

}  // namespace accel::estargz
