#include "fuse/mountinfo.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace accel::fuse {
namespace {

using ::testing::ElementsAre;

constexpr char kText[] =
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "42 27 0:39 / /tmp/l\\040a rw,relatime shared:5 - fuse.accel accel-store:sha256:ab "
    "ro,user_id=0\n"
    "43 42 0:40 / /tmp/l\\040a rw,relatime - tmpfs t rw\n"
    "46 27 0:41 / /tmp/m rw,relatime - overlay o "
    "rw,lowerdir=/tmp/l\\040a:/tmp/x\\:y:/tmp/l2,upperdir=/tmp/u,workdir=/tmp/w,uuid=on\n"
    "garbage line\n";

TEST(MountInfoTest, Parses) {
  std::vector<MountInfoEntry> m = ParseMountInfo(kText);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[1].id, 42);
  EXPECT_EQ(m[1].parent_id, 27);
  EXPECT_EQ(m[1].dev, "0:39");
  EXPECT_EQ(m[1].mountpoint, "/tmp/l a");
  EXPECT_EQ(m[1].fstype, "fuse.accel");
  EXPECT_EQ(m[1].source, "accel-store:sha256:ab");
  EXPECT_EQ(m[1].super_options, "ro,user_id=0");
  EXPECT_EQ(m[0].fstype, "ext4");
}

TEST(MountInfoTest, TopMountAt) {
  std::vector<MountInfoEntry> m = ParseMountInfo(kText);
  const MountInfoEntry* top = TopMountAt(m, "/tmp/l a");
  ASSERT_NE(top, nullptr);
  EXPECT_EQ(top->id, 43);
  EXPECT_EQ(TopMountAt(m, "/tmp/nothing"), nullptr);
  EXPECT_EQ(TopMountAt(m, "/")->id, 27);
}

TEST(MountInfoTest, OverlayDirs) {
  std::vector<MountInfoEntry> m = ParseMountInfo(kText);
  EXPECT_THAT(OverlayDirs(m[3]),
              ElementsAre("/tmp/l a", "/tmp/x:y", "/tmp/l2", "/tmp/u", "/tmp/w"));
  EXPECT_TRUE(OverlayDirs(m[1]).empty());
}

TEST(MountInfoTest, ReadsOwnMountTable) {
  absl::StatusOr<std::vector<MountInfoEntry>> m = ReadMountInfo();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_NE(TopMountAt(*m, "/"), nullptr);
}

}  // namespace
}  // namespace accel::fuse
