#include "snapshotter/estargz_layers.h"

#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/fs_util.h"
#include "common/labels.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "estargz/toc.h"
#include "fuse/layer_tree.h"
#include "registry/digest.h"
#include "registry/reference.h"
#include "snapshotter/remote_layers.h"

namespace accel::snapshotter {
namespace {

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

// The byte ranges ReadToc read (footer, TOC), kept so a restart can read
// the TOC again without the registry. File: "accel-toc 1 SIZE\n", then per
// range "OFFSET LENGTH\n" and the bytes.
struct TocBytes {
  int64_t size = 0;
  std::vector<std::pair<uint64_t, std::string>> ranges;

  std::string Encode() const {
    std::string out = absl::StrCat("accel-toc 1 ", size, "\n");
    for (const auto& [off, bytes] : ranges) {
      absl::StrAppend(&out, off, " ", bytes.size(), "\n", bytes);
    }
    return out;
  }
  static absl::StatusOr<TocBytes> Decode(absl::string_view in) {
    TocBytes t;
    auto line = [&in]() -> absl::StatusOr<std::string> {
      size_t nl = in.find('\n');
      if (nl == absl::string_view::npos || nl > 64) return absl::DataLossError("bad TOC cache");
      std::string l(in.substr(0, nl));
      in.remove_prefix(nl + 1);
      return l;
    };
    ACCEL_ASSIGN_OR_RETURN(std::string first_line, line());
    absl::string_view first = first_line;
    if (!absl::ConsumePrefix(&first, "accel-toc 1 ") || !absl::SimpleAtoi(first, &t.size)) {
      return absl::DataLossError("bad TOC cache header");
    }
    while (!in.empty()) {
      ACCEL_ASSIGN_OR_RETURN(std::string l, line());
      uint64_t off = 0, len = 0;
      std::pair<std::string, std::string> parts = absl::StrSplit(l, ' ');
      if (!absl::SimpleAtoi(parts.first, &off) || !absl::SimpleAtoi(parts.second, &len) ||
          len > in.size()) {
        return absl::DataLossError("bad TOC cache range");
      }
      t.ranges.emplace_back(off, std::string(in.substr(0, len)));
      in.remove_prefix(len);
    }
    return t;
  }
  // Serves reads from the kept ranges only.
  estargz::ReadAtFn Reader() const {
    return [this](uint64_t offset, uint64_t length) -> absl::StatusOr<std::string> {
      for (const auto& [off, bytes] : ranges) {
        if (offset >= off && offset - off + length <= bytes.size()) {
          return bytes.substr(offset - off, length);
        }
      }
      return absl::NotFoundError("range not in the TOC cache");
    };
  }
};

}  // namespace

EstargzLayers::EstargzLayers(BlobOpener* blobs, std::shared_ptr<fuse::ChunkCache> cache,
                             EstargzOptions options)
    : blobs_(blobs), cache_(std::move(cache)), options_(std::move(options)) {
  if (!options_.toc_dir.empty()) {
    absl::Status s = MkdirAll(options_.toc_dir, 0700);
    if (!s.ok()) {
      ACCEL_LOG(kWarn, "msg=\"cannot create the TOC cache\"", LogField("error", s.ToString()));
    }
  }
  worker_ = std::thread([this] { BackgroundLoop(); });
}

EstargzLayers::~EstargzLayers() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  worker_.join();
}

std::string EstargzLayers::TocPath(const std::string& digest) const {
  if (options_.toc_dir.empty()) return "";
  const size_t colon = digest.find(':');
  return absl::StrCat(options_.toc_dir, "/", digest.substr(colon + 1));
}

std::optional<LayerMatch> EstargzLayers::Identify(const Labels& labels) {
  const std::string ref = LabelOf(labels, kStargzRefLabel, kCriRefLabel);
  const std::string digest = LabelOf(labels, kStargzDigestLabel, kCriDigestLabel);
  if (ref.empty() || digest.empty()) return std::nullopt;
  // The diff id is known only when the image also names its store layer.
  auto diff = labels.find(kStoreLayerLabel);
  return LayerMatch{kEstargzKind, digest, diff == labels.end() ? "" : diff->second};
}

absl::StatusOr<std::optional<LoadedLayer>> EstargzLayers::Load(const Labels& labels,
                                                               const LayerMatch& match,
                                                               bool strict) {
  const std::string ref_text = LabelOf(labels, kStargzRefLabel, kCriRefLabel);
  const std::string& digest = match.layer;
  ACCEL_ASSIGN_OR_RETURN(registry::Reference ref, registry::ParseReference(ref_text));
  ACCEL_RETURN_IF_ERROR(registry::ValidateDigest(digest));
  auto toc_label = labels.find(kTocDigestAnnotation);
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
    return std::nullopt;
  }
  absl::Time start = absl::Now();
  std::shared_ptr<registry::BlobReader> blob;
  absl::StatusOr<estargz::Toc> toc = absl::UnknownError("unread");
  // A restore reads the TOC kept on local disk (verified again): no network.
  const std::string toc_path = TocPath(digest);
  if (strict && !toc_path.empty()) {
    absl::StatusOr<std::string> kept = ReadFile(toc_path);
    absl::StatusOr<TocBytes> bytes =
        kept.ok() ? TocBytes::Decode(*kept) : absl::StatusOr<TocBytes>(kept.status());
    if (bytes.ok()) {
      toc = estargz::ReadToc(bytes->Reader(), static_cast<uint64_t>(bytes->size), toc_digest);
      if (toc.ok()) blob = blobs_->OpenSized(ref, digest, bytes->size);
    }
  }
  if (blob == nullptr) {
    ACCEL_ASSIGN_OR_RETURN(blob, blobs_->Open(ref, digest));
    TocBytes kept;
    kept.size = blob->size();
    estargz::ReadAtFn read_at = [&blob, &kept](uint64_t offset,
                                               uint64_t length) -> absl::StatusOr<std::string> {
      ACCEL_ASSIGN_OR_RETURN(std::string bytes, blob->ReadAt(static_cast<int64_t>(offset),
                                                             static_cast<int64_t>(length)));
      if (bytes.size() != length) {
        return absl::DataLossError(absl::StrCat("short read at ", offset, ": got ", bytes.size(),
                                                " of ", length, " bytes"));
      }
      kept.ranges.emplace_back(offset, bytes);
      return bytes;
    };
    toc = estargz::ReadToc(read_at, static_cast<uint64_t>(blob->size()), toc_digest);
    if (toc.ok() && !toc_path.empty()) {
      absl::Status s = WriteFileAtomic(toc_path, kept.Encode(), 0600);
      if (!s.ok()) {
        ACCEL_LOG(kWarn, "msg=\"cannot keep the TOC on disk\"", LogField("layer", digest),
                  LogField("error", s.ToString()));
      }
    }
  }
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
    return std::nullopt;
  }
  auto shared_toc = std::make_shared<const estargz::Toc>(*std::move(toc));
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<const fuse::LayerTree> tree,
                         fuse::LayerTree::Build(shared_toc->entries));
  LoadedLayer loaded;
  loaded.layer.tree = std::move(tree);
  loaded.layer.source = std::make_shared<fuse::EstargzSource>(shared_toc, blob, cache_, digest);
  loaded.fsname = absl::StrCat("accel-estargz:", digest.substr(0, 19));
  loaded.id = digest;
  ACCEL_LOG(kInfo, "msg=\"loaded eStargz layer\"", LogField("layer", digest),
            LogField("entries", absl::StrCat(shared_toc->entries.size())),
            LogField("took", absl::FormatDuration(absl::Now() - start)));
  return std::optional<LoadedLayer>(std::move(loaded));
}

void EstargzLayers::Mounted(const std::string& mountpoint, const LoadedLayer& layer) {
  auto source = std::dynamic_pointer_cast<fuse::EstargzSource>(layer.layer.source);
  if (source == nullptr) return;
  ACCEL_LOG(kInfo, "msg=\"mounted eStargz layer lazily\"", LogField("layer", layer.id),
            LogField("mountpoint", mountpoint));
  absl::MutexLock lock(&mu_);
  mounted_[mountpoint] = MountState{layer.id, source};
  queue_.push_back(mountpoint);
}

void EstargzLayers::Unmounted(const std::string& mountpoint) {
  absl::MutexLock lock(&mu_);
  mounted_.erase(mountpoint);
}

std::vector<EstargzMountInfo> EstargzLayers::MountedLayers() {
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
