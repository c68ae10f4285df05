#include "common/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/progress.h"
#include "tests/testing/status_matchers.h"

namespace accel {
namespace {

using ::accel::testing::StatusIs;

TEST(WorkerPoolTest, RunsEveryTaskAndWaitWaits) {
  std::atomic<int> ran{0};
  WorkerPool pool(3);
  for (int i = 0; i < 100; ++i) pool.Submit([&] { ran++; });
  pool.Wait();
  EXPECT_EQ(ran.load(), 100);
}

TEST(WorkerPoolTest, OneThreadRunsInOrder) {
  std::vector<int> order;
  WorkerPool pool(1);
  for (int i = 0; i < 10; ++i) pool.Submit([&order, i] { order.push_back(i); });
  pool.Wait();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(WorkerPoolTest, DestructionDropsWhatHasNotStarted) {
  absl::Notification started, release;
  std::atomic<int> ran{0};
  {
    WorkerPool pool(1);
    pool.Submit([&] {
      started.Notify();
      release.WaitForNotification();
      ran++;
    });
    for (int i = 0; i < 5; ++i) pool.Submit([&] { ran++; });
    started.WaitForNotification();
    release.Notify();
  }
  // The running task finished; of the queued ones, those the thread took
  // before the destructor cleared the queue ran, the rest did not.
  EXPECT_GE(ran.load(), 1);
  EXPECT_LE(ran.load(), 6);
}

TEST(ParallelForTest, RunsEachIndexOnceWithBoundedParallelism) {
  std::vector<std::atomic<int>> hits(50);
  std::atomic<int> running{0}, most{0};
  ASSERT_OK(ParallelFor(hits.size(), 4, [&](size_t i) {
    const int now = ++running;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    hits[i]++;
    --running;
    return absl::OkStatus();
  }));
  for (const auto& h : hits) EXPECT_EQ(h.load(), 1);
  EXPECT_LE(most.load(), 4);
  EXPECT_OK(ParallelFor(0, 4, [](size_t) { return absl::InternalError("never"); }));
}

TEST(ParallelForTest, StopsStartingAfterTheFirstError) {
  std::atomic<int> started{0};
  absl::Status s = ParallelFor(1000, 1, [&](size_t i) {
    started++;
    return i == 3 ? absl::NotFoundError("layer 4") : absl::OkStatus();
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(started.load(), 4);
}

TEST(ProgressTest, WithoutATerminalOnlyLinesThatStay) {
  ::testing::internal::CaptureStdout();
  {
    Progress p(false);
    p.AddTotal(2, 100);
    p.Bytes(50);
    p.Line("pulling x");
    p.Step();
    p.StepLine("layer 2 done");
    p.Finish();
  }
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "pulling x\nlayer 2 done\n");
}

TEST(ProgressTest, OnATerminalALiveLine) {
  ::testing::internal::CaptureStdout();
  {
    Progress p({.tty = true, .unit = "layers", .bytes_verb = "unpacked"});
    p.SetTotal(3);
    p.StepLine("layer a stored");
  }
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("layer a stored\n"), std::string::npos) << out;
  EXPECT_NE(out.find("layers 1/3, 0.0 MiB unpacked"), std::string::npos) << out;
}

}  // namespace
}  // namespace accel
