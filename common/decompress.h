#pragma once

// Decompressor pulls decompressed bytes out of a compressed stream,
// detecting the compression from the first bytes: gzip, zstd, or none
// (passed through). Concatenated gzip members and zstd frames read as one
// stream (as Go's readers do, so multi-member eStargz blobs work); a stream
// that ends inside a member or frame is DataLoss ("truncated"), corrupt
// data is DataLoss ("corrupt"). Not thread-safe (one stream each).

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace accel {

// Fills up to `len` bytes of `buf`, returns how many; 0 at the end.
using ReadFn = std::function<absl::StatusOr<size_t>(char* buf, size_t len)>;

inline constexpr size_t kDecompressBlock = 1 << 20;

class Decompressor {
 public:
  explicit Decompressor(const ReadFn& input) : input_(input), in_(kDecompressBlock) {}
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;
  ~Decompressor() {
    if (kind_ == Kind::kGzip) inflateEnd(&z_);
    if (zstd_ != nullptr) ZSTD_freeDStream(zstd_);
  }

  absl::StatusOr<size_t> Read(char* out, size_t len) {
    if (kind_ == Kind::kUnknown) ACCEL_RETURN_IF_ERROR(Detect());
    switch (kind_) {
      case Kind::kPlain: {
        if (in_pos_ < in_len_) {
          size_t n = std::min(len, in_len_ - in_pos_);
          std::memcpy(out, in_.data() + in_pos_, n);
          in_pos_ += n;
          return n;
        }
        return input_(out, len);
      }
      case Kind::kGzip:
        return ReadGzip(out, len);
      case Kind::kZstd:
        return ReadZstd(out, len);
      case Kind::kUnknown:
        break;
    }
    return absl::InternalError("decompressor in an unknown state");
  }

  const char* name() const {
    return kind_ == Kind::kGzip ? "gzip" : kind_ == Kind::kZstd ? "zstd" : "uncompressed";
  }

 private:
  enum class Kind { kUnknown, kPlain, kGzip, kZstd };

  // Reads more input; false at the end of the input.
  absl::StatusOr<bool> Fill() {
    if (in_pos_ < in_len_) return true;
    ACCEL_ASSIGN_OR_RETURN(size_t n, input_(in_.data(), in_.size()));
    in_pos_ = 0;
    in_len_ = n;
    return n > 0;
  }

  absl::Status Detect() {
    // Read until 4 bytes are there (or the input ends).
    while (in_len_ < 4) {
      ACCEL_ASSIGN_OR_RETURN(size_t n, input_(in_.data() + in_len_, in_.size() - in_len_));
      if (n == 0) break;
      in_len_ += n;
    }
    const auto* b = reinterpret_cast<const unsigned char*>(in_.data());
    if (in_len_ >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
      kind_ = Kind::kGzip;
      std::memset(&z_, 0, sizeof z_);
      if (inflateInit2(&z_, 15 + 16) != Z_OK) return absl::InternalError("inflateInit2 failed");
    } else if (in_len_ >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
      kind_ = Kind::kZstd;
      zstd_ = ZSTD_createDStream();
      if (zstd_ == nullptr) return absl::InternalError("ZSTD_createDStream failed");
    } else {
      kind_ = Kind::kPlain;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> ReadGzip(char* out, size_t len) {
    for (;;) {
      if (gzip_member_done_) {
        // Another member follows, or the stream ends here.
        ACCEL_ASSIGN_OR_RETURN(bool more, Fill());
        if (!more) return size_t{0};
        inflateReset(&z_);
        gzip_member_done_ = false;
      }
      if (in_pos_ == in_len_) {
        ACCEL_ASSIGN_OR_RETURN(bool more, Fill());
        if (!more)
          return absl::DataLossError("gzip stream is truncated (input ended inside a member)");
      }
      z_.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
      z_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
      z_.next_out = reinterpret_cast<Bytef*>(out);
      z_.avail_out = static_cast<uInt>(std::min<size_t>(len, 1u << 30));
      int rc = inflate(&z_, Z_NO_FLUSH);
      in_pos_ = in_len_ - z_.avail_in;
      size_t produced = static_cast<size_t>(reinterpret_cast<char*>(z_.next_out) - out);
      if (rc == Z_STREAM_END) {
        gzip_member_done_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return absl::DataLossError(
            absl::StrCat("gzip stream is corrupt: ", z_.msg ? z_.msg : "inflate error"));
      }
      if (produced > 0) return produced;
    }
  }

  absl::StatusOr<size_t> ReadZstd(char* out, size_t len) {
    for (;;) {
      if (in_pos_ == in_len_) {
        ACCEL_ASSIGN_OR_RETURN(bool more, Fill());
        if (!more) {
          if (zstd_pending_ != 0)
            return absl::DataLossError("zstd stream is truncated (input ended inside a frame)");
          return size_t{0};
        }
      }
      ZSTD_inBuffer ib{in_.data(), in_len_, in_pos_};
      ZSTD_outBuffer ob{out, len, 0};
      size_t rc = ZSTD_decompressStream(zstd_, &ob, &ib);
      if (ZSTD_isError(rc)) {
        return absl::DataLossError(absl::StrCat("zstd stream is corrupt: ", ZSTD_getErrorName(rc)));
      }
      in_pos_ = ib.pos;
      zstd_pending_ = rc;
      if (ob.pos > 0) return ob.pos;
    }
  }

  const ReadFn& input_;
  std::vector<char> in_;
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  Kind kind_ = Kind::kUnknown;
  z_stream z_{};
  bool gzip_member_done_ = false;
  ZSTD_DStream* zstd_ = nullptr;
  size_t zstd_pending_ = 0;
};

}  // namespace accel
