#pragma once

// Build: an uncompressed tar layer in, an eStargz (gzip) blob out, readable
// by any eStargz reader and, being a multi-member gzip of one tar, by any
// tar.gz consumer (containerd unpacks it like a plain layer).
//
// Output layout (see FORMAT.md): the prioritized entries (each with its
// parent directories and hard-link targets), then `.prefetch.landmark` — or,
// with nothing prioritized, `.no.prefetch.landmark` first — then every other
// entry in input order; each regular file's data split into chunks of
// `chunk_size`, each chunk starting its own gzip member (tar headers and
// padding ride in the member before or after); then the TOC member (a tar
// holding `stargz.index.json`) and the 51-byte footer. TOC entries carry
// per-chunk and per-file sha256 digests. Input entries named like the
// format's own entries (stargz.index.json, the landmarks) are dropped.
//
// Memory: one I/O block and the TOC; file data streams through. Reordering
// for prioritized files spools the input tar to an unlinked temporary file
// (in `tmp_dir`, else $TMPDIR, else /tmp), read back by position.
// Before writing the TOC, Build parses it as a reader would, so a layer a
// reader would reject (e.g. a hard link to a missing file) fails here.
//
// Thread-safety: Build is reentrant; the callbacks are called from the
// calling thread only.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/read_fn.h"

namespace accel::estargz {

struct BuildOptions {
  // Layer paths to put first, in this order ("/usr/bin/x" and "usr/bin/x"
  // are the same path).
  std::vector<std::string> prioritized_paths;
  // If false, a prioritized path that is not in the layer is NotFound; if
  // true it is skipped and listed in BuildResult::missing_prioritized.
  bool allow_missing_prioritized = false;
  // Uncompressed bytes per chunk (1 byte .. 1 GiB).
  uint64_t chunk_size = 4 << 20;
  // zlib level, -1 (zlib's default, 6) or 0..9.
  int gzip_level = -1;
  // Where to spool the input when reordering; "" for $TMPDIR or /tmp.
  std::string tmp_dir;
};

struct BuildResult {
  std::string blob_digest;  // sha256 of the blob
  uint64_t blob_size = 0;
  std::string diff_id;             // sha256 of the blob decompressed (a tar)
  uint64_t uncompressed_size = 0;  // bytes of that tar
  std::string toc_digest;          // for the kTocDigestAnnotation
  std::vector<std::string> missing_prioritized;
};

// Reads up to `len` bytes of the input tar into `buf`; 0 at its end.
using TarInputFn = ReadFn;
// Receives the blob's bytes, in order.
using BlobSinkFn = std::function<absl::Status(absl::string_view bytes)>;

// Converts the tar from `tar_input` into an eStargz blob written to `sink`.
// Errors: InvalidArgument for bad options or an entry the format cannot
// carry (unsafe name, unsupported type, a layer whose TOC would be invalid
// or too large); NotFound for a missing prioritized path (see above);
// DataLoss for an input that is not a valid tar; the callbacks' own errors;
// errno-mapped errors from the spool file.
absl::StatusOr<BuildResult> Build(const TarInputFn& tar_input, const BlobSinkFn& sink,
                                  const BuildOptions& options);

}  // namespace accel::estargz
