#include "estargz/toc.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/layer_path.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "estargz/codec.h"
#include "estargz/toc_internal.h"

namespace accel::estargz {
namespace {

constexpr size_t kMaxNameShown = 200;
constexpr size_t kMaxXattrs = 1024;
constexpr size_t kMaxXattrNameBytes = 255;
constexpr size_t kMaxXattrValueBytes = 64 << 10;
constexpr size_t kMaxLinkBytes = 4096;

// One TOC entry as the JSON gives it, before any check.
struct RawEntry {
  std::string name, type, modtime, link_name, digest, chunk_digest;
  int64_t size = 0, mode = 0, uid = 0, gid = 0, dev_major = 0, dev_minor = 0;
  int64_t offset = 0, chunk_offset = 0, chunk_size = 0, inner_offset = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;  // name, base64 value
};

enum class Field {
  kUnknown,
  // strings
  kName,
  kType,
  kModtime,
  kLinkName,
  kUserName,
  kGroupName,
  kDigest,
  kChunkDigest,
  // integers
  kSize,
  kMode,
  kUid,
  kGid,
  kOffset,
  kDevMajor,
  kDevMinor,
  kChunkOffset,
  kChunkSize,
  kInnerOffset,
  // object
  kXattrs,
};

Field FieldOf(const std::string& key) {
  static const auto* const kFields = new std::map<std::string, Field, std::less<>>{
      {"name", Field::kName},
      {"type", Field::kType},
      {"modtime", Field::kModtime},
      {"linkName", Field::kLinkName},
      {"userName", Field::kUserName},
      {"groupName", Field::kGroupName},
      {"digest", Field::kDigest},
      {"chunkDigest", Field::kChunkDigest},
      {"size", Field::kSize},
      {"mode", Field::kMode},
      {"uid", Field::kUid},
      {"gid", Field::kGid},
      {"offset", Field::kOffset},
      {"devMajor", Field::kDevMajor},
      {"devMinor", Field::kDevMinor},
      {"chunkOffset", Field::kChunkOffset},
      {"chunkSize", Field::kChunkSize},
      {"innerOffset", Field::kInnerOffset},
      {"xattrs", Field::kXattrs},
  };
  auto it = kFields->find(key);
  return it == kFields->end() ? Field::kUnknown : it->second;
}

bool IsStringField(Field f) { return f >= Field::kName && f <= Field::kChunkDigest; }
bool IsIntField(Field f) { return f >= Field::kSize && f <= Field::kInnerOffset; }

std::string* StringSlot(RawEntry& e, Field f) {
  switch (f) {
    case Field::kName:
      return &e.name;
    case Field::kType:
      return &e.type;
    case Field::kModtime:
      return &e.modtime;
    case Field::kLinkName:
      return &e.link_name;
    case Field::kDigest:
      return &e.digest;
    case Field::kChunkDigest:
      return &e.chunk_digest;
    default:
      return nullptr;  // userName, groupName: not kept
  }
}

int64_t* IntSlot(RawEntry& e, Field f) {
  switch (f) {
    case Field::kSize:
      return &e.size;
    case Field::kMode:
      return &e.mode;
    case Field::kUid:
      return &e.uid;
    case Field::kGid:
      return &e.gid;
    case Field::kOffset:
      return &e.offset;
    case Field::kDevMajor:
      return &e.dev_major;
    case Field::kDevMinor:
      return &e.dev_minor;
    case Field::kChunkOffset:
      return &e.chunk_offset;
    case Field::kChunkSize:
      return &e.chunk_size;
    case Field::kInnerOffset:
      return &e.inner_offset;
    default:
      return nullptr;
  }
}

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

// Builds the Toc entry by entry while the JSON streams in.
class Assembler {
 public:
  Assembler(Compression kind, uint64_t payload_end, uint64_t max_entries)
      : max_entries_(max_entries) {
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

// Streams the TOC JSON into an Assembler, one entry at a time, so memory is
// the result plus one entry, whatever the JSON's shape.
class TocSax final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit TocSax(Assembler& out) : out_(out) {}

  const absl::Status& status() const { return status_; }
  bool complete() const { return done_; }
  bool saw_version() const { return saw_version_; }
  int64_t version() const { return version_; }

  bool null() override {
    if (skip_ > 0) return true;
    switch (Top()) {
      case Ctx::kRoot:
        return Fail("TOC is not a JSON object");
      case Ctx::kTop:
        if (key_ == "version") return Fail("TOC \"version\" is null");
        return true;  // "entries": null is an empty list
      case Ctx::kEntries:
        return FailEntry("is not an object");
      case Ctx::kEntry:
        return true;  // null leaves the field unset
      case Ctx::kXattrs:
        entry_.xattrs.emplace_back(key_, "");
        return true;
    }
    return true;
  }
  bool boolean(bool) override { return Scalar("a boolean"); }
  bool number_float(number_float_t, const string_t&) override { return Scalar("a fraction"); }
  bool binary(binary_t&) override { return Scalar("binary"); }
  bool number_integer(number_integer_t v) override { return Integer(v, false); }
  bool number_unsigned(number_unsigned_t v) override {
    const bool overflow = v > static_cast<number_unsigned_t>(std::numeric_limits<int64_t>::max());
    return Integer(overflow ? 0 : static_cast<int64_t>(v), overflow);
  }
  bool string(string_t& v) override {
    if (skip_ > 0) return true;
    switch (Top()) {
      case Ctx::kRoot:
        return Fail("TOC is not a JSON object");
      case Ctx::kTop:
        if (key_ == "version") return Fail("TOC \"version\" is not an integer");
        if (key_ == "entries") return Fail("TOC \"entries\" is not an array");
        return true;
      case Ctx::kEntries:
        return FailEntry("is not an object");
      case Ctx::kEntry: {
        const Field f = FieldOf(key_);
        if (f == Field::kUnknown) return true;
        if (!IsStringField(f))
          return FailEntry(absl::StrCat("field \"", key_, "\" is not ", Expect(f)));
        if (std::string* slot = StringSlot(entry_, f)) *slot = std::move(v);
        return true;
      }
      case Ctx::kXattrs:
        entry_.xattrs.emplace_back(key_, std::move(v));
        return true;
    }
    return true;
  }
  bool start_object(std::size_t) override {
    if (skip_ > 0) return ++skip_, true;
    switch (Top()) {
      case Ctx::kRoot:
        stack_.push_back(Ctx::kTop);
        return true;
      case Ctx::kTop:
        if (key_ == "version") return Fail("TOC \"version\" is not an integer");
        if (key_ == "entries") return Fail("TOC \"entries\" is not an array");
        skip_ = 1;
        return true;
      case Ctx::kEntries:
        entry_ = RawEntry();
        stack_.push_back(Ctx::kEntry);
        return true;
      case Ctx::kEntry: {
        const Field f = FieldOf(key_);
        if (f == Field::kXattrs) {
          entry_.xattrs.clear();
          stack_.push_back(Ctx::kXattrs);
          return true;
        }
        if (f != Field::kUnknown)
          return FailEntry(absl::StrCat("field \"", key_, "\" is not ", Expect(f)));
        skip_ = 1;
        return true;
      }
      case Ctx::kXattrs:
        return FailEntry(absl::StrCat("xattr \"", key_, "\" is not a string"));
    }
    return true;
  }
  bool end_object() override {
    if (skip_ > 0) return --skip_, true;
    const Ctx ctx = Top();
    stack_.pop_back();
    if (ctx == Ctx::kEntry) {
      absl::Status s = out_.Add(entry_, count_++);
      if (!s.ok()) return Fail(std::move(s));
    } else if (ctx == Ctx::kTop) {
      done_ = true;
    }
    return true;
  }
  bool start_array(std::size_t) override {
    if (skip_ > 0) return ++skip_, true;
    switch (Top()) {
      case Ctx::kRoot:
        return Fail("TOC is not a JSON object");
      case Ctx::kTop:
        if (key_ == "entries") {
          if (saw_entries_) return Fail("TOC has two \"entries\" lists");
          saw_entries_ = true;
          stack_.push_back(Ctx::kEntries);
          return true;
        }
        if (key_ == "version") return Fail("TOC \"version\" is not an integer");
        skip_ = 1;
        return true;
      case Ctx::kEntries:
        return FailEntry("is not an object");
      case Ctx::kEntry: {
        const Field f = FieldOf(key_);
        if (f != Field::kUnknown)
          return FailEntry(absl::StrCat("field \"", key_, "\" is not ", Expect(f)));
        skip_ = 1;
        return true;
      }
      case Ctx::kXattrs:
        return FailEntry(absl::StrCat("xattr \"", key_, "\" is not a string"));
    }
    return true;
  }
  bool end_array() override {
    if (skip_ > 0) return --skip_, true;
    stack_.pop_back();
    return true;
  }
  bool key(string_t& k) override {
    if (skip_ == 0) key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("TOC is not valid JSON at byte ", position, ": ", ex.what()));
    }
    return false;
  }

 private:
  enum class Ctx { kRoot, kTop, kEntries, kEntry, kXattrs };

  Ctx Top() const { return stack_.empty() ? Ctx::kRoot : stack_.back(); }

  static const char* Expect(Field f) {
    if (IsStringField(f)) return "a string";
    if (IsIntField(f)) return "an integer";
    return "an object";
  }

  bool Integer(int64_t v, bool overflow) {
    if (skip_ > 0) return true;
    switch (Top()) {
      case Ctx::kRoot:
        return Fail("TOC is not a JSON object");
      case Ctx::kTop:
        if (key_ == "version") {
          if (overflow) return Fail("TOC \"version\" is out of range");
          if (saw_version_) return Fail("TOC has two \"version\" fields");
          saw_version_ = true;
          version_ = v;
          return true;
        }
        if (key_ == "entries") return Fail("TOC \"entries\" is not an array");
        return true;
      case Ctx::kEntries:
        return FailEntry("is not an object");
      case Ctx::kEntry: {
        const Field f = FieldOf(key_);
        if (f == Field::kUnknown) return true;
        if (!IsIntField(f))
          return FailEntry(absl::StrCat("field \"", key_, "\" is not ", Expect(f)));
        if (overflow) return FailEntry(absl::StrCat("field \"", key_, "\" is out of range"));
        *IntSlot(entry_, f) = v;
        return true;
      }
      case Ctx::kXattrs:
        return FailEntry(absl::StrCat("xattr \"", key_, "\" is not a string"));
    }
    return true;
  }

  bool Scalar(const char* what) {
    if (skip_ > 0) return true;
    switch (Top()) {
      case Ctx::kRoot:
        return Fail("TOC is not a JSON object");
      case Ctx::kTop:
        if (key_ == "version") return Fail("TOC \"version\" is not an integer");
        if (key_ == "entries") return Fail("TOC \"entries\" is not an array");
        return true;
      case Ctx::kEntries:
        return FailEntry("is not an object");
      case Ctx::kEntry: {
        const Field f = FieldOf(key_);
        if (f == Field::kUnknown) return true;
        return FailEntry(absl::StrCat("field \"", key_, "\" is ", what, ", not ", Expect(f)));
      }
      case Ctx::kXattrs:
        return FailEntry(absl::StrCat("xattr \"", key_, "\" is not a string"));
    }
    return true;
  }

  bool Fail(absl::string_view message) { return Fail(absl::InvalidArgumentError(message)); }
  bool Fail(absl::Status s) {
    if (status_.ok()) status_ = std::move(s);
    return false;
  }
  bool FailEntry(absl::string_view message) {
    return Fail(absl::StrCat("TOC entry ", count_, " ", message));
  }

  Assembler& out_;
  std::vector<Ctx> stack_;
  int64_t skip_ = 0;  // depth inside a value that is ignored
  std::string key_;
  RawEntry entry_;
  uint64_t count_ = 0;
  bool saw_entries_ = false;
  bool saw_version_ = false;
  int64_t version_ = 0;
  bool done_ = false;
  absl::Status status_;
};

struct ArchiveFeed {
  internal::GzipMemberReader* reader = nullptr;
  std::vector<char> buf = std::vector<char>(64 << 10);
  absl::Status error;
};

la_ssize_t FeedRead(struct archive* a, void* opaque, const void** out) {
  auto* feed = static_cast<ArchiveFeed*>(opaque);
  absl::StatusOr<size_t> n = feed->reader->Read(feed->buf.data(), feed->buf.size());
  if (!n.ok()) {
    feed->error = n.status();
    archive_set_error(a, EIO, "%s", std::string(n.status().message()).c_str());
    return -1;
  }
  *out = feed->buf.data();
  return static_cast<la_ssize_t>(*n);
}

// Takes the TOC JSON out of the gzip member at the start of `region`: a tar
// whose first entry is kTocName.
absl::StatusOr<std::string> ExtractGzipToc(absl::string_view region) {
  // Room for the tar headers, padding and end marker around the JSON.
  internal::GzipMemberReader reader(region, kMaxTocSize + (1 << 20));
  ArchiveFeed feed;
  feed.reader = &reader;
  struct archive* a = archive_read_new();
  if (a == nullptr) return absl::InternalError("archive_read_new failed");
  std::unique_ptr<struct archive, int (*)(struct archive*)> guard(a, archive_read_free);
  archive_read_support_format_tar(a);
  const auto fail = [&](const char* what) -> absl::Status {
    if (!feed.error.ok()) return Annotate(feed.error, "TOC");
    return absl::DataLossError(
        absl::StrCat("TOC ", what, ": ", archive_error_string(a) ? archive_error_string(a) : "?"));
  };
  if (archive_read_open(a, &feed, nullptr, FeedRead, nullptr) != ARCHIVE_OK) {
    return fail("is not a tar in a gzip member");
  }
  struct archive_entry* ae = nullptr;
  int rc = archive_read_next_header(a, &ae);
  if (rc == ARCHIVE_EOF) return absl::DataLossError("TOC tar is empty");
  if (rc < ARCHIVE_WARN) return fail("tar header is invalid");
  const char* name = archive_entry_pathname(ae);
  if (name == nullptr || absl::string_view(name) != kTocName) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TOC tar entry is named \"", absl::string_view(name ? name : "").substr(0, 100),
        "\", not \"", kTocName, "\""));
  }
  if (archive_entry_filetype(ae) != AE_IFREG) {
    return absl::InvalidArgumentError("TOC tar entry is not a regular file");
  }
  const int64_t size = archive_entry_size(ae);
  if (size < 0 || static_cast<uint64_t>(size) > kMaxTocSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("TOC is ", size, " bytes, more than the limit of ", kMaxTocSize));
  }
  std::string json(static_cast<size_t>(size), '\0');
  size_t got = 0;
  while (got < json.size()) {
    la_ssize_t n = archive_read_data(a, json.data() + got, json.size() - got);
    if (n < 0) return fail("data is invalid");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got != json.size()) {
    return absl::DataLossError(
        absl::StrCat("TOC is truncated: ", got, " of ", json.size(), " bytes"));
  }
  return json;
}

}  // namespace

namespace internal {

absl::StatusOr<Toc> ParseTocWithDigest(absl::string_view json, Compression kind,
                                       uint64_t payload_end, std::string digest,
                                       uint64_t max_entries) {
  if (json.size() > kMaxTocSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("TOC is ", json.size(), " bytes, more than the limit of ", kMaxTocSize));
  }
  Assembler assembler(kind, payload_end, max_entries);
  TocSax sax(assembler);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(json.begin(), json.end(), &sax);
  } catch (const std::exception& ex) {
    return absl::InvalidArgumentError(absl::StrCat("TOC is not valid JSON: ", ex.what()));
  }
  if (!sax.status().ok()) return sax.status();
  if (!ok || !sax.complete())
    return absl::InvalidArgumentError("TOC is not a complete JSON object");
  if (!sax.saw_version()) return absl::InvalidArgumentError("TOC has no \"version\"");
  if (sax.version() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TOC version ", sax.version(), " is not supported (want 1)"));
  }
  return assembler.Finish(std::move(digest));
}

}  // namespace internal

absl::Span<const Chunk> Toc::FileChunks(uint64_t first_chunk, uint64_t file_size) const {
  if (file_size == 0 || first_chunk >= chunks.size()) return {};
  const uint64_t n = 1 + static_cast<uint64_t>(chunks[first_chunk].chunks_after);
  if (n > chunks.size() - first_chunk) return {};
  return absl::Span<const Chunk>(chunks.data() + first_chunk, static_cast<size_t>(n));
}

absl::StatusOr<Toc> ParseToc(absl::string_view json, Compression kind, uint64_t payload_end) {
  return internal::ParseTocWithDigest(json, kind, payload_end, Sha256::Of(json));
}

absl::StatusOr<Toc> ReadToc(const ReadAtFn& read_at, uint64_t blob_size,
                            absl::string_view expected_toc_digest) {
  if (!expected_toc_digest.empty()) {
    ACCEL_RETURN_IF_ERROR(
        Annotate(ValidateSha256Digest(expected_toc_digest), "expected TOC digest"));
  }
  if (blob_size < kLegacyFooterSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob of ", blob_size, " bytes is too small to hold an eStargz footer"));
  }
  const uint64_t tail_len = std::min<uint64_t>(blob_size, kMaxFooterSize);
  absl::StatusOr<std::string> tail = read_at(blob_size - tail_len, tail_len);
  if (!tail.ok()) return Annotate(tail.status(), "read eStargz footer");
  if (tail->size() != tail_len) {
    return absl::DataLossError(
        absl::StrCat("read eStargz footer: got ", tail->size(), " of ", tail_len, " bytes"));
  }
  ACCEL_ASSIGN_OR_RETURN(Footer footer, ParseFooter(*tail, blob_size));

  constexpr uint64_t kMaxCompressedToc = kMaxTocSize + (1 << 20);
  if (footer.toc_size > kMaxCompressedToc) {
    return absl::InvalidArgumentError(absl::StrCat("compressed TOC is ", footer.toc_size,
                                                   " bytes, more than the limit of ",
                                                   kMaxCompressedToc));
  }
  if (footer.compression == Compression::kZstd && footer.toc_uncompressed_size > kMaxTocSize) {
    return absl::InvalidArgumentError(absl::StrCat("TOC is ", footer.toc_uncompressed_size,
                                                   " bytes, more than the limit of ", kMaxTocSize));
  }
  absl::StatusOr<std::string> region = read_at(footer.toc_offset, footer.toc_size);
  if (!region.ok()) return Annotate(region.status(), "read eStargz TOC");
  if (region->size() != footer.toc_size) {
    return absl::DataLossError(
        absl::StrCat("read eStargz TOC: got ", region->size(), " of ", footer.toc_size, " bytes"));
  }
  std::string json;
  if (footer.compression == Compression::kZstd) {
    absl::StatusOr<std::string> out =
        internal::ZstdDecompressAll(*region, footer.toc_uncompressed_size);
    if (!out.ok()) return Annotate(out.status(), "TOC");
    if (out->size() != footer.toc_uncompressed_size) {
      return absl::DataLossError(absl::StrCat("TOC decompresses to ", out->size(),
                                              " bytes, the footer says ",
                                              footer.toc_uncompressed_size));
    }
    json = std::move(*out);
  } else {
    ACCEL_ASSIGN_OR_RETURN(json, ExtractGzipToc(*region));
  }
  std::string digest = Sha256::Of(json);
  if (!expected_toc_digest.empty() && digest != expected_toc_digest) {
    return absl::DataLossError(absl::StrCat("TOC digest mismatch: the TOC is ", digest,
                                            ", the layer annotation says ", expected_toc_digest));
  }
  return internal::ParseTocWithDigest(json, footer.compression, footer.payload_end,
                                      std::move(digest));
}

}  // namespace accel::estargz
