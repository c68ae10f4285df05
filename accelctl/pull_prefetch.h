#pragma once

// Prefetcher downloads an image's layer blobs into containerd's content
// store ahead of their unpacking, `parallel` at a time, in the order they
// are queued; unpacking stays serial (each layer is applied onto its
// parent). On destruction, downloads that have not started are dropped and
// running ones are cancelled and joined.
//
// Thread-safe.

#include <atomic>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "accelctl/containerd_client.h"
#include "common/progress.h"
#include "common/worker_pool.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace accel::ctl {

class Prefetcher {
 public:
  // Downloads blobs of `layers` (of image `ref`) through `client` into
  // `ctd`, counting bytes on `progress`. All must outlive the Prefetcher.
  Prefetcher(registry::Client& client, Containerd& ctd, const registry::Reference& ref,
             const std::vector<registry::Descriptor>& layers, int parallel, Progress& progress);
  ~Prefetcher();

  // Queues layer i for download (once).
  void Queue(size_t i);

  // Waits for layer i's blob to be in the content store (queuing it first
  // if needed) and returns how its download went.
  absl::Status Wait(size_t i);

 private:
  struct Slot {
    absl::Notification done;
    absl::Status status;
  };

  absl::Status Download(size_t i);

  registry::Client& client_;
  Containerd& ctd_;
  const registry::Reference& ref_;
  const std::vector<registry::Descriptor>& layers_;
  Progress& progress_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> cancelled_{false};
  // Last: destroyed first, so no download outlives what it uses.
  WorkerPool pool_;
};

}  // namespace accel::ctl
