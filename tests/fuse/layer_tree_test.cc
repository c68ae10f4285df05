#include "fuse/layer_tree.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace accel::fuse {
namespace {

using ::accel::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

LayerEntry Dir(std::string path, uint32_t mode = 0755) {
  LayerEntry e;
  e.path = std::move(path);
  e.type = EntryType::kDirectory;
  e.mode = mode;
  return e;
}

LayerEntry File(std::string path, uint64_t size = 0, uint64_t offset = 0, uint32_t mode = 0644) {
  LayerEntry e;
  e.path = std::move(path);
  e.type = EntryType::kRegular;
  e.mode = mode;
  e.size = size;
  e.data_offset = offset;
  return e;
}

LayerEntry Link(std::string path, std::string target, EntryType type) {
  LayerEntry e;
  e.path = std::move(path);
  e.type = type;
  e.mode = 0777;
  e.link_target = std::move(target);
  return e;
}

LayerEntry Special(std::string path, EntryType type, uint32_t major = 0, uint32_t minor = 0) {
  LayerEntry e;
  e.path = std::move(path);
  e.type = type;
  e.mode = 0640;
  e.dev_major = major;
  e.dev_minor = minor;
  return e;
}

std::unique_ptr<const LayerTree> MustBuild(std::vector<LayerEntry> entries,
                                           const TreeOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<const LayerTree>> tree =
      LayerTree::Build(std::move(entries), options);
  EXPECT_TRUE(tree.ok()) << tree.status();
  return tree.ok() ? std::move(tree).value() : nullptr;
}

// Walks `path` ("" = root) from the root with Lookup.
const Node* Find(const LayerTree& tree, absl::string_view path) {
  const Node* n = tree.root();
  if (path.empty()) return n;
  for (absl::string_view comp : absl::StrSplit(path, '/')) {
    n = tree.Lookup(n->ino, comp);
    if (n == nullptr) return nullptr;
  }
  return n;
}

std::vector<std::string> Names(const LayerTree& tree, const Node& dir) {
  std::vector<std::string> names;
  for (size_t i = 0; i < dir.child_count; ++i) names.emplace_back(tree.Child(dir, i).name);
  return names;
}

std::vector<std::pair<std::string, std::string>> Xattrs(const LayerTree& tree, const Node& n) {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < n.xattr_count; ++i) {
    Xattr x = tree.GetXattr(n, i);
    out.emplace_back(std::string(x.name), std::string(x.value));
  }
  return out;
}

TEST(LayerTreeTest, EmptyLayerHasADefaultRoot) {
  auto tree = MustBuild({});
  ASSERT_NE(tree, nullptr);
  ASSERT_EQ(tree->node_count(), 1u);
  const Node* root = tree->Get(1);
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root, tree->root());
  EXPECT_EQ(root->ino, 1u);
  EXPECT_EQ(root->mode, S_IFDIR | 0755u);
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(root->mtime_sec, 0);
  EXPECT_EQ(root->nlink, 2u);
  EXPECT_EQ(root->parent, 1u);
  EXPECT_EQ(root->child_count, 0u);
  EXPECT_EQ(tree->Get(0), nullptr);
  EXPECT_EQ(tree->Get(2), nullptr);
}

TEST(LayerTreeTest, EveryEntryType) {
  LayerEntry root = Dir("", 0711);
  root.uid = 7;
  root.mtime_sec = 99;
  LayerEntry f = File("dir/file", 1234, 4096, 04755);
  f.uid = 1000;
  f.gid = 2000;
  f.mtime_sec = 1700000000;
  f.mtime_nsec = 123456789;
  f.digest = "sha256:" + std::string(64, 'a');
  f.xattrs = {{"user.b", "2"}, {"security.capability", std::string("\0\1", 2)}, {"user.a", ""}};
  LayerEntry d = Dir("dir", 01777);
  d.gid = 5;
  std::vector<LayerEntry> entries;
  entries.push_back(root);
  entries.push_back(d);
  entries.push_back(f);
  entries.push_back(Link("dir/sym", "../target/x", EntryType::kSymlink));
  entries.push_back(Special("dir/chr", EntryType::kCharDevice, 1, 3));
  entries.push_back(Special("dir/blk", EntryType::kBlockDevice, 259, 70000));
  entries.push_back(Special("dir/fifo", EntryType::kFifo));
  auto tree = MustBuild(entries);
  ASSERT_NE(tree, nullptr);

  const Node* r = tree->root();
  EXPECT_EQ(r->mode, S_IFDIR | 0711u);
  EXPECT_EQ(r->uid, 7u);
  EXPECT_EQ(r->mtime_sec, 99);

  const Node* dn = Find(*tree, "dir");
  ASSERT_NE(dn, nullptr);
  EXPECT_EQ(dn->mode, S_IFDIR | 01777u);
  EXPECT_EQ(dn->gid, 5u);
  EXPECT_EQ(dn->parent, 1u);
  EXPECT_EQ(dn->nlink, 2u);
  EXPECT_THAT(Names(*tree, *dn), ElementsAre("blk", "chr", "fifo", "file", "sym"));

  const Node* fn = Find(*tree, "dir/file");
  ASSERT_NE(fn, nullptr);
  EXPECT_EQ(fn->mode, S_IFREG | 04755u);
  EXPECT_EQ(fn->uid, 1000u);
  EXPECT_EQ(fn->gid, 2000u);
  EXPECT_EQ(fn->size, 1234u);
  EXPECT_EQ(fn->data_offset, 4096u);
  EXPECT_EQ(fn->mtime_sec, 1700000000);
  EXPECT_EQ(fn->mtime_nsec, 123456789u);
  EXPECT_EQ(fn->nlink, 1u);
  EXPECT_EQ(fn->rdev, 0u);
  EXPECT_EQ(tree->Digest(*fn), "sha256:" + std::string(64, 'a'));
  EXPECT_EQ(tree->LinkTarget(*fn), "");
  EXPECT_THAT(Xattrs(*tree, *fn), ElementsAre(std::pair<std::string, std::string>(
                                                  "security.capability", std::string("\0\1", 2)),
                                              std::pair<std::string, std::string>("user.a", ""),
                                              std::pair<std::string, std::string>("user.b", "2")));
  absl::string_view v;
  EXPECT_TRUE(tree->FindXattr(*fn, "user.b", &v));
  EXPECT_EQ(v, "2");
  EXPECT_FALSE(tree->FindXattr(*fn, "user.c", &v));

  const Node* sn = Find(*tree, "dir/sym");
  ASSERT_NE(sn, nullptr);
  EXPECT_EQ(sn->mode, S_IFLNK | 0777u);
  EXPECT_EQ(sn->size, 11u);
  EXPECT_EQ(tree->LinkTarget(*sn), "../target/x");
  EXPECT_EQ(tree->LinkTarget(*sn).data()[11], '\0');
  EXPECT_EQ(sn->nlink, 1u);

  const Node* cn = Find(*tree, "dir/chr");
  ASSERT_NE(cn, nullptr);
  EXPECT_EQ(cn->mode, S_IFCHR | 0640u);
  EXPECT_EQ(cn->rdev, makedev(1, 3));
  const Node* bn = Find(*tree, "dir/blk");
  ASSERT_NE(bn, nullptr);
  EXPECT_EQ(bn->mode, S_IFBLK | 0640u);
  EXPECT_EQ(major(bn->rdev), 259u);
  EXPECT_EQ(minor(bn->rdev), 70000u);
  const Node* pn = Find(*tree, "dir/fifo");
  ASSERT_NE(pn, nullptr);
  EXPECT_EQ(pn->mode, S_IFIFO | 0640u);
  EXPECT_EQ(pn->size, 0u);
  EXPECT_EQ(tree->node_count(), 7u);
  EXPECT_EQ(tree->total_file_bytes(), 1234u);
}

TEST(LayerTreeTest, ModeKeepsOnlyPermissionBits) {
  LayerEntry f = File("f");
  f.mode = 0100644 | 07000;
  auto tree = MustBuild({f});
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(Find(*tree, "f")->mode, S_IFREG | 07644u);
}

TEST(LayerTreeTest, MissingParentsAreImplicitDirectories) {
  LayerEntry f = File("a/b/c", 3);
  f.uid = 42;
  f.mtime_sec = 5;
  auto tree = MustBuild({f});
  ASSERT_NE(tree, nullptr);
  for (const char* p : {"a", "a/b"}) {
    const Node* n = Find(*tree, p);
    ASSERT_NE(n, nullptr) << p;
    EXPECT_EQ(n->mode, S_IFDIR | 0755u) << p;
    EXPECT_EQ(n->uid, 0u);
    EXPECT_EQ(n->gid, 0u);
    EXPECT_EQ(n->mtime_sec, 0);
    EXPECT_EQ(n->mtime_nsec, 0u);
    EXPECT_EQ(n->nlink, 3u - (std::string(p) == "a/b"));
  }
  EXPECT_EQ(Find(*tree, "a/b")->parent, Find(*tree, "a")->ino);
  EXPECT_EQ(Find(*tree, "a/b/c")->uid, 42u);
  // The explicit entry arriving later updates the implicit directory.
  LayerEntry later = Dir("a", 0700);
  later.uid = 9;
  tree = MustBuild({File("a/x"), later});
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(Find(*tree, "a")->mode, S_IFDIR | 0700u);
  EXPECT_EQ(Find(*tree, "a")->uid, 9u);
  EXPECT_NE(Find(*tree, "a/x"), nullptr);
}

TEST(LayerTreeTest, DirectoryNlinkCountsSubdirectories) {
  auto tree = MustBuild({Dir("d"), Dir("d/x"), Dir("d/y"), File("d/f"), File("d/y/z")});
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(tree->root()->nlink, 3u);
  EXPECT_EQ(Find(*tree, "d")->nlink, 4u);
  EXPECT_EQ(Find(*tree, "d/y")->nlink, 2u);
}

TEST(LayerTreeTest, InodesAreBreadthFirstInNameOrderAndDeterministic) {
  std::vector<LayerEntry> entries = {File("b/z"), File("a"), Dir("b"), File("b/a"), File("c")};
  auto t1 = MustBuild(entries);
  auto t2 = MustBuild(entries);
  ASSERT_NE(t1, nullptr);
  ASSERT_NE(t2, nullptr);
  EXPECT_EQ(Find(*t1, "a")->ino, 2u);
  EXPECT_EQ(Find(*t1, "b")->ino, 3u);
  EXPECT_EQ(Find(*t1, "c")->ino, 4u);
  EXPECT_EQ(Find(*t1, "b/a")->ino, 5u);
  EXPECT_EQ(Find(*t1, "b/z")->ino, 6u);
  for (const char* p : {"a", "b", "c", "b/a", "b/z"}) {
    EXPECT_EQ(Find(*t1, p)->ino, Find(*t2, p)->ino);
    EXPECT_EQ(t1->Get(Find(*t1, p)->ino), Find(*t1, p));
  }
}

TEST(LayerTreeTest, LaterEntryReplacesEarlier) {
  LayerEntry f1 = File("f", 10, 0);
  LayerEntry f2 = File("f", 20, 100, 0600);
  auto tree = MustBuild({f1, f2});
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(Find(*tree, "f")->size, 20u);
  EXPECT_EQ(Find(*tree, "f")->data_offset, 100u);
  EXPECT_EQ(Find(*tree, "f")->mode, S_IFREG | 0600u);
  EXPECT_EQ(tree->node_count(), 2u);  // the replaced file is gone
  EXPECT_EQ(tree->total_file_bytes(), 20u);

  // A symlink replaced by a file and vice versa.
  tree = MustBuild({Link("x", "t", EntryType::kSymlink), File("x", 1)});
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(S_ISREG(Find(*tree, "x")->mode));
  tree = MustBuild({File("x", 1), Link("x", "t", EntryType::kSymlink)});
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(S_ISLNK(Find(*tree, "x")->mode));
}

TEST(LayerTreeTest, DirectoryOverDirectoryKeepsChildrenAndTakesMetadata) {
  LayerEntry d1 = Dir("d", 0755);
  d1.xattrs = {{"user.keep", "1"}, {"user.both", "old"}};
  LayerEntry d2 = Dir("d", 0700);
  d2.uid = 3;
  d2.mtime_sec = 77;
  d2.xattrs = {{"user.both", "new"}};
  auto tree = MustBuild({d1, File("d/a"), d2, File("d/b")});
  ASSERT_NE(tree, nullptr);
  const Node* d = Find(*tree, "d");
  EXPECT_EQ(d->mode, S_IFDIR | 0700u);
  EXPECT_EQ(d->uid, 3u);
  EXPECT_EQ(d->mtime_sec, 77);
  EXPECT_THAT(Names(*tree, *d), ElementsAre("a", "b"));
  EXPECT_THAT(Xattrs(*tree, *d),
              ElementsAre(std::pair<std::string, std::string>("user.both", "new"),
                          std::pair<std::string, std::string>("user.keep", "1")));
}

TEST(LayerTreeTest, NonDirectoryReplacingDirectoryDropsSubtree) {
  auto tree = MustBuild({Dir("d"), Dir("d/e"), File("d/e/f", 5), File("d", 7), File("g")});
  ASSERT_NE(tree, nullptr);
  const Node* d = Find(*tree, "d");
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(S_ISREG(d->mode));
  EXPECT_EQ(d->size, 7u);
  EXPECT_EQ(tree->node_count(), 3u);
  EXPECT_EQ(tree->root()->nlink, 2u);
  // ...and a later child of "d" is below a non-directory now.
  EXPECT_THAT(LayerTree::Build({Dir("d"), File("d"), File("d/x")}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A directory replacing a file.
  tree = MustBuild({File("d"), Dir("d"), File("d/x")});
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(S_ISDIR(Find(*tree, "d")->mode));
  EXPECT_NE(Find(*tree, "d/x"), nullptr);
}

TEST(LayerTreeTest, WhiteoutBecomesCharDevice00) {
  LayerEntry wh = File(".wh.gone");
  wh.mode = 0644;
  wh.uid = 11;
  wh.gid = 12;
  wh.mtime_sec = 1234;
  wh.mtime_nsec = 5;
  auto tree = MustBuild({wh, File("d/.wh.sub")});
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(Find(*tree, ".wh.gone"), nullptr);
  const Node* w = Find(*tree, "gone");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->mode, static_cast<uint32_t>(S_IFCHR));
  EXPECT_EQ(w->rdev, 0u);
  EXPECT_EQ(w->uid, 11u);
  EXPECT_EQ(w->gid, 12u);
  EXPECT_EQ(w->mtime_sec, 1234);
  EXPECT_EQ(w->mtime_nsec, 5u);
  EXPECT_EQ(w->nlink, 1u);
  EXPECT_THAT(Names(*tree, *Find(*tree, "d")), ElementsAre("sub"));
}

TEST(LayerTreeTest, WhiteoutRemovesEarlierEntryOfTheSameLayer) {
  auto tree = MustBuild({Dir("x"), File("x/a"), File("y"), File(".wh.x"), File(".wh.y")});
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(S_ISCHR(Find(*tree, "x")->mode));
  EXPECT_TRUE(S_ISCHR(Find(*tree, "y")->mode));
  EXPECT_EQ(tree->node_count(), 3u);
  // An entry after the whiteout replaces it.
  tree = MustBuild({File(".wh.x"), File("x", 3)});
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(S_ISREG(Find(*tree, "x")->mode));
}

TEST(LayerTreeTest, OpaqueMarkerSetsXattrAndIsHidden) {
  LayerEntry d = Dir("d");
  d.xattrs = {{"user.z", "1"}, {"security.a", "2"}};
  auto tree = MustBuild({d, File("d/.wh..wh..opq"), File("d/keep"), File("e/.wh..wh..opq")});
  ASSERT_NE(tree, nullptr);
  const Node* dn = Find(*tree, "d");
  EXPECT_THAT(Names(*tree, *dn), ElementsAre("keep"));
  EXPECT_THAT(Xattrs(*tree, *dn),
              ElementsAre(std::pair<std::string, std::string>("security.a", "2"),
                          std::pair<std::string, std::string>("trusted.overlay.opaque", "y"),
                          std::pair<std::string, std::string>("user.z", "1")));
  // The marker creates its (implicit) directory.
  const Node* en = Find(*tree, "e");
  ASSERT_NE(en, nullptr);
  EXPECT_EQ(en->child_count, 0u);
  absl::string_view v;
  EXPECT_TRUE(tree->FindXattr(*en, "trusted.overlay.opaque", &v));
  EXPECT_EQ(v, "y");
  // A directory entry after the marker keeps the directory opaque.
  tree = MustBuild({File("d/.wh..wh..opq"), Dir("d", 0700)});
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(tree->FindXattr(*Find(*tree, "d"), "trusted.overlay.opaque", &v));
  // The root can be opaque too.
  tree = MustBuild({File(".wh..wh..opq")});
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(tree->FindXattr(*tree->root(), "trusted.overlay.opaque", &v));
  EXPECT_EQ(tree->root()->child_count, 0u);
}

TEST(LayerTreeTest, HardLinksShareOneNode) {
  LayerEntry f = File("a/f", 9, 100);
  f.digest = "sha256:ff";
  auto tree = MustBuild(
      {f, Link("a/g", "a/f", EntryType::kHardlink), Link("h", "a/g", EntryType::kHardlink)});
  ASSERT_NE(tree, nullptr);
  const Node* a = Find(*tree, "a/f");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(Find(*tree, "a/g"), a);
  EXPECT_EQ(Find(*tree, "h"), a);
  EXPECT_EQ(a->nlink, 3u);
  EXPECT_EQ(a->size, 9u);
  EXPECT_EQ(tree->Digest(*a), "sha256:ff");
  EXPECT_EQ(tree->node_count(), 3u);  // root, a, the file
  EXPECT_EQ(tree->total_file_bytes(), 9u);
}

TEST(LayerTreeTest, HardLinkSurvivesReplacementOfItsTarget) {
  auto tree = MustBuild({File("f", 1, 0), Link("g", "f", EntryType::kHardlink), File("f", 2, 10)});
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(Find(*tree, "g")->size, 1u);
  EXPECT_EQ(Find(*tree, "g")->nlink, 1u);
  EXPECT_EQ(Find(*tree, "f")->size, 2u);
  EXPECT_NE(Find(*tree, "f")->ino, Find(*tree, "g")->ino);
  // A whiteout of one name leaves the other.
  tree = MustBuild({File("f", 1), Link("g", "f", EntryType::kHardlink), File(".wh.f")});
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(Find(*tree, "g")->nlink, 1u);
}

TEST(LayerTreeTest, BadHardLinksAreRejected) {
  auto expect_bad = [](std::vector<LayerEntry> entries, const std::string& target) {
    auto r = LayerTree::Build(std::move(entries));
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"link\""));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"" + target + "\""));
  };
  expect_bad({Link("link", "missing", EntryType::kHardlink)}, "missing");
  expect_bad({Dir("d"), Link("link", "d", EntryType::kHardlink)}, "d");
  expect_bad({Link("s", "x", EntryType::kSymlink), Link("link", "s", EntryType::kHardlink)}, "s");
  expect_bad({Special("c", EntryType::kCharDevice), Link("link", "c", EntryType::kHardlink)}, "c");
  expect_bad({File("f"), Link("link", "f/x", EntryType::kHardlink)}, "f/x");
  expect_bad({Link("link", "/etc/passwd", EntryType::kHardlink)}, "/etc/passwd");
  expect_bad({Link("link", "../x", EntryType::kHardlink)}, "../x");
  expect_bad({Link("link", "", EntryType::kHardlink)}, "");
  expect_bad({File("link"), Link("link", "link", EntryType::kHardlink)}, "link");
  // A link to a whiteout's target is a link to a device.
  expect_bad({File(".wh.f"), Link("link", "f", EntryType::kHardlink)}, "f");
}

TEST(LayerTreeTest, HiddenPathsAreOmitted) {
  TreeOptions options;
  options.hidden_paths = {"stargz.index.json", ".prefetch.landmark", ".no.prefetch.landmark"};
  auto tree =
      MustBuild({File("stargz.index.json", 10), File(".prefetch.landmark", 1),
                 File(".no.prefetch.landmark", 1), File("bin/stargz.index.json"), File("a")},
                options);
  ASSERT_NE(tree, nullptr);
  EXPECT_THAT(Names(*tree, *tree->root()), ElementsAre("a", "bin"));
  EXPECT_NE(Find(*tree, "bin/stargz.index.json"), nullptr);
}

TEST(LayerTreeTest, UntrustedPathsAreRejected) {
  struct Case {
    std::string path;
    std::string why;
  };
  std::vector<Case> cases = {
      {"/abs", "absolute"},
      {"a/../b", "\"..\""},
      {"..", "\"..\""},
      {"./a", "\".\""},
      {"a/.", "\".\""},
      {"a//b", "empty path component"},
      {"a/", "empty path component"},
      {std::string("a\0b", 3), "NUL"},
      {std::string(256, 'n'), "longer than 255"},
      {"d/" + std::string(256, 'n') + "/f", "longer than 255"},
      {".wh.", "whiteout without a name"},
      {"d/.wh..", "whiteout without a name"},
  };
  for (const Case& c : cases) {
    auto r = LayerTree::Build({File(c.path)});
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument)) << c.path;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.why)) << c.path;
  }
  // 255 bytes is fine.
  EXPECT_TRUE(LayerTree::Build({File(std::string(255, 'n'))}).ok());
}

TEST(LayerTreeTest, EntryBelowNonDirectoryIsRejected) {
  for (EntryType t : {EntryType::kSymlink, EntryType::kRegular, EntryType::kFifo}) {
    LayerEntry a = t == EntryType::kSymlink ? Link("a", "/etc", t) : Special("a", t);
    auto r = LayerTree::Build({a, File("a/b")});
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"a/b\""));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("not a directory"));
  }
  // Through a hard link name too.
  EXPECT_THAT(LayerTree::Build({File("f"), Link("g", "f", EntryType::kHardlink), File("g/x")}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LayerTreeTest, OtherBadEntriesAreRejected) {
  EXPECT_THAT(LayerTree::Build({File("")}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(LayerTree::Build({Link("s", "", EntryType::kSymlink)}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(LayerTree::Build({Link("s", std::string(4096, 'x'), EntryType::kSymlink)}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(LayerTree::Build({Link("s", std::string("a\0b", 3), EntryType::kSymlink)}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  LayerEntry x = File("x");
  x.xattrs = {{"", "v"}};
  EXPECT_THAT(LayerTree::Build({x}), StatusIs(absl::StatusCode::kInvalidArgument));
  x.xattrs = {{std::string("us\0er", 5), "v"}};
  EXPECT_THAT(LayerTree::Build({x}), StatusIs(absl::StatusCode::kInvalidArgument));
  x.xattrs = {{"user.big", std::string(65537, 'v')}};
  EXPECT_THAT(LayerTree::Build({x}), StatusIs(absl::StatusCode::kInvalidArgument));
  x.xattrs = {{"user.max", std::string(65536, 'v')}};
  EXPECT_TRUE(LayerTree::Build({x}).ok());
}

TEST(LayerTreeTest, TooManyEntriesAreRejected) {
  TreeOptions options;
  options.max_entries = 3;
  EXPECT_TRUE(LayerTree::Build({File("a"), File("b"), File("c")}, options).ok());
  auto r = LayerTree::Build({File("a"), File("b"), File("c"), File("d")}, options);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(TreeOptions().max_entries, 50'000'000u);
}

TEST(LayerTreeTest, LookupAndGet) {
  std::vector<LayerEntry> entries;
  for (int i = 0; i < 1000; ++i) entries.push_back(File(absl::StrCat("d/f", i)));
  entries.push_back(File("plain"));
  auto tree = MustBuild(entries);
  ASSERT_NE(tree, nullptr);
  const Node* d = Find(*tree, "d");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->child_count, 1000u);
  for (int i = 0; i < 1000; ++i) {
    const Node* n = tree->Lookup(d->ino, absl::StrCat("f", i));
    ASSERT_NE(n, nullptr) << i;
    EXPECT_EQ(tree->Get(n->ino), n);
  }
  for (size_t i = 1; i < d->child_count; ++i) {
    EXPECT_LT(tree->Child(*d, i - 1).name, tree->Child(*d, i).name);
  }
  EXPECT_EQ(tree->Lookup(d->ino, "f1000"), nullptr);
  EXPECT_EQ(tree->Lookup(d->ino, ""), nullptr);
  EXPECT_EQ(tree->Lookup(d->ino, "f"), nullptr);
  EXPECT_EQ(tree->Lookup(Find(*tree, "plain")->ino, "x"), nullptr);  // not a directory
  EXPECT_EQ(tree->Lookup(99999, "x"), nullptr);
  EXPECT_EQ(tree->Lookup(0, "x"), nullptr);
}

// The figure quoted for "memory per entry": a 50,000-entry layer of files
// with sha256 digests in 500 directories.
TEST(LayerTreeTest, MemoryPerEntry) {
  constexpr int kDirs = 500;
  constexpr int kFilesPerDir = 99;
  std::vector<LayerEntry> entries;
  size_t name_bytes = 0;
  for (int d = 0; d < kDirs; ++d) {
    std::string dir = absl::StrCat("usr/lib/pkg", d);
    entries.push_back(Dir(dir));
    name_bytes += absl::StrCat("pkg", d).size();
    for (int f = 0; f < kFilesPerDir; ++f) {
      std::string name = absl::StrCat("module_", f, ".so");
      LayerEntry e = File(absl::StrCat(dir, "/", name), 1000, uint64_t(d) * 100000 + f * 1000);
      e.digest = "sha256:" + std::string(64, "0123456789abcdef"[f % 16]);
      name_bytes += name.size();
      entries.push_back(std::move(e));
    }
  }
  const size_t n = entries.size();
  ASSERT_EQ(n, 50000u);
  auto tree = MustBuild(std::move(entries));
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(tree->node_count(), n + 3);  // + root, usr, usr/lib
  const double per_entry = double(tree->MemoryBytes()) / n;
  const double per_entry_beyond_names = double(tree->MemoryBytes() - name_bytes) / n;
  std::printf(
      "LayerTree memory: %zu bytes for %zu entries = %.1f bytes/entry "
      "(%.1f beyond names; sizeof(Node) = %zu)\n",
      tree->MemoryBytes(), n, per_entry, per_entry_beyond_names, sizeof(Node));
  // Node + child slot + digest text ("sha256:" + 64 hex) + NULs.
  EXPECT_LT(per_entry_beyond_names, 200.0);
}

}  // namespace
}  // namespace accel::fuse
