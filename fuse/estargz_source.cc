#include "fuse/estargz_source.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "estargz/chunk.h"
#include "fuse/layer_tree.h"

namespace accel::fuse {
namespace {

using estargz::Chunk;

// Chunks are fetched together when the next one starts where the previous
// one's compressed bytes end (or shares its gzip member).
bool Adjacent(const Chunk& a, const Chunk& b) {
  return b.blob_offset == a.blob_offset || b.blob_offset == a.blob_offset + a.compressed_size;
}

}  // namespace

EstargzSource::EstargzSource(std::shared_ptr<const estargz::Toc> toc,
                             std::shared_ptr<registry::BlobReader> blob,
                             std::shared_ptr<ChunkCache> cache, std::string layer)
    : toc_(std::move(toc)),
      blob_(std::move(blob)),
      cache_(std::move(cache)),
      layer_(std::move(layer)) {}

std::string EstargzSource::KeyOf(const Chunk& chunk) {
  // Content-addressed by the chunk digest; chunks without one are not
  // cached (nothing to verify them against later).
  return chunk.digest.size() == 71 ? chunk.digest.substr(7) : std::string();
}

absl::StatusOr<std::string> EstargzSource::ReadBlob(uint64_t offset, uint64_t length) {
  ACCEL_ASSIGN_OR_RETURN(std::string bytes,
                         blob_->ReadAt(static_cast<int64_t>(offset), static_cast<int64_t>(length)));
  if (bytes.size() != length) {
    return absl::DataLossError(absl::StrCat("short read of layer ", layer_, " at ", offset,
                                            ": got ", bytes.size(), " of ", length, " bytes"));
  }
  return bytes;
}

absl::Status EstargzSource::FetchRun(absl::Span<const Chunk> run, uint64_t* fetched) {
  const uint64_t start = run.front().blob_offset;
  const uint64_t end = run.back().blob_offset + run.back().compressed_size;
  ACCEL_ASSIGN_OR_RETURN(std::string bytes, ReadBlob(start, end - start));
  bytes_fetched_ += bytes.size();
  if (fetched != nullptr) *fetched += bytes.size();
  ACCEL_ASSIGN_OR_RETURN(std::vector<std::string> decoded,
                         estargz::DecodeChunks(bytes, start, toc_->compression, run));
  for (size_t i = 0; i < run.size(); ++i) {
    if (decoded[i].size() != run[i].size)
      return absl::DataLossError("decoded chunk has the wrong size");
    const std::string key = KeyOf(run[i]);
    if (key.empty()) continue;
    absl::Status s = cache_->Put(key, std::make_shared<const std::string>(std::move(decoded[i])));
    if (!s.ok()) {
      ACCEL_LOG(kWarn, "msg=\"cannot cache chunk\"", LogField("layer", layer_),
                LogField("error", s.ToString()));
    }
  }
  return absl::OkStatus();
}

absl::Status EstargzSource::Fetch(absl::Span<const Chunk> chunks, uint64_t max_range,
                                  uint64_t* fetched, const std::function<bool()>& cancelled) {
  size_t i = 0;
  while (i < chunks.size()) {
    if (cancelled && cancelled()) return absl::CancelledError("fetch cancelled");
    const std::string key = KeyOf(chunks[i]);
    if (key.empty() || cache_->Get(key).has_value()) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < chunks.size() && Adjacent(chunks[j - 1], chunks[j]) &&
           chunks[j].blob_offset + chunks[j].compressed_size - chunks[i].blob_offset <= max_range &&
           !KeyOf(chunks[j]).empty() && !cache_->Get(KeyOf(chunks[j])).has_value()) {
      ++j;
    }
    ACCEL_RETURN_IF_ERROR(FetchRun(chunks.subspan(i, j - i), fetched));
    i = j;
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> EstargzSource::ReadAt(const Node& node, uint64_t offset, char* buf,
                                             size_t len) {
  if (offset >= node.size || len == 0) return size_t{0};
  const uint64_t end = std::min<uint64_t>(node.size, offset + len);
  absl::Span<const Chunk> chunks = toc_->FileChunks(node.data_offset, node.size);
  size_t first = estargz::ChunkIndexForOffset(chunks, offset);
  if (first >= chunks.size()) {
    return absl::DataLossError(absl::StrCat("no chunk holds offset ", offset));
  }
  size_t last = first;
  while (last + 1 < chunks.size() && chunks[last + 1].file_offset < end) ++last;

  // Each chunk's part of the request, straight from the cache where it is
  // there; the missing chunks are fetched (neighbours in one request),
  // decoded, verified and cached.
  auto part = [&](size_t i) {
    const Chunk& c = chunks[i];
    const uint64_t from = std::max(offset, c.file_offset);
    const uint64_t to = std::min(end, c.file_offset + c.size);
    return std::make_pair(from, to);
  };
  size_t copied = 0;
  std::vector<size_t> missing;
  for (size_t i = first; i <= last; ++i) {
    const auto [from, to] = part(i);
    if (to <= from) continue;
    const std::string key = KeyOf(chunks[i]);
    if (!key.empty() && cache_->ReadRange(key, chunks[i].size, from - chunks[i].file_offset,
                                          to - from, buf + (from - offset))) {
      copied += to - from;
      continue;
    }
    missing.push_back(i);
  }
  size_t m = 0;
  while (m < missing.size()) {
    size_t n = m + 1;
    while (n < missing.size() && missing[n] == missing[n - 1] + 1 &&
           Adjacent(chunks[missing[n - 1]], chunks[missing[n]])) {
      ++n;
    }
    absl::Span<const Chunk> run = chunks.subspan(missing[m], n - m);
    const uint64_t start = run.front().blob_offset;
    const uint64_t stop = run.back().blob_offset + run.back().compressed_size;
    absl::StatusOr<std::string> bytes = ReadBlob(start, stop - start);
    if (!bytes.ok()) {
      ACCEL_LOG(kWarn, "msg=\"cannot fetch chunks\"", LogField("layer", layer_),
                LogField("ino", absl::StrCat(node.ino)),
                LogField("error", bytes.status().ToString()));
      return bytes.status();
    }
    bytes_fetched_ += bytes->size();
    absl::StatusOr<std::vector<std::string>> decoded =
        estargz::DecodeChunks(*bytes, start, toc_->compression, run);
    if (!decoded.ok()) {
      ACCEL_LOG(kError, "msg=\"chunk failed verification; not served\"", LogField("layer", layer_),
                LogField("ino", absl::StrCat(node.ino)),
                LogField("error", decoded.status().ToString()));
      return decoded.status();
    }
    for (size_t k = 0; k < run.size(); ++k) {
      const Chunk& c = run[k];
      auto data = std::make_shared<const std::string>(std::move((*decoded)[k]));
      if (data->size() != c.size) return absl::DataLossError("decoded chunk has the wrong size");
      const auto [from, to] = part(missing[m + k]);
      std::memcpy(buf + (from - offset), data->data() + (from - c.file_offset), to - from);
      copied += to - from;
      const std::string key = KeyOf(c);
      if (!key.empty()) cache_->Put(key, std::move(data)).IgnoreError();
    }
    m = n;
  }
  return copied;
}

}  // namespace accel::fuse
