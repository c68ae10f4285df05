#pragma once

// The shared store: preloaded layers, written once by `accelctl convert`,
// read by every node's daemon. Safe on NFS: it relies only on atomic
// rename(2) of directories and files, never on locks, xattrs, ownership,
// hard links or device nodes of the shared filesystem.
//
//   DIR/store-id/id                      the store's id (first writer wins)
//   DIR/layers/sha256/<hex>/index        entries of layer sha256:<hex>
//   DIR/layers/sha256/<hex>/data         regular files' contents, back to back
//   DIR/images/<sha256 of target>.json   one record per converted image
//   DIR/tmp/                             layers being written or removed
//
// A layer directory appears only complete: it is written under tmp/,
// fsynced, checked against the layer's diff id, then renamed into
// layers/. When two writers race, the first rename wins and the loser
// removes its copy; both succeed. Removal renames into tmp/ first, so a
// layer is either whole or gone.
//
// Thread-safe: a Store holds no mutable state besides the filesystem.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"
#include "common/layer_entry.h"
#include "common/unique_fd.h"
#include "store/index_format.h"

namespace accel::store {

struct LayerInfo {
  std::string diff_id;
  uint64_t entries = 0;
  uint64_t data_bytes = 0;
  uint64_t index_bytes = 0;
  int64_t created_unix = 0;  // when it was published (the directory's mtime)
};

// What `accelctl convert` produced, kept so operators can list and remove
// preloaded images.
struct ImageRecord {
  std::string target;                 // the pushed target reference
  std::string source;                 // the reference it was converted from
  std::string manifest_digest;        // digest of the pushed target manifest
  std::string platform;               // "os/arch[/variant]"
  std::vector<std::string> diff_ids;  // bottom layer first
  std::vector<std::string> blobs;     // compressed layer digests, same order
  int64_t created_unix = 0;
};

// An open layer: its entries and its data file.
struct OpenLayer {
  LayerIndex index;
  UniqueFd data;
};

// Reads the layer's compressed (or plain) tar stream: fills up to `len`
// bytes, returns how many, 0 at the end.
using ReadFn = std::function<absl::StatusOr<size_t>(char* buf, size_t len)>;
// Uncompressed bytes processed so far.
using WriteProgressFn = std::function<void(uint64_t)>;

struct WriteResult {
  LayerInfo info;
  bool existed = false;  // the store already had it (nothing written)
};

struct VerifyProblem {
  std::string what;    // "layer sha256:…", "image REF"
  std::string detail;  // what is wrong
};

struct GcResult {
  std::vector<std::string> removed_layers;
  std::vector<std::string> removed_temporaries;
  uint64_t freed_bytes = 0;
  std::string error;  // what could not be removed (the rest was)
};

class Store {
 public:
  // Opens the store at `dir`. With `create`, makes the layout and the store
  // id when missing; without, NotFound if `dir` is not a store.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir, bool create);

  const std::string& dir() const { return dir_; }
  const std::string& id() const { return id_; }

  // The layer's directory (whether or not it exists). `diff_id` must be a
  // valid "sha256:<hex>".
  std::string LayerDir(absl::string_view diff_id) const;

  bool HasLayer(absl::string_view diff_id) const;
  absl::StatusOr<LayerInfo> StatLayer(absl::string_view diff_id) const;
  absl::StatusOr<std::vector<LayerInfo>> ListLayers() const;

  // Loads the layer's index (validated) and opens its data file.
  absl::StatusOr<OpenLayer> Open(absl::string_view diff_id) const;

  // Streams a tar layer (gzip, zstd or uncompressed, detected from its
  // first bytes) into the store under `diff_id`, which the uncompressed
  // stream must hash to. Nothing becomes visible unless every check passes
  // (path escapes, hard links outside the layer, truncated or corrupt
  // streams, a digest mismatch all fail with InvalidArgument/DataLoss).
  // If the layer is already there, returns at once with existed = true
  // (without reading `input`).
  absl::StatusOr<WriteResult> WriteLayer(absl::string_view diff_id, const ReadFn& input,
                                         const WriteProgressFn& progress = nullptr) const;

  // Removes a layer (whole or not at all). NotFound if absent.
  absl::Status RemoveLayer(absl::string_view diff_id) const;

  // Re-reads the layer's index and data and checks every file's digest.
  // Returns the problems found (empty = good); an error only when the layer
  // cannot be examined at all.
  absl::StatusOr<std::vector<VerifyProblem>> VerifyLayer(absl::string_view diff_id) const;

  absl::Status PutImage(const ImageRecord& record) const;
  absl::StatusOr<std::vector<ImageRecord>> ListImages() const;
  absl::StatusOr<ImageRecord> GetImage(absl::string_view target) const;
  absl::Status RemoveImage(absl::string_view target) const;

  // Removes layers that no image record references, and temporaries, when
  // older than `grace_seconds` (a conversion in progress has written layers
  // but not yet its record). Layers in `keep` are never removed.
  absl::StatusOr<GcResult> Gc(int64_t grace_seconds, const std::vector<std::string>& keep) const;

 private:
  Store(std::string dir, std::string id) : dir_(std::move(dir)), id_(std::move(id)) {}
  std::string TempPath(absl::string_view what) const;

  const std::string dir_;
  const std::string id_;
};

// Accepts only "sha256:<64 lowercase hex>" (the store's key).
inline absl::Status ValidateDiffId(absl::string_view diff_id) {
  return ValidateSha256Digest(diff_id);
}

}  // namespace accel::store
