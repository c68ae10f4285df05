// Build: tar in, eStargz out.
//
//   input --> tar reader --(entries)--> Emitter --> libarchive pax writer
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
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/errno_status.h"
#include "common/fs_util.h"
#include "common/layer_path.h"
#include "common/read_fn.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/tar_reader.h"
#include "common/unique_fd.h"
#include "estargz/builder_output.h"
#include "estargz/codec.h"
#include "estargz/footer.h"
#include "estargz/toc.h"

namespace accel::estargz {
namespace {

using internal::BlobOut;
using internal::TarOut;
using internal::TocJson;

using internal::kIoBlock;
constexpr uint64_t kMaxChunkSize = 1ull << 30;
constexpr char kLandmarkByte = 0x0f;

using DataFn = ReadFn;

bool IsFormatName(absl::string_view path) {
  return path == kTocName || path == kPrefetchLandmark || path == kNoPrefetchLandmark;
}

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

  // Writes `e` (as the tar reader checked it) with the tar header `ae` (the
  // input's own, so names, ids and pax records carry over); `data` yields a
  // regular file's bytes.
  absl::Status Emit(const LayerEntry& e, struct archive_entry* ae, const DataFn& data) {
    const std::string& path = e.path;
    const std::string quoted = absl::StrCat("tar entry \"", path.substr(0, 200), "\"");
    TocJson::Object obj;
    obj.Str("name", path.empty() ? "./" : path);
    const bool regular = e.type == EntryType::kRegular;
    switch (e.type) {
      case EntryType::kRegular:
        obj.Str("type", "reg");
        break;
      case EntryType::kHardlink:
        obj.Str("type", "hardlink").Str("linkName", e.link_target);
        break;
      case EntryType::kDirectory:
        obj.Str("type", "dir");
        break;
      case EntryType::kSymlink:
        obj.Str("type", "symlink").Str("linkName", e.link_target);
        break;
      case EntryType::kCharDevice:
        obj.Str("type", "char");
        break;
      case EntryType::kBlockDevice:
        obj.Str("type", "block");
        break;
      case EntryType::kFifo:
        obj.Str("type", "fifo");
        break;
    }
    if (!regular) archive_entry_set_size(ae, 0);
    if (e.size > kMaxFileSize) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has an unsupported size"));
    }
    const uint64_t size = e.size;
    if (regular && size > 0) obj.Int("size", static_cast<int64_t>(size));
    if (e.mtime_sec != 0 || e.mtime_nsec != 0) {
      obj.Str("modtime", FormatModtime(e.mtime_sec, e.mtime_nsec));
    }
    if (e.mode != 0) obj.Int("mode", e.mode);
    if (e.uid != 0) obj.Int("uid", e.uid);
    if (e.gid != 0) obj.Int("gid", e.gid);
    // Names only when they change for an id, as the reference writer does.
    if (const char* u = archive_entry_uname(ae); u != nullptr && *u != '\0') {
      std::string& last = unames_[e.uid];
      if (last != u) obj.Str("userName", u);
      last = u;
    }
    if (const char* g = archive_entry_gname(ae); g != nullptr && *g != '\0') {
      std::string& last = gnames_[e.gid];
      if (last != g) obj.Str("groupName", g);
      last = g;
    }
    if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) {
      if (e.dev_major != 0) obj.Int("devMajor", e.dev_major);
      if (e.dev_minor != 0) obj.Int("devMinor", e.dev_minor);
    }
    obj.Xattrs(e.xattrs);
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
    LayerEntry e;
    e.path = name;
    e.type = EntryType::kRegular;
    e.mode = 0644;
    e.size = 1;
    bool sent = false;
    return Emit(e, ae.get(), [&sent](char* buf, size_t len) -> absl::StatusOr<size_t> {
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

// Reads the spool file from `pos` on.
ReadFn SpoolReader(int fd, int64_t pos) {
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

absl::StatusOr<UniqueFd> CreateSpool(const std::string& dir) {
  ACCEL_ASSIGN_OR_RETURN(TempFile spool, CreateTempFile("accel-estargz", dir));
  // Unlinked at once: nothing is left behind, whatever happens next.
  if (::unlink(spool.path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("unlink ", spool.path));
  }
  return std::move(spool.fd);
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

// The current member's data, as the Emitter pulls it.
DataFn DataOf(TarReader& in) {
  return [&in](char* buf, size_t len) { return in.ReadData(buf, len); };
}

// Streams the members of `in` through the emitter, skipping format entries
// and those `skip` says no to.
absl::Status EmitAll(TarReader& in, Emitter& emitter,
                     const std::function<bool(const std::string&)>& skip) {
  for (;;) {
    ACCEL_ASSIGN_OR_RETURN(const LayerEntry* e, in.Next());
    if (e == nullptr) return absl::OkStatus();
    if (IsFormatName(e->path) || (skip && skip(e->path))) continue;
    ACCEL_RETURN_IF_ERROR(emitter.Emit(*e, in.raw_entry(), DataOf(in)));
  }
}

}  // namespace

absl::StatusOr<BuildResult> Build(const TarInputFn& tar_input, const BlobSinkFn& sink,
                                  const BuildOptions& options) {
  ACCEL_RETURN_IF_ERROR(ValidateOptions(options));

  BuildResult result;
  BlobOut out(sink, options.gzip_level);
  ACCEL_RETURN_IF_ERROR(out.Init());
  TarOut tar(out);
  ACCEL_RETURN_IF_ERROR(tar.Open());
  TocJson toc;
  Emitter emitter(out, tar, toc, options.chunk_size);

  if (options.prioritized_paths.empty()) {
    ACCEL_RETURN_IF_ERROR(emitter.EmitLandmark(kNoPrefetchLandmark));
    ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<TarReader> in, TarReader::Open(tar_input, kIoBlock));
    ACCEL_RETURN_IF_ERROR(EmitAll(*in, emitter, nullptr));
  } else {
    // Pass 1: copy the input to the spool while noting where each entry is.
    ACCEL_ASSIGN_OR_RETURN(UniqueFd spool, CreateSpool(options.tmp_dir));
    const int fd = spool.get();
    std::vector<Indexed> all;
    {
      ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<TarReader> in,
                             TarReader::Open(
                                 [&](char* buf, size_t len) -> absl::StatusOr<size_t> {
                                   ACCEL_ASSIGN_OR_RETURN(size_t n, tar_input(buf, len));
                                   ACCEL_RETURN_IF_ERROR(WriteAll(fd, absl::string_view(buf, n),
                                                                  "eStargz spool file"));
                                   return n;
                                 },
                                 kIoBlock));
      for (;;) {
        ACCEL_ASSIGN_OR_RETURN(const LayerEntry* next, in->Next());
        if (next == nullptr) break;
        if (IsFormatName(next->path)) continue;
        Indexed e;
        e.path = next->path;
        e.header_pos = in->header_position();
        if (next->type == EntryType::kHardlink) e.hardlink_target = next->link_target;
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
      ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<TarReader> one,
                             TarReader::Open(SpoolReader(fd, all[index].header_pos), 64 << 10));
      ACCEL_ASSIGN_OR_RETURN(const LayerEntry* e, one->Next());
      if (e == nullptr) return absl::InternalError("spooled tar entry vanished");
      ACCEL_RETURN_IF_ERROR(emitter.Emit(*e, one->raw_entry(), DataOf(*one)));
    }
    ACCEL_RETURN_IF_ERROR(emitter.EmitLandmark(prioritizer.order().empty() ? kNoPrefetchLandmark
                                                                           : kPrefetchLandmark));
    // Pass 3: everything else, in input order. Every occurrence of a moved
    // path goes, or an earlier one would override the moved one.
    ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<TarReader> rest,
                           TarReader::Open(SpoolReader(fd, 0), kIoBlock));
    ACCEL_RETURN_IF_ERROR(EmitAll(
        *rest, emitter, [&](const std::string& path) { return prioritizer.moved_path(path); }));
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
