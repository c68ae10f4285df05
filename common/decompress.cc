#include "common/decompress.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace accel {
namespace {

// zlib counts in uInt: hand it at most this much at a time.
constexpr size_t kMaxZlibChunk = size_t{1} << 30;
// Output strings grow by at most this much before data arrives, so a
// hostile length never becomes one huge allocation.
constexpr size_t kGrowStep = 1 << 20;
constexpr size_t kSkipScratch = 64 << 10;

}  // namespace

Decompressor::Decompressor(ReadFn input, DecompressOptions options)
    : input_(std::move(input)), options_(options) {}

Decompressor::Decompressor(absl::string_view input, DecompressOptions options)
    : memory_(input), options_(options) {}

Decompressor::~Decompressor() {
  if (z_init_) inflateEnd(&z_);
  if (zstd_ != nullptr) ZSTD_freeDStream(zstd_);
}

const char* Decompressor::name() const {
  switch (codec()) {
    case Codec::kGzip:
      return "gzip";
    case Codec::kZstd:
      return "zstd";
    case Codec::kNone:
      break;
  }
  return "uncompressed";
}

absl::StatusOr<bool> Decompressor::Fill() {
  if (in_pos_ < in_len_) return true;
  if (input_done_) return false;
  if (!input_) {
    in_ = memory_.data();
    in_len_ = memory_.size();
    in_pos_ = 0;
    memory_ = absl::string_view();
    input_done_ = true;  // one window holds all of it
    return in_len_ > 0;
  }
  buffer_.resize(options_.block);
  ACCEL_ASSIGN_OR_RETURN(size_t n, input_(buffer_.data(), buffer_.size()));
  in_ = buffer_.data();
  in_len_ = n;
  in_pos_ = 0;
  if (n == 0) input_done_ = true;
  return n > 0;
}

absl::Status Decompressor::Start() {
  started_ = true;
  if (!codec_) codec_ = options_.codec;
  if (!codec_) {
    // Detect from the first 4 bytes (or fewer, if that is all there is).
    if (input_) {
      buffer_.resize(std::max<size_t>(options_.block, 4));
      in_ = buffer_.data();
      while (in_len_ < 4) {
        ACCEL_ASSIGN_OR_RETURN(size_t n,
                               input_(buffer_.data() + in_len_, buffer_.size() - in_len_));
        if (n == 0) {
          input_done_ = true;
          break;
        }
        in_len_ += n;
      }
    } else {
      ACCEL_RETURN_IF_ERROR(Fill().status());
    }
    const auto* b = reinterpret_cast<const unsigned char*>(in_);
    if (in_len_ >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
      codec_ = Codec::kGzip;
    } else if (in_len_ >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
      codec_ = Codec::kZstd;
    } else {
      codec_ = Codec::kNone;
    }
  }
  if (*codec_ == Codec::kGzip) {
    if (inflateInit2(&z_, 15 + 16) != Z_OK) return absl::InternalError("inflateInit2 failed");
    z_init_ = true;
  } else if (*codec_ == Codec::kZstd) {
    zstd_ = ZSTD_createDStream();
    if (zstd_ == nullptr) return absl::InternalError("ZSTD_createDStream failed");
  }
  return absl::OkStatus();
}

absl::Status Decompressor::TooMuch() const {
  return absl::InvalidArgumentError(
      absl::StrFormat("%s data decompresses to more than %d bytes", name(), options_.max_output));
}

absl::Status Decompressor::EndsEarly(uint64_t needed) const {
  return absl::DataLossError(absl::StrFormat("%s data ends after %d decompressed bytes, %d needed",
                                             name(), produced_, needed));
}

absl::StatusOr<size_t> Decompressor::Read(char* out, size_t len) {
  if (!started_) ACCEL_RETURN_IF_ERROR(Start());
  if (len == 0 || finished_) return size_t{0};
  // Ask for at most one byte past the bound, so an oversized stream shows.
  if (options_.max_output != std::numeric_limits<uint64_t>::max()) {
    len = static_cast<size_t>(std::min<uint64_t>(len, options_.max_output - produced_ + 1));
  }
  absl::StatusOr<size_t> n;
  switch (codec()) {
    case Codec::kGzip:
      n = ReadGzip(out, len);
      break;
    case Codec::kZstd:
      n = ReadZstd(out, len);
      break;
    case Codec::kNone:
      n = ReadPlain(out, len);
      break;
  }
  if (!n.ok()) return n;
  produced_ += *n;
  if (produced_ > options_.max_output) return TooMuch();
  return n;
}

absl::StatusOr<size_t> Decompressor::ReadPlain(char* out, size_t len) {
  if (in_pos_ == in_len_ && input_ && !input_done_) {
    // Straight into the caller's buffer: no copy through ours.
    ACCEL_ASSIGN_OR_RETURN(size_t n, input_(out, len));
    if (n == 0) input_done_ = true;
    return n;
  }
  ACCEL_ASSIGN_OR_RETURN(bool more, Fill());
  if (!more) return size_t{0};
  const size_t n = std::min(len, in_len_ - in_pos_);
  std::memcpy(out, in_ + in_pos_, n);
  in_pos_ += n;
  return n;
}

absl::StatusOr<size_t> Decompressor::ReadGzip(char* out, size_t len) {
  for (;;) {
    if (member_done_) {
      if (options_.first_member_only) {
        finished_ = true;
        return size_t{0};
      }
      // Another member follows, or the stream ends here.
      ACCEL_ASSIGN_OR_RETURN(bool more, Fill());
      if (!more) return size_t{0};
      inflateReset(&z_);
      member_done_ = false;
    }
    ACCEL_ASSIGN_OR_RETURN(bool more, Fill());
    if (!more) return absl::DataLossError("gzip stream is truncated (input ended inside a member)");
    const size_t avail = std::min(in_len_ - in_pos_, kMaxZlibChunk);
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in_ + in_pos_));
    z_.avail_in = static_cast<uInt>(avail);
    z_.next_out = reinterpret_cast<Bytef*>(out);
    z_.avail_out = static_cast<uInt>(std::min(len, kMaxZlibChunk));
    const int rc = inflate(&z_, Z_NO_FLUSH);
    const size_t consumed = avail - z_.avail_in;
    const size_t produced = static_cast<size_t>(reinterpret_cast<char*>(z_.next_out) - out);
    in_pos_ += consumed;
    if (rc == Z_STREAM_END) {
      member_done_ = true;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return absl::DataLossError(
          absl::StrCat("gzip stream is corrupt: ", z_.msg ? z_.msg : "inflate error"));
    } else if (consumed == 0 && produced == 0) {
      // Input and room were there, and nothing moved.
      return absl::DataLossError("gzip stream is corrupt (no progress)");
    }
    if (produced > 0) return produced;
  }
}

absl::StatusOr<size_t> Decompressor::ReadZstd(char* out, size_t len) {
  for (;;) {
    ZSTD_inBuffer ib{in_, in_len_, in_pos_};
    ZSTD_outBuffer ob{out, len, 0};
    const size_t rc = ZSTD_decompressStream(zstd_, &ob, &ib);
    if (ZSTD_isError(rc)) {
      return absl::DataLossError(absl::StrCat("zstd stream is corrupt: ", ZSTD_getErrorName(rc)));
    }
    const bool progress = ob.pos > 0 || ib.pos != in_pos_;
    in_pos_ = ib.pos;
    // Called again after a frame ends, zstd hints at the next frame's
    // header: only a call that did something says where the stream is.
    if (progress) zstd_pending_ = rc;
    if (ob.pos > 0) return ob.pos;
    if (in_pos_ < in_len_) {
      if (!progress) return absl::DataLossError("zstd stream is corrupt (no progress)");
      continue;
    }
    ACCEL_ASSIGN_OR_RETURN(bool more, Fill());
    if (!more) {
      if (zstd_pending_ != 0) {
        return absl::DataLossError("zstd stream is truncated (input ended inside a frame)");
      }
      return size_t{0};
    }
  }
}

absl::Status Decompressor::Skip(uint64_t n) {
  if (n == 0) return absl::OkStatus();
  const uint64_t needed = produced_ + n;
  std::vector<char> scratch(static_cast<size_t>(std::min<uint64_t>(n, kSkipScratch)));
  while (produced_ < needed) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(scratch.size(), needed - produced_));
    ACCEL_ASSIGN_OR_RETURN(size_t got, Read(scratch.data(), want));
    if (got == 0) return EndsEarly(needed);
  }
  return absl::OkStatus();
}

absl::Status Decompressor::ReadExactly(uint64_t n, std::string& out) {
  const uint64_t needed = produced_ + n;
  while (produced_ < needed) {
    const size_t old = out.size();
    const size_t grab = static_cast<size_t>(std::min<uint64_t>(needed - produced_, kGrowStep));
    out.resize(old + grab);
    absl::StatusOr<size_t> got = Read(out.data() + old, grab);
    out.resize(old + (got.ok() ? *got : 0));
    if (!got.ok()) return got.status();
    if (*got == 0) return EndsEarly(needed);
  }
  return absl::OkStatus();
}

absl::Status Decompressor::ReadToEnd(std::string& out) {
  for (;;) {
    const size_t old = out.size();
    out.resize(old + kGrowStep);
    absl::StatusOr<size_t> got = Read(out.data() + old, kGrowStep);
    out.resize(old + (got.ok() ? *got : 0));
    if (!got.ok()) return got.status();
    if (*got == 0) return absl::OkStatus();
  }
}

}  // namespace accel
