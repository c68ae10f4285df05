#pragma once

// FuseServer serves every mounted layer of the process, read-only, from a
// fixed pool of worker threads: the thread count does not grow with mounts.
//
// Each mount is a FUSE connection whose /dev/fuse descriptor the server opens
// and mounts itself (mount(2), type "fuse.accel") before handing it to a
// libfuse low-level session, so the serving side owns its descriptors (a
// future restart handover passes them on). All descriptors are polled by one
// epoll set; a worker takes one request at a time from whichever mount is
// ready. A FileSource read that blocks (e.g. a registry fetch) holds one
// worker for its duration.
//
// Mount options: ro, noatime, allow_other, default_permissions (the kernel
// checks permissions against the layer's modes), max_read sized so every
// read reply can be spliced from the data file through the worker's pipe
// (see splice_reply.h); readahead is raised to 1 MiB. nosuid/nodev are NOT
// set: an image's setuid binaries and device nodes must work as they do on
// an overlayfs unpack. Entries, negative entries and attributes are cached
// by the kernel for a year: a layer never changes.
//
// Thread-safety: all methods are thread-safe. Mount and Unmount are
// serialized with each other; requests keep being served meanwhile.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fuse/file_source.h"
#include "fuse/layer_tree.h"

namespace accel::fuse {

class FuseServer {
 public:
  struct Options {
    int threads = 4;  // worker threads, shared by all mounts (1..256)
  };

  // Starts the workers. Raises the RLIMIT_NOFILE soft limit to the hard
  // limit (each mount costs descriptors). InvalidArgument for a bad thread
  // count; Internal if epoll or threads cannot be created.
  static absl::StatusOr<std::unique_ptr<FuseServer>> Start(const Options& options);

  // Lazily unmounts every mount still mounted, stops and joins the workers.
  ~FuseServer();

  FuseServer(const FuseServer&) = delete;
  FuseServer& operator=(const FuseServer&) = delete;

  // Mounts `tree` read-only at `mountpoint` (an absolute path to an existing
  // directory), reading file contents from `source`. `fsname` is the mount's
  // source in /proc/mounts (e.g. "accel-store:sha256:abcd..."). A dead FUSE
  // mount left at `mountpoint` (ENOTCONN, e.g. by a crashed daemon) is
  // detached first. Returns once the mount answers (INIT and the root's
  // attributes served). Returns InvalidArgument for a relative path or null
  // tree/source, AlreadyExists if this server already has a mount there,
  // NotFound / FailedPrecondition if `mountpoint` is missing / not a
  // directory, or the mount(2) error.
  absl::Status Mount(const std::string& mountpoint, std::shared_ptr<const LayerTree> tree,
                     std::shared_ptr<FileSource> source, const std::string& fsname);

  // Unmounts the mount at `mountpoint` without MNT_DETACH. Returns
  // FailedPrecondition if it is busy: open files or a cwd in it (EBUSY), a
  // mount covering or bind-mounting it, or an overlay in this mount namespace
  // using it (or a directory below it) as a layer. OK if this server has
  // nothing mounted there (also when someone else unmounted it). After OK no
  // worker touches that mount's tree or source any more.
  absl::Status Unmount(const std::string& mountpoint);

  // Mounts made by Mount and not yet unmounted by Unmount (including mounts
  // whose connection the kernel closed, e.g. after an external umount).
  size_t mount_count() const;
  std::vector<std::string> Mountpoints() const;

  // The number of worker threads (constant).
  int thread_count() const;

 private:
  class Impl;
  explicit FuseServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace accel::fuse
