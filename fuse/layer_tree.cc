#include "fuse/layer_tree.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/layer_path.h"
#include "common/status_macros.h"

namespace accel::fuse {
namespace {

constexpr size_t kMaxLinkTarget = 4095;   // PATH_MAX - 1: symlink(2) refuses longer
constexpr size_t kMaxXattrName = 255;     // XATTR_NAME_MAX
constexpr size_t kMaxXattrValue = 65536;  // XATTR_SIZE_MAX
constexpr size_t kMaxDigest = 1024;
constexpr uint64_t kDirSize = 4096;
constexpr absl::string_view kWhiteoutPrefix = ".wh.";
constexpr absl::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr absl::string_view kOpaqueXattr = "trusted.overlay.opaque";

// Arena references pack (offset << 24 | length): lengths stay below 16 MiB
// (everything stored is bounded above), offsets below 1 TiB.
constexpr int kLenBits = 24;
constexpr uint64_t kLenMask = (uint64_t{1} << kLenBits) - 1;

absl::Status BadEntry(absl::string_view path, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("layer entry \"", absl::CHexEscape(path), "\": ", why));
}

uint32_t TypeBits(EntryType type) {
  switch (type) {
    case EntryType::kRegular:
    case EntryType::kHardlink:
      return S_IFREG;
    case EntryType::kDirectory:
      return S_IFDIR;
    case EntryType::kSymlink:
      return S_IFLNK;
    case EntryType::kCharDevice:
      return S_IFCHR;
    case EntryType::kBlockDevice:
      return S_IFBLK;
    case EntryType::kFifo:
      return S_IFIFO;
  }
  return 0;
}

}  // namespace

// Builds a LayerTree in two passes: entries are applied in tar order to a
// mutable tree (per-directory hash maps, freed at the end), then the reachable
// part is laid out breadth-first into the compact immutable form.
class TreeBuilder {
 public:
  explicit TreeBuilder(const TreeOptions& options)
      : hidden_(options.hidden_paths.begin(), options.hidden_paths.end()) {}

  absl::Status Apply(LayerEntry& entry);
  absl::StatusOr<std::unique_ptr<const LayerTree>> Finish();

  size_t reserve_hint = 0;

 private:
  using Children = absl::flat_hash_map<std::string, uint32_t>;
  struct BNode {
    uint32_t mode = 0;  // S_IFMT | 07777
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint32_t mtime_nsec = 0;
    int64_t mtime_sec = 0;
    uint64_t size = 0;
    uint64_t data_offset = 0;
    uint64_t rdev = 0;
    bool opaque = false;
    std::string text;  // symlink target or digest
    std::map<std::string, std::string> xattrs;
    std::unique_ptr<Children> children;  // directories only
  };

  void Init();
  uint32_t NewNode(BNode node);
  uint32_t NewDir(uint32_t mode, uint32_t uid, uint32_t gid, int64_t sec, uint32_t nsec);
  bool IsDir(uint32_t b) const { return S_ISDIR(nodes_[b].mode); }
  // Resolves directory `dir_path` (validated), creating missing directories
  // when `create`. Returns the node or an error naming `entry_path`.
  absl::StatusOr<uint32_t> ResolveDir(absl::string_view dir_path, absl::string_view entry_path,
                                      bool create);
  // Replaces `name` in `parent` by `child` (removing whatever was there).
  void Put(uint32_t parent, absl::string_view name, uint32_t child);
  void SetMeta(BNode& b, const LayerEntry& e, bool merge_xattrs);
  static absl::Status CheckXattrs(const LayerEntry& e);

  uint64_t AddText(LayerTree& tree, absl::string_view s);

  absl::flat_hash_set<std::string> hidden_;
  std::vector<BNode> nodes_;  // nodes_[0] is the root
  std::string cached_dir_path_;
  uint32_t cached_dir_ = 0;
  bool cache_valid_ = false;
};

void TreeBuilder::Init() {
  nodes_.reserve(reserve_hint + 1);
  NewDir(0755, 0, 0, 0, 0);
}

uint32_t TreeBuilder::NewNode(BNode node) {
  nodes_.push_back(std::move(node));
  return static_cast<uint32_t>(nodes_.size() - 1);
}

uint32_t TreeBuilder::NewDir(uint32_t mode, uint32_t uid, uint32_t gid, int64_t sec,
                             uint32_t nsec) {
  BNode d;
  d.mode = S_IFDIR | (mode & 07777);
  d.uid = uid;
  d.gid = gid;
  d.mtime_sec = sec;
  d.mtime_nsec = nsec;
  d.size = kDirSize;
  d.children = std::make_unique<Children>();
  return NewNode(std::move(d));
}

absl::StatusOr<uint32_t> TreeBuilder::ResolveDir(absl::string_view dir_path,
                                                 absl::string_view entry_path, bool create) {
  if (dir_path.empty()) return 0u;
  if (cache_valid_ && create && dir_path == cached_dir_path_) return cached_dir_;
  uint32_t cur = 0;
  size_t start = 0;
  while (start <= dir_path.size()) {
    size_t end = dir_path.find('/', start);
    if (end == absl::string_view::npos) end = dir_path.size();
    absl::string_view comp = dir_path.substr(start, end - start);
    Children& kids = *nodes_[cur].children;
    auto it = kids.find(comp);
    if (it == kids.end()) {
      if (!create) return absl::NotFoundError("missing");
      uint32_t d = NewDir(0755, 0, 0, 0, 0);
      nodes_[cur].children->emplace(std::string(comp), d);
      cur = d;
    } else {
      cur = it->second;
      if (!IsDir(cur)) {
        if (!create) return absl::NotFoundError("not a directory");
        return BadEntry(entry_path,
                        absl::StrCat("parent \"", absl::CHexEscape(dir_path.substr(0, end)),
                                     "\" is not a directory"));
      }
    }
    start = end + 1;
  }
  if (create) {
    cached_dir_path_.assign(dir_path.data(), dir_path.size());
    cached_dir_ = cur;
    cache_valid_ = true;
  }
  return cur;
}

void TreeBuilder::Put(uint32_t parent, absl::string_view name, uint32_t child) {
  Children& kids = *nodes_[parent].children;
  auto it = kids.find(name);
  if (it == kids.end()) {
    kids.emplace(std::string(name), child);
    return;
  }
  // The old node (and a directory's subtree) becomes unreachable; hard links
  // elsewhere keep a regular file alive.
  if (IsDir(it->second)) cache_valid_ = false;
  it->second = child;
}

void TreeBuilder::SetMeta(BNode& b, const LayerEntry& e, bool merge_xattrs) {
  b.mode = (b.mode & S_IFMT) | (e.mode & 07777);
  b.uid = e.uid;
  b.gid = e.gid;
  b.mtime_sec = e.mtime_sec;
  b.mtime_nsec = e.mtime_nsec;
  if (!merge_xattrs) {
    b.xattrs = e.xattrs;
  } else {
    // A directory entry over an existing directory: setxattr adds to what is there.
    for (const auto& [k, v] : e.xattrs) b.xattrs[k] = v;
  }
}

absl::Status TreeBuilder::CheckXattrs(const LayerEntry& e) {
  for (const auto& [k, v] : e.xattrs) {
    if (k.empty() || k.find('\0') != std::string::npos || k.size() > kMaxXattrName) {
      return BadEntry(e.path, absl::StrCat("invalid xattr name \"", absl::CHexEscape(k), "\""));
    }
    if (v.size() > kMaxXattrValue) {
      return BadEntry(e.path, absl::StrCat("xattr \"", k, "\" value longer than 64 KiB"));
    }
  }
  return absl::OkStatus();
}

absl::Status TreeBuilder::Apply(LayerEntry& e) {
  if (nodes_.empty()) Init();
  if (hidden_.contains(e.path)) return absl::OkStatus();
  const absl::string_view path = e.path;
  if (path.empty()) {
    if (e.type != EntryType::kDirectory) return BadEntry(path, "root entry is not a directory");
    if (absl::Status s = CheckXattrs(e); !s.ok()) return s;
    SetMeta(nodes_[0], e, /*merge_xattrs=*/true);
    return absl::OkStatus();
  }
  if (absl::Status s = ValidateLayerPath(path); !s.ok()) return Annotate(s, "layer entry");
  if (absl::Status s = CheckXattrs(e); !s.ok()) return s;

  size_t slash = path.rfind('/');
  absl::string_view dir_path = slash == absl::string_view::npos ? "" : path.substr(0, slash);
  absl::string_view base = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  absl::StatusOr<uint32_t> parent = ResolveDir(dir_path, path, /*create=*/true);
  if (!parent.ok()) return parent.status();

  if (base == kOpaqueMarker) {
    nodes_[*parent].opaque = true;
    return absl::OkStatus();
  }
  if (base.substr(0, kWhiteoutPrefix.size()) == kWhiteoutPrefix) {
    absl::string_view name = base.substr(kWhiteoutPrefix.size());
    if (name.empty() || name == "." || name == "..")
      return BadEntry(path, "whiteout without a name");
    BNode w;
    w.mode = S_IFCHR;
    w.uid = e.uid;
    w.gid = e.gid;
    w.mtime_sec = e.mtime_sec;
    w.mtime_nsec = e.mtime_nsec;
    uint32_t b = NewNode(std::move(w));
    Put(*parent, name, b);
    return absl::OkStatus();
  }

  switch (e.type) {
    case EntryType::kHardlink: {
      absl::string_view target = e.link_target;
      auto bad_link = [&](absl::string_view why) {
        return BadEntry(path,
                        absl::StrCat("hard link to \"", absl::CHexEscape(target), "\": ", why));
      };
      if (target.empty()) return bad_link("empty target");
      if (target == path) return bad_link("links to itself");
      if (!ValidateLayerPath(target).ok()) return bad_link("invalid target path");
      size_t ts = target.rfind('/');
      absl::StatusOr<uint32_t> tdir = ResolveDir(
          ts == absl::string_view::npos ? "" : target.substr(0, ts), target, /*create=*/false);
      if (!tdir.ok()) return bad_link("target is not in the layer");
      const Children& kids = *nodes_[*tdir].children;
      auto it = kids.find(ts == absl::string_view::npos ? target : target.substr(ts + 1));
      if (it == kids.end()) return bad_link("target is not in the layer");
      if (!S_ISREG(nodes_[it->second].mode)) return bad_link("target is not a regular file");
      Put(*parent, base, it->second);
      return absl::OkStatus();
    }
    case EntryType::kDirectory: {
      Children& kids = *nodes_[*parent].children;
      auto it = kids.find(base);
      if (it != kids.end() && IsDir(it->second)) {
        SetMeta(nodes_[it->second], e, /*merge_xattrs=*/true);
        return absl::OkStatus();
      }
      uint32_t d = NewDir(e.mode, e.uid, e.gid, e.mtime_sec, e.mtime_nsec);
      nodes_[d].xattrs = std::move(e.xattrs);
      Put(*parent, base, d);
      return absl::OkStatus();
    }
    case EntryType::kRegular:
    case EntryType::kSymlink:
    case EntryType::kCharDevice:
    case EntryType::kBlockDevice:
    case EntryType::kFifo:
      break;
    default:
      return BadEntry(path, absl::StrCat("unknown entry type ", static_cast<int>(e.type)));
  }

  BNode n;
  n.mode = TypeBits(e.type);
  SetMeta(n, e, /*merge_xattrs=*/false);
  if (e.type == EntryType::kRegular) {
    if (e.digest.size() > kMaxDigest) return BadEntry(path, "digest too long");
    n.size = e.size;
    n.data_offset = e.data_offset;
    n.text = std::move(e.digest);
  } else if (e.type == EntryType::kSymlink) {
    if (e.link_target.empty()) return BadEntry(path, "empty symlink target");
    if (e.link_target.size() > kMaxLinkTarget) return BadEntry(path, "symlink target too long");
    if (e.link_target.find('\0') != std::string::npos) {
      return BadEntry(path, "NUL byte in symlink target");
    }
    n.size = e.link_target.size();
    n.text = std::move(e.link_target);
  } else if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) {
    n.rdev = makedev(e.dev_major, e.dev_minor);
  }
  uint32_t b = NewNode(std::move(n));
  Put(*parent, base, b);
  return absl::OkStatus();
}

uint64_t TreeBuilder::AddText(LayerTree& tree, absl::string_view s) {
  uint64_t off = tree.arena_.size();
  tree.arena_.append(s.data(), s.size());
  tree.arena_.push_back('\0');  // so that views can be passed as C strings
  return (off << kLenBits) | s.size();
}

absl::StatusOr<std::unique_ptr<const LayerTree>> TreeBuilder::Finish() {
  if (nodes_.empty()) Init();
  if (nodes_.size() >= UINT32_MAX) {
    return absl::InvalidArgumentError("layer has too many entries");
  }
  std::unique_ptr<LayerTree> tree(new LayerTree());
  AddText(*tree, "");  // ref 0: the empty string, NUL-terminated too
  const uint64_t opaque_name = AddText(*tree, kOpaqueXattr);
  const uint64_t opaque_value = AddText(*tree, "y");

  std::vector<uint32_t> ino_of(nodes_.size(), 0);  // builder index -> ino
  tree->nodes_.reserve(nodes_.size());
  // Sizes the arena and the child tables up front: growing them while
  // appending copied the whole arena again at every doubling.
  {
    size_t text = 64, children = 0, xattrs = 0;
    for (const BNode& b : nodes_) {
      text += b.text.size() + 1;
      for (const auto& [k, v] : b.xattrs) text += k.size() + v.size() + 2;
      xattrs += b.xattrs.size() + (b.opaque ? 1 : 0);
      if (b.children != nullptr) {
        children += b.children->size();
        for (const auto& [name, child] : *b.children) text += name.size() + 1;
      }
    }
    tree->arena_.reserve(text);
    tree->child_names_.reserve(children);
    tree->child_inos_.reserve(children);
    tree->xattrs_.reserve(xattrs);
  }
  // Lays out builder node `b` as inode number nodes_.size() + 1.
  auto emit = [&](uint32_t b, uint32_t parent_ino) {
    BNode& s = nodes_[b];
    Node n;
    n.ino = tree->nodes_.size() + 1;
    n.mode = s.mode;
    n.uid = s.uid;
    n.gid = s.gid;
    n.size = s.size;
    n.data_offset = s.data_offset;
    n.rdev = s.rdev;
    n.mtime_sec = s.mtime_sec;
    n.mtime_nsec = s.mtime_nsec;
    n.nlink = S_ISREG(s.mode) ? 0 : 1;  // regular: counted per name below
    if (S_ISDIR(s.mode)) n.parent = parent_ino;
    if (!s.text.empty()) n.text_ = AddText(*tree, s.text);
    if (S_ISREG(s.mode)) tree->total_file_bytes_ += s.size;
    if (S_ISDIR(s.mode) && s.opaque) s.xattrs[std::string(kOpaqueXattr)] = "y";
    n.first_xattr_ = static_cast<uint32_t>(tree->xattrs_.size());
    n.xattr_count = static_cast<uint32_t>(s.xattrs.size());
    for (const auto& [k, v] : s.xattrs) {
      if (s.opaque && k == kOpaqueXattr && v == "y") {
        tree->xattrs_.emplace_back(opaque_name, opaque_value);
      } else {
        uint64_t kr = AddText(*tree, k);
        tree->xattrs_.emplace_back(kr, AddText(*tree, v));
      }
    }
    s.text.clear();
    s.text.shrink_to_fit();
    s.xattrs.clear();
    ino_of[b] = static_cast<uint32_t>(n.ino);
    tree->nodes_.push_back(n);
  };

  emit(0, 1);
  std::vector<uint32_t> dirs = {0};  // builder indices, breadth-first
  std::vector<std::pair<absl::string_view, uint32_t>> kids;
  for (size_t q = 0; q < dirs.size(); ++q) {
    const uint32_t b = dirs[q];
    const uint32_t ino = ino_of[b];
    kids.clear();
    for (const auto& [name, child] : *nodes_[b].children) kids.emplace_back(name, child);
    std::sort(kids.begin(), kids.end());
    uint32_t subdirs = 0;
    const size_t first = tree->child_names_.size();
    for (const auto& [name, child] : kids) {
      if (ino_of[child] == 0) {
        emit(child, ino);
        if (IsDir(child)) dirs.push_back(child);
      }
      Node& cn = tree->nodes_[ino_of[child] - 1];
      if (S_ISDIR(cn.mode)) ++subdirs;
      if (S_ISREG(cn.mode)) ++cn.nlink;
      tree->child_names_.push_back(AddText(*tree, name));
      tree->child_inos_.push_back(ino_of[child]);
    }
    Node& dn = tree->nodes_[ino - 1];
    dn.first_child_ = static_cast<uint32_t>(first);
    dn.child_count = static_cast<uint32_t>(kids.size());
    dn.nlink = 2 + subdirs;
    nodes_[b].children.reset();
  }
  if (tree->arena_.size() >> (64 - kLenBits) != 0) {
    return absl::InvalidArgumentError("layer metadata larger than 1 TiB");
  }
  tree->nodes_.shrink_to_fit();
  tree->child_names_.shrink_to_fit();
  tree->child_inos_.shrink_to_fit();
  tree->xattrs_.shrink_to_fit();
  tree->arena_.shrink_to_fit();
  return std::unique_ptr<const LayerTree>(std::move(tree));
}

absl::StatusOr<std::unique_ptr<const LayerTree>> LayerTree::Build(std::vector<LayerEntry> entries,
                                                                  const TreeOptions& options) {
  if (entries.size() > options.max_entries) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer has ", entries.size(), " entries, more than ", options.max_entries));
  }
  TreeBuilder builder(options);
  builder.reserve_hint = entries.size();
  for (LayerEntry& e : entries) {
    if (absl::Status s = builder.Apply(e); !s.ok()) return s;
    // Free the entry's heap early: the builder holds what it needs.
    e.xattrs.clear();
    std::string().swap(e.path);
    std::string().swap(e.link_target);
    std::string().swap(e.digest);
  }
  std::vector<LayerEntry>().swap(entries);
  return builder.Finish();
}

absl::string_view LayerTree::Text(uint64_t ref) const {
  return absl::string_view(arena_.data() + (ref >> kLenBits), ref & kLenMask);
}

const Node* LayerTree::Get(uint64_t ino) const {
  if (ino == 0 || ino > nodes_.size()) return nullptr;
  return &nodes_[ino - 1];
}

const Node* LayerTree::Lookup(uint64_t parent, absl::string_view name) const {
  const Node* dir = Get(parent);
  if (dir == nullptr || !S_ISDIR(dir->mode)) return nullptr;
  const uint64_t* begin = child_names_.data() + dir->first_child_;
  const uint64_t* end = begin + dir->child_count;
  const uint64_t* it = std::lower_bound(
      begin, end, name, [this](uint64_t ref, absl::string_view n) { return Text(ref) < n; });
  if (it == end || Text(*it) != name) return nullptr;
  return &nodes_[child_inos_[it - child_names_.data()] - 1];
}

DirEntry LayerTree::Child(const Node& dir, size_t i) const {
  size_t k = dir.first_child_ + i;
  return DirEntry{Text(child_names_[k]), child_inos_[k]};
}

Xattr LayerTree::GetXattr(const Node& node, size_t i) const {
  const auto& [name, value] = xattrs_[node.first_xattr_ + i];
  return Xattr{Text(name), Text(value)};
}

bool LayerTree::FindXattr(const Node& node, absl::string_view name,
                          absl::string_view* value) const {
  for (size_t i = 0; i < node.xattr_count; ++i) {
    Xattr x = GetXattr(node, i);
    if (x.name == name) {
      *value = x.value;
      return true;
    }
  }
  return false;
}

absl::string_view LayerTree::LinkTarget(const Node& node) const {
  return S_ISLNK(node.mode) ? Text(node.text_) : absl::string_view();
}

absl::string_view LayerTree::Digest(const Node& node) const {
  return S_ISREG(node.mode) ? Text(node.text_) : absl::string_view();
}

size_t LayerTree::MemoryBytes() const {
  return sizeof(*this) + nodes_.capacity() * sizeof(Node) +
         child_names_.capacity() * sizeof(uint64_t) + child_inos_.capacity() * sizeof(uint32_t) +
         xattrs_.capacity() * sizeof(xattrs_[0]) + arena_.capacity();
}

}  // namespace accel::fuse
