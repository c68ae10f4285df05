#include "accelctl/store_flags.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "accel/v1/status.grpc.pb.h"
#include "snapshotter/config.h"

namespace accel::ctl {

absl::StatusOr<std::string> ResolveStoreDir(const std::string& flag,
                                            const std::string& config_path) {
  if (!flag.empty()) return flag;
  std::string path = config_path;
  struct stat st;
  if (path.empty() && ::stat(snapshotter::kDefaultConfigPath, &st) == 0) {
    path = snapshotter::kDefaultConfigPath;
  }
  if (!path.empty()) {
    absl::StatusOr<snapshotter::Config> config = snapshotter::LoadConfig(path);
    if (!config.ok()) return config.status();
    if (!config->store.empty()) return config->store;
    return absl::InvalidArgumentError(
        absl::StrCat("no store: ", path, " has no `store` key; pass --store DIR"));
  }
  return absl::InvalidArgumentError(absl::StrCat("no store: pass --store DIR (or set `store` in ",
                                                 snapshotter::kDefaultConfigPath, ")"));
}

std::string ResolveDaemonAddress(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("ACCEL_ADDRESS");
  if (env != nullptr && *env != '\0') return env;
  return snapshotter::kDefaultAddress;
}

absl::StatusOr<::accel::v1::GetStatusResponse> QueryDaemon(const std::string& address,
                                                           int timeout_seconds) {
  auto channel =
      grpc::CreateChannel(absl::StrCat("unix:", address), grpc::InsecureChannelCredentials());
  auto stub = ::accel::v1::Daemon::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds));
  ::accel::v1::GetStatusResponse resp;
  grpc::Status s = stub->GetStatus(&ctx, ::accel::v1::GetStatusRequest(), &resp);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("daemon at ", address, " does not answer: ", s.error_message()));
  }
  return resp;
}

}  // namespace accel::ctl
