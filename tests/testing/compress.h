#pragma once

// gzip and zstd for tests, written with zlib and libzstd directly (not with
// the code under test): one-member gzip, one zstd frame, and a gunzip that
// reads every member of a multi-member stream.

#include <zlib.h>
#include <zstd.h>

#include <string>

namespace accel::testing {

// One gzip member holding `in`, with `header` (extra field, name, OS...)
// if given.
inline std::string Gzip(const std::string& in, int level = 6, gz_header* header = nullptr) {
  z_stream z{};
  deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  if (header != nullptr) deflateSetHeader(&z, header);
  std::string out(deflateBound(&z, in.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// One zstd frame holding `in`.
inline std::string Zstd(const std::string& in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3));
  return out;
}

// Decompresses every gzip member of `in`, one after another
// ("<gunzip failed>" if it is not gzip).
inline std::string Gunzip(const std::string& in) {
  std::string out;
  z_stream z{};
  inflateInit2(&z, 15 + 16);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char buf[1 << 16];
  while (z.avail_in > 0) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    int rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (rc == Z_STREAM_END) {
      inflateReset(&z);
    } else if (rc != Z_OK) {
      out = "<gunzip failed>";
      break;
    }
  }
  inflateEnd(&z);
  return out;
}

}  // namespace accel::testing
