#pragma once

// The layer index: every entry of one layer (as LayerEntry) in one binary
// file, read whole into memory when a layer is mounted.
//
// Layout (all integers little-endian):
//
//   magic      8 bytes  "ACCIDX01"
//   version    u32      1
//   reserved   u32      0
//   count      u64      number of entries
//   data_size  u64      size of the layer's data file
//   diff_id    str      the layer's uncompressed digest ("sha256:<hex>")
//   entries    count times:
//     type u8, mode u32, uid u32, gid u32, size u64, mtime_sec i64,
//     mtime_nsec u32, dev_major u32, dev_minor u32, data_offset u64,
//     path str, link_target str, digest str,
//     xattr_count u32, then xattr_count times (name str, value str)
//   checksum   32 bytes  sha256 of every byte before it
//
//   str = u32 length + bytes.
//
// Decoding treats the bytes as untrusted (the store is shared): the
// checksum, every length, type, path (ValidateLayerPath) and content range
// is checked before use, and errors name what is wrong and where.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/layer_entry.h"
#include "common/layer_path.h"

namespace accel::store {

inline constexpr char kIndexMagic[] = "ACCIDX01";
inline constexpr uint32_t kIndexVersion = 1;
// Bounds that no real layer reaches; they keep a hostile index from making
// a reader allocate without limit.
inline constexpr uint64_t kMaxEntries = 50'000'000;
inline constexpr uint32_t kMaxPathBytes = kMaxLayerPathBytes;
inline constexpr uint32_t kMaxXattrs = 1024;
inline constexpr uint32_t kMaxXattrValueBytes = 64 << 10;

struct LayerIndex {
  std::string diff_id;
  uint64_t data_size = 0;
  std::vector<LayerEntry> entries;
};

std::string EncodeIndex(const LayerIndex& index);

// `origin` names the file in errors.
absl::StatusOr<LayerIndex> DecodeIndex(absl::string_view bytes, absl::string_view origin);

}  // namespace accel::store
