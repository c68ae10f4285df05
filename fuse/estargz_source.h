#pragma once

// EstargzSource serves the files of a lazily mounted eStargz layer: a read
// finds the chunks it needs, takes them from the chunk cache or fetches
// them (neighbouring chunks merged into one range request), decodes and
// verifies each, and keeps them in the cache. A chunk that fails its digest
// is never served: the read fails (EIO) and the failure is logged with the
// layer and file.
//
// Thread-safe.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "estargz/toc.h"
#include "fuse/chunk_cache.h"
#include "fuse/file_source.h"
#include "registry/blob_reader.h"

namespace accel::fuse {

class EstargzSource final : public FileSource {
 public:
  // `blob` reads bytes of the layer blob (the registry, a file in tests);
  // `layer` names the layer in logs.
  EstargzSource(std::shared_ptr<const estargz::Toc> toc, std::shared_ptr<registry::BlobReader> blob,
                std::shared_ptr<ChunkCache> cache, std::string layer);

  absl::StatusOr<size_t> ReadAt(const Node& node, uint64_t offset, char* buf, size_t len) override;

  // Makes sure `chunks` are cached, fetching the missing ones in merged
  // ranges of at most `max_range` bytes. Used by prefetch and background
  // fetch; `fetched` receives the compressed bytes downloaded.
  // `cancelled` is checked between requests (Cancelled when it says so).
  absl::Status Fetch(absl::Span<const estargz::Chunk> chunks, uint64_t max_range, uint64_t* fetched,
                     const std::function<bool()>& cancelled = nullptr);

  const estargz::Toc& toc() const { return *toc_; }
  uint64_t bytes_fetched() const { return bytes_fetched_.load(); }

 private:
  // Fetches, decodes, verifies and caches chunks[first, last] (adjacent in
  // the blob) with one request.
  absl::Status FetchRun(absl::Span<const estargz::Chunk> run, uint64_t* fetched);
  static std::string KeyOf(const estargz::Chunk& chunk);
  // Exactly `length` bytes of the blob at `offset` (DataLoss if fewer).
  absl::StatusOr<std::string> ReadBlob(uint64_t offset, uint64_t length);

  const std::shared_ptr<const estargz::Toc> toc_;
  const std::shared_ptr<registry::BlobReader> blob_;
  const std::shared_ptr<ChunkCache> cache_;
  const std::string layer_;
  std::atomic<uint64_t> bytes_fetched_{0};
};

}  // namespace accel::fuse
