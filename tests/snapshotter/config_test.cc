#include "snapshotter/config.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace accel::snapshotter {
namespace {

using ::accel::testing::StatusIs;

TEST(ConfigTest, DefaultsWhenEmpty) {
  ASSERT_OK_AND_ASSIGN(Config c, ParseConfig("", "cfg.toml"));
  EXPECT_EQ(c.root, kDefaultRoot);
  EXPECT_EQ(c.address, kDefaultAddress);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.store, "");
  EXPECT_EQ(c.fuse_threads, 4);
  EXPECT_EQ(c.cri_image_address, "");
  EXPECT_EQ(c.cri_upstream, kDefaultCriUpstream);
  EXPECT_THAT(ParseConfig("fuse_threads = 0", "cfg.toml"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ConfigTest, ReadsKeys) {
  ASSERT_OK_AND_ASSIGN(Config c, ParseConfig(R"(root = "/x"
address = "/run/a.sock"
log_level = "debug"
max_rpc_threads = 8
store = "/mnt/store"
fuse_threads = 2
cri_image_address = "/run/accel-snapshotter/cri.sock"
cri_upstream = "/run/k3s/containerd/containerd.sock"
)",
                                             "cfg.toml"));
  EXPECT_EQ(c.store, "/mnt/store");
  EXPECT_EQ(c.fuse_threads, 2);
  EXPECT_EQ(c.root, "/x");
  EXPECT_EQ(c.address, "/run/a.sock");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.max_rpc_threads, 8);
  EXPECT_EQ(c.cri_image_address, "/run/accel-snapshotter/cri.sock");
  EXPECT_EQ(c.cri_upstream, "/run/k3s/containerd/containerd.sock");
  EXPECT_THAT(ParseConfig("cri_upstream = \"\"", "c"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ConfigTest, ErrorsNameTheProblem) {
  auto bad_syntax = ParseConfig("root = ", "cfg.toml");
  EXPECT_THAT(bad_syntax, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(bad_syntax.status().message().find("cfg.toml"), absl::string_view::npos);

  auto unknown = ParseConfig("roots = \"/x\"", "cfg.toml");
  EXPECT_THAT(unknown, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(unknown.status().message().find("unknown key \"roots\""), absl::string_view::npos);

  EXPECT_THAT(ParseConfig("root = 3", "c"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseConfig("max_rpc_threads = 1", "c"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(LoadConfig("/nonexistent/accel.toml"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace accel::snapshotter
