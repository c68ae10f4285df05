#include "common/layer_path.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace accel {
namespace {

using ::accel::testing::StatusIs;
using ::testing::HasSubstr;

TEST(LayerPathTest, ValidateAcceptsCleanPaths) {
  EXPECT_OK(ValidateLayerPath(""));
  EXPECT_OK(ValidateLayerPath("a/b/c"));
  EXPECT_OK(ValidateLayerPath(".wh..wh..opq"));
  EXPECT_OK(ValidateLayerPath(std::string(255, 'n')));
}

TEST(LayerPathTest, ValidateRefusesWhatCouldEscapeOrIsNotClean) {
  struct Case {
    std::string path;
    std::string why;
  };
  const Case cases[] = {
      {"/abs", "absolute"},
      {"a/../b", "\"..\""},
      {"..", "escapes the layer"},
      {"./a", "\".\""},
      {"a/.", "\".\""},
      {"a//b", "empty path component"},
      {"a/", "empty path component"},
      {std::string("a\0b", 3), "NUL"},
      {std::string(256, 'n'), "longer than 255"},
      {"d/" + std::string(256, 'n') + "/f", "longer than 255"},
      {std::string(2049, 'a') + "/" + std::string(2049, 'b'), "longer than 4096"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ValidateLayerPath(c.path),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.why)))
        << c.path;
  }
}

TEST(LayerPathTest, CleanNormalizesArchiveNames) {
  const std::pair<std::string, std::string> cases[] = {
      {"a/b", "a/b"},     {"./a/b", "a/b"},   {"a//b/", "a/b"}, {"a/./b", "a/b"},
      {".", ""},          {"./", ""},         {"./././", ""},   {"a/b/.", "a/b"},
      {".wh.x", ".wh.x"}, {"a...b", "a...b"}, {"..a", "..a"},
  };
  for (const auto& [raw, want] : cases) {
    ASSERT_OK_AND_ASSIGN(std::string got, CleanLayerPath(raw, "tar entry"));
    EXPECT_EQ(got, want) << raw;
  }
}

TEST(LayerPathTest, CleanRefusesEscapesAndSaysWhat) {
  EXPECT_THAT(CleanLayerPath("a/../../etc/passwd", "tar entry"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tar entry")));
  EXPECT_THAT(CleanLayerPath("../x", "hard link target"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("escapes the layer")));
  EXPECT_THAT(CleanLayerPath("/etc/passwd", "entry"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute path")));
  EXPECT_THAT(CleanLayerPath("", "entry"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty name")));
  EXPECT_THAT(CleanLayerPath(std::string("a\0b", 3), "entry"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(CleanLayerPath(std::string(300, 'x'), "entry"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("255")));
}

TEST(LayerPathTest, Parent) {
  EXPECT_EQ(LayerPathParent("a/b/c"), "a/b");
  EXPECT_EQ(LayerPathParent("a"), "");
  EXPECT_EQ(LayerPathParent(""), "");
}

}  // namespace
}  // namespace accel
