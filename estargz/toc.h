#pragma once

// The table of contents (TOC) of an eStargz or zstd:chunked blob: every
// entry's metadata and where each regular file's chunks lie in the blob.
// ParseToc turns the TOC JSON (`stargz.index.json`) into neutral LayerEntry
// values plus a chunk table; ReadToc fetches and verifies it from a blob
// through a range-read callback (footer, then TOC: two calls).
//
// The TOC is untrusted input: every field is checked, sizes are bounded, and
// each error names the entry (its index and name). InvalidArgument for a TOC
// that is malformed or inconsistent; DataLoss for bytes that do not match
// their digest or do not decompress.
//
// What is checked: names (cleaned like tar names: "./" prefix, "." parts,
// repeated and trailing "/" go; a leading "/", "..", NUL or over-long names
// are refused), types, sizes (0..2^40), modes, ids, RFC 3339 times, base64
// xattrs, digests ("sha256:" + 64 lowercase hex), that a file's chunks cover
// it exactly (no gap, no overlap, sizes summing to the file size), that
// chunks lie inside the blob's data area in blob order without overlapping,
// that a hard link names an earlier regular file, that an entry's parent is
// not a non-directory of the same TOC, and at most kMaxTocEntries entries.
// Later entries with the same name are kept (tar semantics: the later one
// wins when the tree is built); fuse/ applies that rule.
//
// Not done here: building a tree, hiding whiteouts, fetching chunks.
//
// Thread-safety: pure functions; a Toc is a plain value.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/digest.h"
#include "common/labels.h"
#include "common/layer_entry.h"
#include "estargz/footer.h"

namespace accel::estargz {

// Names of the format's own entries, at the layer root. They are never part
// of Toc::entries.
inline constexpr char kTocName[] = "stargz.index.json";
inline constexpr char kPrefetchLandmark[] = ".prefetch.landmark";
inline constexpr char kNoPrefetchLandmark[] = ".no.prefetch.landmark";
// The layer annotation holding the TOC digest is kTocDigestAnnotation
// (common/labels.h); this name stays until snapshotter/estargz_layers.cc
// uses that header.
using ::accel::kTocDigestAnnotation;

// Bounds no real layer reaches; they keep a hostile TOC from exhausting
// memory or time.
inline constexpr uint64_t kMaxTocSize = 256ull << 20;   // decompressed TOC JSON
inline constexpr uint64_t kMaxTocEntries = 10'000'000;  // TOC entries, chunks included
inline constexpr uint64_t kMaxFileSize = 1ull << 40;

// One compressed piece of a regular file.
struct Chunk {
  uint64_t file_offset = 0;  // where the piece starts in the file ("chunkOffset")
  uint64_t size = 0;         // its uncompressed length
  uint64_t blob_offset = 0;  // where its gzip member / zstd frame starts ("offset")
  // Bytes from blob_offset to the next chunk's different blob offset (or to
  // the end of the data area): fetch [blob_offset, blob_offset + compressed_size).
  uint64_t compressed_size = 0;
  uint64_t inner_offset = 0;  // decompressed bytes to skip first ("innerOffset")
  std::string digest;         // "sha256:<hex>" of the piece, "" if the TOC has none
  uint32_t chunks_after = 0;  // how many chunks of the same file follow this one
};

struct Toc {
  Compression compression = Compression::kGzip;
  // "sha256:<hex>" of the TOC JSON: what the kTocDigestAnnotation holds.
  std::string digest;
  // Chunk data lies in [0, payload_end) of the blob.
  uint64_t payload_end = 0;

  // Every entry in TOC order, format entries (kTocName, landmarks) removed.
  // For a regular file with content, data_offset is the index of its first
  // chunk in `chunks` (see FileChunks); digest is the TOC's "digest" ("" if
  // absent). Hard links carry the cleaned target path in link_target.
  std::vector<LayerEntry> entries;
  // The format's own entries found in the TOC (landmarks; never shown in
  // the filesystem). Their data_offset indexes `chunks` like entries'.
  std::vector<LayerEntry> metadata;
  // Every chunk, file by file in TOC (= blob) order.
  std::vector<Chunk> chunks;

  bool has_prefetch_landmark = false;
  bool has_no_prefetch_landmark = false;
  // Indexes into `entries` of the regular files before the prefetch
  // landmark (the prioritized files), in blob order. Empty without one.
  std::vector<size_t> prioritized;
  // With a prefetch landmark: the prioritized files' chunks lie in
  // [0, prefetch_size) of the blob (one range request fetches them all).
  uint64_t prefetch_size = 0;
  // True if every chunk has a digest, so every read can be verified.
  bool all_chunks_have_digests = true;

  // The chunks of a regular entry (`entry.data_offset`, `entry.size`),
  // ordered by file offset; empty for an empty file or an index out of range.
  absl::Span<const Chunk> FileChunks(uint64_t first_chunk, uint64_t file_size) const;
  absl::Span<const Chunk> FileChunks(const LayerEntry& e) const {
    return FileChunks(e.data_offset, e.size);
  }
};

// Parses TOC JSON. `kind` is how the blob's chunks are compressed and
// `payload_end` where its data area ends (Footer::payload_end). Toc::digest
// is computed from `json`. Returns InvalidArgument naming the first problem.
absl::StatusOr<Toc> ParseToc(absl::string_view json, Compression kind, uint64_t payload_end);

// Reads `length` bytes of the blob at `offset`. Must return exactly that
// many bytes or an error.
using ReadAtFn = std::function<absl::StatusOr<std::string>(uint64_t offset, uint64_t length)>;

// Reads the TOC of a blob of `blob_size` bytes through `read_at`: one call
// for the last min(blob_size, kMaxFooterSize) bytes, one for the compressed
// TOC. Decompresses it with a bound of kMaxTocSize, takes kTocName out of
// its tar (gzip) or the frame (zstd:chunked), checks its sha256 against
// `expected_toc_digest` unless that is "", then parses it.
// Errors: read_at's own (annotated); InvalidArgument for a bad footer, a TOC
// that is too large or malformed, or a malformed `expected_toc_digest`;
// DataLoss for a short read, a TOC that does not decompress, or a digest
// mismatch ("TOC digest mismatch").
absl::StatusOr<Toc> ReadToc(const ReadAtFn& read_at, uint64_t blob_size,
                            absl::string_view expected_toc_digest);

}  // namespace accel::estargz
