#include "estargz/chunk.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "estargz/codec.h"

namespace accel::estargz {
namespace {

absl::Status Verify(absl::string_view data, const Chunk& chunk) {
  if (chunk.digest.empty()) return absl::OkStatus();
  std::string got = Sha256::Of(data);
  if (got != chunk.digest) {
    return absl::DataLossError(absl::StrCat("chunk digest mismatch at blob offset ",
                                            chunk.blob_offset, " (file offset ", chunk.file_offset,
                                            "): got ", got, ", want ", chunk.digest));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> DecodeChunk(absl::string_view compressed, Compression kind,
                                        const Chunk& chunk) {
  absl::StatusOr<std::string> out =
      internal::DecompressRange(compressed, kind, chunk.inner_offset, chunk.size);
  if (!out.ok()) {
    return Annotate(out.status(), "chunk at blob offset ", chunk.blob_offset);
  }
  ACCEL_RETURN_IF_ERROR(Verify(*out, chunk));
  return out;
}

absl::StatusOr<std::vector<std::string>> DecodeChunks(absl::string_view compressed,
                                                      uint64_t range_offset, Compression kind,
                                                      absl::Span<const Chunk> chunks) {
  const uint64_t range_end = range_offset + compressed.size();
  // How much of each member (blob offset) the chunks need.
  absl::flat_hash_map<uint64_t, uint64_t> need;
  for (const Chunk& c : chunks) {
    if (c.blob_offset < range_offset || c.blob_offset > range_end ||
        c.compressed_size > range_end - c.blob_offset) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk [", c.blob_offset, ", +", c.compressed_size,
                       ") is not inside the fetched range [", range_offset, ", ", range_end, ")"));
    }
    uint64_t& n = need[c.blob_offset];
    n = std::max(n, c.inner_offset + c.size);
  }
  std::vector<std::string> out;
  out.reserve(chunks.size());
  // Chunks sharing a member are normally consecutive: keep the last one.
  bool have_plain = false;
  uint64_t plain_offset = 0;
  std::string plain;
  for (const Chunk& c : chunks) {
    if (!have_plain || plain_offset != c.blob_offset) {
      absl::string_view member = compressed.substr(c.blob_offset - range_offset, c.compressed_size);
      absl::StatusOr<std::string> p =
          internal::DecompressRange(member, kind, 0, need[c.blob_offset]);
      if (!p.ok()) return Annotate(p.status(), "chunk at blob offset ", c.blob_offset);
      plain = std::move(*p);
      plain_offset = c.blob_offset;
      have_plain = true;
    }
    std::string data =
        plain.substr(static_cast<size_t>(c.inner_offset), static_cast<size_t>(c.size));
    ACCEL_RETURN_IF_ERROR(Verify(data, c));
    out.push_back(std::move(data));
  }
  return out;
}

size_t ChunkIndexForOffset(absl::Span<const Chunk> chunks, uint64_t offset) {
  auto it = std::upper_bound(chunks.begin(), chunks.end(), offset,
                             [](uint64_t off, const Chunk& c) { return off < c.file_offset; });
  if (it == chunks.begin()) return chunks.size();
  --it;
  if (offset - it->file_offset >= it->size) return chunks.size();
  return static_cast<size_t>(it - chunks.begin());
}

}  // namespace accel::estargz
