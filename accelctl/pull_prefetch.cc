#include "accelctl/pull_prefetch.h"

namespace accel::ctl {

Prefetcher::Prefetcher(registry::Client& client, Containerd& ctd, const registry::Reference& ref,
                       const std::vector<registry::Descriptor>& layers, int parallel,
                       Progress& progress)
    : client_(client),
      ctd_(ctd),
      ref_(ref),
      layers_(layers),
      progress_(progress),
      slots_(layers.size()),
      pool_(parallel) {}

Prefetcher::~Prefetcher() { cancelled_ = true; }

void Prefetcher::Queue(size_t i) {
  absl::MutexLock lock(&mu_);
  if (slots_[i]) return;
  slots_[i] = std::make_unique<Slot>();
  progress_.AddTotal(1, layers_[i].size);
  Slot* slot = slots_[i].get();
  pool_.Submit([this, i, slot] {
    slot->status = Download(i);
    slot->done.Notify();
  });
}

absl::Status Prefetcher::Wait(size_t i) {
  Queue(i);
  Slot* slot;
  {
    absl::MutexLock lock(&mu_);
    slot = slots_[i].get();
  }
  slot->done.WaitForNotification();
  return slot->status;
}

absl::Status Prefetcher::Download(size_t i) {
  if (cancelled_) return absl::CancelledError("pull stopped");
  const registry::Descriptor& d = layers_[i];
  int64_t got = 0;
  absl::StatusOr<bool> written = ctd_.WriteBlob(d, [&](const Containerd::BlobSink& sink) {
    if (cancelled_) return absl::CancelledError("pull stopped");
    return client_.FetchBlob(ref_, d, [&](absl::string_view data) -> absl::Status {
      if (cancelled_) return absl::CancelledError("pull stopped");
      got += static_cast<int64_t>(data.size());
      progress_.Bytes(static_cast<int64_t>(data.size()));
      return sink(data);
    });
  });
  // What containerd already had counts as done.
  if (written.ok() && got < d.size) progress_.Bytes(d.size - got);
  return written.status();
}

}  // namespace accel::ctl
