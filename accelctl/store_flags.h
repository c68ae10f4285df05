#pragma once

// Finding the shared store and the daemon, for the commands that need them.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "accel/v1/status.pb.h"

namespace accel::ctl {

// The store directory: `flag` if given, else the `store` key of the daemon
// config (`config_path`, or /etc/accel/config.toml when that exists).
// InvalidArgument (saying how to name one) when neither gives a store.
absl::StatusOr<std::string> ResolveStoreDir(const std::string& flag,
                                            const std::string& config_path);

// The daemon's socket: `flag`, else $ACCEL_ADDRESS, else the daemon's
// default (snapshotter::kDefaultAddress).
std::string ResolveDaemonAddress(const std::string& flag);

// Asks the daemon at `address` for its status; an error if it does not
// answer within `timeout_seconds`.
absl::StatusOr<::accel::v1::GetStatusResponse> QueryDaemon(const std::string& address,
                                                           int timeout_seconds);

}  // namespace accel::ctl
