#pragma once

// LayerTree: the immutable, in-memory tree of one layer as overlayfs must see
// it, built once from the layer's entries (tar order) and then only read.
//
// It does what containerd's overlayfs snapshotter does when it unpacks the same
// tar layer: later entries replace earlier ones, missing parents appear as
// 0755 root-owned directories, OCI whiteouts become overlayfs whiteouts
// (".wh.NAME" -> character device NAME 0:0; ".wh..wh..opq" -> the directory
// gets trusted.overlay.opaque=y and the marker is not shown), hard links share
// one inode. It never touches the kernel or file contents.
//
// Inode numbers are dense: 1 is the root, then breadth-first in name order, so
// the same entries always give the same numbers (a remount after a restart
// shows the same inodes).
//
// Memory: nodes are fixed-size; names, link targets, digests and xattrs live
// in one arena; directory children are ranges of two flat arrays (no per-node
// containers). Variable-length parts are read through LayerTree accessors;
// the views they return stay valid as long as the tree and are NUL-terminated
// in memory (view.data()[view.size()] == '\0'), so they can go to C APIs.
//
// Thread-safety: immutable after Build; any number of threads may read it.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/layer_entry.h"

namespace accel::fuse {

// One inode. Hard links share one Node.
struct Node {
  uint64_t ino = 0;          // 1 = root
  uint64_t size = 0;         // regular: content length; symlink: target length; dir: 4096
  uint64_t data_offset = 0;  // regular: LayerEntry::data_offset
  uint64_t rdev = 0;         // devices: makedev(major, minor); whiteouts and others: 0
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint32_t mode = 0;  // S_IFMT | permission bits (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;        // dir: 2 + subdirectories; regular: names; others: 1
  uint32_t parent = 0;       // directories: parent ino (the root's is 1); others: 0
  uint32_t child_count = 0;  // directories: number of children ("." and ".." excluded)
  uint32_t xattr_count = 0;

 private:
  friend class LayerTree;
  friend class TreeBuilder;
  uint32_t first_child_ = 0;  // index into the tree's child arrays
  uint32_t first_xattr_ = 0;  // index into the tree's xattr array
  uint64_t text_ = 0;         // arena ref: symlink target or regular-file digest
};

struct DirEntry {
  absl::string_view name;
  uint64_t ino = 0;
};

struct Xattr {
  absl::string_view name;
  absl::string_view value;
};

struct TreeOptions {
  // Layer paths (relative, as in LayerEntry::path) whose entries are omitted
  // entirely, e.g. eStargz metadata: "stargz.index.json", ".prefetch.landmark",
  // ".no.prefetch.landmark". Exact match; an omitted directory's children are
  // still added (under an implicit parent).
  std::vector<std::string> hidden_paths;
  // Most entries accepted (more is InvalidArgument).
  size_t max_entries = 50'000'000;
};

class LayerTree {
 public:
  // Builds the tree from `entries` in tar order. Returns InvalidArgument,
  // naming the path, for: an absolute path, "." / ".." / empty components,
  // NUL bytes, a name longer than 255 bytes, an entry below a non-directory,
  // a non-directory root entry, a whiteout without a name, a hard link to a
  // missing or non-regular entry (naming both paths), an empty or oversized
  // symlink target, an empty, NUL-containing or oversized xattr name or an
  // oversized value, and more than options.max_entries entries.
  static absl::StatusOr<std::unique_ptr<const LayerTree>> Build(std::vector<LayerEntry> entries,
                                                                const TreeOptions& options = {});

  LayerTree(const LayerTree&) = delete;
  LayerTree& operator=(const LayerTree&) = delete;

  // The node with inode `ino`, or nullptr if there is none.
  const Node* Get(uint64_t ino) const;
  const Node* root() const { return &nodes_[0]; }

  // The child `name` of directory `parent`, or nullptr if `parent` is not a
  // directory or has no such child. O(log children).
  const Node* Lookup(uint64_t parent, absl::string_view name) const;

  // Directory children in name order; REQUIRES: i < dir.child_count.
  DirEntry Child(const Node& dir, size_t i) const;

  // Extended attributes in name order; REQUIRES: i < node.xattr_count.
  Xattr GetXattr(const Node& node, size_t i) const;
  // The value of xattr `name`, or false if `node` has none such.
  bool FindXattr(const Node& node, absl::string_view name, absl::string_view* value) const;

  // Symlinks: the target; "" for other types.
  absl::string_view LinkTarget(const Node& node) const;
  // Regular files: LayerEntry::digest ("sha256:<hex>", may be ""); "" otherwise.
  absl::string_view Digest(const Node& node) const;

  size_t node_count() const { return nodes_.size(); }
  // Sum of regular-file sizes, each inode once.
  uint64_t total_file_bytes() const { return total_file_bytes_; }
  // Approximate heap bytes held by this tree.
  size_t MemoryBytes() const;

 private:
  friend class TreeBuilder;
  LayerTree() = default;
  absl::string_view Text(uint64_t ref) const;

  std::vector<Node> nodes_;                            // nodes_[ino - 1]
  std::vector<uint64_t> child_names_;                  // arena refs, grouped per directory, sorted
  std::vector<uint32_t> child_inos_;                   // parallel to child_names_
  std::vector<std::pair<uint64_t, uint64_t>> xattrs_;  // (name ref, value ref)
  std::string arena_;
  uint64_t total_file_bytes_ = 0;
};

}  // namespace accel::fuse
