#pragma once

// Decompressor pulls decompressed bytes out of a gzip or zstd stream, or
// passes plain bytes through. The one place accel inflates or decodes: layer
// blobs streaming into the store, eStargz chunks and TOCs, converted layers.
//
// The input is either a ReadFn (a stream: a download, a file) or bytes
// already in memory (read in place, never copied). The codec is detected
// from the first bytes (gzip magic, zstd magic, else plain) unless the
// options name one. Concatenated gzip members and zstd frames read as one
// stream (as Go's readers do, so multi-member eStargz blobs work), unless
// `first_member_only` stops after the first gzip member.
//
// Input is untrusted: a stream that ends inside a member or frame is
// DataLoss ("truncated"), corrupt data is DataLoss ("corrupt"), and output
// beyond `max_output` is InvalidArgument ("decompresses to more than N
// bytes"), so a small hostile input cannot make a caller allocate without
// bound. Not thread-safe (one stream each).

#include <zlib.h>
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/read_fn.h"

namespace accel {

enum class Codec { kNone, kGzip, kZstd };

struct DecompressOptions {
  // The input's codec; nullopt detects it from the first bytes.
  std::optional<Codec> codec;
  // Stop at the end of the first gzip member (nothing after it is read).
  bool first_member_only = false;
  // Producing more than this many bytes is InvalidArgument.
  uint64_t max_output = std::numeric_limits<uint64_t>::max();
  // Bytes asked of a ReadFn input at a time.
  size_t block = 1 << 20;
};

class Decompressor {
 public:
  // Decompresses what `input` yields.
  explicit Decompressor(ReadFn input, DecompressOptions options = {});
  // Decompresses `input`, which must outlive the Decompressor.
  explicit Decompressor(absl::string_view input, DecompressOptions options = {});
  ~Decompressor();
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;

  // Fills up to `len` bytes of `out`; returns how many, 0 at the end.
  absl::StatusOr<size_t> Read(char* out, size_t len);

  // Discards the next `n` decompressed bytes. DataLoss ("ends after N
  // decompressed bytes, M needed") if the stream ends first.
  absl::Status Skip(uint64_t n);

  // Reads exactly `n` bytes, appending them to `out` (which grows as data
  // arrives, not ahead of it). DataLoss ("ends after ...") if the stream
  // ends first.
  absl::Status ReadExactly(uint64_t n, std::string& out);

  // Reads to the end, appending to `out`.
  absl::Status ReadToEnd(std::string& out);

  // The codec (after the first Read; detection happens there).
  Codec codec() const { return codec_.value_or(Codec::kNone); }
  // "gzip", "zstd" or "uncompressed".
  const char* name() const;
  // Decompressed bytes produced so far.
  uint64_t produced() const { return produced_; }

 private:
  absl::Status Start();
  // Makes input available; false at the end of the input.
  absl::StatusOr<bool> Fill();
  absl::StatusOr<size_t> ReadGzip(char* out, size_t len);
  absl::StatusOr<size_t> ReadZstd(char* out, size_t len);
  absl::StatusOr<size_t> ReadPlain(char* out, size_t len);
  absl::Status TooMuch() const;
  absl::Status EndsEarly(uint64_t needed) const;

  ReadFn input_;              // a stream; empty for memory input
  absl::string_view memory_;  // memory input not yet handed to the window
  std::vector<char> buffer_;  // stream input
  const char* in_ = nullptr;  // the input window: [in_ + pos_, in_ + len_)
  size_t in_len_ = 0;
  size_t in_pos_ = 0;
  bool input_done_ = false;
  DecompressOptions options_;
  std::optional<Codec> codec_;
  bool started_ = false;
  bool finished_ = false;  // first_member_only: the member ended
  uint64_t produced_ = 0;
  z_stream z_{};
  bool z_init_ = false;
  bool member_done_ = false;
  ZSTD_DStream* zstd_ = nullptr;
  size_t zstd_pending_ = 0;  // the last hint of a call that did something; 0 = frame complete
};

}  // namespace accel
