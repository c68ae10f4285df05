// The remote snapshot protocol of Snapshotter, with a RemoteLayers that
// mounts a real tmpfs (so unmount and restore paths are real).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <fstream>

#include "common/fs_util.h"
#include "common/status_macros.h"
#include "snapshotter/snapshotter.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::snapshotter {
namespace {

using ::accel::testing::StatusIs;
using ::accel::testing::TempDir;

// Serves layers whose labels carry "test/remote"; "test/fail" makes Mount
// fail. Each mount is a tmpfs holding a file named after the target.
class TmpfsRemote : public RemoteLayers {
 public:
  absl::StatusOr<std::string> Mount(const Labels& labels, const std::string& /*parent*/,
                                    const std::string& mp) override {
    mounts++;
    if (labels.contains("test/fail")) return absl::UnavailableError("store unreachable");
    if (!labels.contains("test/remote")) return std::string();
    ACCEL_RETURN_IF_ERROR(MountTmpfs(labels, mp));
    return std::string("tmpfs");
  }
  // Restores at once (the daemon's MountTable does it in the background).
  absl::Status RestoreAll(std::vector<RemoteSnapshot> snapshots) override {
    for (const RemoteSnapshot& s : snapshots) {
      restores++;
      ACCEL_RETURN_IF_ERROR(MountTmpfs(s.labels, s.mountpoint));
    }
    return absl::OkStatus();
  }
  absl::Status CheckServable(const std::vector<std::string>& mountpoints) override {
    for (const std::string& mp : mountpoints) {
      if (mp == failing) return absl::UnavailableError("layer sha256:x cannot be served: gone");
    }
    return absl::OkStatus();
  }
  absl::Status Unmount(const std::string& mp) override {
    unmounts++;
    if (!IsMountPoint(mp)) return absl::OkStatus();
    if (::umount2(mp.c_str(), 0) != 0) return absl::FailedPreconditionError("busy");
    return absl::OkStatus();
  }

  std::atomic<int> mounts{0}, restores{0}, unmounts{0};
  std::string failing;  // CheckServable refuses this mountpoint

 private:
  static absl::Status MountTmpfs(const Labels& labels, const std::string& mp) {
    if (::mount("accel-test", mp.c_str(), "tmpfs", 0, "size=1m") != 0) {
      return absl::InternalError("mount tmpfs");
    }
    std::ofstream(mp + "/" + labels.at(kTargetRefLabel)) << "remote";
    return absl::OkStatus();
  }
};

class RemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
    root_ = tmp_.path() + "/root";
    ASSERT_OK_AND_ASSIGN(sn_, Snapshotter::Open({root_, &remote_}));
  }
  void TearDown() override {
    sn_.reset();
    // Detach anything a failing test left mounted.
    for (int id = 1; id < 20; ++id) {
      std::string fs = root_ + "/snapshots/" + std::to_string(id) + "/fs";
      if (IsMountPoint(fs)) ::umount2(fs.c_str(), MNT_DETACH);
    }
  }

  Labels Remote(const std::string& target) {
    return {{kTargetRefLabel, target}, {"test/remote", "1"}};
  }

  TempDir tmp_;
  std::string root_;
  TmpfsRemote remote_;
  std::unique_ptr<Snapshotter> sn_;
};

TEST_F(RemoteTest, RemoteLayerIsCommittedUnderTargetAndAnswersAlreadyExists) {
  EXPECT_THAT(sn_->Prepare("ns/1/extract", "", Remote("sha256:l1")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(sn_->Stat("ns/1/extract"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(Info info, sn_->Stat("sha256:l1"));
  EXPECT_EQ(info.kind, Kind::kCommitted);
  EXPECT_EQ(info.labels.at(kRemoteKindLabel), "tmpfs");
  EXPECT_EQ(info.labels.at(kTargetRefLabel), "sha256:l1");
  EXPECT_TRUE(IsMountPoint(root_ + "/snapshots/1/fs"));
  EXPECT_EQ(*ReadFile(root_ + "/snapshots/1/fs/sha256:l1"), "remote");

  // containerd finds it with exactly this filter.
  std::vector<std::string> found;
  ASSERT_OK(sn_->Walk({"labels.\"containerd.io/snapshot.ref\"==sha256:l1,parent==\"\""},
                      [&](const Info& i) {
                        found.push_back(i.name);
                        return absl::OkStatus();
                      }));
  EXPECT_EQ(found, std::vector<std::string>{"sha256:l1"});

  // A second pull of the same layer does not mount again.
  EXPECT_THAT(sn_->Prepare("ns2/7/extract", "", Remote("sha256:l1")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(remote_.mounts, 1);

  // A layer on top of it, and a container above both.
  EXPECT_THAT(sn_->Prepare("ns/2/extract", "sha256:l1", Remote("sha256:l2")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(auto mounts, sn_->Prepare("container", "sha256:l2", {}));
  ASSERT_EQ(mounts[0].type, "overlay");
  EXPECT_EQ(mounts[0].options.back(),
            "lowerdir=" + root_ + "/snapshots/2/fs:" + root_ + "/snapshots/1/fs");
}

TEST_F(RemoteTest, NotRemoteOrFailingFallsBackToPlainSnapshot) {
  ASSERT_OK_AND_ASSIGN(auto plain, sn_->Prepare("k", "", {{kTargetRefLabel, "sha256:p"}}));
  EXPECT_EQ(plain[0].type, "bind");
  ASSERT_OK_AND_ASSIGN(Info k, sn_->Stat("k"));
  EXPECT_EQ(k.kind, Kind::kActive);
  EXPECT_FALSE(IsMountPoint(root_ + "/snapshots/1/fs"));

  Labels failing = Remote("sha256:f");
  failing["test/fail"] = "1";
  ASSERT_OK_AND_ASSIGN(auto fallback, sn_->Prepare("k2", "", failing));
  EXPECT_EQ(fallback[0].type, "bind") << "a target image must run everywhere";
  EXPECT_THAT(sn_->Stat("sha256:f"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RemoteTest, RestartRestoresMountsAndRemoveUnmounts) {
  EXPECT_THAT(sn_->Prepare("x", "", Remote("sha256:l1")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  sn_.reset();
  // The daemon died and its mounts went with it.
  std::string fs = root_ + "/snapshots/1/fs";
  ASSERT_EQ(::umount2(fs.c_str(), 0), 0);
  ASSERT_FALSE(IsMountPoint(fs));
  ASSERT_OK_AND_ASSIGN(sn_, Snapshotter::Open({root_, &remote_}));
  EXPECT_EQ(remote_.restores, 1);
  EXPECT_TRUE(IsMountPoint(fs)) << "remounted before any RPC";
  ASSERT_OK(sn_->Remove("sha256:l1"));
  EXPECT_FALSE(IsMountPoint(fs));
  EXPECT_NE(::access((root_ + "/snapshots/1").c_str(), F_OK), 0);
}

TEST_F(RemoteTest, RemoveOfAParentIsRefusedBeforeAnythingIsUnmounted) {
  EXPECT_THAT(sn_->Prepare("x", "", Remote("sha256:l1")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK(sn_->Prepare("child", "sha256:l1", {}).status());
  EXPECT_THAT(sn_->Remove("sha256:l1"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(remote_.unmounts, 0) << "nothing may be unmounted before the check";
  EXPECT_TRUE(IsMountPoint(root_ + "/snapshots/1/fs"));
  ASSERT_OK(sn_->Stat("sha256:l1").status());
  ASSERT_OK(sn_->Remove("child"));
  ASSERT_OK(sn_->Remove("sha256:l1"));
  EXPECT_EQ(remote_.unmounts, 1);
}

TEST_F(RemoteTest, SnapshotsAboveALayerThatCannotBeServedAreRefused) {
  EXPECT_THAT(sn_->Prepare("x", "", Remote("sha256:l1")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  remote_.failing = root_ + "/snapshots/1/fs";
  absl::StatusOr<std::vector<Mount>> m = sn_->Prepare("c", "sha256:l1", {});
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(m.status().message()), ::testing::HasSubstr("sha256:x"));
  EXPECT_THAT(sn_->View("v", "sha256:l1", {}), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(sn_->Stat("c"), StatusIs(absl::StatusCode::kNotFound)) << "nothing half-made";
  remote_.failing.clear();
  EXPECT_OK(sn_->Prepare("c", "sha256:l1", {}).status());
}

}  // namespace
}  // namespace accel::snapshotter
