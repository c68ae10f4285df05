#pragma once

// The daemon's wiring: opens the snapshotter, serves the gRPC services on a
// root-only unix socket, reports readiness to systemd, and shuts down in
// order on SIGTERM/SIGINT (stop accepting, let in-flight RPCs finish, close
// the database).

#include "absl/status/status.h"
#include "snapshotter/config.h"

namespace accel::snapshotter {

// Runs until SIGTERM or SIGINT. REQUIRES: those signals are blocked in every
// thread (call BlockTerminationSignals() first thing in main).
absl::Status RunDaemon(const Config& config);

// Blocks SIGTERM/SIGINT/SIGHUP so that RunDaemon can wait for them; threads
// created afterwards inherit the mask.
void BlockTerminationSignals();

}  // namespace accel::snapshotter
