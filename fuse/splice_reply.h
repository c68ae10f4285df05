#pragma once

// Internal to fuse/: zero-copy read replies through a pipe owned by the
// worker thread.
//
// Why not libfuse's own splice (fuse_reply_data + FUSE_CAP_SPLICE_WRITE)?
// libfuse 3.14 keeps one pipe per thread *per session* in thread-specific
// data and frees it only when that thread exits or when it is the thread
// that calls fuse_session_destroy. Our workers are long-lived and shared by
// all mounts, so every unmount would leak two descriptors (and a pipe) per
// worker, and live mounts would cost 2 x threads x mounts descriptors. Here
// each worker has ONE pipe for all mounts: the reply header and the file's
// pages go into it (splice from the data file, no copy) and then to
// /dev/fuse in one splice. libfuse is then told the request is answered
// (fuse_reply_none only frees it).
//
// To address the reply, the worker records the raw header of the request it
// is processing (BeginRequest) before calling fuse_session_process_buf; the
// read callback runs synchronously on the same thread.

#include <cstddef>
#include <cstdint>

#include "common/unique_fd.h"

namespace accel::fuse::internal {

struct WorkerIo {
  UniqueFd pipe_r;
  UniqueFd pipe_w;
  size_t pipe_pages = 0;  // capacity in pages (pipe slots); 0: no pipe, replies are copied
  // The request being processed.
  int fuse_fd = -1;
  uint64_t unique = 0;
  uint32_t opcode = 0;
};

// Creates the worker's pipe, as large as allowed up to 2 MiB (a 1 MiB read
// spans 257 pages plus the header). Failure only disables splicing.
void InitWorkerIo(WorkerIo* io);

// The largest read reply a worker pipe can carry (header page and an
// unaligned start included), capped at 1 MiB: the server mounts with this
// max_read so that every large read can be spliced. 0 if pipes are too
// small to splice at all.
size_t MaxSplicedRead();

// Makes `io` the calling thread's current WorkerIo and records the request
// in `buf` (as read from `fuse_fd`). EndRequest forgets it.
void BeginRequest(WorkerIo* io, int fuse_fd, const void* buf, size_t size);
void EndRequest(WorkerIo* io);

// Answers the calling thread's current request, which must be FUSE_READ,
// with `len` bytes of `fd` at `pos`. Returns true if the request is answered
// (the caller must then only free it with fuse_reply_none); false if nothing
// was sent (no current read request, too small to be worth it, no pipe, or
// a splice failed) and the caller must reply by copying.
bool SpliceReadReply(int fd, uint64_t pos, size_t len);

}  // namespace accel::fuse::internal
