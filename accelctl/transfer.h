#pragma once

// Blob transfers shared by `accelctl copy`, `convert` and `estargz`: copying
// one blob between repositories, and streaming one into a reader.

#include <cstring>
#include <deque>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/progress.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace accel::ctl {

// Prints the line for blob `d` done `how` ("copied", "mounted", "exists")
// and counts it.
void BlobDone(Progress& progress, const registry::Descriptor& d, absl::string_view how);

// Copies blob `d` from `src` to `dst` unless `dst` has it: mounted within
// one registry, else downloaded into a temporary file (verified) and
// uploaded from it.
absl::Status CopyBlob(registry::Client& client, const registry::Reference& src,
                      const registry::Reference& dst, const registry::Descriptor& d,
                      Progress& progress);

// A bounded byte queue between a download (which pushes) and the store
// writer (which pulls). Either side can end it early.
class BlobPipe {
 public:
  explicit BlobPipe(size_t capacity) : capacity_(capacity) {}

  // Producer: blocks while full. Cancelled once the reader has gone.
  absl::Status Push(absl::string_view chunk) {
    absl::MutexLock lock(&mu_);
    auto room = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return reader_gone_ || buffered_ < capacity_;
    };
    mu_.Await(absl::Condition(&room));
    if (reader_gone_) return absl::CancelledError("the store writer stopped reading");
    chunks_.emplace_back(chunk);
    buffered_ += chunk.size();
    return absl::OkStatus();
  }
  // Producer: no more data; `status` is the download's result.
  void Close(absl::Status status) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    status_ = std::move(status);
  }
  // Consumer: up to `len` bytes, 0 at the end, or the download's error.
  absl::StatusOr<size_t> Read(char* buf, size_t len) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return closed_ || !chunks_.empty(); };
    mu_.Await(absl::Condition(&ready));
    if (chunks_.empty()) {
      if (!status_.ok()) return status_;
      return size_t{0};
    }
    std::string& front = chunks_.front();
    size_t n = std::min(len, front.size() - front_pos_);
    std::memcpy(buf, front.data() + front_pos_, n);
    front_pos_ += n;
    buffered_ -= n;
    if (front_pos_ == front.size()) {
      chunks_.pop_front();
      front_pos_ = 0;
    }
    return n;
  }
  // Consumer: stops the producer.
  void ReaderGone() {
    absl::MutexLock lock(&mu_);
    reader_gone_ = true;
  }

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<std::string> chunks_ ABSL_GUARDED_BY(mu_);
  size_t front_pos_ ABSL_GUARDED_BY(mu_) = 0;
  size_t buffered_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool reader_gone_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};
// Streams blob `desc` of `src` into `pipe` (verified by the client) on a
// thread of its own; join the returned thread after the reader is done
// (call pipe.ReaderGone() first if it stops early).
std::thread StartDownload(registry::Client& client, const registry::Reference& src,
                          const registry::Descriptor& desc, BlobPipe& pipe);

}  // namespace accel::ctl
