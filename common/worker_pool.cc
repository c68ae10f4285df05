#include "common/worker_pool.h"

#include <algorithm>

namespace accel {

WorkerPool::WorkerPool(int threads) {
  for (int i = 0; i < std::max(threads, 1); ++i) threads_.emplace_back([this] { Work(); });
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    queue_.clear();
  }
  for (std::thread& t : threads_) t.join();
}

void WorkerPool::Submit(absl::AnyInvocable<void()> task) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(task));
}

void WorkerPool::Wait() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return queue_.empty() && running_ == 0; };
  mu_.Await(absl::Condition(&idle));
}

void WorkerPool::Work() {
  for (;;) {
    absl::AnyInvocable<void()> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    task();
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

absl::Status ParallelFor(size_t n, int parallelism, absl::FunctionRef<absl::Status(size_t)> fn) {
  if (n == 0) return absl::OkStatus();
  absl::Mutex mu;
  size_t next = 0;
  absl::Status first_error;
  auto worker = [&] {
    for (;;) {
      size_t i;
      {
        absl::MutexLock lock(&mu);
        if (!first_error.ok() || next >= n) return;
        i = next++;
      }
      absl::Status s = fn(i);
      if (!s.ok()) {
        absl::MutexLock lock(&mu);
        if (first_error.ok()) first_error = std::move(s);
        return;
      }
    }
  };
  const size_t threads = std::clamp<size_t>(static_cast<size_t>(std::max(parallelism, 1)), 1, n);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();  // the caller's thread is one of them
  for (std::thread& t : pool) t.join();
  return first_error;
}

}  // namespace accel
