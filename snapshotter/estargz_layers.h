#pragma once

// EstargzLayers serves eStargz layers lazily from their registry
// (RemoteLayers kind "estargz"). Prepare labels name the layer:
//
//   containerd.io/snapshot/remote/stargz.reference  image reference   (ctr-remote rpull)
//   containerd.io/snapshot/remote/stargz.digest     layer blob digest
//   containerd.io/snapshot/cri.image-ref            the same, from containerd's CRI plugin
//   containerd.io/snapshot/cri.layer-digest
//   containerd.io/snapshot/stargz/toc.digest        the TOC digest annotation (verified when set)
//
// Mount() reads the footer and the TOC with range requests, builds the
// layer's tree and mounts it through the FUSE server; file contents are
// fetched chunk by chunk when read (EstargzSource), then kept in the chunk
// cache. After mounting, a single background worker fetches the
// prioritized files first, then (if enabled) the rest of every layer at a
// bounded rate; reads never wait for it. A blob that is not eStargz makes
// Mount() return "" (containerd downloads it).
//
// Thread-safe.

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "fuse/chunk_cache.h"
#include "fuse/estargz_source.h"
#include "fuse/server.h"
#include "registry/client.h"
#include "snapshotter/remote_layers.h"

namespace accel::snapshotter {

inline constexpr char kEstargzKind[] = "estargz";

struct EstargzOptions {
  bool prefetch = true;                   // fetch the prioritized files after mounting
  uint64_t background_bytes_per_sec = 0;  // 0: no background fetch of the rest
};

struct EstargzMountInfo {
  std::string mountpoint;
  std::string layer;  // blob digest
  uint64_t bytes_fetched = 0;
};

class EstargzLayers final : public RemoteLayers {
 public:
  // `client`, `server` and `cache` must outlive this object.
  EstargzLayers(registry::Client* client, fuse::FuseServer* server,
                std::shared_ptr<fuse::ChunkCache> cache, EstargzOptions options);
  ~EstargzLayers() override;

  absl::StatusOr<std::string> Mount(const Labels& labels, const std::string& parent,
                                    const std::string& mountpoint) override;
  absl::Status Restore(const Labels& labels, const std::string& mountpoint) override;
  absl::Status Unmount(const std::string& mountpoint) override;

  std::vector<EstargzMountInfo> Mounted();

 private:
  struct MountState {
    std::string layer;
    std::shared_ptr<fuse::EstargzSource> source;
  };
  // Mounts; `strict` (Restore) turns "not eStargz" into an error.
  absl::StatusOr<std::string> MountLayer(const Labels& labels, const std::string& mountpoint,
                                         bool strict);
  void BackgroundLoop();

  registry::Client* const client_;
  fuse::FuseServer* const server_;
  const std::shared_ptr<fuse::ChunkCache> cache_;
  const EstargzOptions options_;

  absl::Mutex mu_;
  std::map<std::string, MountState> mounted_ ABSL_GUARDED_BY(mu_);  // by mountpoint
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);              // mountpoints to fetch for
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace accel::snapshotter
