#pragma once

// BlobReader: random access to a blob's bytes, the interface the eStargz
// lazy reader and the converter read layers through. Implementations: the
// registry (Client::OpenBlob, HTTP range requests), a local file
// (FileBlobReader), and test fakes.
//
// ReadAt does not verify digests (a range cannot be checked against the
// whole blob's digest); readers of ranges check what they read.
// Implementations must be safe to call from several threads at once.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace accel::registry {

class BlobReader {
 public:
  virtual ~BlobReader() = default;

  // The blob's size in bytes.
  virtual int64_t size() const = 0;

  // Up to `length` bytes starting at `offset`: exactly `length` unless the
  // blob ends first. OutOfRange if offset > size(); InvalidArgument for a
  // negative offset or length.
  virtual absl::StatusOr<std::string> ReadAt(int64_t offset, int64_t length) = 0;
};

// A BlobReader over a local file (pread); fails if the file cannot be opened.
absl::StatusOr<std::unique_ptr<BlobReader>> OpenFileBlobReader(const std::string& path);

}  // namespace accel::registry
