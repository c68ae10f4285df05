// Store::WriteLayer: a compressed tar stream in, a published store layer out.
//
//   input --(gzip | zstd | plain)--> decompressor --+--> sha256 (the diff id)
//                                                   +--> tar reader (common/tar_reader.h)
//                                                          --> data file (contents, back to back)
//                                                          --> index (every entry's metadata)
//
// Nothing is buffered beyond one block: a 10 GB layer streams through with
// constant memory besides the index. Every name is checked before use.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/decompress.h"
#include "common/errno_status.h"
#include "common/fs_util.h"
#include "common/layer_path.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/tar_reader.h"
#include "store/store.h"

namespace accel::store {
namespace {

constexpr size_t kBlock = 1 << 20;

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

// Reads every member of `tar` into `index` and `data`, checking what makes
// a layer whole: parents are directories, hard links name earlier regular
// files.
absl::Status ReadTar(TarReader& tar, DataWriter& data, LayerIndex& index) {
  // Types by path, to check parents and hard-link targets as tar order
  // builds the tree.
  std::unordered_map<std::string, EntryType> types;
  for (;;) {
    ACCEL_ASSIGN_OR_RETURN(const LayerEntry* next, tar.Next());
    if (next == nullptr) break;
    if (index.entries.size() >= kMaxEntries) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer has more than ", kMaxEntries, " entries"));
    }
    LayerEntry e = *next;
    const auto quoted = [&] { return absl::StrCat("tar entry \"", e.path, "\""); };

    // The parent must not be a non-directory of this layer.
    if (!e.path.empty()) {
      auto it = types.find(std::string(LayerPathParent(e.path)));
      if (it != types.end() && it->second != EntryType::kDirectory) {
        return absl::InvalidArgumentError(
            absl::StrCat(quoted(), " lies below a non-directory of the same layer"));
      }
    }
    if (e.type == EntryType::kHardlink) {
      auto it = types.find(e.link_target);
      if (it == types.end() ||
          (it->second != EntryType::kRegular && it->second != EntryType::kHardlink)) {
        return absl::InvalidArgumentError(
            absl::StrCat(quoted(), " is a hard link to \"", e.link_target,
                         "\", which is not an earlier regular file of this layer"));
      }
    }
    if (e.type == EntryType::kRegular) {
      e.data_offset = data.offset();
      Sha256 h;
      for (;;) {
        ACCEL_ASSIGN_OR_RETURN(absl::string_view block, tar.NextDataBlock());
        if (block.empty()) break;
        ACCEL_RETURN_IF_ERROR(data.Append(block.data(), block.size()));
        h.Update(block);
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
  Sha256 hash;  // of the uncompressed stream: the diff id
  uint64_t total = 0;
  // gc judges a writer's temporary by its mtime: touch it as the layer
  // streams in, so a conversion longer than the grace period is not
  // mistaken for an abandoned one.
  uint64_t touched_at = 0;
  ReadFn feed = [&](char* buf, size_t len) -> absl::StatusOr<size_t> {
    ACCEL_ASSIGN_OR_RETURN(size_t n, decompressor.Read(buf, len));
    hash.Update(buf, n);
    total += n;
    if (n > 0) {
      if (total - touched_at >= (uint64_t{256} << 20)) {
        ::utimensat(AT_FDCWD, tmp.c_str(), nullptr, 0);
        touched_at = total;
      }
      if (progress) progress(total);
    }
    return n;
  };
  DataWriter data(data_fd.get(), data_path);
  LayerIndex index;
  index.diff_id = std::string(diff_id);
  {
    absl::StatusOr<std::unique_ptr<TarReader>> tar = TarReader::Open(feed, kBlock);
    if (!tar.ok()) return Annotate(tar.status(), "layer ", diff_id, " (", decompressor.name(), ")");
    absl::Status s = ReadTar(**tar, data, index);
    if (!s.ok()) return Annotate(s, "layer ", diff_id);
  }
  // The tar end marker may be followed by padding the tar reader did not
  // read: it is part of the stream the diff id covers.
  std::vector<char> rest(kBlock);
  for (;;) {
    absl::StatusOr<size_t> n = feed(rest.data(), rest.size());
    if (!n.ok()) return Annotate(n.status(), "layer ", diff_id);
    if (*n == 0) break;
  }
  ACCEL_RETURN_IF_ERROR(data.Flush());
  const std::string got = hash.Digest();
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
