#pragma once

// FuseServer serves every mounted layer of the process, read-only, speaking
// the FUSE kernel protocol itself (protocol.h, ops.h; no libfuse).
//
// Each mount is a FUSE connection (a /dev/fuse descriptor). The server
// either makes it (Mount: open /dev/fuse, mount(2) type "fuse.accel", answer
// INIT) or adopts one that a previous process made and initialised (Adopt:
// the descriptor comes back from the fd store with the connection
// parameters negotiated then). An adopted connection is not read until its
// layer is ready (Serve) or known to be unavailable (Fail): meanwhile the
// kernel queues its requests and the readers wait, occupying no worker.
//
// Workers: two fixed pools, each an epoll set with its own threads: kLocal
// for layers whose reads are local I/O (the store) and kNetwork for layers
// whose reads may wait on a registry (lazy eStargz), so a hung registry
// never takes the threads that serve the store. A worker takes one request
// at a time from whichever mount of its pool is ready.
//
// Mount options: ro, noatime, allow_other, default_permissions (the kernel
// checks permissions against the layer's modes), max_read sized so every
// read reply can be spliced from the data file through the worker's pipe
// (see splice_reply.h); readahead is raised to 1 MiB. nosuid/nodev are NOT
// set: an image's setuid binaries and device nodes must work as they do on
// an overlayfs unpack. Entries, negative entries and attributes are cached
// by the kernel for a year: a layer never changes. INIT asks for 1 MiB
// requests (max_pages), readdirplus, parallel dirops, cached symlinks.
//
// Node ids are the layer tree's inode numbers and no file handle is used,
// so a successor serving the same tree answers the kernel's ids alike.
//
// Thread-safety: all methods are thread-safe. Mount, Adopt and Unmount are
// serialized with each other; requests keep being served meanwhile.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "fuse/file_source.h"
#include "fuse/layer_tree.h"
#include "fuse/protocol.h"

namespace accel::fuse {

class FuseServer {
 public:
  enum class Pool { kLocal = 0, kNetwork = 1 };

  struct Options {
    int threads = 4;          // kLocal workers (1..256)
    int network_threads = 4;  // kNetwork workers (1..256)
    // On destruction: true = detach every mount (tests, one-shot use);
    // false = leave them mounted (the daemon: a successor adopts them).
    bool unmount_on_destroy = true;
  };

  // What a mount serves.
  struct Layer {
    std::shared_ptr<const LayerTree> tree;
    std::shared_ptr<FileSource> source;
  };

  // Starts the workers. Raises the RLIMIT_NOFILE soft limit to the hard
  // limit (each mount costs descriptors). InvalidArgument for a bad thread
  // count; Internal if epoll or threads cannot be created.
  static absl::StatusOr<std::unique_ptr<FuseServer>> Start(const Options& options);

  // Stops taking requests, lets the requests being served finish, joins the
  // workers and closes every descriptor (detaching the mounts first if
  // options.unmount_on_destroy). Requests not read yet stay queued in the
  // kernel for whoever serves the connection next.
  ~FuseServer();

  FuseServer(const FuseServer&) = delete;
  FuseServer& operator=(const FuseServer&) = delete;

  // Mounts `layer` read-only at `mountpoint` (an absolute path to an
  // existing directory), served by `pool`. `fsname` is the mount's source
  // in /proc/mounts (e.g. "accel-store:sha256:abcd..."). Dead FUSE mounts
  // stacked at `mountpoint` are detached first (see DetachStaleMounts).
  // Returns once the mount answers (INIT and the root's attributes served),
  // with the negotiated connection parameters. InvalidArgument for a
  // relative path or a null tree/source, AlreadyExists if this server
  // already has a mount there, NotFound / FailedPrecondition if
  // `mountpoint` is missing / not a directory, or the mount(2) error.
  absl::StatusOr<proto::ConnParams> Mount(const std::string& mountpoint, Layer layer, Pool pool,
                                          const std::string& fsname);

  // Takes over the initialised connection `fd` mounted at `mountpoint`
  // with parameters `conn`. Asks the kernel to resend requests a previous
  // server read but never answered (FUSE_NOTIFY_RESEND, Linux 6.9+; older
  // kernels answer EINVAL and those requests stay unanswered). Requests
  // wait until Serve() or Fail(). AlreadyExists if a mount is registered
  // there; InvalidArgument if `conn` is not initialised.
  absl::Status Adopt(const std::string& mountpoint, UniqueFd fd, const proto::ConnParams& conn,
                     Pool pool);

  // Serves `layer` on an adopted or failed mount from now on.
  // NotFound if no mount is registered at `mountpoint`.
  absl::Status Serve(const std::string& mountpoint, Layer layer);

  // Answers every request of the mount with EIO from now on (the layer
  // cannot be served), until Serve(). NotFound if unknown.
  absl::Status Fail(const std::string& mountpoint);

  // Unmounts the mount at `mountpoint` without MNT_DETACH. Returns
  // FailedPrecondition if it is busy: open files or a cwd in it (EBUSY), a
  // mount covering or bind-mounting it, or an overlay in this mount namespace
  // using it (or a directory below it) as a layer. OK if this server has
  // nothing mounted there (also when someone else unmounted it). After OK no
  // worker touches that mount's tree or source any more and its descriptor
  // is closed.
  absl::Status Unmount(const std::string& mountpoint);

  // A duplicate of the mount's /dev/fuse descriptor (for the fd store).
  absl::StatusOr<UniqueFd> DupDevice(const std::string& mountpoint) const;

  // Mounts registered (made, adopted) and not yet unmounted, including ones
  // whose connection the kernel closed (e.g. after an external umount).
  size_t mount_count() const;
  std::vector<std::string> Mountpoints() const;

  // The number of worker threads in both pools (constant).
  int thread_count() const;

 private:
  class Impl;
  explicit FuseServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Makes `mountpoint` ready for a new FUSE mount: while the topmost mount
// there is a FUSE mount nobody serves (connection aborted: statfs, which is
// never answered from cached attributes, fails with ENOTCONN; or alive but
// unanswered within `probe_timeout`, which is then aborted through the FUSE
// control file system when it is mounted), it is detached. Never stacks a
// mount on a dead one. FailedPrecondition if `mountpoint` is not a
// directory or a served mount is there; NotFound if it is missing.
absl::Status DetachStaleMounts(const std::string& mountpoint, absl::Duration probe_timeout);

}  // namespace accel::fuse
