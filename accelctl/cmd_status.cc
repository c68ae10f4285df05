// accelctl status: asks the daemon for its state and prints it as JSON.

#include <cstdio>
#include <cstdlib>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "accel/v1/status.grpc.pb.h"
#include "accelctl/commands.h"

namespace accel::ctl {
namespace {

constexpr char kDefaultAddress[] = "/run/accel-snapshotter/snapshotter.sock";

constexpr char kStatusUsage[] = R"(Usage: accelctl status [--address SOCKET] [--timeout SECONDS]

Prints the daemon's state as JSON: whether it answers, its version, root
directory, socket, pid, uptime, and how many snapshots it holds by kind.
Exits 1 (after printing {"daemon": "down", ...}) when the daemon does not answer.

  --address SOCKET   the daemon's socket (default $ACCEL_ADDRESS, else
                     /run/accel-snapshotter/snapshotter.sock)
  --timeout SECONDS  how long to wait for an answer (default 5)
)";

}  // namespace

int RunStatus(const Args& args) {
  std::string address = std::getenv("ACCEL_ADDRESS") ? std::getenv("ACCEL_ADDRESS") : "";
  if (address.empty()) address = kDefaultAddress;
  int timeout = 5;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kStatusUsage, stdout);
      return 0;
    } else if (a == "--address" && i + 1 < args.size()) {
      address = args[++i];
    } else if (a == "--timeout" && i + 1 < args.size()) {
      timeout = std::atoi(args[++i].c_str());
      if (timeout <= 0) return Fail("--timeout must be a positive number of seconds", 2);
    } else {
      return Fail(absl::StrCat("status: unexpected argument \"", a, "\" (see --help)"), 2);
    }
  }

  auto channel = grpc::CreateChannel(absl::StrCat("unix:", address),
                                     grpc::InsecureChannelCredentials());
  auto stub = ::accel::v1::Daemon::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout));
  ctx.set_wait_for_ready(false);
  ::accel::v1::GetStatusResponse resp;
  grpc::Status s = stub->GetStatus(&ctx, ::accel::v1::GetStatusRequest(), &resp);
  nlohmann::json out;
  out["address"] = address;
  if (!s.ok()) {
    out["daemon"] = "down";
    out["error"] = s.error_message();
    std::printf("%s\n", out.dump(2).c_str());
    return 1;
  }
  out["daemon"] = "up";
  out["version"] = resp.version();
  out["root"] = resp.root();
  out["pid"] = resp.pid();
  out["uptime_seconds"] = resp.uptime_seconds();
  out["snapshots"] = {{"active", resp.snapshots().active()},
                      {"committed", resp.snapshots().committed()},
                      {"view", resp.snapshots().view()}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace accel::ctl
