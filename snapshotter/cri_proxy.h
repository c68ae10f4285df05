#pragma once

// The CRI image proxy: kubelet's --image-service-endpoint points at the
// daemon, which forwards every runtime.v1 ImageService call (ListImages,
// ImageStatus, PullImage, RemoveImage, ImageFsInfo) unchanged to
// containerd's CRI plugin, and answers with containerd's reply and status.
//
// Why: kubelet passes a private registry's credentials (imagePullSecrets)
// only in PullImage; containerd uses them for the pull and never passes them
// to a proxy snapshotter. Lazy eStargz layers are read from the registry
// long after the pull, so the proxy hands PullImage's AuthConfig to the
// daemon's registry client (Client::SetCredentials) for the registry host of
// the image reference, before forwarding the call (the snapshotter mounts
// the lazy layers during the pull).
//
// Credentials live in memory only: never written to disk, never logged,
// never in an error message. A PullImage that fails leaves the credentials
// it carried in place (a later pull with other credentials replaces them).
// AuthConfig.registry_token (a bearer token kubelet got elsewhere) is not
// used by accel; username/password, auth (base64 "user:pass") and
// identity_token are.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "registry/auth.h"

namespace accel::registry {
class Client;
}

namespace accel::snapshotter {

struct CriProxyOptions {
  // containerd's socket (its CRI plugin serves the ImageService there).
  std::string upstream;
  // Receives PullImage credentials; may be null (lazy loading off): then the
  // proxy only forwards.
  registry::Client* registry = nullptr;
};

// The ImageService to register on a grpc::ServerBuilder. The registry
// client must outlive it.
std::unique_ptr<grpc::Service> NewCriImageProxy(CriProxyOptions options);

// What PullImage's AuthConfig amounts to, for the registry of `image` (a CRI
// image reference, e.g. "registry.example/app:v1"). Exposed for tests.
struct PullCredentials {
  std::string host;                   // normalised registry host of the image
  registry::Credentials credentials;  // empty: the pull carried none
};
// InvalidArgument (naming `image`, never a secret) if the reference does not
// parse or the base64 `auth` is malformed.
absl::StatusOr<PullCredentials> CredentialsFromAuthConfig(const std::string& image,
                                                          const std::string& username,
                                                          const std::string& password,
                                                          const std::string& auth,
                                                          const std::string& identity_token);

}  // namespace accel::snapshotter
