#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/errno_status.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/random.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace accel::store {
namespace {

constexpr char kIdDir[] = "store-id";
// A hostile index must not make a reader allocate without bound: 512 MiB
// holds far more than the largest real layer's index (~100 bytes an entry).
constexpr size_t kMaxIndexBytes = size_t{512} << 20;

// The store is shared and written by others: every name below its root is
// opened without following symlinks, and files must be regular files (a
// link to a host file, or a FIFO, is refused).
absl::StatusOr<UniqueFd> OpenBelow(const std::string& root, const std::vector<std::string>& parts,
                                   bool directory) {
  UniqueFd cur(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cur.valid()) return ErrnoToStatus(errno, absl::StrCat("open store ", root));
  std::string where = root;
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    where = absl::StrCat(where, "/", parts[i]);
    int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
    if (!last || directory) flags |= O_DIRECTORY;
    UniqueFd next(::openat(cur.get(), parts[i].c_str(), flags));
    if (!next.valid()) {
      if (errno == ELOOP || errno == ENOTDIR) {
        return absl::DataLossError(
            absl::StrCat(where, " is a symlink or not a directory; refusing it"));
      }
      return ErrnoToStatus(errno, absl::StrCat("open ", where));
    }
    cur = std::move(next);
  }
  struct stat st;
  if (::fstat(cur.get(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("stat ", where));
  if (!directory && !S_ISREG(st.st_mode)) {
    return absl::DataLossError(absl::StrCat(where, " is not a regular file; refusing it"));
  }
  if (!directory) {
    // Reads should block normally from here on.
    int fl = ::fcntl(cur.get(), F_GETFL);
    if (fl >= 0) ::fcntl(cur.get(), F_SETFL, fl & ~O_NONBLOCK);
  }
  return cur;
}

absl::StatusOr<std::string> ReadAll(int fd, const std::string& what, size_t max) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoToStatus(errno, absl::StrCat("stat ", what));
  if (static_cast<uint64_t>(st.st_size) > max) {
    return absl::DataLossError(absl::StrCat(what, ": ", st.st_size, " bytes is too large"));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::pread(fd, bytes.data() + got, bytes.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("read ", what));
    if (n == 0) return absl::DataLossError(absl::StrCat(what, ": shrank while being read"));
    got += static_cast<size_t>(n);
  }
  return bytes;
}

// Lists the names in `dir` (without "." and ".."). A missing dir is empty.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return names;
    return ErrnoToStatus(errno, absl::StrCat("open directory ", dir));
  }
  while (struct dirent* de = ::readdir(d)) {
    std::string name = de->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

nlohmann::json RecordToJson(const ImageRecord& r) {
  return nlohmann::json{{"target", r.target},
                        {"source", r.source},
                        {"manifest_digest", r.manifest_digest},
                        {"platform", r.platform},
                        {"diff_ids", r.diff_ids},
                        {"blobs", r.blobs},
                        {"created_unix", r.created_unix}};
}

absl::StatusOr<ImageRecord> RecordFromJson(absl::string_view text, const std::string& origin) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat(origin, ": bad image record: ", why));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  ImageRecord r;
  auto str = [&](const char* key, std::string& out) -> bool {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return false;
    out = it->get<std::string>();
    return true;
  };
  auto list = [&](const char* key, std::vector<std::string>& out) -> bool {
    auto it = j.find(key);
    if (it == j.end() || !it->is_array()) return false;
    for (const auto& v : *it) {
      if (!v.is_string()) return false;
      out.push_back(v.get<std::string>());
    }
    return true;
  };
  if (!str("target", r.target) || r.target.empty()) return bad("missing target");
  str("source", r.source);
  str("manifest_digest", r.manifest_digest);
  str("platform", r.platform);
  if (!list("diff_ids", r.diff_ids)) return bad("missing diff_ids");
  list("blobs", r.blobs);
  for (const std::string& d : r.diff_ids) {
    if (!ValidateDiffId(d).ok())
      return bad(absl::StrCat("invalid diff id \"", d.substr(0, 80), "\""));
  }
  if (auto it = j.find("created_unix"); it != j.end() && it->is_number_integer()) {
    r.created_unix = it->get<int64_t>();
  }
  return r;
}

std::string ImagePath(const std::string& dir, absl::string_view target) {
  return absl::StrCat(dir, "/images/", Sha256::Of(target).substr(7), ".json");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir_in, bool create) {
  if (dir_in.empty()) return absl::InvalidArgumentError("store directory is empty");
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const std::string id_file = absl::StrCat(dir, "/", kIdDir, "/id");
  auto read_id = [&]() -> absl::StatusOr<std::string> {
    ACCEL_ASSIGN_OR_RETURN(UniqueFd fd, OpenBelow(dir, {kIdDir, "id"}, false));
    return ReadAll(fd.get(), id_file, 4096);
  };
  absl::StatusOr<std::string> id = read_id();
  if (!id.ok() && !create) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("store ", dir));
    }
    return absl::NotFoundError(absl::StrCat(dir, " is not an accel store (no ", kIdDir,
                                            "/id; `accelctl convert --store ", dir,
                                            "` creates one)"));
  }
  if (create) {
    for (const char* sub : {"layers/sha256", "images", "tmp"}) {
      ACCEL_RETURN_IF_ERROR(MkdirAll(absl::StrCat(dir, "/", sub), 0755));
    }
  }
  if (!id.ok()) {
    // First writer wins: the id directory is renamed into place whole, and
    // a rename onto an existing non-empty directory fails.
    std::string tmp = absl::StrCat(dir, "/tmp/id.", RandomHex(8));
    ACCEL_RETURN_IF_ERROR(MkdirAll(tmp, 0755));
    ACCEL_RETURN_IF_ERROR(WriteFileAtomic(tmp + "/id", RandomHex(16) + "\n", 0644));
    if (::rename(tmp.c_str(), absl::StrCat(dir, "/", kIdDir).c_str()) != 0) {
      int err = errno;
      (void)RemoveAll(tmp);
      if (err != EEXIST && err != ENOTEMPTY) {
        return ErrnoToStatus(err, absl::StrCat("publish store id in ", dir));
      }
    }
    ACCEL_RETURN_IF_ERROR(FsyncDir(dir));
    id = read_id();
    if (!id.ok()) return id.status();
  }
  // Everything the store writes into must be a real directory, not a link
  // someone planted (gc and rm remove entries below them as root).
  for (const std::vector<std::string>& sub :
       {std::vector<std::string>{"layers"}, {"layers", "sha256"}, {"images"}, {"tmp"}}) {
    absl::StatusOr<UniqueFd> d = OpenBelow(dir, sub, true);
    if (!d.ok() && !absl::IsNotFound(d.status())) return d.status();
  }
  std::string value(absl::StripAsciiWhitespace(*id));
  if (value.size() != 32 || !IsLowerHex(value)) {
    return absl::DataLossError(absl::StrCat(id_file, ": not a store id"));
  }
  return std::unique_ptr<Store>(new Store(dir, value));
}

std::string Store::LayerDir(absl::string_view diff_id) const {
  return absl::StrCat(dir_, "/layers/sha256/", diff_id.substr(std::min<size_t>(7, diff_id.size())));
}

std::string Store::TempPath(absl::string_view what) const {
  return absl::StrCat(dir_, "/tmp/", what, ".", ::getpid(), ".", RandomHex(6));
}

bool Store::HasLayer(absl::string_view diff_id) const {
  if (!ValidateDiffId(diff_id).ok()) return false;
  struct stat st;
  return ::stat((LayerDir(diff_id) + "/index").c_str(), &st) == 0;
}

absl::StatusOr<LayerInfo> Store::StatLayer(absl::string_view diff_id) const {
  ACCEL_RETURN_IF_ERROR(ValidateDiffId(diff_id));
  const std::string dir = LayerDir(diff_id);
  struct stat dst, ist, dast;
  if (::stat(dir.c_str(), &dst) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("layer ", diff_id, " is not in store ", dir_));
    }
    return ErrnoToStatus(errno, absl::StrCat("layer ", diff_id));
  }
  if (::stat((dir + "/index").c_str(), &ist) != 0 || ::stat((dir + "/data").c_str(), &dast) != 0) {
    return absl::DataLossError(
        absl::StrCat("layer ", diff_id, ": index or data file missing in ", dir));
  }
  LayerInfo info;
  info.diff_id = std::string(diff_id);
  info.data_bytes = static_cast<uint64_t>(dast.st_size);
  info.index_bytes = static_cast<uint64_t>(ist.st_size);
  info.created_unix = dst.st_mtim.tv_sec;
  // The entry count is in the index header, right after magic, version and
  // reserved: read 24 bytes rather than the whole index.
  UniqueFd fd(::open((dir + "/index").c_str(), O_RDONLY | O_CLOEXEC));
  char head[24];
  if (fd.valid() && ::pread(fd.get(), head, sizeof head, 0) == static_cast<ssize_t>(sizeof head)) {
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i)
      n |= static_cast<uint64_t>(static_cast<uint8_t>(head[16 + i])) << (8 * i);
    info.entries = n;
  }
  return info;
}

absl::StatusOr<std::vector<LayerInfo>> Store::ListLayers() const {
  ACCEL_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir_ + "/layers/sha256"));
  std::vector<LayerInfo> out;
  for (const std::string& name : names) {
    std::string diff_id = "sha256:" + name;
    if (!ValidateDiffId(diff_id).ok()) continue;  // not ours
    absl::StatusOr<LayerInfo> info = StatLayer(diff_id);
    if (info.ok()) {
      out.push_back(std::move(*info));
    } else if (!absl::IsNotFound(info.status())) {
      LayerInfo broken;
      broken.diff_id = diff_id;
      out.push_back(broken);
    }
  }
  return out;
}

absl::StatusOr<OpenLayer> Store::Open(absl::string_view diff_id) const {
  ACCEL_RETURN_IF_ERROR(ValidateDiffId(diff_id));
  const std::string hex(diff_id.substr(7));
  const std::string index_path = LayerDir(diff_id) + "/index";
  const std::string data_path = LayerDir(diff_id) + "/data";
  OpenLayer layer;
  absl::StatusOr<UniqueFd> ifd = OpenBelow(dir_, {"layers", "sha256", hex, "index"}, false);
  if (!ifd.ok()) {
    if (absl::IsNotFound(ifd.status())) {
      return absl::NotFoundError(absl::StrCat("layer ", diff_id, " is not in store ", dir_));
    }
    return ifd.status();
  }
  ACCEL_ASSIGN_OR_RETURN(std::string bytes, ReadAll(ifd->get(), index_path, kMaxIndexBytes));
  ACCEL_ASSIGN_OR_RETURN(layer.index, DecodeIndex(bytes, index_path));
  if (layer.index.diff_id != diff_id) {
    return absl::DataLossError(
        absl::StrCat(index_path, ": index is for layer ", layer.index.diff_id));
  }
  ACCEL_ASSIGN_OR_RETURN(layer.data, OpenBelow(dir_, {"layers", "sha256", hex, "data"}, false));
  struct stat st;
  if (::fstat(layer.data.get(), &st) != 0)
    return ErrnoToStatus(errno, absl::StrCat("stat ", data_path));
  if (static_cast<uint64_t>(st.st_size) != layer.index.data_size) {
    return absl::DataLossError(absl::StrCat(data_path, ": ", st.st_size, " bytes, the index says ",
                                            layer.index.data_size));
  }
  return layer;
}

absl::Status Store::RemoveLayer(absl::string_view diff_id) const {
  ACCEL_RETURN_IF_ERROR(ValidateDiffId(diff_id));
  std::string tmp = TempPath(absl::StrCat("rm.", diff_id.substr(7, 12)));
  if (::rename(LayerDir(diff_id).c_str(), tmp.c_str()) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("layer ", diff_id, " is not in store ", dir_));
    }
    return ErrnoToStatus(errno, absl::StrCat("remove layer ", diff_id));
  }
  return RemoveAll(tmp);
}

absl::StatusOr<std::vector<VerifyProblem>> Store::VerifyLayer(absl::string_view diff_id) const {
  std::vector<VerifyProblem> problems;
  const std::string what = absl::StrCat("layer ", diff_id);
  absl::StatusOr<OpenLayer> layer = Open(diff_id);
  if (!layer.ok()) {
    if (absl::IsNotFound(layer.status())) return layer.status();
    problems.push_back({what, std::string(layer.status().message())});
    return problems;
  }
  std::vector<char> buf(1 << 20);
  for (const LayerEntry& e : layer->index.entries) {
    if (e.type != EntryType::kRegular) continue;
    Sha256 h;
    uint64_t off = 0;
    bool io_error = false;
    while (off < e.size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), e.size - off));
      ssize_t n =
          ::pread(layer->data.get(), buf.data(), want, static_cast<off_t>(e.data_offset + off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        problems.push_back(
            {what, absl::StrCat("file \"", e.path, "\": cannot read content at offset ",
                                e.data_offset + off)});
        io_error = true;
        break;
      }
      h.Update(buf.data(), static_cast<size_t>(n));
      off += static_cast<uint64_t>(n);
    }
    if (io_error) continue;
    std::string got = h.Digest();
    if (got != e.digest) {
      problems.push_back({what, absl::StrCat("file \"", e.path, "\": content digest ", got,
                                             ", the index says ", e.digest)});
    }
  }
  return problems;
}

absl::Status Store::PutImage(const ImageRecord& record) const {
  if (record.target.empty()) return absl::InvalidArgumentError("image record without a target");
  for (const std::string& d : record.diff_ids) ACCEL_RETURN_IF_ERROR(ValidateDiffId(d));
  return WriteFileAtomic(ImagePath(dir_, record.target), RecordToJson(record).dump(2) + "\n", 0644);
}

absl::StatusOr<std::vector<ImageRecord>> Store::ListImages() const {
  ACCEL_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir_ + "/images"));
  std::vector<ImageRecord> out;
  for (const std::string& name : names) {
    if (!absl::EndsWith(name, ".json")) continue;  // temporaries of WriteFileAtomic
    const std::string path = absl::StrCat(dir_, "/images/", name);
    absl::StatusOr<std::string> text = ReadFile(path);
    if (!text.ok()) {
      if (absl::IsNotFound(text.status())) continue;  // removed meanwhile
      return text.status();
    }
    ACCEL_ASSIGN_OR_RETURN(ImageRecord r, RecordFromJson(*text, path));
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(),
            [](const ImageRecord& a, const ImageRecord& b) { return a.target < b.target; });
  return out;
}

absl::StatusOr<ImageRecord> Store::GetImage(absl::string_view target) const {
  const std::string path = ImagePath(dir_, target);
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::NotFoundError(absl::StrCat("no image ", target, " in store ", dir_));
    }
    return text.status();
  }
  ACCEL_ASSIGN_OR_RETURN(ImageRecord r, RecordFromJson(*text, path));
  if (r.target != target) {
    return absl::DataLossError(absl::StrCat(path, ": record is for ", r.target, ", not ", target));
  }
  return r;
}

absl::Status Store::RemoveImage(absl::string_view target) const {
  const std::string path = ImagePath(dir_, target);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("no image ", target, " in store ", dir_));
    return ErrnoToStatus(errno, absl::StrCat("remove ", path));
  }
  return FsyncDir(dir_ + "/images");
}

absl::StatusOr<GcResult> Store::Gc(int64_t grace_seconds,
                                   const std::vector<std::string>& keep) const {
  GcResult result;
  absl::Status first_error;
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  ACCEL_ASSIGN_OR_RETURN(std::vector<ImageRecord> images, ListImages());
  std::set<std::string> used(keep.begin(), keep.end());
  for (const ImageRecord& r : images) used.insert(r.diff_ids.begin(), r.diff_ids.end());
  ACCEL_ASSIGN_OR_RETURN(std::vector<LayerInfo> layers, ListLayers());
  for (const LayerInfo& l : layers) {
    if (used.count(l.diff_id) || now - l.created_unix < grace_seconds) continue;
    absl::Status s = RemoveLayer(l.diff_id);
    if (!s.ok() && !absl::IsNotFound(s) && first_error.ok()) first_error = s;
    if (s.ok()) {
      result.removed_layers.push_back(l.diff_id);
      result.freed_bytes += l.data_bytes + l.index_bytes;
    }
  }
  ACCEL_ASSIGN_OR_RETURN(std::vector<std::string> temps, ListDir(dir_ + "/tmp"));
  for (const std::string& name : temps) {
    const std::string path = absl::StrCat(dir_, "/tmp/", name);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    // Removal leftovers ("rm.*") are garbage at once; the rest may belong
    // to a writer that is still running.
    if (!absl::StartsWith(name, "rm.") && now - st.st_mtim.tv_sec < grace_seconds) continue;
    absl::StatusOr<DiskUsageResult> du = DiskUsage(path);
    absl::Status s = RemoveAll(path);
    if (!s.ok()) {
      // e.g. NFS's .nfsXXXX files of a removed file still open somewhere:
      // leave it for a later gc and go on.
      if (first_error.ok()) first_error = s;
      continue;
    }
    result.removed_temporaries.push_back(name);
    if (du.ok()) result.freed_bytes += static_cast<uint64_t>(du->bytes);
  }
  if (!first_error.ok() && result.removed_layers.empty() && result.removed_temporaries.empty()) {
    return first_error;
  }
  if (!first_error.ok()) result.error = std::string(first_error.message());
  return result;
}

}  // namespace accel::store
