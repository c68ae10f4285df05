#pragma once

// Small filesystem helpers shared by the modules. Every function returns a
// Status naming the path on failure.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

namespace accel {

struct DiskUsageResult {
  int64_t bytes = 0;   // allocated bytes (st_blocks * 512), each inode once
  int64_t inodes = 0;  // distinct inodes, `dir` itself included
};

// Walks `dir` without following symlinks or crossing mount points and sums
// what containerd's fs.DiskUsage sums.
absl::StatusOr<DiskUsageResult> DiskUsage(const std::string& dir);

// Removes `path` and everything below it; never crosses into another mount
// (returns FailedPrecondition if something below is still mounted). A missing
// path is OK.
absl::Status RemoveAll(const std::string& path);

// mkdir -p with `mode` for the directories it creates.
absl::Status MkdirAll(const std::string& path, mode_t mode);

// fsyncs the directory `dir` (after a rename into it, for durability).
absl::Status FsyncDir(const std::string& dir);

// Writes `data` to `path` through a temporary file in the same directory,
// fsync and rename: readers see the old or the new content, never a mix.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, mode_t mode);

// Writes all of `data` to `fd` (retrying short writes and EINTR); errors
// name `what` (usually the file's path).
absl::Status WriteAll(int fd, absl::string_view data, absl::string_view what);

// $TMPDIR, or /tmp when it is unset or empty.
std::string TempDirectory();

// A new file DIR/PREFIX-XXXXXX with a random suffix (mode 0600,
// close-on-exec). `dir` "" is TempDirectory(). The caller removes it.
struct TempFile {
  UniqueFd fd;
  std::string path;
};
absl::StatusOr<TempFile> CreateTempFile(absl::string_view prefix, absl::string_view dir = "");

// Reads a whole (small) file.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// True if `path` is a mount point (its device differs from its parent's, or
// it is listed in /proc/self/mountinfo).
bool IsMountPoint(const std::string& path);

}  // namespace accel
