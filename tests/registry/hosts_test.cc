#include "registry/hosts.h"

#include <gtest/gtest.h>

#include "common/fs_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::registry {
namespace {

using ::accel::testing::StatusIs;

TEST(HostsTest, MirrorsInFileOrderThenUpstream) {
  // Keys deliberately not in sorted order.
  const char* toml = R"(
server = "https://registry-1.docker.io"
capabilities = ["pull", "resolve", "push"]

[host."https://zz-mirror.example.com"]
  capabilities = ["pull", "resolve"]
  ca = "certs/ca.pem"
  skip_verify = true
  [host."https://zz-mirror.example.com".header]
    x-a = "1"
    x-b = ["2", "3"]

[host."http://aa-cache.local:5000/prefix"]
  capabilities = ["pull"]
  client = [["/c.pem", "/c.key"]]

[host."https://gcr-mirror.example.com/v2/gcr.io"]
  override_path = true
)";
  ASSERT_OK_AND_ASSIGN(
      std::vector<RegistryHost> hosts,
      ParseHostsToml(toml, "docker.io", "/etc/certs.d/docker.io", "hosts.toml", HostsOptions{}));
  ASSERT_EQ(hosts.size(), 4u);
  EXPECT_EQ(hosts[0].BaseUrl(), "https://zz-mirror.example.com/v2");
  EXPECT_EQ(hosts[0].capabilities, kCapPull | kCapResolve);
  EXPECT_TRUE(hosts[0].skip_verify);
  ASSERT_EQ(hosts[0].ca_files.size(), 1u);
  EXPECT_EQ(hosts[0].ca_files[0], "/etc/certs.d/docker.io/certs/ca.pem");
  ASSERT_EQ(hosts[0].headers.size(), 3u);
  EXPECT_EQ(hosts[0].headers[2].second, "3");
  EXPECT_EQ(hosts[1].BaseUrl(), "http://aa-cache.local:5000/prefix/v2");
  EXPECT_EQ(hosts[1].capabilities, kCapPull);
  ASSERT_EQ(hosts[1].client_certs.size(), 1u);
  EXPECT_EQ(hosts[1].client_certs[0].second, "/c.key");
  EXPECT_EQ(hosts[2].BaseUrl(), "https://gcr-mirror.example.com/v2/gcr.io");
  EXPECT_EQ(hosts[2].capabilities, kCapAll);
  EXPECT_FALSE(hosts[2].upstream);
  EXPECT_TRUE(hosts[3].upstream);
  EXPECT_EQ(hosts[3].BaseUrl(), "https://registry-1.docker.io/v2");
}

TEST(HostsTest, DefaultUpstream) {
  ASSERT_OK_AND_ASSIGN(std::vector<RegistryHost> hosts,
                       ParseHostsToml("", "127.0.0.1:5000", "", "x", HostsOptions{}));
  ASSERT_EQ(hosts.size(), 1u);
  EXPECT_EQ(hosts[0].BaseUrl(), "https://127.0.0.1:5000/v2");
  HostsOptions plain;
  plain.plain_http = true;
  plain.insecure = true;
  RegistryHost d = DefaultUpstream("docker.io", plain);
  EXPECT_EQ(d.BaseUrl(), "http://registry-1.docker.io/v2");
  EXPECT_TRUE(d.skip_verify);
}

TEST(HostsTest, RejectsBadFiles) {
  const char* bad[] = {
      "server = 1",
      "server = \"ftp://x\"",
      "server = \"https://user:pw@x\"",
      "[host.\"https://m\"]\ncapabilities = [\"fly\"]",
      "[host.\"https://m\"]\nskip_verify = \"yes\"",
      "[host.\"https://m\"]\nunknown = 1",
      "[host.\"m\"]\n",
      "[host.\"https://m\"]\nclient = [\"a\", \"b\", \"c\"]",
      "[host.\"https://m\".header]\nx = 1",
      "not toml ===",
  };
  for (const char* t : bad) {
    SCOPED_TRACE(t);
    absl::StatusOr<std::vector<RegistryHost>> h =
        ParseHostsToml(t, "example.com", "", "f.toml", HostsOptions{});
    EXPECT_THAT(h, StatusIs(absl::StatusCode::kInvalidArgument));
    if (!h.ok()) {
      EXPECT_NE(h.status().message().find("f.toml"), absl::string_view::npos);
    }
  }
  // The password must not be echoed.
  absl::StatusOr<std::vector<RegistryHost>> h =
      ParseHostsToml("server = \"https://user:s3cret@x\"", "x", "", "f", HostsOptions{});
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().message().find("s3cret"), absl::string_view::npos);
}

TEST(HostsTest, ConfigureHostsLooksUpDirectories) {
  accel::testing::TempDir dir;
  HostsOptions o;
  o.hosts_dir = dir.path();
  // Nothing configured: the upstream only.
  ASSERT_OK_AND_ASSIGN(std::vector<RegistryHost> h, ConfigureHosts("quay.io", o));
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].host, "quay.io");
  // _default applies to every registry.
  ASSERT_OK(MkdirAll(dir.path() + "/_default", 0755));
  ASSERT_OK(WriteFileAtomic(dir.path() + "/_default/hosts.toml", "[host.\"http://127.0.0.1:9\"]\n",
                            0644));
  ASSERT_OK_AND_ASSIGN(h, ConfigureHosts("quay.io", o));
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].host, "127.0.0.1:9");
  EXPECT_EQ(h[1].host, "quay.io");
  // A host's own directory wins over _default; docker.io's aliases map to it.
  ASSERT_OK(MkdirAll(dir.path() + "/docker.io", 0755));
  ASSERT_OK(WriteFileAtomic(dir.path() + "/docker.io/hosts.toml",
                            "server = \"https://registry-1.docker.io\"\n"
                            "[host.\"https://mirror.local\"]\n",
                            0644));
  ASSERT_OK_AND_ASSIGN(h, ConfigureHosts("index.docker.io", o));
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].host, "mirror.local");
  EXPECT_EQ(h[1].host, "registry-1.docker.io");
  // host:port directories, and the host_port_ spelling.
  ASSERT_OK(MkdirAll(dir.path() + "/reg.local_5000_", 0755));
  ASSERT_OK(WriteFileAtomic(dir.path() + "/reg.local_5000_/hosts.toml",
                            "server = \"http://reg.local:5000\"\n", 0644));
  ASSERT_OK_AND_ASSIGN(h, ConfigureHosts("reg.local:5000", o));
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].scheme, "http");
  // A broken file is an error, not silently skipped.
  ASSERT_OK(WriteFileAtomic(dir.path() + "/docker.io/hosts.toml", "server = [", 0644));
  EXPECT_THAT(ConfigureHosts("docker.io", o), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace accel::registry
