#pragma once

// The footer at the end of an eStargz (or legacy stargz, or zstd:chunked)
// blob: it says where the table of contents (TOC) is. A reader fetches the
// last kMaxFooterSize bytes of the blob, parses them here, then fetches the
// TOC. See estargz/FORMAT.md for the byte tables.
//
// eStargz footer (51 bytes): an empty gzip member whose Extra field holds the
// TOC offset:
//
//   10 bytes  gzip header: 1f 8b 08 FLG=04 (FEXTRA) MTIME=0 XFL OS
//    2 bytes  XLEN = 26 (little-endian)
//    2 bytes  subfield id 'S' 'G'
//    2 bytes  subfield length = 22 (little-endian)
//   22 bytes  16 hex digits of the TOC offset, then "STARGZ"
//    5 bytes  deflate: one final stored block of length 0 (01 00 00 ff ff)
//    8 bytes  gzip trailer: CRC32 = 0, ISIZE = 0
//
// Legacy stargz footer (47 bytes): the same without the subfield id and
// length (XLEN = 22, Extra = 16 hex digits + "STARGZ").
//
// zstd:chunked footer (48 bytes): a zstd skippable frame (magic 0x184D2A50,
// length 40, both little-endian u32) holding
//
//   u64 LE  offset of the compressed TOC (inside its own skippable frame)
//   u64 LE  compressed TOC length
//   u64 LE  uncompressed TOC length
//   u64 LE  manifest type, 1
//   8 bytes "GnUlInUx"
//
// For gzip the TOC runs from its offset to the footer; for zstd:chunked it is
// the declared compressed length, and the file data ends 8 bytes before it
// (at the TOC's skippable frame header).
//
// Thread-safety: pure functions.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accel::estargz {

// How chunks and the TOC are compressed.
enum class Compression : uint8_t {
  kGzip = 0,
  kZstd = 1,
};

enum class FooterKind : uint8_t {
  kEstargz = 0,       // 51-byte gzip footer
  kLegacyStargz = 1,  // 47-byte gzip footer (stargz before eStargz)
  kZstdChunked = 2,   // 48-byte zstd skippable frame
};

inline constexpr size_t kEstargzFooterSize = 51;
inline constexpr size_t kLegacyFooterSize = 47;
inline constexpr size_t kZstdChunkedFooterSize = 48;
// How many bytes at the end of a blob a caller must fetch for ParseFooter
// (all of the blob if it is shorter).
inline constexpr size_t kMaxFooterSize = 51;

struct Footer {
  FooterKind kind = FooterKind::kEstargz;
  Compression compression = Compression::kGzip;
  uint64_t footer_size = 0;  // bytes at the end of the blob that form the footer
  uint64_t toc_offset = 0;   // first byte of the compressed TOC in the blob
  uint64_t toc_size = 0;     // compressed TOC bytes from toc_offset
  // zstd:chunked: the TOC's declared uncompressed length; gzip: 0 (unknown).
  uint64_t toc_uncompressed_size = 0;
  // File data (every chunk) lies in [0, payload_end).
  uint64_t payload_end = 0;
};

// Parses the footer from `tail`, the last bytes of a blob of `blob_size`
// bytes (normally min(blob_size, kMaxFooterSize) of them; more is fine).
// Tries, in order, zstd:chunked, eStargz and legacy stargz. Returns
// InvalidArgument if no footer is recognised (message says why) or if its
// TOC range does not lie inside the blob before the footer.
absl::StatusOr<Footer> ParseFooter(absl::string_view tail, uint64_t blob_size);

// The 51-byte eStargz footer pointing at `toc_offset`.
std::string EncodeEstargzFooter(uint64_t toc_offset);

}  // namespace accel::estargz
