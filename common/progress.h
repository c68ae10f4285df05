#pragma once

// Progress of a long command (copying blobs, converting or pulling layers)
// on stdout. Lines that stay (Line) go out as they come; on a terminal a
// live line under them counts items and bytes, redrawn at most every 100 ms:
//
//   blobs 3/7, 12.5 of 40.0 MiB (31%)
//   layers 2/5, 310.2 MiB unpacked, 95.1 MB/s
//
// Without a terminal only the lines that stay are printed, so logs and
// tests see the same text every time.
//
// Thread-safe.

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace accel {

struct ProgressOptions {
  // Draw the live line (stdout is a terminal).
  bool tty = false;
  // What Step() counts ("blobs", "layers").
  std::string unit = "blobs";
  // What happens to the bytes, shown when their total is unknown.
  std::string bytes_verb = "transferred";
  // Show the byte rate since the start.
  bool show_rate = false;
};

class Progress {
 public:
  explicit Progress(ProgressOptions options);
  explicit Progress(bool tty) : Progress(ProgressOptions{.tty = tty}) {}

  bool tty() const { return options_.tty; }

  // Adds to the number of items (and of bytes, if known) expected.
  void AddTotal(int items, int64_t bytes = 0);
  // Sets the number of items expected.
  void SetTotal(int items);
  // Counts `delta` more bytes.
  void Bytes(int64_t delta);
  // Counts one item as done.
  void Step();
  // Prints `text` as a line that stays (above the live line).
  void Line(const std::string& text);
  // Counts one item as done and prints `text` for it.
  void StepLine(const std::string& text);
  // Clears the live line (at the end).
  void Finish();

 private:
  void PrintLine(const std::string& text) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Redraws the live line; unless `force`, at most every 100 ms.
  void Draw(bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ProgressOptions options_;
  const absl::Time start_;
  absl::Mutex mu_;
  int total_ ABSL_GUARDED_BY(mu_) = 0;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_draw_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace accel
