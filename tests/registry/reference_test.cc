#include "registry/reference.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace accel::registry {
namespace {

using ::accel::testing::StatusIs;

struct RefCase {
  const char* in;
  const char* domain;
  const char* repo;
  const char* tag;
  const char* digest;
};

constexpr char kDigest[] =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ReferenceTest, ParsesAndNormalizes) {
  const std::string at = std::string("@") + kDigest;
  const RefCase cases[] = {
      {"alpine", "docker.io", "library/alpine", "latest", ""},
      {"alpine:3.19", "docker.io", "library/alpine", "3.19", ""},
      {"user/app:1.0", "docker.io", "user/app", "1.0", ""},
      {"docker.io/alpine", "docker.io", "library/alpine", "latest", ""},
      {"index.docker.io/library/alpine:x", "docker.io", "library/alpine", "x", ""},
      {"registry-1.docker.io/a/b", "docker.io", "a/b", "latest", ""},
      {"localhost/app", "localhost", "app", "latest", ""},
      {"localhost:5000/app:v1", "localhost:5000", "app", "v1", ""},
      {"127.0.0.1:5000/a/b/c:t_1", "127.0.0.1:5000", "a/b/c", "t_1", ""},
      {"ghcr.io/o/app-x.y__z", "ghcr.io", "o/app-x.y__z", "latest", ""},
      {"[::1]:5000/app", "[::1]:5000", "app", "latest", ""},
      {"gcr.io/p/app---x", "gcr.io", "p/app---x", "latest", ""},
  };
  for (const RefCase& c : cases) {
    SCOPED_TRACE(c.in);
    ASSERT_OK_AND_ASSIGN(Reference r, ParseReference(c.in));
    EXPECT_EQ(r.domain, c.domain);
    EXPECT_EQ(r.repository, c.repo);
    EXPECT_EQ(r.tag, c.tag);
    EXPECT_EQ(r.digest, c.digest);
  }
  ASSERT_OK_AND_ASSIGN(Reference d, ParseReference(std::string("quay.io/a/b") + at));
  EXPECT_EQ(d.tag, "");
  EXPECT_EQ(d.digest, kDigest);
  EXPECT_EQ(d.Object(), kDigest);
  EXPECT_EQ(d.String(), std::string("quay.io/a/b") + at);
  ASSERT_OK_AND_ASSIGN(Reference both, ParseReference(std::string("quay.io/a/b:v2") + at));
  EXPECT_EQ(both.tag, "v2");
  EXPECT_EQ(both.Object(), kDigest);
  EXPECT_EQ(both.WithDigest(kDigest).String(), std::string("quay.io/a/b") + at);
}

TEST(ReferenceTest, RejectsMalformed) {
  const char* bad[] = {
      "",         "docker.io/UPPER",   "a//b",         "a/b:",
      "a/b:-tag", "a/b@sha256:short",  "a/b@md5:0123", "-a/b",
      "a_/b",     "host:notaport/app", "example.com/", "a b",
  };
  for (const char* in : bad) {
    SCOPED_TRACE(in);
    EXPECT_THAT(ParseReference(in), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  std::string long_tag = "a:" + std::string(129, 't');
  EXPECT_THAT(ParseReference(long_tag), StatusIs(absl::StatusCode::kInvalidArgument));
  std::string long_name = "example.com/" + std::string(250, 'a');
  EXPECT_THAT(ParseReference(long_name), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ReferenceTest, ErrorNamesTheInput) {
  absl::StatusOr<Reference> r = ParseReference("x/Y");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("\"x/Y\""), absl::string_view::npos);
}

TEST(ReferenceTest, NormalizeRegistryHost) {
  EXPECT_EQ(NormalizeRegistryHost("Index.Docker.IO"), "docker.io");
  EXPECT_EQ(NormalizeRegistryHost("registry-1.docker.io"), "docker.io");
  EXPECT_EQ(NormalizeRegistryHost("Quay.io"), "quay.io");
}

}  // namespace
}  // namespace accel::registry
