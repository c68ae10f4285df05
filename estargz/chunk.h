#pragma once

// Decoding the chunks a TOC describes: decompress a chunk's gzip member (or
// zstd frame), skip its inner offset, take exactly its size, and verify its
// digest. The caller fetches the compressed bytes (Chunk::blob_offset,
// Chunk::compressed_size) and may fetch neighbouring chunks in one request.
//
// Errors: InvalidArgument if the bytes given do not cover the chunk's
// compressed range; DataLoss if they do not decompress to enough bytes or
// the result does not match the chunk's digest ("chunk digest mismatch").
//
// Thread-safety: pure functions.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "estargz/footer.h"
#include "estargz/toc.h"

namespace accel::estargz {

// Decodes `chunk` from `compressed`, the blob bytes starting at
// chunk.blob_offset (normally chunk.compressed_size of them; only the part
// the chunk needs is decompressed). Verifies chunk.digest unless it is "".
absl::StatusOr<std::string> DecodeChunk(absl::string_view compressed, Compression kind,
                                        const Chunk& chunk);

// Decodes several chunks from one fetched range: `compressed` holds the blob
// bytes [range_offset, range_offset + compressed.size()), and every chunk's
// compressed range must lie inside it (e.g. neighbouring chunks merged into
// one request). Chunks that share a blob offset are decompressed once.
// Returns one string per chunk, in the order given.
absl::StatusOr<std::vector<std::string>> DecodeChunks(absl::string_view compressed,
                                                      uint64_t range_offset, Compression kind,
                                                      absl::Span<const Chunk> chunks);

// The index in `chunks` (one file's chunks, as Toc::FileChunks returns) of
// the chunk holding file offset `offset`, or chunks.size() if none does.
size_t ChunkIndexForOffset(absl::Span<const Chunk> chunks, uint64_t offset);

}  // namespace accel::estargz
