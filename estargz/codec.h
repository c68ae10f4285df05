#pragma once

// Internal to estargz/: bounded gzip and zstd decompression over in-memory
// bytes (on common/decompress.h), and a gzip member writer. Nothing here is part of the module's
// public API; the public headers are footer.h, toc.h, chunk.h, builder.h.
//
// Every function treats its input as untrusted: output is bounded by the
// caller, a stream that ends early is DataLoss, corrupt data is DataLoss.
//
// Thread-safety: free functions are reentrant; a GzipMemberWriter is used by
// one thread at a time.

#include <zlib.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/decompress.h"
#include "estargz/footer.h"

namespace accel::estargz::internal {

// Decompresses `in` (gzip members or zstd frames, one after another, as a
// single stream), discards the first `skip` bytes and returns the next
// `want` bytes. Bytes after those are neither decompressed nor checked.
// Returns DataLoss if the stream is corrupt or ends before skip + want.
absl::StatusOr<std::string> DecompressRange(absl::string_view in, Compression kind, uint64_t skip,
                                            uint64_t want);

// Decompresses all of `in` (zstd frames, as a single stream) and returns
// the result. Returns InvalidArgument if it would exceed `limit` bytes,
// DataLoss if it is corrupt or truncated.
absl::StatusOr<std::string> ZstdDecompressAll(absl::string_view in, uint64_t limit);

// Pulls the decompressed bytes of the first gzip member of `in`, at most
// `limit` of them in all (InvalidArgument past it). Used to feed a tar
// reader without holding the whole decompressed stream.
class GzipMemberReader : public Decompressor {
 public:
  GzipMemberReader(absl::string_view in, uint64_t limit)
      : Decompressor(in, {.codec = Codec::kGzip, .first_member_only = true, .max_output = limit}) {}
};

// Compresses a sequence of gzip members into `out` (appending). Start()
// begins a member, Write() adds to it, Finish() ends it. Each member is a
// complete gzip stream, so the concatenation is a multi-member gzip file.
class GzipMemberWriter {
 public:
  // `level`: zlib level, -1 (default) or 0..9.
  explicit GzipMemberWriter(int level);
  ~GzipMemberWriter();
  GzipMemberWriter(const GzipMemberWriter&) = delete;
  GzipMemberWriter& operator=(const GzipMemberWriter&) = delete;

  // Returns InvalidArgument for a bad level, Internal if zlib fails.
  absl::Status Init();
  bool in_member() const { return in_member_; }
  // REQUIRES: !in_member().
  void Start();
  // Compresses `data`; compressed bytes go to `emit`. REQUIRES: in_member().
  absl::Status Write(absl::string_view data,
                     const std::function<absl::Status(absl::string_view)>& emit);
  // Ends the member, emitting its trailer. REQUIRES: in_member().
  absl::Status Finish(const std::function<absl::Status(absl::string_view)>& emit);

 private:
  absl::Status Run(int flush, const std::function<absl::Status(absl::string_view)>& emit);

  int level_;
  z_stream z_{};
  bool init_ = false;
  bool in_member_ = false;
  std::string buf_;
};

}  // namespace accel::estargz::internal
