#pragma once

// Reading /proc/self/mountinfo: what is mounted where, which mount is on top
// of a path, and which overlay mounts use a directory as a layer. The one
// parser of that file (fs_util's IsMountPoint, the FUSE server's busy
// checks); pure parsing is separate from reading so tests can feed text.
//
// Thread-safety: pure functions (ReadMountInfo reads the file once).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accel {

struct MountInfoEntry {
  int id = 0;
  int parent_id = 0;
  std::string dev;            // "major:minor"
  std::string mountpoint;     // unescaped
  std::string fstype;         // e.g. "fuse.accel", "overlay"
  std::string source;         // unescaped
  std::string super_options;  // raw (still escaped)
};

// Parses mountinfo text; malformed lines are skipped. Mount points and
// sources come back unescaped (the kernel writes a space as \040).
std::vector<MountInfoEntry> ParseMountInfo(absl::string_view text);

// Reads and parses /proc/self/mountinfo.
absl::StatusOr<std::vector<MountInfoEntry>> ReadMountInfo();

// The topmost entry mounted at `mountpoint` (the one no other entry at the
// same path is mounted on), or nullptr.
const MountInfoEntry* TopMountAt(const std::vector<MountInfoEntry>& mounts,
                                 absl::string_view mountpoint);

// For an overlay entry: every directory it uses (lowerdir layers, upperdir,
// workdir), unescaped. Empty for other file systems.
std::vector<std::string> OverlayDirs(const MountInfoEntry& entry);

}  // namespace accel
