#include "snapshotter/mount_planner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace accel::snapshotter {
namespace {

using ::testing::ElementsAre;

SnapshotPaths Paths() {
  return {[](int64_t id) { return absl::StrCat("/r/snapshots/", id, "/fs"); },
          [](int64_t id) { return absl::StrCat("/r/snapshots/", id, "/work"); }};
}

TEST(MountPlannerTest, ActiveWithoutParentIsReadWriteBind) {
  auto m = PlanMounts(Kind::kActive, 7, {}, Paths(), {});
  EXPECT_THAT(m, ElementsAre(Mount{"bind", "/r/snapshots/7/fs", {"rw", "rbind"}}));
}

TEST(MountPlannerTest, ViewWithoutParentIsReadOnlyBind) {
  auto m = PlanMounts(Kind::kView, 7, {}, Paths(), {});
  EXPECT_THAT(m, ElementsAre(Mount{"bind", "/r/snapshots/7/fs", {"ro", "rbind"}}));
}

TEST(MountPlannerTest, OneParentViewIsReadOnlyBindOfParent) {
  auto m = PlanMounts(Kind::kView, 9, {3}, Paths(), {.index_off = true});
  EXPECT_THAT(m, ElementsAre(Mount{"bind", "/r/snapshots/3/fs", {"ro", "rbind"}}));
}

TEST(MountPlannerTest, ActiveWithParentsIsOverlayNearestParentFirst) {
  auto m = PlanMounts(Kind::kActive, 9, {5, 3, 1}, Paths(), {});
  EXPECT_THAT(
      m, ElementsAre(Mount{"overlay",
                           "overlay",
                           {"workdir=/r/snapshots/9/work", "upperdir=/r/snapshots/9/fs",
                            "lowerdir=/r/snapshots/5/fs:/r/snapshots/3/fs:/r/snapshots/1/fs"}}));
}

TEST(MountPlannerTest, ViewWithTwoParentsIsReadOnlyOverlay) {
  auto m = PlanMounts(Kind::kView, 9, {5, 3}, Paths(), {.index_off = true, .userxattr = true});
  EXPECT_THAT(m, ElementsAre(Mount{
                     "overlay",
                     "overlay",
                     {"index=off", "userxattr", "lowerdir=/r/snapshots/5/fs:/r/snapshots/3/fs"}}));
}

TEST(MountPlannerTest, ManyLayersKeepOptionShort) {
  std::vector<int64_t> parents;
  for (int i = 128; i >= 1; --i) parents.push_back(i);
  auto m = PlanMounts(Kind::kActive, 129, parents, Paths(), {.index_off = true});
  ASSERT_EQ(m.size(), 1u);
  // containerd shortens lowerdir to paths relative to the common prefix
  // "/r/snapshots/"; each entry then is "N/fs", well under a page.
  std::string lower = m[0].options.back();
  EXPECT_EQ(lower.rfind("lowerdir=/r/snapshots/128/fs:", 0), 0u);
  EXPECT_NE(lower.find(":/r/snapshots/1/fs"), std::string::npos);
}

}  // namespace
}  // namespace accel::snapshotter
