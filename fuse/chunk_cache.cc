#include "fuse/chunk_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/errno_status.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace accel::fuse {
absl::StatusOr<std::unique_ptr<ChunkCache>> ChunkCache::Open(const Options& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("chunk cache directory is empty");
  ACCEL_RETURN_IF_ERROR(MkdirAll(options.dir, 0700));
  std::unique_ptr<ChunkCache> cache(new ChunkCache(options));
  // Index what is there, oldest access first.
  struct Found {
    std::string key;
    uint64_t size;
    int64_t atime;
  };
  std::vector<Found> found;
  if (DIR* top = ::opendir(options.dir.c_str())) {
    while (struct dirent* de = ::readdir(top)) {
      std::string sub = de->d_name;
      // Only our two-hex-digit fan-out directories (never "." or "..").
      if (sub.size() != 2 || !std::isxdigit(static_cast<unsigned char>(sub[0])) ||
          !std::isxdigit(static_cast<unsigned char>(sub[1]))) {
        continue;
      }
      const std::string subdir = absl::StrCat(options.dir, "/", sub);
      DIR* d = ::opendir(subdir.c_str());
      if (d == nullptr) continue;
      while (struct dirent* fe = ::readdir(d)) {
        std::string name = fe->d_name;
        const std::string path = absl::StrCat(subdir, "/", name);
        struct stat st;
        if (name == "." || name == ".." || ::lstat(path.c_str(), &st) != 0) continue;
        if (!S_ISREG(st.st_mode)) continue;
        if (!IsSha256Hex(name)) {
          // Temporaries of an interrupted Put ("<key>.tmp.<tid>"); nothing else is touched.
          if (name.size() > 69 && IsSha256Hex(name.substr(0, 64)) &&
              name.compare(64, 5, ".tmp.") == 0) {
            ::unlink(path.c_str());
          }
          continue;
        }
        found.push_back({name, static_cast<uint64_t>(st.st_size), st.st_atim.tv_sec});
      }
      ::closedir(d);
    }
    ::closedir(top);
  }
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.atime < b.atime; });
  absl::MutexLock lock(&cache->mu_);
  for (const Found& f : found) {
    cache->disk_lru_.push_front(f.key);
    cache->disk_.emplace(f.key, DiskEntry{f.size, cache->disk_lru_.begin()});
    cache->disk_bytes_ += f.size;
  }
  cache->EvictDisk();
  return cache;
}

std::string ChunkCache::PathOf(absl::string_view key) const {
  return absl::StrCat(options_.dir, "/", key.substr(0, 2), "/", key);
}

void ChunkCache::Touch(const std::string& key) {
  auto it = disk_.find(key);
  if (it == disk_.end()) return;
  disk_lru_.splice(disk_lru_.begin(), disk_lru_, it->second.lru);
}

void ChunkCache::EvictDisk() {
  while (disk_bytes_ > options_.max_disk_bytes && !disk_lru_.empty()) {
    const std::string key = disk_lru_.back();  // a copy: DropDisk erases the element
    DropDisk(key);
  }
}

void ChunkCache::DropDisk(const std::string& key) {
  ++drops_;
  if (auto it = disk_.find(key); it != disk_.end()) {
    disk_bytes_ -= it->second.size;
    disk_lru_.erase(it->second.lru);
    disk_.erase(it);
  }
  if (auto it = fds_.find(key); it != fds_.end()) {
    fd_lru_.erase(it->second.lru);
    fds_.erase(it);
  }
  verified_.erase(key);
  ::unlink(PathOf(key).c_str());
}

std::shared_ptr<const UniqueFd> ChunkCache::OpenChunk(const std::string& key) {
  uint64_t drops;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = fds_.find(key); it != fds_.end()) {
      fd_lru_.splice(fd_lru_.begin(), fd_lru_, it->second.lru);
      return it->second.fd;
    }
    drops = drops_;
  }
  auto fd = std::make_shared<const UniqueFd>(
      ::open(PathOf(key).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd->valid()) return nullptr;
  absl::MutexLock lock(&mu_);
  // Dropped (and maybe written again) while opening: this descriptor may be
  // of the old, unlinked file.
  if (drops != drops_ || !verified_.contains(key)) return nullptr;
  if (auto it = fds_.find(key); it != fds_.end()) return it->second.fd;  // opened by another reader
  fd_lru_.push_front(key);
  fds_.emplace(key, FdEntry{fd, fd_lru_.begin()});
  while (fds_.size() > kMaxOpenChunks) {
    fds_.erase(fd_lru_.back());
    fd_lru_.pop_back();
  }
  return fd;
}

bool ChunkCache::ReadRange(const std::string& key, uint64_t chunk_size, uint64_t offset, size_t len,
                           char* buf) {
  if (offset > chunk_size || len > chunk_size - offset) return false;
  std::shared_ptr<const std::string> in_memory;
  std::shared_ptr<const UniqueFd> fd;
  bool from_file = false;
  {
    // One lock for the common case: in memory, or a verified file whose
    // descriptor is already open.
    absl::MutexLock lock(&mu_);
    if (auto it = mem_.find(key); it != mem_.end()) {
      mem_lru_.splice(mem_lru_.begin(), mem_lru_, it->second.lru);
      Touch(key);
      in_memory = it->second.data;
    } else if (auto d = disk_.find(key); d != disk_.end() && verified_.contains(key)) {
      if (d->second.size != chunk_size) return false;
      disk_lru_.splice(disk_lru_.begin(), disk_lru_, d->second.lru);
      if (auto f = fds_.find(key); f != fds_.end()) {
        fd_lru_.splice(fd_lru_.begin(), fd_lru_, f->second.lru);
        fd = f->second.fd;
      }
      from_file = true;
    }
  }
  if (from_file) {
    if (fd == nullptr) fd = OpenChunk(key);
    if (fd != nullptr) {
      size_t done = 0;
      while (done < len) {
        ssize_t n = ::pread(fd->get(), buf + done, len - done, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      if (done == len) return true;
      ACCEL_LOG(kWarn, "msg=\"dropping an unreadable cached chunk\"", LogField("chunk", key));
      absl::MutexLock lock(&mu_);
      DropDisk(key);
      return false;
    }
  }
  if (in_memory == nullptr) {
    std::optional<std::shared_ptr<const std::string>> got = Get(key);  // reads and verifies
    if (!got) return false;
    in_memory = *std::move(got);
  }
  if (in_memory->size() != chunk_size) return false;
  std::memcpy(buf, in_memory->data() + offset, len);
  return true;
}

void ChunkCache::RememberInMemory(const std::string& key, std::shared_ptr<const std::string> data) {
  if (mem_.count(key) || data->size() > options_.max_memory_bytes) return;
  mem_lru_.push_front(key);
  mem_bytes_ += data->size();
  mem_.emplace(key, MemEntry{std::move(data), mem_lru_.begin()});
  while (mem_bytes_ > options_.max_memory_bytes && !mem_lru_.empty()) {
    auto it = mem_.find(mem_lru_.back());
    mem_bytes_ -= it->second.data->size();
    mem_.erase(it);
    mem_lru_.pop_back();
  }
}

std::optional<std::shared_ptr<const std::string>> ChunkCache::Get(absl::string_view key_view) {
  const std::string key(key_view);
  bool trusted = false;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = mem_.find(key); it != mem_.end()) {
      mem_lru_.splice(mem_lru_.begin(), mem_lru_, it->second.lru);
      Touch(key);
      return it->second.data;
    }
    if (!disk_.count(key)) return std::nullopt;
    trusted = verified_.contains(key);
  }
  absl::StatusOr<std::string> data = ReadFile(PathOf(key));
  // Out of descriptors or memory: a miss, but the file may well be fine.
  if (!data.ok() && absl::IsResourceExhausted(data.status())) return std::nullopt;
  if (!data.ok() || (!trusted && Sha256::Of(*data) != absl::StrCat("sha256:", key))) {
    ACCEL_LOG(kWarn, "msg=\"dropping a damaged cached chunk\"", LogField("chunk", key));
    absl::MutexLock lock(&mu_);
    DropDisk(key);
    return std::nullopt;
  }
  auto shared = std::make_shared<const std::string>(*std::move(data));
  absl::MutexLock lock(&mu_);
  verified_.insert(key);
  Touch(key);
  RememberInMemory(key, shared);
  return shared;
}

absl::Status ChunkCache::Put(absl::string_view key_view, std::shared_ptr<const std::string> data) {
  const std::string key(key_view);
  if (!IsSha256Hex(key))
    return absl::InvalidArgumentError(absl::StrCat("invalid chunk key \"", key, "\""));
  {
    absl::MutexLock lock(&mu_);
    RememberInMemory(key, data);
    if (disk_.count(key)) {
      Touch(key);
      return absl::OkStatus();
    }
  }
  const std::string path = PathOf(key);
  ACCEL_RETURN_IF_ERROR(MkdirAll(absl::StrCat(options_.dir, "/", key.substr(0, 2)), 0700));
  // No fsync: a chunk lost in a crash is fetched again, and a torn one
  // fails verification on the next Get.
  const std::string tmp = absl::StrCat(path, ".tmp.", ::gettid());
  {
    FILE* f = std::fopen(tmp.c_str(), "wbe");
    if (f == nullptr) return ErrnoToStatus(errno, absl::StrCat("create ", tmp));
    size_t n = std::fwrite(data->data(), 1, data->size(), f);
    const bool closed = std::fclose(f) == 0;  // always, even after a short write
    bool ok = n == data->size() && closed;
    if (!ok) {
      ::unlink(tmp.c_str());
      return absl::ResourceExhaustedError(absl::StrCat("write ", tmp));
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoToStatus(err, absl::StrCat("rename ", tmp));
  }
  absl::MutexLock lock(&mu_);
  verified_.insert(key);
  if (!disk_.count(key)) {
    disk_lru_.push_front(key);
    disk_.emplace(key, DiskEntry{data->size(), disk_lru_.begin()});
    disk_bytes_ += data->size();
  }
  EvictDisk();
  return absl::OkStatus();
}

uint64_t ChunkCache::disk_bytes() const {
  absl::MutexLock lock(&mu_);
  return disk_bytes_;
}

size_t ChunkCache::disk_entries() const {
  absl::MutexLock lock(&mu_);
  return disk_.size();
}

}  // namespace accel::fuse
