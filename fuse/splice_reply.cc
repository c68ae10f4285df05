#include "fuse/splice_reply.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <unistd.h>

#include <algorithm>

namespace accel::fuse::internal {
namespace {

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

void InitPipe(WorkerIo* io);

// Empties the pipe after a failed attempt; if that fails, replaces it rather
// than risk sending stale bytes with the next reply.
void ResetPipe(WorkerIo& io) {
  char scratch[16384];
  while (true) {
    ssize_t n = read(io.pipe_r.get(), scratch, sizeof(scratch));
    if (n > 0 || (n < 0 && errno == EINTR)) continue;
    if (n < 0 && errno == EAGAIN) return;
    break;
  }
  InitPipe(&io);
}

void InitPipe(WorkerIo* io) {
  io->pipe_r.Reset();
  io->pipe_w.Reset();
  io->pipe_pages = 0;
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return;
  io->pipe_r.Reset(fds[0]);
  io->pipe_w.Reset(fds[1]);
  for (int size : {2 << 20, 1 << 20}) {
    if (fcntl(fds[1], F_SETPIPE_SZ, size) >= 0) break;
  }
  int size = fcntl(fds[1], F_GETPIPE_SZ);
  io->pipe_pages = size > 0 ? static_cast<size_t>(size) / PageSize() : 0;
}

}  // namespace

void InitWorkerIo(WorkerIo* io) { InitPipe(io); }

size_t MaxSplicedRead() {
  WorkerIo probe;
  InitPipe(&probe);
  if (probe.pipe_pages < 4) return 0;
  return std::min<size_t>(256, probe.pipe_pages - 2) * PageSize();
}

bool SpliceReadReply(WorkerIo* io, int fuse_fd, uint64_t unique, int fd, uint64_t pos, size_t len) {
  if (io->pipe_pages == 0) return false;
  const size_t page = PageSize();
  // Pipe slots: one for the header, one per page the range touches.
  const size_t slots = 1 + (pos % page + len + page - 1) / page;
  if (slots > io->pipe_pages) return false;

  fuse_out_header out{};
  out.len = static_cast<uint32_t>(sizeof(out) + len);
  out.error = 0;
  out.unique = unique;
  if (write(io->pipe_w.get(), &out, sizeof(out)) != static_cast<ssize_t>(sizeof(out))) {
    ResetPipe(*io);
    return false;
  }
  off64_t off = static_cast<off64_t>(pos);
  size_t moved = 0;
  while (moved < len) {
    ssize_t n =
        splice(fd, &off, io->pipe_w.get(), nullptr, len - moved, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // EOF (the data file is shorter than promised) or an error
      ResetPipe(*io);
      return false;
    }
    moved += static_cast<size_t>(n);
  }
  const size_t total = sizeof(out) + len;
  ssize_t n;
  do {
    n = splice(io->pipe_r.get(), nullptr, fuse_fd, nullptr, total, SPLICE_F_MOVE);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(total)) return true;
  const int err = n < 0 ? errno : 0;
  ResetPipe(*io);
  // ENOENT: the kernel no longer waits for this request (interrupted);
  // ENODEV: the connection is gone. Either way there is nothing to send.
  return err == ENOENT || err == ENODEV;
}

}  // namespace accel::fuse::internal
