// The CRI image proxy against a fake upstream ImageService on a unix socket:
// calls and every field (also ones the transcription omits) pass through;
// AuthConfig becomes registry credentials for the image's host.

#include "snapshotter/cri_proxy.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "k8s/cri/runtime_v1.grpc.pb.h"
#include "tests/testing/status_matchers.h"

namespace accel::snapshotter {
namespace {

namespace rt = ::runtime::v1;
using ::accel::testing::StatusIs;

class FakeUpstream final : public rt::ImageService::Service {
 public:
  grpc::Status PullImage(grpc::ServerContext*, const rt::PullImageRequest* req,
                         rt::PullImageResponse* resp) override {
    last_pull = *req;
    if (req->image().image() == "fail.example/x:1") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such image");
    }
    resp->set_image_ref("sha256:abc");
    return grpc::Status::OK;
  }
  grpc::Status ListImages(grpc::ServerContext*, const rt::ListImagesRequest*,
                          rt::ListImagesResponse* resp) override {
    rt::Image* img = resp->add_images();
    img->set_id("sha256:abc");
    img->add_repo_tags("r.example/app:v1");
    // Field 8 (pinned, bool), not in the transcription: must pass through.
    img->GetReflection()->MutableUnknownFields(img)->AddVarint(8, 1);
    return grpc::Status::OK;
  }
  rt::PullImageRequest last_pull;
};

TEST(CriProxyTest, ForwardsCallsStatusesAndUnknownFields) {
  char tmpl[] = "/tmp/criproxy.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  FakeUpstream fake;
  grpc::ServerBuilder ub;
  ub.AddListeningPort("unix:" + dir + "/up.sock", grpc::InsecureServerCredentials());
  ub.RegisterService(&fake);
  std::unique_ptr<grpc::Server> upstream = ub.BuildAndStart();
  ASSERT_NE(upstream, nullptr);

  std::unique_ptr<grpc::Service> proxy =
      NewCriImageProxy(CriProxyOptions{dir + "/up.sock", nullptr});
  grpc::ServerBuilder pb;
  pb.AddListeningPort("unix:" + dir + "/proxy.sock", grpc::InsecureServerCredentials());
  pb.RegisterService(proxy.get());
  std::unique_ptr<grpc::Server> server = pb.BuildAndStart();
  ASSERT_NE(server, nullptr);

  auto stub = rt::ImageService::NewStub(
      grpc::CreateChannel("unix:" + dir + "/proxy.sock", grpc::InsecureChannelCredentials()));
  {
    rt::PullImageRequest req;
    req.mutable_image()->set_image("r.example/app:v1");
    req.mutable_auth()->set_username("u");
    req.mutable_auth()->set_password("p");
    rt::PullImageResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub->PullImage(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.image_ref(), "sha256:abc");
    EXPECT_EQ(fake.last_pull.auth().password(), "p");  // containerd still gets them
  }
  {
    rt::PullImageRequest req;
    req.mutable_image()->set_image("fail.example/x:1");
    rt::PullImageResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub->PullImage(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(s.error_message(), "no such image");
  }
  {
    rt::ListImagesRequest req;
    rt::ListImagesResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub->ListImages(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.images_size(), 1);
    EXPECT_EQ(resp.images(0).repo_tags(0), "r.example/app:v1");
    const auto& unknown = resp.images(0).GetReflection()->GetUnknownFields(resp.images(0));
    ASSERT_EQ(unknown.field_count(), 1);
    EXPECT_EQ(unknown.field(0).number(), 8);
  }
  server->Shutdown();
  upstream->Shutdown();
  std::filesystem::remove_all(dir);
}

TEST(CriProxyTest, CredentialsFromAuthConfig) {
  ASSERT_OK_AND_ASSIGN(
      PullCredentials a,
      CredentialsFromAuthConfig("registry.example:5000/team/app:v1", "alice", "pw", "", ""));
  EXPECT_EQ(a.host, "registry.example:5000");
  EXPECT_EQ(a.credentials.username, "alice");
  EXPECT_EQ(a.credentials.password, "pw");

  // "auth" is base64(user:pass); the password may contain colons.
  ASSERT_OK_AND_ASSIGN(PullCredentials b,
                       CredentialsFromAuthConfig("app:v1", "", "", "Ym9iOnM6ZWNyZXQ=", ""));
  EXPECT_EQ(b.host, "docker.io");
  EXPECT_EQ(b.credentials.username, "bob");
  EXPECT_EQ(b.credentials.password, "s:ecret");

  ASSERT_OK_AND_ASSIGN(PullCredentials c, CredentialsFromAuthConfig("r.example/x", "", "", "", ""));
  EXPECT_TRUE(c.credentials.empty());

  absl::StatusOr<PullCredentials> bad = CredentialsFromAuthConfig(
      "r.example/x", "", "", "bm8tY29sb24tc2VjcmV0", "");  // "no-colon-secret"
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(bad.status().message().find("no-colon-secret"), std::string::npos);
  EXPECT_EQ(bad.status().message().find("bm8tY29sb24tc2VjcmV0"), std::string::npos);
}

}  // namespace
}  // namespace accel::snapshotter
