#pragma once

// The pull-style stream every module passes around: a download, a file, a
// decompressor, a pipe between threads.

#include <cstddef>
#include <functional>

#include "absl/status/statusor.h"

namespace accel {

// Fills up to `len` bytes of `buf` and returns how many; 0 at the end of
// the stream (and on every call after it).
using ReadFn = std::function<absl::StatusOr<size_t>(char* buf, size_t len)>;

}  // namespace accel
