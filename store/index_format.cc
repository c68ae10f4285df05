#include "store/index_format.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/layer_path.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace accel::store {
namespace {

constexpr size_t kMagicSize = 8;
constexpr size_t kChecksumSize = 32;

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void Str(absl::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s.data(), s.size());
  }

 private:
  std::string& out_;
};

class Reader {
 public:
  Reader(absl::string_view data, absl::string_view origin) : data_(data), origin_(origin) {}

  absl::Status U8(uint8_t& v) {
    ACCEL_RETURN_IF_ERROR(Need(1, "u8"));
    v = static_cast<uint8_t>(data_[pos_++]);
    return absl::OkStatus();
  }
  absl::Status U32(uint32_t& v) {
    ACCEL_RETURN_IF_ERROR(Need(4, "u32"));
    v = 0;
    for (int i = 0; i < 4; ++i)
      v |= static_cast<uint32_t>(static_cast<uint8_t>(data_[pos_++])) << (8 * i);
    return absl::OkStatus();
  }
  absl::Status U64(uint64_t& v) {
    ACCEL_RETURN_IF_ERROR(Need(8, "u64"));
    v = 0;
    for (int i = 0; i < 8; ++i)
      v |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_++])) << (8 * i);
    return absl::OkStatus();
  }
  absl::Status Str(std::string& s, uint32_t max, absl::string_view what) {
    uint32_t n = 0;
    ACCEL_RETURN_IF_ERROR(U32(n));
    if (n > max) {
      return Error(absl::StrCat(what, " length ", n, " exceeds the limit of ", max));
    }
    ACCEL_RETURN_IF_ERROR(Need(n, what));
    s.assign(data_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status Error(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat(origin_, ": corrupt index at byte ", pos_, ": ", what));
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  absl::Status Need(size_t n, absl::string_view what) const {
    if (data_.size() - pos_ < n) return Error(absl::StrCat("truncated (reading ", what, ")"));
    return absl::OkStatus();
  }
  absl::string_view data_;
  absl::string_view origin_;
  size_t pos_ = 0;
};

}  // namespace

std::string EncodeIndex(const LayerIndex& index) {
  std::string out;
  out.reserve(64 + index.entries.size() * 96);
  out.append(kIndexMagic, kMagicSize);
  Writer w(out);
  w.U32(kIndexVersion);
  w.U32(0);
  w.U64(index.entries.size());
  w.U64(index.data_size);
  w.Str(index.diff_id);
  for (const LayerEntry& e : index.entries) {
    w.U8(static_cast<uint8_t>(e.type));
    w.U32(e.mode);
    w.U32(e.uid);
    w.U32(e.gid);
    w.U64(e.size);
    w.U64(static_cast<uint64_t>(e.mtime_sec));
    w.U32(e.mtime_nsec);
    w.U32(e.dev_major);
    w.U32(e.dev_minor);
    w.U64(e.data_offset);
    w.Str(e.path);
    w.Str(e.link_target);
    w.Str(e.digest);
    w.U32(static_cast<uint32_t>(e.xattrs.size()));
    for (const auto& [name, value] : e.xattrs) {
      w.Str(name);
      w.Str(value);
    }
  }
  std::array<uint8_t, 32> sum = Sha256::RawOf(out);
  out.append(reinterpret_cast<const char*>(sum.data()), sum.size());
  return out;
}

absl::StatusOr<LayerIndex> DecodeIndex(absl::string_view bytes, absl::string_view origin) {
  if (bytes.size() < kMagicSize + kChecksumSize ||
      std::memcmp(bytes.data(), kIndexMagic, kMagicSize) != 0) {
    return absl::DataLossError(absl::StrCat(origin, ": not an accel layer index (bad magic)"));
  }
  absl::string_view body = bytes.substr(0, bytes.size() - kChecksumSize);
  std::array<uint8_t, 32> sum = Sha256::RawOf(body);
  if (std::memcmp(sum.data(), bytes.data() + body.size(), kChecksumSize) != 0) {
    return absl::DataLossError(absl::StrCat(origin, ": index checksum mismatch (corrupt file)"));
  }
  Reader r(body.substr(kMagicSize), origin);
  uint32_t version = 0, reserved = 0;
  ACCEL_RETURN_IF_ERROR(r.U32(version));
  if (version != kIndexVersion) {
    return absl::FailedPreconditionError(absl::StrCat(origin, ": index version ", version,
                                                      " is not supported (this build reads ",
                                                      kIndexVersion, ")"));
  }
  ACCEL_RETURN_IF_ERROR(r.U32(reserved));
  LayerIndex index;
  uint64_t count = 0;
  ACCEL_RETURN_IF_ERROR(r.U64(count));
  ACCEL_RETURN_IF_ERROR(r.U64(index.data_size));
  ACCEL_RETURN_IF_ERROR(r.Str(index.diff_id, 200, "diff id"));
  // Each entry takes at least 65 bytes: a count beyond what the file can
  // hold is corruption, caught before reserving memory for it.
  if (count > kMaxEntries || count > r.remaining() / 65) {
    return r.Error(absl::StrCat("entry count ", count, " does not fit the file"));
  }
  index.entries.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    LayerEntry& e = index.entries[i];
    uint8_t type = 0;
    uint64_t mtime = 0;
    uint32_t nx = 0;
    ACCEL_RETURN_IF_ERROR(r.U8(type));
    if (type > static_cast<uint8_t>(EntryType::kFifo)) {
      return r.Error(absl::StrCat("entry ", i, " has unknown type ", type));
    }
    e.type = static_cast<EntryType>(type);
    ACCEL_RETURN_IF_ERROR(r.U32(e.mode));
    ACCEL_RETURN_IF_ERROR(r.U32(e.uid));
    ACCEL_RETURN_IF_ERROR(r.U32(e.gid));
    ACCEL_RETURN_IF_ERROR(r.U64(e.size));
    ACCEL_RETURN_IF_ERROR(r.U64(mtime));
    e.mtime_sec = static_cast<int64_t>(mtime);
    ACCEL_RETURN_IF_ERROR(r.U32(e.mtime_nsec));
    ACCEL_RETURN_IF_ERROR(r.U32(e.dev_major));
    ACCEL_RETURN_IF_ERROR(r.U32(e.dev_minor));
    ACCEL_RETURN_IF_ERROR(r.U64(e.data_offset));
    ACCEL_RETURN_IF_ERROR(r.Str(e.path, kMaxPathBytes, "path"));
    ACCEL_RETURN_IF_ERROR(r.Str(e.link_target, kMaxPathBytes, "link target"));
    ACCEL_RETURN_IF_ERROR(r.Str(e.digest, 200, "digest"));
    ACCEL_RETURN_IF_ERROR(r.U32(nx));
    if (nx > kMaxXattrs) return r.Error(absl::StrCat("entry ", i, " has ", nx, " xattrs"));
    for (uint32_t x = 0; x < nx; ++x) {
      std::string name, value;
      ACCEL_RETURN_IF_ERROR(r.Str(name, 255, "xattr name"));
      ACCEL_RETURN_IF_ERROR(r.Str(value, kMaxXattrValueBytes, "xattr value"));
      e.xattrs.emplace(std::move(name), std::move(value));
    }
    absl::Status path_ok = ValidateLayerPath(e.path);
    if (!path_ok.ok()) return r.Error(absl::StrCat("entry ", i, ": ", path_ok.message()));
    if (e.mode > 07777) return r.Error(absl::StrCat("entry ", i, " has mode bits outside 07777"));
    if (e.mtime_nsec >= 1'000'000'000) {
      return r.Error(absl::StrCat("entry ", i, " has mtime nanoseconds out of range"));
    }
    if (e.type == EntryType::kRegular) {
      if (e.data_offset > index.data_size || e.size > index.data_size - e.data_offset) {
        return r.Error(absl::StrCat("entry \"", e.path, "\" content [", e.data_offset, ", +",
                                    e.size, ") lies outside the data file (", index.data_size,
                                    " bytes)"));
      }
    } else if (e.type == EntryType::kHardlink) {
      absl::Status target_ok = ValidateLayerPath(e.link_target);
      if (!target_ok.ok() || e.link_target.empty()) {
        return r.Error(absl::StrCat("hard link \"", e.path, "\" has an invalid target"));
      }
    }
  }
  if (r.remaining() != 0) return r.Error("trailing bytes after the last entry");
  return index;
}

}  // namespace accel::store
