#pragma once

// LayerEntry: one entry of a layer as its source declares it (a tar header
// in the store's index, or an eStargz TOC entry), before any overlayfs
// translation. The store writes and reads these; fuse/ builds its in-memory
// tree from them; estargz/ produces them from a TOC. Keeping the type here
// lets those modules meet without depending on each other.
//
// Paths are relative to the layer root, cleaned, without a leading "/" and
// without "." or ".." components ("" is the root itself). OCI whiteouts are
// kept as written in the layer (".wh.NAME" regular files, ".wh..wh..opq");
// fuse/ turns them into what overlayfs expects.

#include <cstdint>
#include <map>
#include <string>

namespace accel {

enum class EntryType : uint8_t {
  kRegular = 0,
  kDirectory = 1,
  kSymlink = 2,
  kHardlink = 3,  // link_target names another regular entry of the same layer
  kCharDevice = 4,
  kBlockDevice = 5,
  kFifo = 6,
};

struct LayerEntry {
  std::string path;
  EntryType type = EntryType::kRegular;
  uint32_t mode = 0;  // permission and set-id/sticky bits only (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;  // regular files: content length
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  std::string link_target;  // symlink target, or hardlink target path
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  std::map<std::string, std::string> xattrs;
  // Where the content is, in the source's own terms (the store: offset in the
  // layer's data file). Unused for non-regular entries.
  uint64_t data_offset = 0;
  // sha256 of the content as "sha256:<hex>" ("" when unknown).
  std::string digest;
};

}  // namespace accel
