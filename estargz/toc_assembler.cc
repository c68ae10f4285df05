#include "estargz/toc_assembler.h"

#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/layer_path.h"
#include "common/status_macros.h"

namespace accel::estargz::internal {
namespace {

constexpr size_t kMaxNameShown = 200;
constexpr size_t kMaxXattrs = 1024;
constexpr size_t kMaxXattrNameBytes = 255;
constexpr size_t kMaxXattrValueBytes = 64 << 10;
constexpr size_t kMaxLinkBytes = 4096;

absl::StatusOr<EntryType> TypeOf(absl::string_view type) {
  if (type == "reg") return EntryType::kRegular;
  if (type == "dir") return EntryType::kDirectory;
  if (type == "symlink") return EntryType::kSymlink;
  if (type == "hardlink") return EntryType::kHardlink;
  if (type == "char") return EntryType::kCharDevice;
  if (type == "block") return EntryType::kBlockDevice;
  if (type == "fifo") return EntryType::kFifo;
  if (type.empty()) return absl::InvalidArgumentError("has no type");
  return absl::InvalidArgumentError(absl::StrCat("has unknown type \"", type.substr(0, 40), "\""));
}

absl::StatusOr<uint32_t> U32(int64_t v, const char* what) {
  if (v < 0 || v > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", v, " is out of range"));
  }
  return static_cast<uint32_t>(v);
}

absl::StatusOr<uint64_t> Bounded(int64_t v, const char* what) {
  if (v < 0) return absl::InvalidArgumentError(absl::StrCat(what, " ", v, " is negative"));
  if (static_cast<uint64_t>(v) > kMaxFileSize) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", v, " is larger than 2^40"));
  }
  return static_cast<uint64_t>(v);
}

}  // namespace

class TocAssembler::Impl {
 public:
  Impl(Compression kind, uint64_t payload_end, uint64_t max_entries) : max_entries_(max_entries) {
    toc_.compression = kind;
    toc_.payload_end = payload_end;
  }

  absl::Status Add(RawEntry& raw, uint64_t index) {
    if (index >= max_entries_) {
      return absl::InvalidArgumentError(
          absl::StrCat("TOC has more than ", max_entries_, " entries"));
    }
    if (raw.type == "chunk") return AddChunk(raw, index);
    ACCEL_RETURN_IF_ERROR(CloseFile());
    const std::string where = absl::StrCat(
        "TOC entry ", index, " (\"", absl::string_view(raw.name).substr(0, kMaxNameShown), "\")");
    absl::Status s = AddEntry(raw, where);
    return s.ok() ? s : Annotate(s, where);
  }

  absl::StatusOr<Toc> Finish(std::string digest) {
    ACCEL_RETURN_IF_ERROR(CloseFile());
    // Each chunk's compressed range ends where the next different blob
    // offset begins (chunks are in blob order), or at the end of the data.
    uint64_t boundary = toc_.payload_end;
    bool have_group = false;
    uint64_t group = 0;
    for (size_t i = toc_.chunks.size(); i-- > 0;) {
      Chunk& c = toc_.chunks[i];
      if (!have_group || c.blob_offset != group) {
        if (have_group) boundary = group;
        group = c.blob_offset;
        have_group = true;
      }
      c.compressed_size = boundary - c.blob_offset;
      if (c.digest.empty()) toc_.all_chunks_have_digests = false;
    }
    if (toc_.has_prefetch_landmark && chunks_before_landmark_ > 0) {
      const Chunk& last = toc_.chunks[chunks_before_landmark_ - 1];
      toc_.prefetch_size = last.blob_offset + last.compressed_size;
    }
    toc_.digest = std::move(digest);
    return std::move(toc_);
  }

 private:
  absl::Status AddEntry(RawEntry& raw, const std::string& where) {
    ACCEL_ASSIGN_OR_RETURN(std::string path, CleanLayerPath(raw.name, "entry"));
    const size_t chunks_before = toc_.chunks.size();
    ACCEL_ASSIGN_OR_RETURN(EntryType type, TypeOf(raw.type));
    const bool meta = path == kTocName || path == kPrefetchLandmark || path == kNoPrefetchLandmark;
    LayerEntry e;
    e.path = path;
    e.type = type;
    if (raw.mode < 0) return absl::InvalidArgumentError("negative mode");
    e.mode = static_cast<uint32_t>(raw.mode & 07777);
    ACCEL_ASSIGN_OR_RETURN(e.uid, U32(raw.uid, "uid"));
    ACCEL_ASSIGN_OR_RETURN(e.gid, U32(raw.gid, "gid"));
    if (!raw.modtime.empty()) {
      absl::Time t;
      std::string err;
      if (!absl::ParseTime(absl::RFC3339_full, raw.modtime, &t, &err) ||
          t == absl::InfiniteFuture() || t == absl::InfinitePast()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "modtime \"", absl::string_view(raw.modtime).substr(0, 60), "\" is not RFC 3339"));
      }
      e.mtime_sec = absl::ToUnixSeconds(t);
      e.mtime_nsec =
          static_cast<uint32_t>((t - absl::FromUnixSeconds(e.mtime_sec)) / absl::Nanoseconds(1));
    }
    if (raw.xattrs.size() > kMaxXattrs) return absl::InvalidArgumentError("too many xattrs");
    for (auto& [name, b64] : raw.xattrs) {
      if (name.empty() || name.size() > kMaxXattrNameBytes ||
          name.find('\0') != std::string::npos) {
        return absl::InvalidArgumentError("invalid xattr name");
      }
      std::string value;
      if (!absl::Base64Unescape(b64, &value)) {
        return absl::InvalidArgumentError(absl::StrCat("xattr \"", name, "\" is not base64"));
      }
      if (value.size() > kMaxXattrValueBytes) {
        return absl::InvalidArgumentError(absl::StrCat("xattr \"", name, "\" is too large"));
      }
      e.xattrs[name] = std::move(value);
    }
    if (path.empty() && type != EntryType::kDirectory) {
      return absl::InvalidArgumentError("the layer root is not a directory");
    }
    // The parent must not be a non-directory of this TOC.
    if (size_t slash = path.rfind('/'); slash != std::string::npos) {
      auto it = types_.find(absl::string_view(path).substr(0, slash));
      if (it != types_.end() && it->second != EntryType::kDirectory) {
        return absl::InvalidArgumentError("its parent is not a directory");
      }
    }
    switch (type) {
      case EntryType::kRegular: {
        ACCEL_ASSIGN_OR_RETURN(e.size, Bounded(raw.size, "size"));
        if (!raw.digest.empty()) {
          ACCEL_RETURN_IF_ERROR(Annotate(ValidateSha256Digest(raw.digest), "digest"));
          e.digest = raw.digest;
        }
        if (e.size > 0) {
          if (raw.chunk_offset != 0)
            return absl::InvalidArgumentError("first chunk does not start at 0");
          ACCEL_ASSIGN_OR_RETURN(uint64_t chunk_size, Bounded(raw.chunk_size, "chunkSize"));
          if (chunk_size == 0) chunk_size = e.size;
          if (chunk_size > e.size) {
            return absl::InvalidArgumentError(
                absl::StrCat("chunkSize ", chunk_size, " is larger than the file (", e.size, ")"));
          }
          e.data_offset = toc_.chunks.size();
          ACCEL_RETURN_IF_ERROR(PushChunk(raw, 0, chunk_size));
          file_ = OpenFile{true, path, e.size, chunk_size, e.data_offset, where, e.digest};
        }
        break;
      }
      case EntryType::kSymlink:
        if (raw.link_name.empty()) return absl::InvalidArgumentError("symlink without linkName");
        if (raw.link_name.size() > kMaxLinkBytes || raw.link_name.find('\0') != std::string::npos) {
          return absl::InvalidArgumentError("invalid symlink target");
        }
        e.link_target = raw.link_name;
        break;
      case EntryType::kHardlink: {
        if (raw.link_name.empty()) return absl::InvalidArgumentError("hard link without linkName");
        absl::StatusOr<std::string> target = CleanLayerPath(raw.link_name, "hard link target");
        if (!target.ok()) return target.status();
        auto it = types_.find(*target);
        if (it == types_.end() || it->second != EntryType::kRegular) {
          return absl::InvalidArgumentError(
              absl::StrCat("hard link to \"", target->substr(0, kMaxNameShown),
                           "\", which is not an earlier regular file of this TOC"));
        }
        e.link_target = std::move(*target);
        break;
      }
      case EntryType::kCharDevice:
      case EntryType::kBlockDevice: {
        ACCEL_ASSIGN_OR_RETURN(e.dev_major, U32(raw.dev_major, "devMajor"));
        ACCEL_ASSIGN_OR_RETURN(e.dev_minor, U32(raw.dev_minor, "devMinor"));
        break;
      }
      case EntryType::kDirectory:
      case EntryType::kFifo:
        break;
    }
    if (meta) {
      if (path == kPrefetchLandmark && !toc_.has_prefetch_landmark) {
        chunks_before_landmark_ = chunks_before;
        toc_.has_prefetch_landmark = true;
        for (size_t i = 0; i < toc_.entries.size(); ++i) {
          if (toc_.entries[i].type == EntryType::kRegular) toc_.prioritized.push_back(i);
        }
      } else if (path == kNoPrefetchLandmark) {
        toc_.has_no_prefetch_landmark = true;
      }
      toc_.metadata.push_back(std::move(e));
      return absl::OkStatus();
    }
    // Hard links count as regular files: a link to a link is a link to the file.
    types_[path] = type == EntryType::kHardlink ? EntryType::kRegular : type;
    toc_.entries.push_back(std::move(e));
    return absl::OkStatus();
  }

  absl::Status AddChunk(RawEntry& raw, uint64_t index) {
    if (!file_.active) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TOC entry ", index, " is a chunk without a regular file with data before it"));
    }
    const std::string where =
        absl::StrCat("TOC entry ", index, " (chunk of \"",
                     absl::string_view(file_.path).substr(0, kMaxNameShown), "\")");
    if (!raw.name.empty()) {
      absl::StatusOr<std::string> name = CleanLayerPath(raw.name, "chunk");
      if (!name.ok()) return Annotate(name.status(), where);
      if (*name != file_.path) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": names another file"));
      }
    }
    if (file_.covered == file_.size) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the file is already complete"));
    }
    absl::StatusOr<uint64_t> chunk_offset = Bounded(raw.chunk_offset, "chunkOffset");
    if (!chunk_offset.ok()) return Annotate(chunk_offset.status(), where);
    if (*chunk_offset < file_.covered) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": chunkOffset ", *chunk_offset,
                                                     " overlaps the previous chunk (ends at ",
                                                     file_.covered, ")"));
    }
    if (*chunk_offset > file_.covered) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": chunkOffset ", *chunk_offset,
                                                     " leaves a gap after ", file_.covered));
    }
    absl::StatusOr<uint64_t> size = Bounded(raw.chunk_size, "chunkSize");
    if (!size.ok()) return Annotate(size.status(), where);
    const uint64_t left = file_.size - file_.covered;
    if (*size == 0) *size = left;
    if (*size > left) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": chunkSize ", *size, " runs past the end of the file (", left, " bytes left)"));
    }
    absl::Status s = PushChunk(raw, file_.covered, *size);
    if (!s.ok()) return Annotate(s, where);
    file_.covered += *size;
    return absl::OkStatus();
  }

  absl::Status PushChunk(const RawEntry& raw, uint64_t file_offset, uint64_t size) {
    if (raw.offset < 0 || static_cast<uint64_t>(raw.offset) >= toc_.payload_end) {
      return absl::InvalidArgumentError(absl::StrCat(
          "offset ", raw.offset, " is outside the blob's data area [0, ", toc_.payload_end, ")"));
    }
    const uint64_t offset = static_cast<uint64_t>(raw.offset);
    ACCEL_ASSIGN_OR_RETURN(uint64_t inner, Bounded(raw.inner_offset, "innerOffset"));
    if (!raw.chunk_digest.empty()) {
      ACCEL_RETURN_IF_ERROR(Annotate(ValidateSha256Digest(raw.chunk_digest), "chunkDigest"));
    }
    if (have_last_ &&
        (offset < last_offset_ || (offset == last_offset_ && inner < last_inner_end_))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk at blob offset ", offset, " (inner offset ", inner,
          ") overlaps or precedes the previous chunk (blob offset ", last_offset_, ")"));
    }
    have_last_ = true;
    last_offset_ = offset;
    last_inner_end_ = inner + size;
    Chunk c;
    c.file_offset = file_offset;
    c.size = size;
    c.blob_offset = offset;
    c.inner_offset = inner;
    c.digest = raw.chunk_digest;
    toc_.chunks.push_back(std::move(c));
    return absl::OkStatus();
  }

  absl::Status CloseFile() {
    if (!file_.active) return absl::OkStatus();
    file_.active = false;
    if (file_.covered != file_.size) {
      return absl::InvalidArgumentError(absl::StrCat(
          file_.where, ": its chunks cover ", file_.covered, " of its ", file_.size, " bytes"));
    }
    const size_t end = toc_.chunks.size();
    for (size_t i = file_.first_chunk; i < end; ++i) {
      toc_.chunks[i].chunks_after = static_cast<uint32_t>(end - 1 - i);
    }
    // A file in one piece can be verified with its whole-file digest.
    if (end - file_.first_chunk == 1 && toc_.chunks[file_.first_chunk].digest.empty()) {
      toc_.chunks[file_.first_chunk].digest = file_.digest;
    }
    return absl::OkStatus();
  }

  struct OpenFile {
    bool active = false;
    std::string path;
    uint64_t size = 0;
    uint64_t covered = 0;
    size_t first_chunk = 0;
    std::string where;
    std::string digest;
  };

  const uint64_t max_entries_;
  Toc toc_;
  OpenFile file_;
  // Type of each path so far (hard links as regular), for parent and
  // hard-link checks. Later entries replace earlier ones, as in tar.
  absl::flat_hash_map<std::string, EntryType> types_;
  bool have_last_ = false;
  uint64_t last_offset_ = 0;
  uint64_t last_inner_end_ = 0;
  size_t chunks_before_landmark_ = 0;
};

TocAssembler::TocAssembler(Compression kind, uint64_t payload_end, uint64_t max_entries)
    : impl_(std::make_unique<Impl>(kind, payload_end, max_entries)) {}

TocAssembler::~TocAssembler() = default;

absl::Status TocAssembler::Add(RawEntry& raw, uint64_t index) { return impl_->Add(raw, index); }

absl::StatusOr<Toc> TocAssembler::Finish(std::string digest) {
  return impl_->Finish(std::move(digest));
}

}  // namespace accel::estargz::internal
