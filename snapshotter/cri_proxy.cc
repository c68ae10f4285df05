#include "snapshotter/cri_proxy.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "k8s/cri/runtime_v1.grpc.pb.h"
#include "registry/client.h"
#include "registry/reference.h"

namespace accel::snapshotter {
namespace {

namespace rt = ::runtime::v1;

// kubelet allows 16 MiB messages; ListImages on a big node can be large.
constexpr int kMaxMessageBytes = 64 << 20;

class CriImageProxy final : public rt::ImageService::Service {
 public:
  explicit CriImageProxy(CriProxyOptions options)
      : options_(std::move(options)), upstream_(rt::ImageService::NewStub(MakeChannel())) {}

  grpc::Status ListImages(grpc::ServerContext* ctx, const rt::ListImagesRequest* req,
                          rt::ListImagesResponse* resp) override {
    return Forward(ctx, "ListImages",
                   [&](grpc::ClientContext* c) { return upstream_->ListImages(c, *req, resp); });
  }
  grpc::Status ImageStatus(grpc::ServerContext* ctx, const rt::ImageStatusRequest* req,
                           rt::ImageStatusResponse* resp) override {
    return Forward(ctx, "ImageStatus",
                   [&](grpc::ClientContext* c) { return upstream_->ImageStatus(c, *req, resp); });
  }
  grpc::Status RemoveImage(grpc::ServerContext* ctx, const rt::RemoveImageRequest* req,
                           rt::RemoveImageResponse* resp) override {
    return Forward(ctx, "RemoveImage",
                   [&](grpc::ClientContext* c) { return upstream_->RemoveImage(c, *req, resp); });
  }
  grpc::Status ImageFsInfo(grpc::ServerContext* ctx, const rt::ImageFsInfoRequest* req,
                           rt::ImageFsInfoResponse* resp) override {
    return Forward(ctx, "ImageFsInfo",
                   [&](grpc::ClientContext* c) { return upstream_->ImageFsInfo(c, *req, resp); });
  }

  grpc::Status PullImage(grpc::ServerContext* ctx, const rt::PullImageRequest* req,
                         rt::PullImageResponse* resp) override {
    const std::string& image = req->image().image();
    bool has_auth = req->has_auth();
    if (has_auth && options_.registry != nullptr) {
      const rt::AuthConfig& a = req->auth();
      absl::StatusOr<PullCredentials> pc = CredentialsFromAuthConfig(
          image, a.username(), a.password(), a.auth(), a.identity_token());
      if (!pc.ok()) {
        // Not fatal: containerd decides about the pull; lazy reads of this
        // image may then lack credentials.
        ACCEL_LOG(kWarn, "msg=\"CRI pull: credentials not usable for lazy layers\"",
                  LogField("image", image), LogField("error", pc.status().message()));
      } else if (!pc->credentials.empty()) {
        ACCEL_LOG(kInfo, "msg=\"CRI pull: using its credentials for lazy layers\"",
                  LogField("image", image), LogField("host", pc->host));
        options_.registry->SetCredentials(pc->host, std::move(pc->credentials));
      } else if (!a.registry_token().empty()) {
        ACCEL_LOG(kWarn,
                  "msg=\"CRI pull: registry_token credentials are not supported for "
                  "lazy layers\"",
                  LogField("image", image));
      }
    }
    ACCEL_LOG(kDebug, "msg=\"CRI pull\"", LogField("image", image),
              LogField("auth", has_auth ? "yes" : "no"));
    return Forward(ctx, "PullImage",
                   [&](grpc::ClientContext* c) { return upstream_->PullImage(c, *req, resp); });
  }

 private:
  std::shared_ptr<grpc::Channel> MakeChannel() const {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    args.SetMaxSendMessageSize(kMaxMessageBytes);
    return grpc::CreateCustomChannel(absl::StrCat("unix:", options_.upstream),
                                     grpc::InsecureChannelCredentials(), args);
  }

  // Calls upstream with the caller's deadline and cancellation; returns
  // containerd's status unchanged (its messages carry no credentials).
  template <typename Call>
  grpc::Status Forward(grpc::ServerContext* ctx, const char* method, Call call) {
    std::unique_ptr<grpc::ClientContext> c = grpc::ClientContext::FromServerContext(*ctx);
    grpc::Status s = call(c.get());
    if (!s.ok()) {
      ACCEL_LOG(kDebug, "msg=\"CRI call failed upstream\"", LogField("method", method),
                LogField("code", absl::StrCat(static_cast<int>(s.error_code()))));
    }
    return s;
  }

  const CriProxyOptions options_;
  std::unique_ptr<rt::ImageService::Stub> upstream_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewCriImageProxy(CriProxyOptions options) {
  return std::make_unique<CriImageProxy>(std::move(options));
}

absl::StatusOr<PullCredentials> CredentialsFromAuthConfig(const std::string& image,
                                                          const std::string& username,
                                                          const std::string& password,
                                                          const std::string& auth,
                                                          const std::string& identity_token) {
  absl::StatusOr<registry::Reference> ref = registry::ParseReference(image);
  if (!ref.ok()) return ref.status();
  PullCredentials out;
  out.host = registry::NormalizeRegistryHost(ref->domain);
  registry::Credentials& c = out.credentials;
  if (!username.empty() || !password.empty()) {
    c.username = username;
    c.password = password;
  } else if (!auth.empty()) {
    std::string decoded;
    size_t colon;
    if (!absl::Base64Unescape(auth, &decoded) || (colon = decoded.find(':')) == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the pull of ", image, " carries a malformed \"auth\" (want base64 of user:password)"));
    }
    c.username = decoded.substr(0, colon);
    c.password = decoded.substr(colon + 1);
  }
  c.identity_token = identity_token;
  return out;
}

}  // namespace accel::snapshotter
