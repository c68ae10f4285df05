// Real FUSE mounts checked with plain syscalls. Skipped unless the test runs
// as root and can open /dev/fuse. Every test unmounts what it mounted, and
// TearDown fails the test if anything is left mounted below its directory.

#include "fuse/server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "fuse/mountinfo.h"
#include "fuse/protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::fuse {
namespace {

using ::accel::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;

bool CanMountFuse(std::string* why) {
  if (geteuid() != 0) {
    *why = "FUSE mount tests need root";
    return false;
  }
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    *why = absl::StrCat("cannot open /dev/fuse: ", strerror(errno));
    return false;
  }
  close(fd);
  return true;
}

size_t CountDir(const char* dir) {
  size_t n = 0;
  DIR* d = opendir(dir);
  if (d == nullptr) return 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}
size_t ThreadCount() { return CountDir("/proc/self/task"); }
size_t FdCount() { return CountDir("/proc/self/fd"); }

// Mount points at or below `dir` in this mount namespace, deepest last.
std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  absl::StatusOr<std::vector<MountInfoEntry>> mounts = ReadMountInfo();
  if (!mounts.ok()) return out;
  for (const MountInfoEntry& e : *mounts) {
    if (e.mountpoint == dir || absl::StartsWith(e.mountpoint, dir + "/")) {
      out.push_back(e.mountpoint);
    }
  }
  return out;
}

// FuseServer::Mount of `tree` over `source` on the local pool.
absl::Status MountLayer(FuseServer& server, const std::string& mp,
                        std::shared_ptr<const LayerTree> tree, std::shared_ptr<FileSource> source,
                        const std::string& fsname) {
  return server
      .Mount(mp, FuseServer::Layer{std::move(tree), std::move(source)}, FuseServer::Pool::kLocal,
             fsname)
      .status();
}

const MountInfoEntry* FindMount(const std::vector<MountInfoEntry>& mounts, const std::string& mp) {
  return TopMountAt(mounts, mp);
}

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", strerror(errno)));
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("read ", path, ": ", strerror(err)));
    }
    if (n == 0) break;
    out.append(buf, n);
  }
  close(fd);
  return out;
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return {"<opendir failed: " + std::string(strerror(errno)) + ">"};
  while (dirent* e = readdir(d)) names.emplace_back(e->d_name);
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

int ErrnoOf(int rc) { return rc < 0 ? errno : 0; }

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(gen() & 0xff);
  return s;
}

// A layer under construction: entries plus the data file their contents go to.
class TestLayer {
 public:
  LayerEntry& AddFile(const std::string& path, const std::string& content, uint32_t mode = 0644) {
    if (data_.size() % 3 == 0) data_.push_back('#');  // keep offsets unaligned
    LayerEntry e;
    e.path = path;
    e.type = EntryType::kRegular;
    e.mode = mode;
    e.size = content.size();
    e.data_offset = data_.size();
    data_ += content;
    entries_.push_back(std::move(e));
    return entries_.back();
  }
  LayerEntry& Add(const std::string& path, EntryType type, uint32_t mode = 0755,
                  const std::string& link = "") {
    LayerEntry e;
    e.path = path;
    e.type = type;
    e.mode = mode;
    e.link_target = link;
    entries_.push_back(std::move(e));
    return entries_.back();
  }

  std::shared_ptr<const LayerTree> Tree() const {
    auto t = LayerTree::Build(std::vector<LayerEntry>(entries_.begin(), entries_.end()));
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::shared_ptr<const LayerTree>(std::move(t).value()) : nullptr;
  }
  std::shared_ptr<FileSource> Source(const std::string& data_path) const {
    int fd = open(data_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, data_.data(), data_.size()), static_cast<ssize_t>(data_.size()));
    return MakeDataFileSource(UniqueFd(fd), data_.size());
  }

 private:
  std::deque<LayerEntry> entries_;  // references from Add stay valid
  std::string data_;
};

// Delegates reads but offers no descriptor: the server copies.
class NoSpliceSource : public FileSource {
 public:
  explicit NoSpliceSource(std::shared_ptr<FileSource> inner) : inner_(std::move(inner)) {}
  absl::StatusOr<size_t> ReadAt(const Node& node, uint64_t offset, char* buf, size_t len) override {
    reads_.fetch_add(1);
    return inner_->ReadAt(node, offset, buf, len);
  }
  std::atomic<int> reads_{0};

 private:
  std::shared_ptr<FileSource> inner_;
};

class FailingSource : public FileSource {
 public:
  absl::StatusOr<size_t> ReadAt(const Node&, uint64_t, char*, size_t) override {
    return absl::UnavailableError("registry unreachable");
  }
};

class FuseServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!CanMountFuse(&why)) GTEST_SKIP() << why;
    ASSERT_FALSE(tmp_.path().empty());
  }

  void TearDown() override {
    if (tmp_.path().empty()) return;
    std::vector<std::string> left = MountsUnder(tmp_.path());
    EXPECT_THAT(left, ::testing::IsEmpty()) << "left mounted: " << absl::StrJoin(left, " ");
    for (auto it = left.rbegin(); it != left.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
  }

  std::string MakeDir(const std::string& name) {
    std::string p = tmp_.path() + "/" + name;
    EXPECT_EQ(mkdir(p.c_str(), 0755), 0) << p << ": " << strerror(errno);
    return p;
  }

  std::unique_ptr<FuseServer> StartServer(int threads = 4, int network_threads = 2) {
    auto s = FuseServer::Start(FuseServer::Options{threads, network_threads});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  accel::testing::TempDir tmp_;
};

TEST_F(FuseServerTest, ShowsEveryEntryTypeAsTheLayerSaysAndIsReadOnly) {
  TestLayer layer;
  LayerEntry& root = layer.Add("", EntryType::kDirectory, 0751);
  root.mtime_sec = 1000;
  LayerEntry& d = layer.Add("d", EntryType::kDirectory, 0750);
  d.uid = 5;
  d.gid = 6;
  d.mtime_sec = 2000;
  d.mtime_nsec = 500;
  LayerEntry& f = layer.AddFile("d/file", "hello world\n", 04755);
  f.uid = 1000;
  f.gid = 1001;
  f.mtime_sec = 1700000000;
  f.mtime_nsec = 123456789;
  f.xattrs = {{"user.x", "val"}, {"trusted.t", std::string("\0\1\2", 3)}};
  layer.AddFile("d/empty", "");
  layer.Add("d/link", EntryType::kHardlink, 0, "d/file");
  LayerEntry& sym = layer.Add("sym", EntryType::kSymlink, 0777, "d/file");
  sym.uid = 3;
  sym.mtime_sec = 42;
  LayerEntry& chr = layer.Add("chr", EntryType::kCharDevice, 0666);
  chr.dev_major = 1;
  chr.dev_minor = 3;
  LayerEntry& blk = layer.Add("blk", EntryType::kBlockDevice, 0660);
  blk.dev_major = 259;
  blk.dev_minor = 70000;
  layer.Add("fifo", EntryType::kFifo, 0600);
  LayerEntry& wh = layer.AddFile(".wh.gone", "");
  wh.uid = 7;
  wh.gid = 8;
  layer.AddFile("opq/.wh..wh..opq", "");
  layer.AddFile("opq/new", "new\n");
  auto tree = layer.Tree();
  ASSERT_NE(tree, nullptr);

  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string mp = MakeDir("mnt");
  ASSERT_OK(
      MountLayer(*server, mp, tree, layer.Source(tmp_.path() + "/data"), "accel-test:sha256:abcd"));
  absl::Cleanup unmount = [&] { server->Unmount(mp).IgnoreError(); };
  EXPECT_EQ(server->mount_count(), 1u);
  EXPECT_THAT(server->Mountpoints(), ElementsAre(mp));

  // /proc/self/mountinfo: type, source, read-only, no nosuid/nodev.
  {
    auto mounts = ReadMountInfo();
    ASSERT_OK(mounts.status());
    const MountInfoEntry* e = FindMount(*mounts, mp);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->fstype, "fuse.accel");
    EXPECT_EQ(e->source, "accel-test:sha256:abcd");
    std::string line = ReadAll("/proc/self/mountinfo").value();
    for (absl::string_view l : absl::StrSplit(line, '\n')) {
      if (absl::StrContains(l, absl::StrCat(" ", mp, " "))) {
        EXPECT_THAT(std::string(l), HasSubstr(" ro,"));
        EXPECT_THAT(std::string(l), Not(HasSubstr("nosuid")));
        EXPECT_THAT(std::string(l), Not(HasSubstr("nodev")));
        EXPECT_THAT(std::string(l), HasSubstr("allow_other"));
        EXPECT_THAT(std::string(l), HasSubstr("default_permissions"));
      }
    }
    // Readahead raised to the largest read request.
    absl::StatusOr<std::string> ra =
        ReadAll(absl::StrCat("/sys/class/bdi/", e->dev, "/read_ahead_kb"));
    if (ra.ok()) {
      EXPECT_EQ(*ra, "1024\n");
    }
  }

  struct stat st;
  ASSERT_EQ(lstat(mp.c_str(), &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_mode, S_IFDIR | 0751u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1000);
  EXPECT_EQ(st.st_nlink, 4u);  // ., .., d, opq

  ASSERT_EQ(lstat((mp + "/d").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, S_IFDIR | 0750u);
  EXPECT_EQ(st.st_uid, 5u);
  EXPECT_EQ(st.st_gid, 6u);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 500);
  EXPECT_EQ(st.st_nlink, 2u);

  struct stat fst;
  ASSERT_EQ(lstat((mp + "/d/file").c_str(), &fst), 0);
  EXPECT_EQ(fst.st_mode, S_IFREG | 04755u);
  EXPECT_EQ(fst.st_uid, 1000u);
  EXPECT_EQ(fst.st_gid, 1001u);
  EXPECT_EQ(fst.st_size, 12);
  EXPECT_EQ(fst.st_mtim.tv_sec, 1700000000);
  EXPECT_EQ(fst.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(fst.st_nlink, 2u);
  EXPECT_EQ(fst.st_blocks, 1);
  EXPECT_EQ(fst.st_blksize, 4096);
  ASSERT_EQ(lstat((mp + "/d/link").c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, fst.st_ino);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(lstat((mp + "/d/empty").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_NE(st.st_ino, fst.st_ino);

  ASSERT_EQ(lstat((mp + "/sym").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, S_IFLNK | 0777u);
  EXPECT_EQ(st.st_size, 6);
  EXPECT_EQ(st.st_uid, 3u);
  EXPECT_EQ(st.st_mtim.tv_sec, 42);
  char target[64] = {};
  EXPECT_EQ(readlink((mp + "/sym").c_str(), target, sizeof(target)), 6);
  EXPECT_STREQ(target, "d/file");

  ASSERT_EQ(lstat((mp + "/chr").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, S_IFCHR | 0666u);
  EXPECT_EQ(major(st.st_rdev), 1u);
  EXPECT_EQ(minor(st.st_rdev), 3u);
  ASSERT_EQ(lstat((mp + "/blk").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, S_IFBLK | 0660u);
  EXPECT_EQ(major(st.st_rdev), 259u);
  EXPECT_EQ(minor(st.st_rdev), 70000u);
  ASSERT_EQ(lstat((mp + "/fifo").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, S_IFIFO | 0600u);
  ASSERT_EQ(lstat((mp + "/gone").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, static_cast<mode_t>(S_IFCHR));
  EXPECT_EQ(st.st_rdev, 0u);
  EXPECT_EQ(st.st_uid, 7u);
  EXPECT_EQ(st.st_gid, 8u);
  // Negative lookups, twice (the second is answered from the kernel's cache).
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(ErrnoOf(lstat((mp + "/.wh.gone").c_str(), &st)), ENOENT);
    EXPECT_EQ(ErrnoOf(lstat((mp + "/nothing").c_str(), &st)), ENOENT);
  }
  EXPECT_EQ(ErrnoOf(lstat((mp + "/d/file/x").c_str(), &st)), ENOTDIR);

  EXPECT_EQ(ReadAll(mp + "/d/file").value_or("?"), "hello world\n");
  EXPECT_EQ(ReadAll(mp + "/d/link").value_or("?"), "hello world\n");
  EXPECT_EQ(ReadAll(mp + "/sym").value_or("?"), "hello world\n");
  EXPECT_EQ(ReadAll(mp + "/d/empty").value_or("?"), "");
  EXPECT_EQ(ReadAll(mp + "/opq/new").value_or("?"), "new\n");

  EXPECT_THAT(ListDir(mp), ElementsAre(".", "..", "blk", "chr", "d", "fifo", "gone", "opq", "sym"));
  EXPECT_THAT(ListDir(mp + "/d"), ElementsAre(".", "..", "empty", "file", "link"));
  EXPECT_THAT(ListDir(mp + "/opq"), ElementsAre(".", "..", "new"));
  // d_ino and d_type from readdir.
  {
    DIR* dir = opendir((mp + "/d").c_str());
    ASSERT_NE(dir, nullptr);
    while (dirent* e = readdir(dir)) {
      if (std::string(e->d_name) == "file") {
        EXPECT_EQ(e->d_ino, fst.st_ino);
        EXPECT_EQ(e->d_type, DT_REG);
      }
    }
    closedir(dir);
  }

  // Extended attributes, with the size-probe and ERANGE rules.
  const std::string file = mp + "/d/file";
  char val[64];
  EXPECT_EQ(lgetxattr(file.c_str(), "user.x", nullptr, 0), 3);
  ASSERT_EQ(lgetxattr(file.c_str(), "user.x", val, sizeof(val)), 3);
  EXPECT_EQ(std::string(val, 3), "val");
  EXPECT_EQ(lgetxattr(file.c_str(), "user.x", val, 2), -1);
  EXPECT_EQ(errno, ERANGE);
  ASSERT_EQ(lgetxattr(file.c_str(), "trusted.t", val, sizeof(val)), 3);
  EXPECT_EQ(std::string(val, 3), std::string("\0\1\2", 3));
  EXPECT_EQ(lgetxattr(file.c_str(), "user.none", val, sizeof(val)), -1);
  EXPECT_EQ(errno, ENODATA);
  char list[256];
  const std::string want_list("trusted.t\0user.x\0", 17);
  EXPECT_EQ(llistxattr(file.c_str(), nullptr, 0), 17);
  ASSERT_EQ(llistxattr(file.c_str(), list, sizeof(list)), 17);
  EXPECT_EQ(std::string(list, 17), want_list);
  EXPECT_EQ(llistxattr(file.c_str(), list, 5), -1);
  EXPECT_EQ(errno, ERANGE);
  EXPECT_EQ(llistxattr((mp + "/d/empty").c_str(), list, sizeof(list)), 0);
  ASSERT_EQ(lgetxattr((mp + "/opq").c_str(), "trusted.overlay.opaque", val, sizeof(val)), 1);
  EXPECT_EQ(val[0], 'y');
  EXPECT_EQ(lgetxattr((mp + "/d").c_str(), "trusted.overlay.opaque", val, sizeof(val)), -1);
  EXPECT_EQ(errno, ENODATA);

  // Read-only.
  EXPECT_EQ(ErrnoOf(open(file.c_str(), O_WRONLY | O_CLOEXEC)), EROFS);
  EXPECT_EQ(ErrnoOf(open(file.c_str(), O_RDWR | O_CLOEXEC)), EROFS);
  EXPECT_EQ(ErrnoOf(open((mp + "/new").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644)), EROFS);
  EXPECT_EQ(ErrnoOf(mkdir((mp + "/newdir").c_str(), 0755)), EROFS);
  EXPECT_EQ(ErrnoOf(unlink(file.c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(rmdir((mp + "/opq").c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(rename(file.c_str(), (mp + "/d/moved").c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(chmod(file.c_str(), 0600)), EROFS);
  EXPECT_EQ(ErrnoOf(truncate(file.c_str(), 0)), EROFS);
  EXPECT_EQ(ErrnoOf(symlink("x", (mp + "/newlink").c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(lsetxattr(file.c_str(), "user.y", "v", 1, 0)), EROFS);
  EXPECT_EQ(ErrnoOf(lremovexattr(file.c_str(), "user.x")), EROFS);

  struct statvfs vfs;
  ASSERT_EQ(statvfs(mp.c_str(), &vfs), 0);
  EXPECT_EQ(vfs.f_files, tree->node_count());
  EXPECT_EQ(vfs.f_bsize, 4096u);
  EXPECT_EQ(vfs.f_blocks, 1u);  // 12 + 4 bytes of files, in 4 KiB blocks
  EXPECT_TRUE(vfs.f_flag & ST_RDONLY);

  std::move(unmount).Cancel();
  ASSERT_OK(server->Unmount(mp));
  EXPECT_EQ(server->mount_count(), 0u);
  EXPECT_THAT(MountsUnder(mp), ::testing::IsEmpty());
  EXPECT_OK(server->Unmount(mp));  // nothing of ours there any more
}

// Reads `path` sequentially and at random offsets and compares with `want`.
void CheckContent(const std::string& path, const std::string& want, uint32_t seed) {
  absl::StatusOr<std::string> all = ReadAll(path);
  ASSERT_OK(all.status());
  ASSERT_EQ(all->size(), want.size());
  EXPECT_TRUE(*all == want) << path << " differs";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::mt19937 gen(seed);
  std::string buf(600 << 10, '\0');
  for (int i = 0; i < 300; ++i) {
    const size_t off = gen() % (want.size() + 100);
    const size_t len = 1 + gen() % buf.size();
    ssize_t n = pread(fd, buf.data(), len, static_cast<off_t>(off));
    ASSERT_GE(n, 0) << strerror(errno);
    const size_t expect = off >= want.size() ? 0 : std::min(len, want.size() - off);
    ASSERT_EQ(static_cast<size_t>(n), expect) << "off " << off << " len " << len;
    ASSERT_EQ(0, memcmp(buf.data(), want.data() + std::min(off, want.size()), n))
        << "off " << off << " len " << len;
  }
  close(fd);
}

TEST_F(FuseServerTest, ReadsFilesByteForByteWithAndWithoutSplice) {
  const std::string big = RandomBytes((6 << 20) + 123, 1);
  const std::string small = "small file\n";
  const std::string mid = RandomBytes(3 * 4096 + 5, 2);
  TestLayer layer;
  layer.AddFile("small", small);
  layer.AddFile("big", big);
  layer.AddFile("mid", mid);
  LayerEntry& broken = layer.AddFile("broken", "x");
  broken.data_offset = 1ull << 40;  // outside the data file
  auto tree = layer.Tree();
  ASSERT_NE(tree, nullptr);
  std::shared_ptr<FileSource> data = layer.Source(tmp_.path() + "/data");
  auto copying = std::make_shared<NoSpliceSource>(data);

  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string a = MakeDir("splice");
  const std::string b = MakeDir("copy");
  const std::string c = MakeDir("failing");
  ASSERT_OK(MountLayer(*server, a, tree, data, "accel-test:a"));
  absl::Cleanup ua = [&] { server->Unmount(a).IgnoreError(); };
  ASSERT_OK(MountLayer(*server, b, tree, copying, "accel-test:b"));
  absl::Cleanup ub = [&] { server->Unmount(b).IgnoreError(); };
  ASSERT_OK(MountLayer(*server, c, tree, std::make_shared<FailingSource>(), "accel-test:c"));
  absl::Cleanup uc = [&] { server->Unmount(c).IgnoreError(); };

  for (const std::string& mp : {a, b}) {
    SCOPED_TRACE(mp);
    EXPECT_EQ(ReadAll(mp + "/small").value_or("?"), small);
    CheckContent(mp + "/mid", mid, 3);
    CheckContent(mp + "/big", big, 4);
    // A range outside the data file is an I/O error, not garbage.
    EXPECT_THAT(ReadAll(mp + "/broken"), StatusIs(absl::StatusCode::kInternal));
    int fd = open((mp + "/broken").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    char ch;
    EXPECT_EQ(read(fd, &ch, 1), -1);
    EXPECT_EQ(errno, EIO);
    close(fd);
  }
  EXPECT_GT(copying->reads_.load(), 0);
  // A source that fails gives EIO; metadata still works.
  int fd = open((c + "/big").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  char buf[4096];
  EXPECT_EQ(read(fd, buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, EIO);
  close(fd);
  struct stat st;
  ASSERT_EQ(stat((c + "/big").c_str(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), big.size());
}

TEST_F(FuseServerTest, ConcurrentReadersAcrossMounts) {
  const std::string big = RandomBytes(4 << 20, 9);
  TestLayer layer;
  layer.AddFile("big", big);
  auto tree = layer.Tree();
  ASSERT_NE(tree, nullptr);
  auto source = layer.Source(tmp_.path() + "/data");
  auto server = StartServer(3);
  ASSERT_NE(server, nullptr);
  std::vector<std::string> mps;
  absl::Cleanup unmount_all = [&] {
    for (const std::string& mp : mps) server->Unmount(mp).IgnoreError();
  };
  for (int i = 0; i < 4; ++i) {
    const std::string mp = MakeDir(absl::StrCat("m", i));
    ASSERT_OK(MountLayer(*server, mp, tree, source, "accel-test"));
    mps.push_back(mp);
  }
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&, t] {
      absl::StatusOr<std::string> got = ReadAll(mps[t % mps.size()] + "/big");
      if (!got.ok() || *got != big) bad.fetch_add(1);
    });
  }
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(FuseServerTest, OverlayHonoursWhiteoutsAndOpaqueDirsAndBlocksUnmount) {
  // The lower layer: a plain directory.
  const std::string lower = MakeDir("lower");
  for (const char* d : {"dir", "opq", "gone-dir"}) MakeDir(std::string("lower/") + d);
  for (const char* f : {"gone", "keep", "dir/x", "opq/old", "gone-dir/f"}) {
    int fd = open((lower + "/" + f).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "lower\n", 6), 6);
    close(fd);
  }
  // The FUSE layer on top of it.
  TestLayer layer;
  layer.AddFile(".wh.gone", "");
  layer.AddFile(".wh.gone-dir", "");
  layer.AddFile("opq/.wh..wh..opq", "");
  layer.AddFile("opq/new", "upper\n");
  layer.AddFile("dir/y", "upper\n");
  auto tree = layer.Tree();
  ASSERT_NE(tree, nullptr);

  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const size_t threads = ThreadCount();
  const std::string fuse_mp = MakeDir("layer");
  ASSERT_OK(
      MountLayer(*server, fuse_mp, tree, layer.Source(tmp_.path() + "/data"), "accel-test:ovl"));
  absl::Cleanup unmount_fuse = [&] { server->Unmount(fuse_mp).IgnoreError(); };

  const std::string upper = MakeDir("upper");
  const std::string work = MakeDir("work");
  const std::string merged = MakeDir("merged");
  const std::string opts =
      absl::StrCat("lowerdir=", fuse_mp, ":", lower, ",upperdir=", upper, ",workdir=", work);
  ASSERT_EQ(mount("overlay", merged.c_str(), "overlay", 0, opts.c_str()), 0) << strerror(errno);
  bool overlay_mounted = true;
  absl::Cleanup unmount_overlay = [&] {
    if (overlay_mounted) umount2(merged.c_str(), MNT_DETACH);
  };

  struct stat st;
  EXPECT_EQ(ErrnoOf(lstat((merged + "/gone").c_str(), &st)), ENOENT);
  EXPECT_EQ(ErrnoOf(lstat((merged + "/gone-dir").c_str(), &st)), ENOENT);
  EXPECT_EQ(ReadAll(merged + "/keep").value_or("?"), "lower\n");
  EXPECT_THAT(ListDir(merged + "/dir"), ElementsAre(".", "..", "x", "y"));
  EXPECT_EQ(ReadAll(merged + "/dir/y").value_or("?"), "upper\n");
  EXPECT_THAT(ListDir(merged + "/opq"), ElementsAre(".", "..", "new"));
  EXPECT_EQ(ReadAll(merged + "/opq/new").value_or("?"), "upper\n");
  EXPECT_THAT(ListDir(merged), ElementsAre(".", "..", "dir", "keep", "opq"));

  // The overlay uses the layer: Unmount refuses and the layer keeps working.
  EXPECT_THAT(server->Unmount(fuse_mp), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(server->mount_count(), 1u);
  EXPECT_EQ(ReadAll(merged + "/opq/new").value_or("?"), "upper\n");

  ASSERT_EQ(umount2(merged.c_str(), 0), 0) << strerror(errno);
  overlay_mounted = false;
  EXPECT_OK(server->Unmount(fuse_mp));
  EXPECT_EQ(server->mount_count(), 0u);
  EXPECT_EQ(ThreadCount(), threads);
}

TEST_F(FuseServerTest, UnmountRefusesWhileAFileIsOpenOrAMountSitsInside) {
  TestLayer layer;
  layer.AddFile("f", "data");
  layer.Add("sub", EntryType::kDirectory);
  auto tree = layer.Tree();
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string mp = MakeDir("mnt");
  ASSERT_OK(MountLayer(*server, mp, tree, layer.Source(tmp_.path() + "/data"), "accel-test"));
  absl::Cleanup unmount = [&] { server->Unmount(mp).IgnoreError(); };

  int fd = open((mp + "/f").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_THAT(server->Unmount(mp), StatusIs(absl::StatusCode::kFailedPrecondition));
  close(fd);

  // A bind mount of the layer elsewhere also keeps it busy.
  const std::string bind = MakeDir("bind");
  ASSERT_EQ(mount(mp.c_str(), bind.c_str(), nullptr, MS_BIND, nullptr), 0) << strerror(errno);
  EXPECT_THAT(server->Unmount(mp), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_EQ(umount2(bind.c_str(), 0), 0);

  EXPECT_OK(server->Unmount(mp));
  EXPECT_THAT(MountsUnder(mp), ::testing::IsEmpty());
}

TEST_F(FuseServerTest, ThreadsDoNotGrowWithMounts) {
  auto server = StartServer(4, 2);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->thread_count(), 6);
  const size_t threads = ThreadCount();
  constexpr int kLayers = 64;
  std::vector<std::string> mps;
  absl::Cleanup unmount_all = [&] {
    for (const std::string& mp : mps) server->Unmount(mp).IgnoreError();
  };
  for (int i = 0; i < kLayers; ++i) {
    TestLayer layer;
    layer.AddFile("f", absl::StrCat("layer ", i, "\n"));
    layer.AddFile(absl::StrCat("dir", i, "/g"), RandomBytes(3 << 16, i));
    const std::string mp = MakeDir(absl::StrCat("l", i));
    ASSERT_OK(MountLayer(*server, mp, layer.Tree(),
                         layer.Source(absl::StrCat(tmp_.path(), "/d", i)),
                         absl::StrCat("accel-test:", i)));
    mps.push_back(mp);
  }
  EXPECT_EQ(server->mount_count(), static_cast<size_t>(kLayers));
  EXPECT_EQ(server->Mountpoints().size(), static_cast<size_t>(kLayers));
  for (int i = 0; i < kLayers; ++i) {
    EXPECT_EQ(ReadAll(mps[i] + "/f").value_or("?"), absl::StrCat("layer ", i, "\n"));
    EXPECT_EQ(ReadAll(absl::StrCat(mps[i], "/dir", i, "/g")).value_or("?"),
              RandomBytes(3 << 16, i));
  }
  EXPECT_EQ(ThreadCount(), threads);
  for (const std::string& mp : mps) EXPECT_OK(server->Unmount(mp));
  EXPECT_EQ(server->mount_count(), 0u);
  EXPECT_EQ(ThreadCount(), threads);
}

TEST_F(FuseServerTest, MountUnmountCyclesLeakNoDescriptors) {
  const std::string big = RandomBytes(2 << 20, 5);
  TestLayer layer;
  layer.AddFile("big", big);
  auto tree = layer.Tree();
  auto source = layer.Source(tmp_.path() + "/data");
  auto server = StartServer(4);
  ASSERT_NE(server, nullptr);
  const std::string mp = MakeDir("mnt");
  size_t fds_after_first = 0;
  for (int cycle = 0; cycle < 6; ++cycle) {
    ASSERT_OK(MountLayer(*server, mp, tree, source, "accel-test"));
    absl::Cleanup unmount = [&] { server->Unmount(mp).IgnoreError(); };
    // Several concurrent readers so that every worker serves (and splices).
    std::vector<std::thread> readers;
    std::atomic<int> bad{0};
    for (int t = 0; t < 6; ++t) {
      readers.emplace_back([&, t] {
        int fd = open((mp + "/big").c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
        if (fd < 0) fd = open((mp + "/big").c_str(), O_RDONLY | O_CLOEXEC);
        std::string buf(1 << 20, '\0');
        for (size_t off = t * 4096; off < big.size(); off += buf.size()) {
          ssize_t n = pread(fd, buf.data(), buf.size(), off);
          if (n <= 0 || memcmp(buf.data(), big.data() + off, n) != 0) bad.fetch_add(1);
        }
        close(fd);
      });
    }
    for (std::thread& t : readers) t.join();
    EXPECT_EQ(bad.load(), 0);
    std::move(unmount).Cancel();
    ASSERT_OK(server->Unmount(mp));
    if (cycle == 0) fds_after_first = FdCount();
  }
  EXPECT_LE(FdCount(), fds_after_first) << "descriptors leak per mount";
}

TEST_F(FuseServerTest, DeadMountLeftByACrashedServerIsReplaced) {
  const std::string mp = MakeDir("mnt");
  // A FUSE mount whose server is gone: mount, then close the descriptor.
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const std::string data = absl::StrCat("fd=", fd, ",rootmode=40000,user_id=0,group_id=0");
  ASSERT_EQ(mount("dead-server", mp.c_str(), "fuse.accel", MS_RDONLY, data.c_str()), 0)
      << strerror(errno);
  close(fd);
  absl::Cleanup detach_dead = [&] {
    for (const std::string& m : MountsUnder(mp)) umount2(m.c_str(), MNT_DETACH);
  };
  struct stat st;
  ASSERT_EQ(ErrnoOf(stat(mp.c_str(), &st)), ENOTCONN);

  TestLayer layer;
  layer.AddFile("f", "alive\n");
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_OK(
      MountLayer(*server, mp, layer.Tree(), layer.Source(tmp_.path() + "/data"), "accel-test"));
  absl::Cleanup unmount = [&] { server->Unmount(mp).IgnoreError(); };
  EXPECT_EQ(ReadAll(mp + "/f").value_or("?"), "alive\n");
  auto mounts = ReadMountInfo();
  ASSERT_OK(mounts.status());
  int at_mp = 0;
  for (const MountInfoEntry& e : *mounts) at_mp += e.mountpoint == mp;
  EXPECT_EQ(at_mp, 1);  // the dead mount was detached, not stacked upon
  EXPECT_OK(server->Unmount(mp));
  EXPECT_THAT(MountsUnder(mp), ::testing::IsEmpty());
}

TEST_F(FuseServerTest, ExternalUnmountIsNoticed) {
  TestLayer layer;
  layer.AddFile("f", "x");
  auto tree = layer.Tree();
  auto source = layer.Source(tmp_.path() + "/data");
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string mp = MakeDir("mnt");
  ASSERT_OK(MountLayer(*server, mp, tree, source, "accel-test"));
  absl::Cleanup unmount = [&] { server->Unmount(mp).IgnoreError(); };
  EXPECT_EQ(ReadAll(mp + "/f").value_or("?"), "x");
  ASSERT_EQ(umount2(mp.c_str(), 0), 0) << strerror(errno);
  EXPECT_EQ(server->mount_count(), 1u);
  EXPECT_OK(server->Unmount(mp));
  EXPECT_EQ(server->mount_count(), 0u);
  // The path can be mounted again.
  ASSERT_OK(MountLayer(*server, mp, tree, source, "accel-test"));
  EXPECT_EQ(ReadAll(mp + "/f").value_or("?"), "x");
  EXPECT_OK(server->Unmount(mp));
}

// A restart: one server mounts and goes away leaving the mount; a reader
// blocks meanwhile; a second server adopts the kept descriptor with the
// negotiated parameters (no INIT) and serves the reader. Then Fail makes
// reads EIO, never an empty file.
TEST_F(FuseServerTest, AdoptedConnectionServesWaitingReadersWithoutInit) {
  TestLayer layer;
  layer.AddFile("f", "adopted\n");
  auto tree = layer.Tree();
  auto source = layer.Source(tmp_.path() + "/data");
  const std::string mp = MakeDir("mnt");
  FuseServer::Options keep{2, 1, /*unmount_on_destroy=*/false};
  auto first = FuseServer::Start(keep);
  ASSERT_OK(first.status());
  ASSERT_OK_AND_ASSIGN(proto::ConnParams conn,
                       (*first)->Mount(mp, {tree, source}, FuseServer::Pool::kLocal, "accel-test"));
  EXPECT_TRUE(conn.initialized());
  ASSERT_OK_AND_ASSIGN(UniqueFd kept, (*first)->DupDevice(mp));
  first->reset();  // the "daemon" exits; the kept descriptor holds the connection

  std::atomic<bool> done{false};
  std::string got;
  std::thread reader([&] {
    got = ReadAll(mp + "/f").value_or("<error>");
    done = true;
  });
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(done) << "the reader waits while nobody serves";

  auto second = FuseServer::Start(FuseServer::Options{2, 1});
  ASSERT_OK(second.status());
  ASSERT_OK((*second)->Adopt(mp, std::move(kept), conn, FuseServer::Pool::kLocal));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(done) << "adopted but not served yet: still waiting";
  ASSERT_OK((*second)->Serve(mp, {tree, source}));
  reader.join();
  EXPECT_EQ(got, "adopted\n");

  ASSERT_OK((*second)->Fail(mp));
  int fd = open((mp + "/g").c_str(), O_RDONLY);
  EXPECT_LT(fd, 0);
  EXPECT_EQ(errno, EIO) << "an unservable layer is EIO, never empty";
  if (fd >= 0) close(fd);
  EXPECT_OK((*second)->Unmount(mp));
}

TEST_F(FuseServerTest, DestructorUnmountsEverything) {
  TestLayer layer;
  layer.AddFile("f", "x");
  auto tree = layer.Tree();
  auto source = layer.Source(tmp_.path() + "/data");
  const std::string a = MakeDir("a");
  const std::string b = MakeDir("b");
  {
    auto server = StartServer();
    ASSERT_NE(server, nullptr);
    ASSERT_OK(MountLayer(*server, a, tree, source, "accel-test"));
    ASSERT_OK(MountLayer(*server, b, tree, source, "accel-test"));
    EXPECT_EQ(ReadAll(a + "/f").value_or("?"), "x");
  }
  EXPECT_THAT(MountsUnder(a), ::testing::IsEmpty());
  EXPECT_THAT(MountsUnder(b), ::testing::IsEmpty());
}

TEST_F(FuseServerTest, MountArgumentErrors) {
  TestLayer layer;
  layer.AddFile("f", "x");
  auto tree = layer.Tree();
  auto source = layer.Source(tmp_.path() + "/data");
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(MountLayer(*server, "relative/path", tree, source, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(MountLayer(*server, tmp_.path() + "/missing", tree, source, "x"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(MountLayer(*server, tmp_.path() + "/data", tree, source, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(MountLayer(*server, tmp_.path(), nullptr, source, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(MountLayer(*server, tmp_.path(), tree, nullptr, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string mp = MakeDir("mnt");
  ASSERT_OK(MountLayer(*server, mp + "//", tree, source, "x"));  // normalized to `mp`
  absl::Cleanup unmount = [&] { server->Unmount(mp).IgnoreError(); };
  EXPECT_THAT(server->Mountpoints(), ElementsAre(mp));
  EXPECT_THAT(MountLayer(*server, mp, tree, source, "x"),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_OK(server->Unmount(tmp_.path() + "/never-mounted"));
  EXPECT_OK(server->Unmount(mp + "/"));
  EXPECT_EQ(server->mount_count(), 0u);
  EXPECT_THAT(FuseServer::Start(FuseServer::Options{0}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace accel::fuse
