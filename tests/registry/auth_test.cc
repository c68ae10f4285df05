#include "registry/auth.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "tests/testing/status_matchers.h"

namespace accel::registry {
namespace {

using ::accel::testing::StatusIs;

TEST(ChallengeTest, ParsesBearer) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<Challenge> cs,
      ParseWwwAuthenticate(R"(Bearer realm="https://auth.docker.io/token",)"
                           R"(service="registry.docker.io",scope="repository:library/a:pull")"));
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].scheme, "bearer");
  EXPECT_EQ(cs[0].params.at("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(cs[0].params.at("service"), "registry.docker.io");
  EXPECT_EQ(cs[0].params.at("scope"), "repository:library/a:pull");
}

TEST(ChallengeTest, ParsesSeveralAndEscapes) {
  ASSERT_OK_AND_ASSIGN(std::vector<Challenge> cs,
                       ParseWwwAuthenticate(R"(Basic realm="a \"q\" b", charset=UTF-8, )"
                                            R"(BEARER Realm="http://x/t" , error=invalid_token)"));
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ(cs[0].scheme, "basic");
  EXPECT_EQ(cs[0].params.at("realm"), "a \"q\" b");
  EXPECT_EQ(cs[0].params.at("charset"), "UTF-8");
  EXPECT_EQ(cs[1].scheme, "bearer");
  EXPECT_EQ(cs[1].params.at("realm"), "http://x/t");
  EXPECT_EQ(cs[1].params.at("error"), "invalid_token");
}

TEST(ChallengeTest, RejectsMalformed) {
  EXPECT_THAT(ParseWwwAuthenticate(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseWwwAuthenticate("Bearer realm=\"unterminated"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseWwwAuthenticate("\"quoted\""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CredentialsTest, DockerConfig) {
  CredentialStore s;
  std::string auth = absl::Base64Escape("alice:pa:ss");
  ASSERT_OK(s.MergeDockerConfigJson(R"({"auths":{"https://index.docker.io/v1/":{"auth":")" + auth +
                                        R"("},"127.0.0.1:5000":{"username":"bob","password":"pw"},
          "tok.example.com":{"identitytoken":"refresh"},
          "empty.example.com":{}},"credsStore":"desktop"})",
                                    "config.json"));
  ASSERT_TRUE(s.Lookup("docker.io").has_value());
  EXPECT_EQ(s.Lookup("registry-1.docker.io")->username, "alice");
  EXPECT_EQ(s.Lookup("docker.io")->password, "pa:ss");
  EXPECT_EQ(s.Lookup("127.0.0.1:5000")->username, "bob");
  EXPECT_EQ(s.Lookup("tok.example.com")->identity_token, "refresh");
  EXPECT_FALSE(s.Lookup("empty.example.com").has_value());
  EXPECT_FALSE(s.Lookup("127.0.0.1").has_value());
}

TEST(CredentialsTest, BadDockerConfigDoesNotLeakSecrets) {
  CredentialStore s;
  absl::Status st = s.MergeDockerConfigJson(R"({"auths":{"h":{"auth":"c2VjcmV0"}}})", "cfg");
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(st.message().find("c2VjcmV0"), absl::string_view::npos);
  EXPECT_EQ(st.message().find("secret"), absl::string_view::npos);
  EXPECT_THAT(s.MergeDockerConfigJson("nope", "cfg"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CredentialsTest, DaemonConfigOverridesDockerConfig) {
  CredentialStore s;
  ASSERT_OK(s.MergeDockerConfigJson(R"({"auths":{"r.io":{"username":"a","password":"b"}}})", "j"));
  ASSERT_OK(s.MergeDaemonConfigToml(R"(
root = "/ignored"
[registry.auths."r.io"]
username = "robot"
password = "x"
[registry.auths."https://index.docker.io/v1/"]
auth = ")" + absl::Base64Escape("u:p") + R"("
)",
                                    "config.toml"));
  EXPECT_EQ(s.Lookup("r.io")->username, "robot");
  EXPECT_EQ(s.Lookup("docker.io")->password, "p");
  EXPECT_THAT(s.MergeDaemonConfigToml("[registry.auths.\"h\"]\nuser = \"x\"\n", "c"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(s.MergeDaemonConfigToml("registry = 1\n", "c"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(s.MergeDaemonConfigToml("root = \"/x\"\n", "c"));
}

TEST(CredentialsTest, BasicHeader) {
  Credentials c;
  c.username = "aladdin";
  c.password = "opensesame";
  EXPECT_EQ(BasicAuthorization(c), "Basic YWxhZGRpbjpvcGVuc2VzYW1l");
}

TEST(TokenTest, ParsesAndCaches) {
  absl::Time now = absl::FromUnixSeconds(1000000);
  ASSERT_OK_AND_ASSIGN(Token t, ParseTokenResponse(R"({"token":"abc","expires_in":300})", now));
  EXPECT_EQ(t.value, "abc");
  EXPECT_EQ(t.expires, now + absl::Seconds(300));
  ASSERT_OK_AND_ASSIGN(t, ParseTokenResponse(R"({"access_token":"xyz"})", now));
  EXPECT_EQ(t.value, "xyz");
  EXPECT_EQ(t.expires, now + absl::Seconds(60));  // default and minimum
  absl::StatusOr<Token> bad = ParseTokenResponse(R"({"nothing":"secretvalue"})", now);
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(bad.status().message().find("secretvalue"), absl::string_view::npos);

  TokenCache cache;
  cache.Put("k", Token{"v", now + absl::Seconds(60)});
  EXPECT_EQ(cache.Get("k", now).value_or(""), "v");
  EXPECT_FALSE(cache.Get("k", now + absl::Seconds(55)).has_value());  // within the margin
  cache.Invalidate("k");
  EXPECT_FALSE(cache.Get("k", now).has_value());
}

}  // namespace
}  // namespace accel::registry
