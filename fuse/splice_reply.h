#pragma once

// Internal to fuse/: zero-copy read replies through a pipe owned by the
// worker thread.
//
// Each worker has ONE pipe for all mounts: the reply header and the file's
// pages go into it (splice from the data file, no copy) and then to
// /dev/fuse in one splice. The request being answered is passed explicitly
// (no thread-local state).

#include <cstddef>
#include <cstdint>

#include "common/unique_fd.h"

namespace accel::fuse::internal {

struct WorkerIo {
  UniqueFd pipe_r;
  UniqueFd pipe_w;
  size_t pipe_pages = 0;  // capacity in pages (pipe slots); 0: no pipe, replies are copied
};

// Creates the worker's pipe, as large as allowed up to 2 MiB (a 1 MiB read
// spans 257 pages plus the header). Failure only disables splicing.
void InitWorkerIo(WorkerIo* io);

// The largest read reply a worker pipe can carry (header page and an
// unaligned start included), capped at 1 MiB: the server mounts with this
// max_read so that every large read can be spliced. 0 if pipes are too
// small to splice at all.
size_t MaxSplicedRead();

// Answers READ request `unique` on `fuse_fd` with `len` bytes of `fd` at
// `pos`. Returns true if the request is answered (or the kernel no longer
// waits for it); false if nothing was sent (too small to be worth it, no
// pipe, or a splice failed) and the caller must reply by copying.
bool SpliceReadReply(WorkerIo* io, int fuse_fd, uint64_t unique, int fd, uint64_t pos, size_t len);

}  // namespace accel::fuse::internal
