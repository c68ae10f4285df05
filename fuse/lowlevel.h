#pragma once

// Internal to fuse/: the libfuse low-level operations that serve one mounted
// LayerTree read-only. Each session's userdata is a MountContext; the
// operations only read it, so any number of workers may run them at once.

#include <atomic>
#include <memory>
#include <string>

#include "fuse/file_source.h"
#include "fuse/layer_tree.h"

struct fuse_lowlevel_ops;

namespace accel::fuse::internal {

struct MountContext {
  std::string mountpoint;  // for log lines
  std::shared_ptr<const LayerTree> tree;
  std::shared_ptr<FileSource> source;
  std::atomic<bool> read_error_logged{false};  // read errors are logged once per mount
};

// The operation table (static storage).
const fuse_lowlevel_ops& LowlevelOps();

// Attribute and entry timeout: a layer never changes.
inline constexpr double kCacheTimeoutSeconds = 365.0 * 24 * 3600;

}  // namespace accel::fuse::internal
