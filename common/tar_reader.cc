#include "common/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cerrno>
#include <clocale>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/layer_path.h"
#include "common/status_macros.h"

namespace accel {
namespace {

// Zeros handed out for holes in sparse files.
constexpr size_t kZeroBlock = 64 << 10;
const char kZeros[kZeroBlock] = {};

std::string Quoted(const std::string& path) {
  return absl::StrCat("tar entry \"", absl::string_view(path).substr(0, 300), "\"");
}

}  // namespace

TarReader::TarReader(ReadFn input, size_t block)
    : input_(std::move(input)), buffer_(std::max<size_t>(block, 512), '\0') {}

TarReader::~TarReader() {
  if (a_ != nullptr) archive_read_free(a_);
}

absl::StatusOr<std::unique_ptr<TarReader>> TarReader::Open(ReadFn input, size_t block) {
  // libarchive converts pax (UTF-8) names to the locale's charset: make
  // that the identity, so names arrive byte for byte.
  static std::once_flag locale_once;
  std::call_once(locale_once, [] { std::setlocale(LC_CTYPE, "C.UTF-8"); });

  std::unique_ptr<TarReader> r(new TarReader(std::move(input), block));
  r->a_ = archive_read_new();
  if (r->a_ == nullptr) return absl::InternalError("archive_read_new failed");
  archive_read_support_format_tar(r->a_);
  if (archive_read_open(r->a_, r.get(), nullptr, &TarReader::OnRead, nullptr) != ARCHIVE_OK) {
    return r->ArchiveError("not a tar stream");
  }
  return r;
}

ssize_t TarReader::OnRead(struct archive* a, void* opaque, const void** out) {
  auto* self = static_cast<TarReader*>(opaque);
  absl::StatusOr<size_t> n = self->input_(self->buffer_.data(), self->buffer_.size());
  if (!n.ok()) {
    self->input_error_ = n.status();
    archive_set_error(a, EIO, "%s", std::string(n.status().message()).c_str());
    return -1;
  }
  *out = self->buffer_.data();
  return static_cast<ssize_t>(*n);
}

absl::Status TarReader::ArchiveError(absl::string_view what) const {
  if (!input_error_.ok()) return input_error_;
  const char* msg = archive_error_string(a_);
  return absl::DataLossError(absl::StrCat(what, ": ", msg ? msg : "libarchive error"));
}

int64_t TarReader::header_position() const { return archive_read_header_position(a_); }

absl::StatusOr<const LayerEntry*> TarReader::Next() {
  raw_ = nullptr;
  struct archive_entry* ae = nullptr;
  const int rc = archive_read_next_header(a_, &ae);
  if (rc == ARCHIVE_EOF) return nullptr;
  if (rc < ARCHIVE_WARN) {
    return ArchiveError(absl::StrCat("tar stream is invalid after ", entries_, " entries"));
  }
  ++entries_;
  raw_ = ae;
  block_ = nullptr;
  block_len_ = block_used_ = 0;
  block_off_ = pos_ = 0;
  data_eof_ = false;
  pending_ = absl::string_view();
  ACCEL_RETURN_IF_ERROR(FillEntry(ae));
  return &entry_;
}

absl::Status TarReader::FillEntry(struct archive_entry* ae) {
  LayerEntry& e = entry_;
  e = LayerEntry();
  ACCEL_ASSIGN_OR_RETURN(e.path, CleanLayerPath(archive_entry_pathname(ae), "tar entry"));
  const std::string quoted = Quoted(e.path);
  e.mode = archive_entry_perm(ae) & 07777;
  const int64_t uid = archive_entry_uid(ae);
  const int64_t gid = archive_entry_gid(ae);
  if (uid < 0 || uid > 0xffffffffLL || gid < 0 || gid > 0xffffffffLL) {
    return absl::InvalidArgumentError(absl::StrCat(quoted, " has an out-of-range uid or gid"));
  }
  e.uid = static_cast<uint32_t>(uid);
  e.gid = static_cast<uint32_t>(gid);
  e.mtime_sec = archive_entry_mtime(ae);
  const long nsec = archive_entry_mtime_nsec(ae);
  e.mtime_nsec = nsec >= 0 && nsec < 1'000'000'000 ? static_cast<uint32_t>(nsec) : 0;

  if (const char* hl = archive_entry_hardlink(ae); hl != nullptr) {
    e.type = EntryType::kHardlink;
    ACCEL_ASSIGN_OR_RETURN(e.link_target,
                           CleanLayerPath(hl, absl::StrCat("hard link target of ", quoted)));
  } else {
    switch (archive_entry_filetype(ae)) {
      case AE_IFREG:
        e.type = EntryType::kRegular;
        break;
      case AE_IFDIR:
        e.type = EntryType::kDirectory;
        break;
      case AE_IFLNK:
        e.type = EntryType::kSymlink;
        if (const char* t = archive_entry_symlink(ae); t != nullptr) e.link_target = t;
        if (e.link_target.size() > kMaxLayerPathBytes) {
          return absl::InvalidArgumentError(absl::StrCat(quoted, ": symlink target too long"));
        }
        break;
      case AE_IFCHR:
        e.type = EntryType::kCharDevice;
        break;
      case AE_IFBLK:
        e.type = EntryType::kBlockDevice;
        break;
      case AE_IFIFO:
        e.type = EntryType::kFifo;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(quoted, " has an unsupported type (", archive_entry_filetype(ae), ")"));
    }
  }
  if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) {
    e.dev_major = static_cast<uint32_t>(archive_entry_rdevmajor(ae));
    e.dev_minor = static_cast<uint32_t>(archive_entry_rdevminor(ae));
  }
  if (e.path.empty() && e.type != EntryType::kDirectory) {
    return absl::InvalidArgumentError("tar entry for the layer root is not a directory");
  }
  if (e.type == EntryType::kRegular) {
    const int64_t declared = archive_entry_size(ae);
    if (declared < 0)
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has a negative size"));
    e.size = static_cast<uint64_t>(declared);
  }

  archive_entry_xattr_reset(ae);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK) {
    const size_t name_len = name == nullptr ? 0 : std::strlen(name);
    if (name_len == 0 || name_len > kMaxLayerNameBytes || size > kMaxTarXattrBytes ||
        e.xattrs.size() >= kMaxTarXattrs) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has an invalid extended attribute"));
    }
    e.xattrs[name] = std::string(static_cast<const char*>(value), size);
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::string_view> TarReader::NextDataBlock() {
  const uint64_t size = entry_.type == EntryType::kRegular ? entry_.size : 0;
  for (;;) {
    if (pos_ >= size) return absl::string_view();
    if (!data_eof_ && block_used_ == block_len_) {
      const void* b = nullptr;
      size_t len = 0;
      la_int64_t off = 0;
      const int rc = archive_read_data_block(a_, &b, &len, &off);
      if (rc == ARCHIVE_EOF) {
        data_eof_ = true;
      } else if (rc < ARCHIVE_WARN) {
        return ArchiveError(Quoted(entry_.path));
      } else {
        if (off < 0 || static_cast<uint64_t>(off) < pos_ || static_cast<uint64_t>(off) > size ||
            len > size - static_cast<uint64_t>(off)) {
          return absl::DataLossError(
              absl::StrCat(Quoted(entry_.path), ": data block outside the file"));
        }
        block_ = static_cast<const char*>(b);
        block_len_ = len;
        block_used_ = 0;
        block_off_ = static_cast<uint64_t>(off);
        if (len == 0) continue;
      }
    }
    // A hole before the next block (or up to the end): zeros.
    const uint64_t data_at = data_eof_ ? size : block_off_;
    if (pos_ < data_at) {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(kZeroBlock, data_at - pos_));
      pos_ += k;
      return absl::string_view(kZeros, k);
    }
    const absl::string_view out(block_ + block_used_, block_len_ - block_used_);
    block_used_ = block_len_;
    block_off_ += out.size();
    pos_ += out.size();
    return out;
  }
}

absl::StatusOr<size_t> TarReader::ReadData(char* buf, size_t len) {
  if (pending_.empty()) {
    ACCEL_ASSIGN_OR_RETURN(pending_, NextDataBlock());
  }
  const size_t n = std::min(len, pending_.size());
  std::memcpy(buf, pending_.data(), n);
  pending_.remove_prefix(n);
  return n;
}

}  // namespace accel
