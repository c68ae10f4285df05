// Store::WriteLayer: a compressed tar stream in, a published store layer out.
//
//   input --(gzip | zstd | plain)--> decompressor --+--> sha256 (the diff id)
//                                                   +--> libarchive tar reader
//                                                          --> data file (contents, back to back)
//                                                          --> index (every entry's metadata)
//
// Nothing is buffered beyond one block: a 10 GB layer streams through with
// constant memory besides the index. Every name is checked before use.

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <clocale>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/decompress.h"
#include "common/errno_status.h"
#include "common/fs_util.h"
#include "common/layer_path.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "store/store.h"

namespace accel::store {
namespace {

constexpr size_t kBlock = 1 << 20;

// What libarchive's read callback needs.
struct Feed {
  Decompressor* decompressor;
  Sha256 hash;
  std::vector<char> buf = std::vector<char>(kBlock);
  uint64_t total = 0;
  absl::Status error;
  const WriteProgressFn* progress;

  // Reads, hashes and counts the next block; 0 at the end.
  absl::StatusOr<size_t> Next() {
    ACCEL_ASSIGN_OR_RETURN(size_t n, decompressor->Read(buf.data(), buf.size()));
    hash.Update(buf.data(), n);
    total += n;
    if (*progress && n > 0) (*progress)(total);
    return n;
  }
};

la_ssize_t ArchiveRead(struct archive* a, void* opaque, const void** out) {
  auto* feed = static_cast<Feed*>(opaque);
  absl::StatusOr<size_t> n = feed->Next();
  if (!n.ok()) {
    feed->error = n.status();
    archive_set_error(a, EIO, "%s", std::string(n.status().message()).c_str());
    return -1;
  }
  *out = feed->buf.data();
  return static_cast<la_ssize_t>(*n);
}

// Buffered appends to the data file.
class DataWriter {
 public:
  DataWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) { buf_.reserve(kBlock); }
  absl::Status Append(const char* p, size_t n) {
    offset_ += n;
    while (n > 0) {
      size_t take = std::min(n, kBlock - buf_.size());
      buf_.insert(buf_.end(), p, p + take);
      p += take;
      n -= take;
      if (buf_.size() == kBlock) ACCEL_RETURN_IF_ERROR(Flush());
    }
    return absl::OkStatus();
  }
  absl::Status Flush() {
    size_t off = 0;
    while (off < buf_.size()) {
      ssize_t w = ::write(fd_, buf_.data() + off, buf_.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return ErrnoToStatus(errno, absl::StrCat("write ", path_));
      off += static_cast<size_t>(w);
    }
    buf_.clear();
    return absl::OkStatus();
  }
  uint64_t offset() const { return offset_; }

 private:
  int fd_;
  std::string path_;
  std::vector<char> buf_;
  uint64_t offset_ = 0;
};

absl::Status FsyncFd(int fd, const std::string& path) {
  if (::fsync(fd) != 0) return ErrnoToStatus(errno, absl::StrCat("fsync ", path));
  return absl::OkStatus();
}

// Reads every entry of the tar stream into `index` and `data`.
absl::Status ReadTar(struct archive* a, Feed& feed, DataWriter& data, LayerIndex& index) {
  // Types by path, to check parents and hard-link targets as tar order
  // builds the tree.
  std::unordered_map<std::string, EntryType> types;
  std::vector<char> zeros;
  struct archive_entry* ae = nullptr;
  for (;;) {
    int rc = archive_read_next_header(a, &ae);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) {
      if (!feed.error.ok()) return feed.error;
      return absl::DataLossError(absl::StrCat("tar stream is invalid after ", index.entries.size(),
                                              " entries: ", archive_error_string(a)));
    }
    if (index.entries.size() >= kMaxEntries) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer has more than ", kMaxEntries, " entries"));
    }
    LayerEntry e;
    ACCEL_ASSIGN_OR_RETURN(e.path, CleanLayerPath(archive_entry_pathname(ae), "tar entry"));
    e.mode = archive_entry_perm(ae) & 07777;
    e.uid = static_cast<uint32_t>(archive_entry_uid(ae));
    e.gid = static_cast<uint32_t>(archive_entry_gid(ae));
    e.mtime_sec = archive_entry_mtime(ae);
    long nsec = archive_entry_mtime_nsec(ae);
    e.mtime_nsec = nsec >= 0 && nsec < 1'000'000'000 ? static_cast<uint32_t>(nsec) : 0;
    const auto quoted = [&] { return absl::StrCat("tar entry \"", e.path, "\""); };

    // The parent must not be a non-directory of this layer.
    if (!e.path.empty()) {
      size_t slash = e.path.rfind('/');
      if (slash != std::string::npos) {
        auto it = types.find(e.path.substr(0, slash));
        if (it != types.end() && it->second != EntryType::kDirectory) {
          return absl::InvalidArgumentError(
              absl::StrCat(quoted(), " lies below a non-directory of the same layer"));
        }
      }
    }

    if (const char* hl = archive_entry_hardlink(ae); hl != nullptr) {
      e.type = EntryType::kHardlink;
      ACCEL_ASSIGN_OR_RETURN(e.link_target,
                             CleanLayerPath(hl, absl::StrCat("hard link target of ", quoted())));
      auto it = types.find(e.link_target);
      if (it == types.end() ||
          (it->second != EntryType::kRegular && it->second != EntryType::kHardlink)) {
        return absl::InvalidArgumentError(
            absl::StrCat(quoted(), " is a hard link to \"", e.link_target,
                         "\", which is not an earlier regular file of this layer"));
      }
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
          if (e.link_target.size() > kMaxPathBytes) {
            return absl::InvalidArgumentError(absl::StrCat(quoted(), ": symlink target too long"));
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
          return absl::InvalidArgumentError(absl::StrCat(quoted(), " has an unsupported type (",
                                                         archive_entry_filetype(ae), ")"));
      }
    }
    if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) {
      e.dev_major = static_cast<uint32_t>(archive_entry_rdevmajor(ae));
      e.dev_minor = static_cast<uint32_t>(archive_entry_rdevminor(ae));
    }
    if (e.path.empty() && e.type != EntryType::kDirectory) {
      return absl::InvalidArgumentError("tar entry for the layer root is not a directory");
    }

    archive_entry_xattr_reset(ae);
    const char* xname = nullptr;
    const void* xvalue = nullptr;
    size_t xsize = 0;
    while (archive_entry_xattr_next(ae, &xname, &xvalue, &xsize) == ARCHIVE_OK) {
      if (xname == nullptr || std::strlen(xname) == 0 || std::strlen(xname) > 255 ||
          xsize > kMaxXattrValueBytes || e.xattrs.size() >= kMaxXattrs) {
        return absl::InvalidArgumentError(
            absl::StrCat(quoted(), " has an invalid extended attribute"));
      }
      e.xattrs[xname] = std::string(static_cast<const char*>(xvalue), xsize);
    }

    if (e.type == EntryType::kRegular) {
      const int64_t declared = archive_entry_size(ae);
      if (declared < 0)
        return absl::InvalidArgumentError(absl::StrCat(quoted(), " has a negative size"));
      e.size = static_cast<uint64_t>(declared);
      e.data_offset = data.offset();
      Sha256 h;
      uint64_t written = 0;
      for (;;) {
        const void* block = nullptr;
        size_t size = 0;
        la_int64_t offset = 0;
        int r = archive_read_data_block(a, &block, &size, &offset);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) {
          if (!feed.error.ok()) return feed.error;
          return absl::DataLossError(absl::StrCat(quoted(), ": ", archive_error_string(a)));
        }
        // Sparse files: holes come back as gaps between blocks.
        if (offset < 0 || static_cast<uint64_t>(offset) < written ||
            static_cast<uint64_t>(offset) + size > e.size) {
          return absl::DataLossError(absl::StrCat(quoted(), ": data block outside the file"));
        }
        while (written < static_cast<uint64_t>(offset)) {
          size_t gap = static_cast<size_t>(std::min<uint64_t>(kBlock, offset - written));
          zeros.resize(std::max(zeros.size(), gap));
          ACCEL_RETURN_IF_ERROR(data.Append(zeros.data(), gap));
          h.Update(zeros.data(), gap);
          written += gap;
        }
        ACCEL_RETURN_IF_ERROR(data.Append(static_cast<const char*>(block), size));
        h.Update(block, size);
        written += size;
      }
      while (written < e.size) {  // a trailing hole
        size_t gap = static_cast<size_t>(std::min<uint64_t>(kBlock, e.size - written));
        zeros.resize(std::max(zeros.size(), gap));
        ACCEL_RETURN_IF_ERROR(data.Append(zeros.data(), gap));
        h.Update(zeros.data(), gap);
        written += gap;
      }
      e.digest = h.Digest();
    }
    auto [slot, inserted] = types.try_emplace(e.path, EntryType::kRegular);
    const bool replaced_dir = !inserted && slot->second == EntryType::kDirectory;
    slot->second = e.type == EntryType::kHardlink ? EntryType::kRegular : e.type;
    if (replaced_dir && e.type != EntryType::kDirectory) {
      // A non-directory replacing a directory removes what was below it.
      const std::string prefix = e.path + "/";
      for (auto it = types.begin(); it != types.end();) {
        if (it->first.compare(0, prefix.size(), prefix) == 0) {
          it = types.erase(it);
        } else {
          ++it;
        }
      }
    }
    index.entries.push_back(std::move(e));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WriteResult> Store::WriteLayer(absl::string_view diff_id, const ReadFn& input,
                                              const WriteProgressFn& progress) const {
  ACCEL_RETURN_IF_ERROR(ValidateDiffId(diff_id));
  WriteResult result;
  if (HasLayer(diff_id)) {
    ACCEL_ASSIGN_OR_RETURN(result.info, StatLayer(diff_id));
    result.existed = true;
    return result;
  }
  // libarchive converts PAX (UTF-8) names to the locale's charset: make
  // that the identity, so names arrive byte for byte.
  static std::once_flag locale_once;
  std::call_once(locale_once, [] { std::setlocale(LC_CTYPE, "C.UTF-8"); });

  const std::string tmp = TempPath(absl::StrCat("layer.", diff_id.substr(7, 12)));
  ACCEL_RETURN_IF_ERROR(MkdirAll(tmp, 0755));
  bool published = false;
  auto cleanup = absl::MakeCleanup([&] {
    if (!published) (void)RemoveAll(tmp);
  });
  const std::string data_path = tmp + "/data";
  const std::string index_path = tmp + "/index";
  UniqueFd data_fd(::open(data_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!data_fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", data_path));

  Decompressor decompressor(input);
  // gc judges a writer's temporary by its mtime: touch it as the layer
  // streams in, so a conversion longer than the grace period is not
  // mistaken for an abandoned one.
  uint64_t touched_at = 0;
  WriteProgressFn keep_fresh = [&](uint64_t total) {
    if (total - touched_at >= (uint64_t{256} << 20)) {
      ::utimensat(AT_FDCWD, tmp.c_str(), nullptr, 0);
      touched_at = total;
    }
    if (progress) progress(total);
  };
  Feed feed{&decompressor, Sha256(), std::vector<char>(kBlock), 0, absl::OkStatus(), &keep_fresh};
  DataWriter data(data_fd.get(), data_path);
  LayerIndex index;
  index.diff_id = std::string(diff_id);
  {
    struct archive* a = archive_read_new();
    if (a == nullptr) return absl::InternalError("archive_read_new failed");
    auto free_archive = absl::MakeCleanup([a] { archive_read_free(a); });
    archive_read_support_format_tar(a);
    if (archive_read_open(a, &feed, nullptr, ArchiveRead, nullptr) != ARCHIVE_OK) {
      if (!feed.error.ok()) return Annotate(feed.error, "layer ", diff_id);
      return absl::DataLossError(absl::StrCat("layer ", diff_id, ": not a tar stream (",
                                              decompressor.name(), "): ", archive_error_string(a)));
    }
    absl::Status s = ReadTar(a, feed, data, index);
    if (!s.ok()) return Annotate(s, "layer ", diff_id);
  }
  // The tar end marker may be followed by padding libarchive did not read:
  // it is part of the stream the diff id covers.
  for (;;) {
    absl::StatusOr<size_t> n = feed.Next();
    if (!n.ok()) return Annotate(n.status(), "layer ", diff_id);
    if (*n == 0) break;
  }
  ACCEL_RETURN_IF_ERROR(data.Flush());
  const std::string got = feed.hash.Digest();
  if (got != diff_id) {
    return absl::DataLossError(absl::StrCat("layer ", diff_id,
                                            ": the uncompressed stream's digest is ", got,
                                            " (wrong or corrupt layer)"));
  }
  index.data_size = data.offset();
  ACCEL_RETURN_IF_ERROR(FsyncFd(data_fd.get(), data_path));
  data_fd.Reset();
  ACCEL_RETURN_IF_ERROR(WriteFileAtomic(index_path, EncodeIndex(index), 0644));
  ACCEL_RETURN_IF_ERROR(FsyncDir(tmp));

  const std::string final_dir = LayerDir(diff_id);
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    int err = errno;
    if (err != EEXIST && err != ENOTEMPTY) {
      return ErrnoToStatus(err, absl::StrCat("publish layer ", diff_id, " as ", final_dir));
    }
    // Another writer published it first: theirs stands, ours goes.
    result.existed = true;
  } else {
    published = true;
    ACCEL_RETURN_IF_ERROR(FsyncDir(dir_ + "/layers/sha256"));
  }
  ACCEL_ASSIGN_OR_RETURN(result.info, StatLayer(diff_id));
  return result;
}

}  // namespace accel::store
