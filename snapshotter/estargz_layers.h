#pragma once

// EstargzLayers serves eStargz layers lazily from their registry
// (LayerSource kind "estargz"). Prepare labels name the layer:
//
//   containerd.io/snapshot/remote/stargz.reference  image reference   (ctr-remote rpull)
//   containerd.io/snapshot/remote/stargz.digest     layer blob digest
//   containerd.io/snapshot/cri.image-ref            the same, from containerd's CRI plugin
//   containerd.io/snapshot/cri.layer-digest
//   containerd.io/snapshot/stargz/toc.digest        the TOC digest annotation (verified)
//
// Load() reads the footer and the TOC with range requests, verifies the
// TOC and builds the layer's tree; file contents are fetched chunk by chunk
// when read (EstargzSource, on the kNetwork pool), then kept in the chunk
// cache. The footer and TOC bytes are kept under `toc_dir` too, so a
// restart restores the layer without the network (verified again against
// the TOC digest). After mounting, a single background worker fetches the
// prioritized files first, then (if enabled) the rest of every layer at a
// bounded rate; reads never wait for it. A blob that is not eStargz, or
// has no TOC digest annotation, is downloaded instead.
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
#include "registry/blob_reader.h"
#include "registry/reference.h"
#include "snapshotter/layer_resolver.h"

namespace accel::snapshotter {

inline constexpr char kEstargzKind[] = "estargz";

// Opens layer blobs for reading by range (the registry in the daemon, files
// in tests).
class BlobOpener {
 public:
  virtual ~BlobOpener() = default;
  // A reader over blob `digest` of `ref`'s repository, its size asked of the
  // registry. NotFound if the registry does not have it.
  virtual absl::StatusOr<std::shared_ptr<registry::BlobReader>> Open(const registry::Reference& ref,
                                                                     const std::string& digest) = 0;
  // The same for a blob whose size is known (no request is made).
  virtual std::shared_ptr<registry::BlobReader> OpenSized(const registry::Reference& ref,
                                                          const std::string& digest,
                                                          int64_t size) = 0;
};

struct EstargzOptions {
  bool prefetch = true;                   // fetch the prioritized files after mounting
  uint64_t background_bytes_per_sec = 0;  // 0: no background fetch of the rest
  std::string toc_dir;                    // where footers and TOCs are kept ("" = nowhere)
};

struct EstargzMountInfo {
  std::string mountpoint;
  std::string layer;  // blob digest
  uint64_t bytes_fetched = 0;
};

class EstargzLayers final : public LayerSource {
 public:
  // `blobs` must outlive this object.
  EstargzLayers(BlobOpener* blobs, std::shared_ptr<fuse::ChunkCache> cache, EstargzOptions options);
  ~EstargzLayers() override;

  std::string kind() const override { return kEstargzKind; }
  fuse::FuseServer::Pool pool() const override { return fuse::FuseServer::Pool::kNetwork; }
  std::optional<LayerMatch> Identify(const Labels& labels) override;
  absl::StatusOr<std::optional<LoadedLayer>> Load(const Labels& labels, const LayerMatch& match,
                                                  bool strict) override;
  void Mounted(const std::string& mountpoint, const LoadedLayer& layer) override;
  void Unmounted(const std::string& mountpoint) override;

  std::vector<EstargzMountInfo> MountedLayers();

 private:
  struct MountState {
    std::string layer;
    std::shared_ptr<fuse::EstargzSource> source;
  };
  void BackgroundLoop();
  std::string TocPath(const std::string& digest) const;

  BlobOpener* const blobs_;
  const std::shared_ptr<fuse::ChunkCache> cache_;
  const EstargzOptions options_;

  absl::Mutex mu_;
  std::map<std::string, MountState> mounted_ ABSL_GUARDED_BY(mu_);  // by mountpoint
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);              // mountpoints to fetch for
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace accel::snapshotter
