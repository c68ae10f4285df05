// containerd's snapshotter conformance checks (testsuite), ported as named
// tests, plus accel's crash-consistency checks. Tests that mount need root;
// they are skipped otherwise.

#include "snapshotter/snapshotter.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::snapshotter {
namespace {

using ::accel::testing::StatusIs;
using ::accel::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// Mounts `mounts` at `target` like containerd's mount package does,
// including its trick for long lowerdir lists (chdir to the common parent and
// use relative paths).
absl::Status MountAll(const std::vector<Mount>& mounts, const std::string& target) {
  for (const Mount& m : mounts) {
    unsigned long flags = 0;
    std::vector<std::string> data;
    for (const std::string& o : m.options) {
      if (o == "ro") {
        flags |= MS_RDONLY;
      } else if (o == "rw") {
      } else if (o == "rbind") {
        flags |= MS_BIND | MS_REC;
      } else if (o == "bind") {
        flags |= MS_BIND;
      } else {
        data.push_back(o);
      }
    }
    std::string opts = absl::StrJoin(data, ",");
    std::string cwd;
    if (opts.size() >= 4096 - 1) {
      // Compact: lowerdir entries relative to their common parent.
      std::string& lower = data.back();
      std::vector<std::string> dirs = absl::StrSplit(lower.substr(9), ':');
      std::string common = dirs[0].substr(0, dirs[0].rfind("/snapshots/") + 11);
      for (std::string& d : dirs) d = d.substr(common.size());
      lower = "lowerdir=" + absl::StrJoin(dirs, ":");
      opts = absl::StrJoin(data, ",");
      char buf[4096];
      cwd = ::getcwd(buf, sizeof(buf));
      if (::chdir(common.c_str()) != 0) return absl::InternalError("chdir");
    }
    int rc = ::mount(m.source.c_str(), target.c_str(), m.type == "bind" ? nullptr : m.type.c_str(),
                     flags & ~MS_RDONLY, opts.c_str());
    int err = errno;
    if (!cwd.empty()) (void)!::chdir(cwd.c_str());
    if (rc != 0) return absl::InternalError(absl::StrCat("mount ", m.type, ": ", strerror(err)));
    if ((flags & MS_BIND) && (flags & MS_RDONLY)) {
      if (::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) !=
          0) {
        return absl::InternalError("remount ro");
      }
    } else if (flags & MS_RDONLY) {
      return absl::InternalError("unexpected ro overlay flag");
    }
  }
  return absl::OkStatus();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::trunc);
  out << data;
}

std::string ReadAll(const std::string& path) {
  auto s = ReadFile(path);
  return s.ok() ? *s : "<missing>";
}

class SnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path() + "/root";
    auto sn = Snapshotter::Open({root_});
    ASSERT_OK(sn.status());
    sn_ = std::move(*sn);
  }
  void TearDown() override {
    for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it)
      ::umount2(it->c_str(), MNT_DETACH);
  }

  bool CanMount() { return ::geteuid() == 0; }

  // Mounts `mounts` on a fresh directory and returns it.
  std::string MountAt(const std::vector<Mount>& mounts) {
    std::string dir = absl::StrCat(tmp_.path(), "/mnt", mounted_.size());
    EXPECT_OK(MkdirAll(dir, 0755));
    absl::Status s = MountAll(mounts, dir);
    EXPECT_OK(s);
    if (s.ok()) mounted_.push_back(dir);
    return dir;
  }
  void Unmount(const std::string& dir) {
    ASSERT_EQ(::umount2(dir.c_str(), 0), 0) << strerror(errno);
    mounted_.erase(std::find(mounted_.begin(), mounted_.end(), dir));
  }

  // Prepares key above parent, lets `fill` write into it, commits as name.
  void Layer(const std::string& name, const std::string& parent,
             const std::function<void(const std::string&)>& fill) {
    std::string key = name + "-active";
    ASSERT_OK_AND_ASSIGN(auto mounts, sn_->Prepare(key, parent, {}));
    std::string dir = MountAt(mounts);
    fill(dir);
    Unmount(dir);
    ASSERT_OK(sn_->Commit(name, key, {}));
  }

  TempDir tmp_;
  std::string root_;
  std::unique_ptr<Snapshotter> sn_;
  std::vector<std::string> mounted_;
};

TEST_F(SnapshotterTest, Basic) {
  if (!CanMount()) GTEST_SKIP() << "needs root to mount";
  Layer("base", "", [](const std::string& d) {
    WriteFile(d + "/foo", "foo\n");
    ASSERT_EQ(::mkdir((d + "/a").c_str(), 0755), 0);
    WriteFile(d + "/a/b", "b\n");
  });
  ASSERT_OK_AND_ASSIGN(auto mounts, sn_->Prepare("next", "base", {}));
  std::string d = MountAt(mounts);
  EXPECT_EQ(ReadAll(d + "/foo"), "foo\n");
  EXPECT_EQ(ReadAll(d + "/a/b"), "b\n");
  WriteFile(d + "/bar", "bar\n");
  ASSERT_EQ(::unlink((d + "/foo").c_str()), 0);
  Unmount(d);
  ASSERT_OK(sn_->Commit("next-committed", "next", {}));
  ASSERT_OK_AND_ASSIGN(auto view, sn_->View("v", "next-committed", {}));
  std::string v = MountAt(view);
  EXPECT_EQ(ReadAll(v + "/bar"), "bar\n");
  EXPECT_NE(::access((v + "/foo").c_str(), F_OK), 0) << "deleted in the child layer";
  EXPECT_EQ(ReadAll(v + "/a/b"), "b\n");
  ASSERT_OK_AND_ASSIGN(Info info, sn_->Stat("next-committed"));
  EXPECT_EQ(info.parent, "base");
  EXPECT_EQ(info.kind, Kind::kCommitted);
}

TEST_F(SnapshotterTest, StatActiveAndCommitted) {
  ASSERT_OK(sn_->Prepare("a", "", {{"l", "1"}}).status());
  ASSERT_OK_AND_ASSIGN(Info a, sn_->Stat("a"));
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.kind, Kind::kActive);
  EXPECT_EQ(a.labels, (Labels{{"l", "1"}}));
  ASSERT_OK(sn_->Commit("c", "a", {{"m", "2"}}));
  ASSERT_OK_AND_ASSIGN(Info c, sn_->Stat("c"));
  EXPECT_EQ(c.kind, Kind::kCommitted);
  EXPECT_EQ(c.labels, (Labels{{"m", "2"}}));
  EXPECT_THAT(sn_->Stat("a"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SnapshotterTest, ErrorsMatchOverlayfs) {
  ASSERT_OK(sn_->Prepare("a", "", {}).status());
  EXPECT_THAT(sn_->Prepare("a", "", {}), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(sn_->Prepare("", "", {}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(sn_->Prepare("b", "missing", {}), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(sn_->Prepare("b", "a", {}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(sn_->Stat("missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(sn_->Mounts("missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(sn_->Remove("missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(sn_->GetUsage("missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(sn_->Commit("x", "missing", {}), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(sn_->View("v", "", {}).status());
  EXPECT_THAT(sn_->Commit("x", "v", {}), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(sn_->Commit("c", "a", {}));
  ASSERT_OK(sn_->Prepare("child", "c", {}).status());
  EXPECT_THAT(sn_->Remove("c"), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(sn_->Prepare("a2", "", {}).status());
  EXPECT_THAT(sn_->Commit("c", "a2", {}), StatusIs(absl::StatusCode::kAlreadyExists));
  // A failed create leaves no directory behind.
  ASSERT_OK(sn_->Cleanup());
}

TEST_F(SnapshotterTest, MountsFollowContainerdPlan) {
  ASSERT_OK_AND_ASSIGN(auto m0, sn_->Prepare("a", "", {}));
  ASSERT_EQ(m0.size(), 1u);
  EXPECT_EQ(m0[0].type, "bind");
  EXPECT_THAT(m0[0].options, ElementsAre("rw", "rbind"));
  ASSERT_OK(sn_->Commit("l1", "a", {}));
  ASSERT_OK_AND_ASSIGN(auto v1, sn_->View("v1", "l1", {}));
  EXPECT_EQ(v1[0].type, "bind");
  EXPECT_THAT(v1[0].options, ElementsAre("ro", "rbind"));
  ASSERT_OK(sn_->Prepare("b", "l1", {}).status());
  ASSERT_OK(sn_->Commit("l2", "b", {}));
  // ids: a/l1 = 1, v1 = 2, b/l2 = 3
  ASSERT_OK_AND_ASSIGN(auto top, sn_->Prepare("top", "l2", {}));
  ASSERT_EQ(top[0].type, "overlay");
  std::string lower = top[0].options.back();
  EXPECT_TRUE(
      absl::StartsWith(lower, "lowerdir=" + root_ + "/snapshots/3/fs:" + root_ + "/snapshots/1/fs"))
      << lower;
  ASSERT_OK_AND_ASSIGN(auto again, sn_->Mounts("top"));
  EXPECT_EQ(again, top);
}

TEST_F(SnapshotterTest, UpdateLabels) {
  ASSERT_OK(sn_->Prepare("a", "", {{"keep", "1"}, {"drop", "2"}}).status());
  Info in;
  in.name = "a";
  in.labels = {{"new", "3"}};
  ASSERT_OK_AND_ASSIGN(Info out, sn_->Update(in, {"labels.new", "labels.drop"}));
  EXPECT_EQ(out.labels, (Labels{{"keep", "1"}, {"new", "3"}}));
  ASSERT_OK_AND_ASSIGN(Info stat, sn_->Stat("a"));
  EXPECT_EQ(stat.labels, out.labels);
  EXPECT_GE(stat.updated, stat.created);
  EXPECT_THAT(sn_->Update(in, {"parent"}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(SnapshotterTest, WalkWithFilters) {
  ASSERT_OK(sn_->Prepare("a", "", {}).status());
  ASSERT_OK(sn_->Commit("base", "a", {{"containerd.io/snapshot.ref", "sha256:1"}}));
  ASSERT_OK(sn_->Prepare("b", "base", {}).status());
  ASSERT_OK(sn_->View("v", "base", {}).status());
  std::vector<std::string> seen;
  auto collect = [&](const Info& i) {
    seen.push_back(i.name);
    return absl::OkStatus();
  };
  ASSERT_OK(sn_->Walk({}, collect));
  EXPECT_THAT(seen, UnorderedElementsAre("base", "b", "v"));
  seen.clear();
  ASSERT_OK(sn_->Walk({"parent==base,kind==active"}, collect));
  EXPECT_THAT(seen, ElementsAre("b"));
  seen.clear();
  ASSERT_OK(sn_->Walk({"labels.\"containerd.io/snapshot.ref\"==sha256:1"}, collect));
  EXPECT_THAT(seen, ElementsAre("base"));
  EXPECT_THAT(sn_->Walk({"kind=="}, collect), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(SnapshotterTest, RemoveDeletesDirectoryAndIntermediateNeedsOrder) {
  ASSERT_OK(sn_->Prepare("a", "", {}).status());
  ASSERT_OK(sn_->Commit("l1", "a", {}));
  ASSERT_OK(sn_->Prepare("b", "l1", {}).status());
  ASSERT_OK(sn_->Commit("l2", "b", {}));
  EXPECT_THAT(sn_->Remove("l1"), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(sn_->Remove("l2"));
  EXPECT_NE(::access((root_ + "/snapshots/2").c_str(), F_OK), 0);
  ASSERT_OK(sn_->Remove("l1"));
  EXPECT_NE(::access((root_ + "/snapshots/1").c_str(), F_OK), 0);
}

TEST_F(SnapshotterTest, UsageOfActiveAndCommitted) {
  ASSERT_OK_AND_ASSIGN(auto m, sn_->Prepare("a", "", {}));
  std::string fs = m[0].source;
  WriteFile(fs + "/big", std::string(1 << 20, 'x'));
  ASSERT_EQ(::mkdir((fs + "/d").c_str(), 0755), 0);
  ASSERT_OK_AND_ASSIGN(Usage active, sn_->GetUsage("a"));
  EXPECT_GE(active.size, 1 << 20);
  EXPECT_EQ(active.inodes, 3);  // fs, big, d
  ASSERT_OK(sn_->Commit("c", "a", {}));
  ASSERT_OK_AND_ASSIGN(Usage committed, sn_->GetUsage("c"));
  EXPECT_EQ(committed.size, active.size);
  EXPECT_EQ(committed.inodes, active.inodes);
}

TEST_F(SnapshotterTest, ChildUpperTakesParentRootOwner) {
  ASSERT_OK_AND_ASSIGN(auto m, sn_->Prepare("a", "", {}));
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  ASSERT_EQ(::chown(m[0].source.c_str(), 1234, 5678), 0);
  ASSERT_OK(sn_->Commit("c", "a", {}));
  ASSERT_OK(sn_->Prepare("child", "c", {}).status());
  struct stat st;
  ASSERT_EQ(::stat((root_ + "/snapshots/2/fs").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
}

TEST_F(SnapshotterTest, ViewIsReadOnly) {
  if (!CanMount()) GTEST_SKIP() << "needs root to mount";
  Layer("base", "", [](const std::string& d) { WriteFile(d + "/f", "x"); });
  ASSERT_OK(sn_->Prepare("b", "base", {}).status());
  ASSERT_OK(sn_->Commit("l2", "b", {}));
  for (const char* parent : {"base", "l2"}) {
    std::string key = absl::StrCat("view-", parent);
    ASSERT_OK_AND_ASSIGN(auto mounts, sn_->View(key, parent, {}));
    std::string d = MountAt(mounts);
    int fd = ::open((d + "/new").c_str(), O_CREAT | O_WRONLY, 0644);
    EXPECT_LT(fd, 0) << "view over " << parent << " must be read-only";
    EXPECT_EQ(errno, EROFS);
    if (fd >= 0) ::close(fd);
    Unmount(d);
  }
}

TEST_F(SnapshotterTest, OneHundredTwentyEightLayersMount) {
  if (!CanMount()) GTEST_SKIP() << "needs root to mount";
  std::string parent;
  for (int i = 0; i < 128; ++i) {
    std::string key = absl::StrCat("k", i), name = absl::StrCat("layer", i);
    ASSERT_OK_AND_ASSIGN(auto mounts, sn_->Prepare(key, parent, {}));
    // Write straight into the upper directory: mounting 128 times is slow.
    std::string upper = absl::StrCat(root_, "/snapshots/", i + 1, "/fs");
    WriteFile(absl::StrCat(upper, "/f", i), absl::StrCat(i));
    WriteFile(upper + "/top", absl::StrCat(i));
    ASSERT_OK(sn_->Commit(name, key, {}));
    parent = name;
  }
  ASSERT_OK_AND_ASSIGN(auto mounts, sn_->Prepare("container", parent, {}));
  std::string d = MountAt(mounts);
  EXPECT_EQ(ReadAll(d + "/f0"), "0");
  EXPECT_EQ(ReadAll(d + "/f127"), "127");
  EXPECT_EQ(ReadAll(d + "/top"), "127") << "the nearest layer wins";
}

TEST_F(SnapshotterTest, CleanupRemovesOnlyUnreferencedDirectories) {
  ASSERT_OK(sn_->Prepare("a", "", {}).status());
  // What a crash can leave: a temporary directory and a renamed directory
  // whose transaction never committed.
  ASSERT_OK(MkdirAll(root_ + "/snapshots/new-crash/fs", 0755));
  ASSERT_OK(MkdirAll(root_ + "/snapshots/999/fs", 0755));
  ASSERT_OK(sn_->Cleanup());
  EXPECT_NE(::access((root_ + "/snapshots/new-crash").c_str(), F_OK), 0);
  EXPECT_NE(::access((root_ + "/snapshots/999").c_str(), F_OK), 0);
  EXPECT_EQ(::access((root_ + "/snapshots/1/fs").c_str(), F_OK), 0) << "live snapshot kept";
}

TEST_F(SnapshotterTest, StaleDirectoryWithNextIdIsReplaced) {
  // A crash after the rename but before the commit leaves snapshots/1; the
  // next create gets id 1 again (never committed) and must still succeed.
  ASSERT_OK(MkdirAll(root_ + "/snapshots/1/fs/stale", 0755));
  ASSERT_OK_AND_ASSIGN(auto m, sn_->Prepare("a", "", {}));
  EXPECT_EQ(m[0].source, root_ + "/snapshots/1/fs");
  EXPECT_NE(::access((root_ + "/snapshots/1/fs/stale").c_str(), F_OK), 0);
}

TEST_F(SnapshotterTest, ReopenKeepsEverything) {
  ASSERT_OK(sn_->Prepare("a", "", {{"x", "y"}}).status());
  ASSERT_OK(sn_->Commit("c", "a", {}));
  ASSERT_OK(sn_->Prepare("b", "c", {}).status());
  sn_.reset();
  ASSERT_OK_AND_ASSIGN(sn_, Snapshotter::Open({root_}));
  ASSERT_OK_AND_ASSIGN(Info b, sn_->Stat("b"));
  EXPECT_EQ(b.parent, "c");
  ASSERT_OK(sn_->Prepare("d", "c", {}).status());
}

}  // namespace
}  // namespace accel::snapshotter
