#pragma once

// ChunkCache keeps verified, decompressed chunks of lazy layers on local
// disk, so a chunk is fetched once per node, and survives daemon restarts.
//
//   DIR/<first two hex>/<key>     one file per chunk, written whole (temp + rename)
//
// Keys are content digests' hex (chunks are content-addressed, so layers
// that share a chunk share the file). The total size is bounded; the least
// recently used chunks go first. A small in-memory layer in front keeps
// the most recent chunks decoded, because the kernel reads a 4 MiB chunk
// in several requests. A file is verified against its key the first time
// this process reads it back (a damaged file is dropped and reported as a
// miss); chunks this process wrote or verified are trusted afterwards (the
// directory is root-only, mode 0700).
//
// Thread-safe.

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/unique_fd.h"

namespace accel::fuse {

class ChunkCache {
 public:
  struct Options {
    std::string dir;
    uint64_t max_disk_bytes = uint64_t{10} << 30;
    uint64_t max_memory_bytes = uint64_t{64} << 20;
  };
  // Creates `dir` if needed and indexes what it already holds (oldest
  // access first), evicting down to the bound.
  static absl::StatusOr<std::unique_ptr<ChunkCache>> Open(const Options& options);

  // The chunk whose sha256 is `key` (64 hex), or nullopt.
  std::optional<std::shared_ptr<const std::string>> Get(absl::string_view key);

  // Copies bytes [offset, offset + len) of chunk `key`, which must be
  // `chunk_size` bytes long, into `buf`. False on a miss, a chunk of another
  // size (a TOC that lies about it) or a range outside it. A chunk in memory is copied from
  // there; a verified chunk file is read in just that range through an open
  // descriptor (kept, so the kernel's readahead follows sequential reads);
  // an unverified one is read whole and verified first (Get).
  bool ReadRange(const std::string& key, uint64_t chunk_size, uint64_t offset, size_t len,
                 char* buf);
  // Stores `data` (whose sha256 the caller has verified to be `key`).
  absl::Status Put(absl::string_view key, std::shared_ptr<const std::string> data);

  uint64_t disk_bytes() const;
  size_t disk_entries() const;

 private:
  explicit ChunkCache(Options options) : options_(std::move(options)) {}
  std::string PathOf(absl::string_view key) const;
  void Touch(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictDisk() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RememberInMemory(const std::string& key, std::shared_ptr<const std::string> data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops a chunk file that could not be read or verified.
  void DropDisk(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An open descriptor of verified chunk file `key` (nullptr if it cannot
  // be opened). Shared: eviction closes it once the last reader is done.
  std::shared_ptr<const UniqueFd> OpenChunk(const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  // Disk LRU: most recent at the front.
  struct DiskEntry {
    uint64_t size;
    std::list<std::string>::iterator lru;
  };
  std::list<std::string> disk_lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, DiskEntry> disk_ ABSL_GUARDED_BY(mu_);
  uint64_t disk_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Memory LRU of decoded chunks.
  struct MemEntry {
    std::shared_ptr<const std::string> data;
    std::list<std::string>::iterator lru;
  };
  std::list<std::string> mem_lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, MemEntry> mem_ ABSL_GUARDED_BY(mu_);
  uint64_t mem_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Keys whose disk file this process wrote or has verified.
  absl::flat_hash_set<std::string> verified_ ABSL_GUARDED_BY(mu_);
  // Open descriptors of verified chunk files, least recently used evicted.
  static constexpr size_t kMaxOpenChunks = 128;
  struct FdEntry {
    std::shared_ptr<const UniqueFd> fd;
    std::list<std::string>::iterator lru;
  };
  std::list<std::string> fd_lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, FdEntry> fds_ ABSL_GUARDED_BY(mu_);
  // Counts DropDisk calls: a descriptor opened while one happened may be of
  // a file since replaced, and is not kept.
  uint64_t drops_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace accel::fuse
