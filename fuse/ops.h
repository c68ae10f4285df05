#pragma once

// Internal to fuse/: the read-only file system operations over one layer,
// as pure functions from a parsed request (protocol.h) to reply bytes. No
// descriptor is read or written here; the server (server.cc) reads
// requests, calls Handle(), and writes or splices what it says. Unit tests
// drive Handle() with request buffers and check the reply bytes.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuse/file_source.h"
#include "fuse/layer_tree.h"
#include "fuse/protocol.h"

namespace accel::fuse::internal {

// What one mount serves. Immutable once built, shared by every worker.
struct ServedLayer {
  std::shared_ptr<const LayerTree> tree;
  std::shared_ptr<FileSource> source;
  std::string name;                                    // for log lines (mountpoint)
  mutable std::atomic<bool> read_error_logged{false};  // read errors are logged once
};

// Attribute and entry timeout: a layer never changes.
inline constexpr uint64_t kCacheTimeoutSeconds = 365ull * 24 * 3600;

// What the caller must do once Handle() returns.
struct Outcome {
  enum Kind {
    kReply,    // send `out` as it is
    kNoReply,  // the kernel expects no answer (FORGET, INTERRUPT)
    kSplice,   // send a header and `len` bytes of `fd` at `pos`; on failure
               // call ReadByCopy() and send `out`
  };
  Kind kind = kReply;
  int fd = -1;
  uint64_t pos = 0;
  size_t len = 0;
  // kSplice: what ReadByCopy needs.
  const Node* node = nullptr;
  uint64_t offset = 0;
};

// Serves `req` (any opcode but INIT) from `layer`. `splice_min` is the
// smallest read worth splicing (0: never splice).
Outcome Handle(const ServedLayer& layer, const proto::Request& req, proto::ReplyBuf* out,
               size_t splice_min);

// Answers a READ of `len` bytes of `node` at `offset` by copying through
// the file source into `out` (or EIO).
void ReadByCopy(const ServedLayer& layer, const Node& node, uint64_t offset, size_t len,
                proto::ReplyBuf* out);

// The protocol's view of a node's attributes.
proto::Attr AttrOf(const Node& n);

}  // namespace accel::fuse::internal
