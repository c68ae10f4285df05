#include "snapshotter/estargz_layers.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "estargz/toc.h"
#include "fuse/layer_tree.h"
#include "registry/digest.h"
#include "registry/reference.h"

namespace accel::snapshotter {
namespace {

constexpr char kStargzRefLabel[] = "containerd.io/snapshot/remote/stargz.reference";
constexpr char kStargzDigestLabel[] = "containerd.io/snapshot/remote/stargz.digest";

// Prioritized files are fetched in ranges this big; the background fetch
// in ranges of kBackgroundRange so a read is never stuck behind a long one.
constexpr uint64_t kPrefetchRange = 16 << 20;
constexpr uint64_t kBackgroundRange = 4 << 20;
constexpr uint64_t kMaxChunkBytes = 64 << 20;

std::string LabelOf(const Labels& labels, const char* a, const char* b) {
  for (const char* key : {a, b}) {
    auto it = labels.find(key);
    if (it != labels.end() && !it->second.empty()) return it->second;
  }
  return "";
}

}  // namespace

EstargzLayers::EstargzLayers(registry::Client* client, fuse::FuseServer* server,
                             std::shared_ptr<fuse::ChunkCache> cache, EstargzOptions options)
    : client_(client), server_(server), cache_(std::move(cache)), options_(options) {
  worker_ = std::thread([this] { BackgroundLoop(); });
}

EstargzLayers::~EstargzLayers() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  worker_.join();
}

absl::StatusOr<std::string> EstargzLayers::MountLayer(const Labels& labels,
                                                      const std::string& mountpoint, bool strict) {
  const std::string ref_text = LabelOf(labels, kStargzRefLabel, kCriRefLabel);
  const std::string digest = LabelOf(labels, kStargzDigestLabel, kCriDigestLabel);
  if (ref_text.empty() || digest.empty()) {
    if (strict) return absl::FailedPreconditionError("no image reference or layer digest label");
    return std::string();
  }
  ACCEL_ASSIGN_OR_RETURN(registry::Reference ref, registry::ParseReference(ref_text));
  ACCEL_RETURN_IF_ERROR(registry::ValidateDigest(digest));
  auto toc_label = labels.find(estargz::kTocDigestAnnotation);
  const std::string toc_digest = toc_label == labels.end() ? "" : toc_label->second;
  // Only what can be verified is served lazily, and the TOC is verified
  // against the manifest's annotation: a layer without one is left to
  // containerd before any request is made (every plain layer of every pull
  // passes here).
  if (toc_digest.empty()) {
    if (strict) {
      return absl::FailedPreconditionError(
          absl::StrCat("layer ", digest, ": no TOC digest annotation"));
    }
    ACCEL_LOG(kDebug, "msg=\"no TOC digest annotation; not mounted lazily\"",
              LogField("layer", digest));
    return std::string();
  }

  ACCEL_ASSIGN_OR_RETURN(std::optional<int64_t> size,
                         client_->StatBlob(ref, digest, registry::kCapPull));
  if (!size)
    return absl::NotFoundError(absl::StrCat("registry has no blob ", digest, " in ", ref.Name()));
  registry::Descriptor desc;
  desc.digest = digest;
  desc.size = *size;
  registry::Client* client = client_;
  estargz::ReadAtFn read_at = [client, ref, desc](uint64_t offset,
                                                  uint64_t length) -> absl::StatusOr<std::string> {
    ACCEL_ASSIGN_OR_RETURN(std::string bytes,
                           client->ReadBlobRange(ref, desc, static_cast<int64_t>(offset),
                                                 static_cast<int64_t>(length)));
    if (bytes.size() != length) {
      return absl::DataLossError(absl::StrCat("short read of ", desc.digest, " at ", offset,
                                              ": got ", bytes.size(), " of ", length, " bytes"));
    }
    return bytes;
  };
  absl::Time start = absl::Now();
  absl::StatusOr<estargz::Toc> toc =
      estargz::ReadToc(read_at, static_cast<uint64_t>(*size), toc_digest);
  if (!toc.ok()) return Annotate(toc.status(), "read TOC of ", digest);
  // Every chunk must be verifiable against the TOC. Anything else is
  // downloaded (and checked against its digest) by containerd.
  const char* unverifiable = !toc->all_chunks_have_digests ? "chunks without digests" : nullptr;
  for (const estargz::Chunk& c : toc->chunks) {
    if (unverifiable != nullptr) break;
    // A chunk is decoded in memory: bound it (the format's converters use
    // 4 MiB chunks).
    if (c.size > kMaxChunkBytes || c.inner_offset > kMaxChunkBytes ||
        c.compressed_size > kMaxChunkBytes + (1 << 20)) {
      unverifiable = "a chunk larger than 64 MiB";
    }
  }
  if (unverifiable != nullptr) {
    if (strict)
      return absl::FailedPreconditionError(absl::StrCat("layer ", digest, ": ", unverifiable));
    ACCEL_LOG(kInfo, "msg=\"eStargz layer cannot be verified lazily; downloading it\"",
              LogField("layer", digest), LogField("why", unverifiable));
    return std::string();
  }
  auto shared_toc = std::make_shared<const estargz::Toc>(*std::move(toc));
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<const fuse::LayerTree> tree,
                         fuse::LayerTree::Build(shared_toc->entries));
  auto source = std::make_shared<fuse::EstargzSource>(shared_toc, read_at, cache_, digest);
  ACCEL_RETURN_IF_ERROR(server_->Mount(mountpoint, std::move(tree), source,
                                       absl::StrCat("accel-estargz:", digest.substr(0, 19))));
  ACCEL_LOG(kInfo, "msg=\"mounted eStargz layer lazily\"", LogField("layer", digest),
            LogField("entries", absl::StrCat(shared_toc->entries.size())),
            LogField("took", absl::FormatDuration(absl::Now() - start)));
  absl::MutexLock lock(&mu_);
  mounted_[mountpoint] = MountState{digest, source};
  queue_.push_back(mountpoint);
  return std::string(kEstargzKind);
}

absl::StatusOr<std::string> EstargzLayers::Mount(const Labels& labels,
                                                 const std::string& /*parent*/,
                                                 const std::string& mountpoint) {
  return MountLayer(labels, mountpoint, false);
}

absl::Status EstargzLayers::Restore(const Labels& labels, const std::string& mountpoint) {
  return MountLayer(labels, mountpoint, true).status();
}

absl::Status EstargzLayers::Unmount(const std::string& mountpoint) {
  ACCEL_RETURN_IF_ERROR(server_->Unmount(mountpoint));
  absl::MutexLock lock(&mu_);
  mounted_.erase(mountpoint);
  return absl::OkStatus();
}

std::vector<EstargzMountInfo> EstargzLayers::Mounted() {
  absl::MutexLock lock(&mu_);
  std::vector<EstargzMountInfo> out;
  for (const auto& [mp, m] : mounted_) out.push_back({mp, m.layer, m.source->bytes_fetched()});
  return out;
}

void EstargzLayers::BackgroundLoop() {
  for (;;) {
    std::string mountpoint;
    std::shared_ptr<fuse::EstargzSource> source;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      mountpoint = queue_.front();
      queue_.pop_front();
      auto it = mounted_.find(mountpoint);
      if (it == mounted_.end()) continue;
      source = it->second.source;
    }
    auto still_wanted = [&] {
      absl::MutexLock lock(&mu_);
      auto it = mounted_.find(mountpoint);
      return !stopping_ && it != mounted_.end() && it->second.source == source;
    };
    const estargz::Toc& toc = source->toc();
    uint64_t fetched = 0;
    if (options_.prefetch && !toc.prioritized.empty()) {
      for (size_t index : toc.prioritized) {
        if (!still_wanted()) break;
        absl::Status s = source->Fetch(toc.FileChunks(toc.entries[index]), kPrefetchRange, &fetched,
                                       [&] { return !still_wanted(); });
        if (absl::IsCancelled(s)) break;
        if (!s.ok()) {
          ACCEL_LOG(kWarn, "msg=\"prefetch failed\"", LogField("mountpoint", mountpoint),
                    LogField("error", s.ToString()));
          break;
        }
      }
      ACCEL_LOG(kDebug, "msg=\"prefetched prioritized files\"", LogField("mountpoint", mountpoint),
                LogField("bytes", absl::StrCat(fetched)));
    }
    if (options_.background_bytes_per_sec == 0) continue;
    absl::Span<const estargz::Chunk> all(toc.chunks);
    absl::Time start = absl::Now();
    uint64_t done = 0;
    for (size_t i = 0; i < all.size() && still_wanted();) {
      // One range at a time, then sleep long enough to stay under the rate.
      size_t j = i;
      while (j < all.size() &&
             all[j].blob_offset + all[j].compressed_size - all[i].blob_offset <= kBackgroundRange)
        ++j;
      if (j == i) j = i + 1;
      absl::Status s = source->Fetch(all.subspan(i, j - i), kBackgroundRange, &done);
      if (!s.ok()) {
        ACCEL_LOG(kWarn, "msg=\"background fetch failed; will not retry for this mount\"",
                  LogField("mountpoint", mountpoint), LogField("error", s.ToString()));
        break;
      }
      i = j;
      absl::Duration due =
          absl::Seconds(static_cast<double>(done) / options_.background_bytes_per_sec);
      absl::Duration spent = absl::Now() - start;
      if (due > spent) absl::SleepFor(std::min(due - spent, absl::Seconds(1)));
    }
    ACCEL_LOG(kDebug, "msg=\"background fetch finished\"", LogField("mountpoint", mountpoint),
              LogField("bytes", absl::StrCat(done)));
  }
}

}  // namespace accel::snapshotter
