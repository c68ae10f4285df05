#include "common/progress.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace accel {

Progress::Progress(ProgressOptions options) : options_(std::move(options)), start_(absl::Now()) {}

void Progress::AddTotal(int items, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  total_ += items;
  total_bytes_ += bytes;
}

void Progress::SetTotal(int items) {
  absl::MutexLock lock(&mu_);
  total_ = items;
}

void Progress::Bytes(int64_t delta) {
  absl::MutexLock lock(&mu_);
  bytes_ += delta;
  Draw(/*force=*/false);
}

void Progress::Step() {
  absl::MutexLock lock(&mu_);
  ++done_;
  Draw(/*force=*/true);
}

void Progress::Line(const std::string& text) {
  absl::MutexLock lock(&mu_);
  PrintLine(text);
}

void Progress::StepLine(const std::string& text) {
  absl::MutexLock lock(&mu_);
  ++done_;
  PrintLine(text);
  Draw(/*force=*/true);
}

void Progress::Finish() {
  absl::MutexLock lock(&mu_);
  if (options_.tty) std::fprintf(stdout, "\r\033[K");
  std::fflush(stdout);
}

void Progress::PrintLine(const std::string& text) {
  if (options_.tty) std::fprintf(stdout, "\r\033[K");
  std::fprintf(stdout, "%s\n", text.c_str());
  std::fflush(stdout);
}

void Progress::Draw(bool force) {
  if (!options_.tty) return;
  const absl::Time now = absl::Now();
  if (!force && now - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = now;
  const double mib = static_cast<double>(bytes_) / (1 << 20);
  std::string line = absl::StrFormat("%s %d/%d, ", options_.unit, done_, total_);
  if (total_bytes_ > 0) {
    absl::StrAppendFormat(&line, "%.1f of %.1f MiB (%d%%)", mib,
                          static_cast<double>(total_bytes_) / (1 << 20),
                          static_cast<int>(std::min<int64_t>(100, bytes_ * 100 / total_bytes_)));
  } else {
    absl::StrAppendFormat(&line, "%.1f MiB %s", mib, options_.bytes_verb);
  }
  if (options_.show_rate) {
    const double secs = std::max(1e-3, absl::ToDoubleSeconds(now - start_));
    absl::StrAppendFormat(&line, ", %.1f MB/s", static_cast<double>(bytes_) / 1e6 / secs);
  }
  std::fprintf(stdout, "\r\033[K%s", line.c_str());
  std::fflush(stdout);
}

}  // namespace accel
