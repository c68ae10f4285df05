#pragma once

// A fixed set of threads running queued tasks in the order they were
// queued, and ParallelFor on top of it: what accelctl's copies, conversions
// and pull downloads use to do N things at once. Plain blocking tasks on
// our own threads, no detached threads.
//
// Thread-safe.

#include <cstddef>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace accel {

class WorkerPool {
 public:
  // Starts `threads` threads (at least one).
  explicit WorkerPool(int threads);
  // Tasks still queued are dropped (never started); running ones finish;
  // the threads are joined. A task that must not be dropped is waited for
  // (Wait) before the pool goes.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; a free thread runs it, oldest task first.
  void Submit(absl::AnyInvocable<void()> task);

  // Blocks until every task submitted so far has run.
  void Wait();

 private:
  void Work();

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> queue_ ABSL_GUARDED_BY(mu_);
  size_t running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Runs fn(0), ..., fn(n - 1), up to `parallelism` at a time, lower indexes
// first. Once one returns an error no further index starts (those running
// finish); returns the first error returned, or OK.
absl::Status ParallelFor(size_t n, int parallelism, absl::FunctionRef<absl::Status(size_t)> fn);

}  // namespace accel
