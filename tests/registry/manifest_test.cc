#include "registry/manifest.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace accel::registry {
namespace {

using ::accel::testing::StatusIs;

const std::string kD1 = "sha256:" + std::string(64, '1');
const std::string kD2 = "sha256:" + std::string(64, '2');
const std::string kD3 = "sha256:" + std::string(64, '3');

std::string ManifestJson(const std::string& layer_size = "10") {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
         kD1 +
         R"(","size":5},
    "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" +
         kD2 + R"(","size":)" + layer_size + R"(,"annotations":{"a":"b"}}]})";
}

TEST(ManifestTest, ParsesManifest) {
  ASSERT_OK_AND_ASSIGN(std::string mt, DetectManifestMediaType(ManifestJson(), ""));
  EXPECT_EQ(mt, media::kOciManifest);
  ASSERT_OK_AND_ASSIGN(Manifest m, ParseManifest(ManifestJson(), mt));
  EXPECT_EQ(m.config.digest, kD1);
  ASSERT_EQ(m.layers.size(), 1u);
  EXPECT_EQ(m.layers[0].size, 10);
  EXPECT_EQ(m.layers[0].annotations.at("a"), "b");
}

TEST(ManifestTest, DetectsByContentTypeAndShape) {
  std::string no_mt = R"({"schemaVersion":2,"manifests":[]})";
  ASSERT_OK_AND_ASSIGN(std::string a, DetectManifestMediaType(no_mt, ""));
  EXPECT_EQ(a, media::kOciIndex);
  ASSERT_OK_AND_ASSIGN(
      std::string b,
      DetectManifestMediaType(no_mt, std::string(media::kDockerManifestList) + "; charset=x"));
  EXPECT_EQ(b, media::kDockerManifestList);
  EXPECT_THAT(DetectManifestMediaType(R"({"schemaVersion":1,"fsLayers":[]})", ""),
              StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_THAT(DetectManifestMediaType("not json", ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DetectManifestMediaType("[1,2]", ""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ManifestTest, RejectsBadShapes) {
  const std::string bad[] = {
      ManifestJson("-1"),
      ManifestJson("1.5"),
      ManifestJson("\"10\""),
      R"({"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]})",
      R"({"config":{"mediaType":"x","digest":")" + kD1 + R"(","size":1}})",
      R"({"config":{"digest":")" + kD1 + R"(","size":1},"layers":[]})",
      R"({"config":{"mediaType":"x","digest":")" + kD1 +
          R"(","size":1},"layers":[],"annotations":{"k":1}})",
  };
  for (const std::string& j : bad) {
    SCOPED_TRACE(j);
    EXPECT_THAT(ParseManifest(j, media::kOciManifest),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_THAT(ParseManifest(std::string(kMaxManifestSize + 1, ' '), media::kOciManifest),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ManifestTest, SelectsPlatform) {
  std::string idx =
      R"({"schemaVersion":2,"manifests":[
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      kD1 +
      R"(","size":1,"platform":{"os":"linux","architecture":"amd64"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      kD2 +
      R"(","size":1,"platform":{"os":"linux","architecture":"arm64"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      kD3 + R"(","size":1,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]})";
  ASSERT_OK_AND_ASSIGN(Index index, ParseIndex(idx, media::kOciIndex));
  ASSERT_OK_AND_ASSIGN(Platform arm64, ParsePlatform("linux/aarch64/v8"));
  ASSERT_OK_AND_ASSIGN(Descriptor d, SelectPlatform(index, arm64));
  EXPECT_EQ(d.digest, kD2);
  ASSERT_OK_AND_ASSIGN(Platform amd64, ParsePlatform("linux/x86_64"));
  ASSERT_OK_AND_ASSIGN(d, SelectPlatform(index, amd64));
  EXPECT_EQ(d.digest, kD1);
  ASSERT_OK_AND_ASSIGN(Platform armv6, ParsePlatform("linux/arm/v6"));
  absl::StatusOr<Descriptor> none = SelectPlatform(index, armv6);
  EXPECT_THAT(none, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_NE(none.status().message().find("linux/arm/v7"), absl::string_view::npos);
  EXPECT_THAT(ParsePlatform("linux"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParsePlatform("linux//"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(DefaultPlatform().os, "linux");
}

}  // namespace
}  // namespace accel::registry
