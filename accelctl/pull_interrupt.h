#pragma once

// InterruptCleanup: SIGINT, SIGTERM or SIGHUP during a pull deletes the
// pull's lease with a synchronous garbage collection, so containerd removes
// every blob and snapshot the pull wrote and nothing half-done is left, then
// exits with 128 + the signal. The handler only writes the signal number to
// a pipe; a thread of its own does the rest. Signals ignored when the pull
// starts (a background job's SIGINT, nohup's SIGHUP) stay ignored. A second
// signal kills at once (if the cleanup hangs; it gives up after 60 s).
//
// One per process at a time; constructed and destroyed on the main thread.

#include <signal.h>

#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "accelctl/containerd_client.h"

namespace accel::ctl {

class InterruptCleanup {
 public:
  // From now on a signal deletes the lease in `box` through containerd at
  // `address`, namespace `ns`.
  InterruptCleanup(std::string address, std::string ns, LeaseBox& box);
  // Restores the signal dispositions and stops the cleanup thread.
  ~InterruptCleanup();
  InterruptCleanup(const InterruptCleanup&) = delete;
  InterruptCleanup& operator=(const InterruptCleanup&) = delete;

 private:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::vector<std::pair<int, struct sigaction>> installed_;
  std::thread thread_;
};

}  // namespace accel::ctl
