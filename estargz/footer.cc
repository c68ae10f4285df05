#include "estargz/footer.h"

#include <zlib.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace accel::estargz {
namespace {

constexpr uint32_t kSkippableFrameMagic = 0x184D2A50;
constexpr char kZstdChunkedMagic[] = "GnUlInUx";
constexpr uint64_t kZstdChunkedManifestType = 1;
constexpr size_t kZstdChunkedPayload = 40;

uint16_t Le16(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>(b[0] | (b[1] << 8));
}
uint32_t Le32(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(b[0]) | (static_cast<uint32_t>(b[1]) << 8) |
         (static_cast<uint32_t>(b[2]) << 16) | (static_cast<uint32_t>(b[3]) << 24);
}
uint64_t Le64(const char* p) {
  return static_cast<uint64_t>(Le32(p)) | (static_cast<uint64_t>(Le32(p + 4)) << 32);
}

// Parses exactly 16 hex digits (either case) that fit in a signed 64-bit
// offset, as every writer prints it with "%016x".
absl::StatusOr<uint64_t> ParseHexOffset(absl::string_view hex) {
  uint64_t v = 0;
  for (char c : hex) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return absl::InvalidArgumentError("TOC offset in the footer is not hexadecimal");
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  if (v >> 63) return absl::InvalidArgumentError("TOC offset in the footer is out of range");
  return v;
}

// True if `member` is one complete gzip member that decompresses to nothing
// and has nothing after it.
bool IsEmptyGzipMember(absl::string_view member) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return false;
  char out[16];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(member.data()));
  z.avail_in = static_cast<uInt>(member.size());
  z.next_out = reinterpret_cast<Bytef*>(out);
  z.avail_out = sizeof out;
  int rc = inflate(&z, Z_FINISH);
  bool ok = rc == Z_STREAM_END && z.total_out == 0 && z.avail_in == 0;
  inflateEnd(&z);
  return ok;
}

// Parses a 51-byte eStargz or 47-byte legacy footer in `f`.
absl::StatusOr<uint64_t> ParseGzipFooter(absl::string_view f, bool legacy) {
  const char* what = legacy ? "legacy stargz footer" : "eStargz footer";
  const auto* b = reinterpret_cast<const unsigned char*>(f.data());
  if (b[0] != 0x1f || b[1] != 0x8b || b[2] != 8) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no gzip header"));
  }
  // FEXTRA, and none of FNAME/FCOMMENT/FHCRC (they would change the size).
  if ((b[3] & ~1u) != 4) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": unexpected gzip flags"));
  }
  const uint16_t xlen = Le16(f.data() + 10);
  absl::string_view hex;
  if (legacy) {
    if (xlen != 22) return absl::InvalidArgumentError(absl::StrCat(what, ": wrong Extra length"));
    hex = f.substr(12, 16);
    if (f.substr(28, 6) != "STARGZ") {
      return absl::InvalidArgumentError(absl::StrCat(what, ": no STARGZ magic"));
    }
  } else {
    if (xlen != 26) return absl::InvalidArgumentError(absl::StrCat(what, ": wrong Extra length"));
    if (f[12] != 'S' || f[13] != 'G') {
      return absl::InvalidArgumentError(absl::StrCat(what, ": wrong Extra subfield id"));
    }
    if (Le16(f.data() + 14) != 22) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": wrong Extra subfield length"));
    }
    hex = f.substr(16, 16);
    if (f.substr(32, 6) != "STARGZ") {
      return absl::InvalidArgumentError(absl::StrCat(what, ": no STARGZ magic"));
    }
  }
  absl::StatusOr<uint64_t> offset = ParseHexOffset(hex);
  if (!offset.ok())
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", offset.status().message()));
  if (!IsEmptyGzipMember(f)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not an empty gzip member"));
  }
  return *offset;
}

absl::StatusOr<Footer> ParseZstdChunked(absl::string_view tail, uint64_t blob_size) {
  if (tail.size() < kZstdChunkedFooterSize) {
    return absl::InvalidArgumentError("zstd:chunked footer is truncated");
  }
  const char* frame = tail.data() + tail.size() - kZstdChunkedFooterSize;
  if (Le32(frame) != kSkippableFrameMagic || Le32(frame + 4) != kZstdChunkedPayload) {
    return absl::InvalidArgumentError("zstd:chunked footer is not in a 40-byte skippable frame");
  }
  const char* p = frame + 8;
  Footer f;
  f.kind = FooterKind::kZstdChunked;
  f.compression = Compression::kZstd;
  f.footer_size = kZstdChunkedFooterSize;
  f.toc_offset = Le64(p);
  f.toc_size = Le64(p + 8);
  f.toc_uncompressed_size = Le64(p + 16);
  const uint64_t type = Le64(p + 24);
  if (type != kZstdChunkedManifestType) {
    return absl::InvalidArgumentError(
        absl::StrCat("zstd:chunked footer has unsupported manifest type ", type));
  }
  const uint64_t limit = blob_size - kZstdChunkedFooterSize;
  if (f.toc_offset < 8 || f.toc_offset > limit || f.toc_size == 0 ||
      f.toc_size > limit - f.toc_offset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "zstd:chunked footer: TOC [%d, +%d) does not lie inside the %d-byte blob before the footer",
        f.toc_offset, f.toc_size, blob_size));
  }
  if (f.toc_uncompressed_size == 0) {
    return absl::InvalidArgumentError("zstd:chunked footer declares an empty TOC");
  }
  f.payload_end = f.toc_offset - 8;
  return f;
}

}  // namespace

absl::StatusOr<Footer> ParseFooter(absl::string_view tail, uint64_t blob_size) {
  if (tail.size() > blob_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("footer: %d tail bytes given for a %d-byte blob", tail.size(), blob_size));
  }
  if (tail.size() >= 8 && tail.substr(tail.size() - 8) == absl::string_view(kZstdChunkedMagic, 8)) {
    return ParseZstdChunked(tail, blob_size);
  }
  if (tail.size() < kLegacyFooterSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("footer: blob tail of %d bytes is shorter than any footer", tail.size()));
  }
  std::string why;
  for (bool legacy : {false, true}) {
    const size_t size = legacy ? kLegacyFooterSize : kEstargzFooterSize;
    if (tail.size() < size) continue;
    absl::StatusOr<uint64_t> offset = ParseGzipFooter(tail.substr(tail.size() - size), legacy);
    if (!offset.ok()) {
      absl::StrAppend(&why, why.empty() ? "" : "; ", offset.status().message());
      continue;
    }
    Footer f;
    f.kind = legacy ? FooterKind::kLegacyStargz : FooterKind::kEstargz;
    f.compression = Compression::kGzip;
    f.footer_size = size;
    f.toc_offset = *offset;
    if (f.toc_offset >= blob_size - size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("footer: TOC offset %d is not before the footer of the %d-byte blob",
                          f.toc_offset, blob_size));
    }
    f.toc_size = blob_size - size - f.toc_offset;
    f.payload_end = f.toc_offset;
    return f;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no eStargz, stargz or zstd:chunked footer at the end of the blob (", why, ")"));
}

std::string EncodeEstargzFooter(uint64_t toc_offset) {
  std::string f;
  f.reserve(kEstargzFooterSize);
  // gzip header: magic, deflate, FEXTRA, MTIME 0, XFL 0, OS unknown.
  const unsigned char header[] = {0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0xff};
  f.append(reinterpret_cast<const char*>(header), sizeof header);
  f.push_back(26);  // XLEN
  f.push_back(0);
  f.push_back('S');
  f.push_back('G');
  f.push_back(22);  // subfield length
  f.push_back(0);
  f.append(absl::StrFormat("%016xSTARGZ", toc_offset));
  // One final stored block of length 0, then CRC32 and ISIZE of nothing.
  const unsigned char tail[] = {0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
  f.append(reinterpret_cast<const char*>(tail), sizeof tail);
  return f;
}

}  // namespace accel::estargz
