// libFuzzer target: the TOC parser and the whole read path.
//
// The first byte picks the mode:
//   even: the rest is TOC JSON for ParseToc (gzip or zstd, data area size
//         from the second byte);
//   odd:  the rest is a whole blob for ReadToc; when that succeeds, every
//         small chunk is decoded from the blob.
// An accepted TOC must hold its own invariants (checked with abort()).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "estargz/chunk.h"
#include "estargz/toc.h"

namespace {

using accel::estargz::Chunk;
using accel::estargz::Compression;
using accel::estargz::Toc;

void CheckInvariants(const Toc& toc) {
  for (const Chunk& c : toc.chunks) {
    if (c.blob_offset >= toc.payload_end || c.compressed_size == 0 ||
        c.compressed_size > toc.payload_end - c.blob_offset) {
      std::abort();
    }
  }
  for (const accel::LayerEntry& e : toc.entries) {
    if (e.type != accel::EntryType::kRegular) continue;
    uint64_t covered = 0;
    for (const Chunk& c : toc.FileChunks(e)) {
      if (c.file_offset != covered) std::abort();
      covered += c.size;
    }
    if (covered != e.size) std::abort();
  }
  for (size_t i : toc.prioritized) {
    if (i >= toc.entries.size()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((data[0] & 1) == 0) {
    const Compression kind = (data[0] & 2) ? Compression::kZstd : Compression::kGzip;
    const uint64_t payload_end = 1 + (uint64_t{data[1]} << (data[0] >> 2));
    absl::StatusOr<Toc> toc = accel::estargz::ParseToc(rest, kind, payload_end);
    if (toc.ok()) CheckInvariants(*toc);
    return 0;
  }
  auto read_at = [&rest](uint64_t offset, uint64_t length) -> absl::StatusOr<std::string> {
    if (offset > rest.size() || length > rest.size() - offset) {
      return absl::OutOfRangeError("read past the blob");
    }
    return rest.substr(offset, length);
  };
  absl::StatusOr<Toc> toc = accel::estargz::ReadToc(read_at, rest.size(), "");
  if (!toc.ok()) return 0;
  CheckInvariants(*toc);
  if (toc->payload_end > rest.size()) std::abort();
  for (const Chunk& c : toc->chunks) {
    if (c.size > (64 << 10) || c.inner_offset > (64 << 10)) continue;
    (void)accel::estargz::DecodeChunk(
        absl::string_view(rest).substr(c.blob_offset, c.compressed_size), toc->compression, c);
  }
  return 0;
}
