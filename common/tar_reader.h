#pragma once

// TarReader reads a tar stream (ustar, pax or GNU, through libarchive) and
// yields each member as a LayerEntry, then that member's data. The one
// adapter over libarchive's reader: the store writer, the eStargz builder
// and the eStargz TOC reader all read layers through it, so a member is
// accepted, cleaned and refused the same way everywhere.
//
// Every member is untrusted. What Next() checks: the name and a hard link's
// target (CleanLayerPath: no absolute names, no ".."), the type (regular,
// directory, symlink, hard link, char/block device, fifo), a regular file's
// size (not negative), uid and gid (32 bits), a symlink target (at most
// kMaxLayerPathBytes), extended attributes (names of 1..255 bytes, values
// of at most kMaxTarXattrBytes, at most kMaxTarXattrs of them), and that
// the layer root, if present, is a directory. Checks about the layer as a
// whole (parents, hard-link targets, entry counts) belong to the caller.
//
// Names reach us byte for byte: the process's LC_CTYPE is set to C.UTF-8
// once (libarchive converts pax UTF-8 names to the locale's charset).
//
// Not thread-safe (one stream each).

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/layer_entry.h"
#include "common/read_fn.h"

struct archive;
struct archive_entry;

namespace accel {

inline constexpr size_t kMaxTarXattrs = 1024;
inline constexpr size_t kMaxTarXattrBytes = 64 << 10;

class TarReader {
 public:
  // Starts reading the tar stream `input` yields, `block` bytes at a time.
  // DataLoss ("not a tar stream") if it does not start like one; the
  // input's own errors as they are.
  static absl::StatusOr<std::unique_ptr<TarReader>> Open(ReadFn input, size_t block = 1 << 20);
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // The next member, or nullptr after the last. Valid until the next call.
  // For a regular file, size is the content length and data_offset is 0;
  // other types have size 0. A hard link's link_target is its cleaned
  // target. Errors: DataLoss for a stream that is not valid tar,
  // InvalidArgument for a member a layer cannot hold (see above), the
  // input's own errors.
  absl::StatusOr<const LayerEntry*> Next();

  // The current member's data, block by block: a view of the next piece
  // (valid until the next call), empty at the end. Sparse files' holes come
  // as zeros. DataLoss for data the stream does not hold.
  absl::StatusOr<absl::string_view> NextDataBlock();
  // The same, copied into `buf`: up to `len` bytes, 0 at the end.
  absl::StatusOr<size_t> ReadData(char* buf, size_t len);

  // Members read so far.
  uint64_t entries() const { return entries_; }
  // Where in the input the current member's headers start.
  int64_t header_position() const;
  // The current member as libarchive holds it, for code that writes it
  // out again (the eStargz builder). Valid until the next call to Next().
  struct archive_entry* raw_entry() const {
    return raw_;
  }

 private:
  TarReader(ReadFn input, size_t block);
  static ssize_t OnRead(struct archive* a, void* opaque, const void** out);
  absl::Status ArchiveError(absl::string_view what) const;
  absl::Status FillEntry(struct archive_entry* ae);

  ReadFn input_;
  std::string buffer_;
  struct archive* a_ = nullptr;
  absl::Status input_error_;
  struct archive_entry* raw_ = nullptr;
  LayerEntry entry_;
  uint64_t entries_ = 0;
  // The current member's data.
  const char* block_ = nullptr;
  size_t block_len_ = 0;
  size_t block_used_ = 0;
  uint64_t block_off_ = 0;  // file offset of block_[block_used_]
  uint64_t pos_ = 0;        // file offset handed out so far
  bool data_eof_ = false;
  absl::string_view pending_;  // ReadData's rest of the last block
};

}  // namespace accel
