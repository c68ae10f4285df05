#include "common/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/mountinfo.h"
#include "common/unique_fd.h"

namespace accel {
namespace {

struct InodeKey {
  dev_t dev;
  ino_t ino;
  bool operator==(const InodeKey& o) const { return dev == o.dev && ino == o.ino; }
  template <typename H>
  friend H AbslHashValue(H h, const InodeKey& k) {
    return H::combine(std::move(h), k.dev, k.ino);
  }
};

absl::Status UsageAt(int dirfd, const std::string& path, dev_t root_dev,
                     absl::flat_hash_set<InodeKey>& seen, DiskUsageResult& out) {
  UniqueFd fd(::openat(dirfd, path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  DIR* d = ::fdopendir(fd.get());
  if (d == nullptr) return ErrnoToStatus(errno, absl::StrCat("opendir ", path));
  int dfd = fd.Release();
  (void)dfd;
  absl::Status status;
  while (struct dirent* e = ::readdir(d)) {
    absl::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed while walking
      status = ErrnoToStatus(errno, absl::StrCat("stat ", path, "/", name));
      break;
    }
    if (seen.insert({st.st_dev, st.st_ino}).second) {
      out.bytes += static_cast<int64_t>(st.st_blocks) * 512;
      out.inodes++;
    }
    if (S_ISDIR(st.st_mode) && st.st_dev == root_dev) {
      status = UsageAt(::dirfd(d), e->d_name, root_dev, seen, out);
      if (!status.ok()) break;
    }
  }
  ::closedir(d);
  return status;
}

absl::Status RemoveAt(int dirfd, const char* name, const std::string& shown, dev_t parent_dev) {
  struct stat st;
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoToStatus(errno, absl::StrCat("stat ", shown));
  }
  if (S_ISDIR(st.st_mode)) {
    if (st.st_dev != parent_dev) {
      return absl::FailedPreconditionError(
          absl::StrCat("refusing to remove ", shown, ": a filesystem is mounted there"));
    }
    int fd = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", shown));
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      ::close(fd);
      return ErrnoToStatus(errno, absl::StrCat("opendir ", shown));
    }
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      absl::string_view n = e->d_name;
      if (n != "." && n != "..") names.emplace_back(n);
    }
    absl::Status status;
    for (const std::string& n : names) {
      status = RemoveAt(::dirfd(d), n.c_str(), absl::StrCat(shown, "/", n), st.st_dev);
      if (!status.ok()) break;
    }
    ::closedir(d);
    if (!status.ok()) return status;
    if (::unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return ErrnoToStatus(errno, absl::StrCat("rmdir ", shown));
    }
    return absl::OkStatus();
  }
  if (::unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("unlink ", shown));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DiskUsageResult> DiskUsage(const std::string& dir) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("stat ", dir));
  DiskUsageResult out;
  absl::flat_hash_set<InodeKey> seen;
  seen.insert({st.st_dev, st.st_ino});
  out.bytes = static_cast<int64_t>(st.st_blocks) * 512;
  out.inodes = 1;
  if (S_ISDIR(st.st_mode)) {
    absl::Status s = UsageAt(AT_FDCWD, dir, st.st_dev, seen, out);
    if (!s.ok()) return s;
  }
  return out;
}

absl::Status RemoveAll(const std::string& path) {
  std::string parent = ".";
  auto slash = path.find_last_of('/');
  if (slash != std::string::npos) parent = slash == 0 ? "/" : path.substr(0, slash);
  struct stat pst;
  if (::lstat(parent.c_str(), &pst) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoToStatus(errno, absl::StrCat("stat ", parent));
  }
  return RemoveAt(AT_FDCWD, path.c_str(), path, pst.st_dev);
}

absl::Status MkdirAll(const std::string& path, mode_t mode) {
  if (path.empty()) return absl::InvalidArgumentError("mkdir: empty path");
  // Every prefix that ends before a '/' (and the whole path), shortest
  // first; those that exist already are fine.
  for (size_t end = path.find('/', 1);; end = path.find('/', end + 1)) {
    const std::string prefix = path.substr(0, end);
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoToStatus(errno, absl::StrCat("mkdir ", prefix));
    }
    if (end == std::string::npos) break;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", dir));
  if (::fsync(fd.get()) != 0) return ErrnoToStatus(errno, absl::StrCat("fsync ", dir));
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, mode_t mode) {
  // A unique temporary (pid alone is not unique across hosts sharing a
  // directory, or containers), created exclusively and never through a link.
  std::string tmp = absl::StrCat(path, ".tmp-XXXXXX");
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (fd.valid() && ::fchmod(fd.get(), mode) != 0) {
    absl::Status s = ErrnoToStatus(errno, absl::StrCat("chmod ", tmp));
    ::unlink(tmp.c_str());
    return s;
  }
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", tmp));
  if (absl::Status s = WriteAll(fd.get(), data, tmp); !s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  if (::fsync(fd.get()) != 0) {
    absl::Status s = ErrnoToStatus(errno, absl::StrCat("fsync ", tmp));
    ::unlink(tmp.c_str());
    return s;
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = ErrnoToStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
    ::unlink(tmp.c_str());
    return s;
  }
  auto slash = path.find_last_of('/');
  return FsyncDir(slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)));
}

absl::Status WriteAll(int fd, absl::string_view data, absl::string_view what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("write ", what));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string TempDirectory() {
  const char* env = std::getenv("TMPDIR");
  return env != nullptr && *env != '\0' ? env : "/tmp";
}

absl::StatusOr<TempFile> CreateTempFile(absl::string_view prefix, absl::string_view dir) {
  TempFile out;
  out.path = absl::StrCat(dir.empty() ? TempDirectory() : std::string(dir), "/", prefix, "-XXXXXX");
  out.fd = UniqueFd(::mkostemp(out.path.data(), O_CLOEXEC));
  if (!out.fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", out.path));
  return out;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoToStatus(errno ? errno : ENOENT, absl::StrCat("open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool IsMountPoint(const std::string& path) {
  struct stat st, pst;
  if (::lstat(path.c_str(), &st) != 0) return false;
  std::string parent = path + "/..";
  if (::lstat(parent.c_str(), &pst) != 0) return false;
  if (st.st_dev != pst.st_dev) return true;
  // Bind mounts of the same filesystem keep the device: check mountinfo.
  absl::StatusOr<std::vector<MountInfoEntry>> mounts = ReadMountInfo();
  if (!mounts.ok()) return false;
  for (const MountInfoEntry& m : *mounts) {
    if (m.mountpoint == path) return true;
  }
  return false;
}

}  // namespace accel
