#pragma once

// Blob transfers shared by `accelctl copy` and `accelctl convert`: progress
// display and copying one blob between repositories.

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace accel::ctl {

// Progress of blob copies on stdout: a live line on a terminal, one line
// per blob otherwise. Thread-safe.
class Progress {
 public:
  explicit Progress(bool tty) : tty_(tty) {}
  void SetTotal(int blobs);
  void Bytes(int64_t delta);
  void Done(const registry::Descriptor& d, absl::string_view how);
  void Line(const std::string& text);
  void Finish();

 private:
  void Draw() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const bool tty_;
  absl::Mutex mu_;
  int total_ ABSL_GUARDED_BY(mu_) = 0;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// Copies blob `d` from `src` to `dst` unless `dst` has it: mounted within
// one registry, else downloaded into a temporary file (verified) and
// uploaded from it.
absl::Status CopyBlob(registry::Client& client, const registry::Reference& src,
                      const registry::Reference& dst, const registry::Descriptor& d,
                      Progress& progress);

}  // namespace accel::ctl
