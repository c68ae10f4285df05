#include "common/mountinfo.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include "common/fs_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel {
namespace {

using ::accel::testing::TempDir;
using ::testing::ElementsAre;

// Optional fields of every count, escapes in paths and sources, a kernel
// with lowerdir+/datadir+ options, and lines that are not mountinfo.
constexpr char kTable[] =
    "1 0 8:1 / / rw - ext4 /dev/sda1 rw,errors=remount-ro\n"
    "7 1 0:5 / /run\\011tab rw,nosuid master:1 shared:2 unbindable - tmpfs tmp\\134fs rw\n"
    "8 7 0:6 / /run\\011tab ro - fuse.accel accel-estargz:sha256:cd ro,user_id=0\n"
    "9 1 0:7 / /merged rw - overlay overlay "
    "ro,lowerdir+=/l/1,lowerdir+=/l/2\\:x,datadir+=/d,redirect_dir=on\n"
    "10 1 0:8 / /short rw - proc\n"
    "not a mountinfo line\n"
    "x 1 0:9 / /bad rw - tmpfs t rw\n";

TEST(MountInfoTest, ParsesFieldsAndUnescapes) {
  std::vector<MountInfoEntry> m = ParseMountInfo(kTable);
  ASSERT_EQ(m.size(), 4u);  // the short and malformed lines are skipped
  EXPECT_EQ(m[0].mountpoint, "/");
  EXPECT_EQ(m[0].super_options, "rw,errors=remount-ro");
  EXPECT_EQ(m[1].id, 7);
  EXPECT_EQ(m[1].parent_id, 1);
  EXPECT_EQ(m[1].dev, "0:5");
  EXPECT_EQ(m[1].mountpoint, "/run\ttab");
  EXPECT_EQ(m[1].fstype, "tmpfs");
  EXPECT_EQ(m[1].source, "tmp\\fs");
  EXPECT_EQ(m[2].fstype, "fuse.accel");
}

TEST(MountInfoTest, TopMountAndOverlayLayers) {
  std::vector<MountInfoEntry> m = ParseMountInfo(kTable);
  const MountInfoEntry* top = TopMountAt(m, "/run\ttab");
  ASSERT_NE(top, nullptr);
  EXPECT_EQ(top->id, 8);
  EXPECT_EQ(TopMountAt(m, "/nothing"), nullptr);
  EXPECT_THAT(OverlayDirs(m[3]), ElementsAre("/l/1", "/l/2:x", "/d"));
  EXPECT_TRUE(OverlayDirs(m[2]).empty());
}

TEST(MountInfoTest, IsMountPointSeesBindMountsOfTheSameFilesystem) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to bind-mount";
  TempDir tmp;
  const std::string src = tmp.path() + "/src";
  const std::string dst = tmp.path() + "/dst with space";
  ASSERT_OK(MkdirAll(src, 0755));
  ASSERT_OK(MkdirAll(dst, 0755));
  EXPECT_FALSE(IsMountPoint(dst));
  ASSERT_EQ(::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr), 0);
  EXPECT_TRUE(IsMountPoint(dst));
  ASSERT_EQ(::umount2(dst.c_str(), MNT_DETACH), 0);
  EXPECT_FALSE(IsMountPoint(dst));
}

}  // namespace
}  // namespace accel
