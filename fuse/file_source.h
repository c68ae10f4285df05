#pragma once

// FileSource: where the bytes of a layer's regular files come from. The FUSE
// server asks it for a file range on every read that misses the page cache.
//
// Implementations must be thread-safe: several FUSE workers read at once.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "fuse/layer_tree.h"

namespace accel::fuse {

class FileSource {
 public:
  virtual ~FileSource() = default;

  // Reads up to `len` bytes of regular file `node` starting at `offset` into
  // `buf`. Returns the number of bytes read, short only at the end of the file
  // (0 at or past it), or an error (the reader sees EIO).
  virtual absl::StatusOr<size_t> ReadAt(const Node& node, uint64_t offset, char* buf,
                                        size_t len) = 0;

  // If `node`'s bytes are a plain range of a file descriptor, sets `*fd` and
  // `*fd_offset` (the position of the file's byte 0 in `fd`) so that the
  // server can splice them to the kernel without copying, and returns true.
  // The descriptor stays owned by the source and valid while it lives.
  virtual bool SpliceSource(const Node& node, int* fd, uint64_t* fd_offset) {
    (void)node;
    (void)fd;
    (void)fd_offset;
    return false;
  }
};

// A FileSource over one data file holding every file's content (a store
// layer's data file): the content of `node` is `node.size` bytes at
// `node.data_offset`. Each read checks that range against `data_size`; a
// range outside it, or a data file shorter than `data_size`, gives DataLoss.
std::unique_ptr<FileSource> MakeDataFileSource(UniqueFd data_fd, uint64_t data_size);

}  // namespace accel::fuse
