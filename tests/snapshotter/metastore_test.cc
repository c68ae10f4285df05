#include "snapshotter/metastore.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/time/clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::snapshotter {
namespace {

using ::accel::testing::StatusIs;
using ::accel::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

class MetaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ms = MetaStore::Open(tmp_.path() + "/metadata.db");
    ASSERT_OK(ms.status());
    ms_ = std::move(*ms);
  }

  // Creates an active snapshot and commits it as `name`.
  void Committed(const std::string& name, const std::string& parent) {
    auto tx = ms_->Begin(true);
    ASSERT_OK(tx.status());
    ASSERT_OK(ms_->CreateSnapshot(*tx, Kind::kActive, name + "-active", parent, {}, absl::Now()));
    ASSERT_OK(ms_->CommitActive(*tx, name + "-active", name, {}, {}, absl::Now()));
    ASSERT_OK(tx->Commit());
  }

  TempDir tmp_;
  std::unique_ptr<MetaStore> ms_;
};

TEST_F(MetaStoreTest, CreateGetAndLabels) {
  ASSERT_OK_AND_ASSIGN(Transaction tx, ms_->Begin(true));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord rec,
                       ms_->CreateSnapshot(tx, Kind::kActive, "a", "", {{"k", "v"}}, absl::Now()));
  EXPECT_GT(rec.id, 0);
  EXPECT_EQ(rec.info.kind, Kind::kActive);
  EXPECT_THAT(rec.parent_ids, IsEmpty());
  ASSERT_OK(tx.Commit());

  ASSERT_OK_AND_ASSIGN(Transaction rtx, ms_->Begin(false));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord got, ms_->Get(rtx, "a"));
  EXPECT_EQ(got.id, rec.id);
  EXPECT_EQ(got.info.labels.at("k"), "v");
  EXPECT_THAT(ms_->Get(rtx, "missing"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(MetaStoreTest, CreateErrorsMatchContainerd) {
  Committed("base", "");
  ASSERT_OK_AND_ASSIGN(Transaction tx, ms_->Begin(true));
  ASSERT_OK(ms_->CreateSnapshot(tx, Kind::kActive, "a", "base", {}, absl::Now()));
  EXPECT_THAT(ms_->CreateSnapshot(tx, Kind::kActive, "a", "", {}, absl::Now()),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(ms_->CreateSnapshot(tx, Kind::kActive, "", "", {}, absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ms_->CreateSnapshot(tx, Kind::kActive, "b", "nope", {}, absl::Now()),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ms_->CreateSnapshot(tx, Kind::kActive, "b", "a", {}, absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument));  // parent not committed
  EXPECT_THAT(ms_->CreateSnapshot(tx, Kind::kCommitted, "c", "", {}, absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(MetaStoreTest, ParentIdsNearestFirst) {
  Committed("l1", "");
  Committed("l2", "l1");
  Committed("l3", "l2");
  ASSERT_OK_AND_ASSIGN(Transaction tx, ms_->Begin(true));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord top,
                       ms_->CreateSnapshot(tx, Kind::kActive, "top", "l3", {}, absl::Now()));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord l1, ms_->Get(tx, "l1"));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord l2, ms_->Get(tx, "l2"));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord l3, ms_->Get(tx, "l3"));
  EXPECT_THAT(top.parent_ids, ElementsAre(l3.id, l2.id, l1.id));
  EXPECT_EQ(top.info.parent, "l3");
}

TEST_F(MetaStoreTest, CommitKeepsIdReplacesLabelsAndChecksKind) {
  ASSERT_OK_AND_ASSIGN(Transaction tx, ms_->Begin(true));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord a, ms_->CreateSnapshot(tx, Kind::kActive, "a", "",
                                                             {{"old", "1"}}, absl::Now()));
  ASSERT_OK(ms_->CreateSnapshot(tx, Kind::kView, "v", "", {}, absl::Now()));
  EXPECT_THAT(ms_->CommitActive(tx, "v", "vc", {}, {}, absl::Now()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ms_->CommitActive(tx, "missing", "x", {}, {}, absl::Now()),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ms_->CommitActive(tx, "a", "v", {}, {}, absl::Now()),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(int64_t id,
                       ms_->CommitActive(tx, "a", "c", {{"new", "2"}}, {4096, 3}, absl::Now()));
  EXPECT_EQ(id, a.id);
  EXPECT_THAT(ms_->Get(tx, "a"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord c, ms_->Get(tx, "c"));
  EXPECT_EQ(c.info.kind, Kind::kCommitted);
  EXPECT_EQ(c.info.labels, (Labels{{"new", "2"}}));
  EXPECT_EQ(c.usage.size, 4096);
  EXPECT_EQ(c.usage.inodes, 3);
}

TEST_F(MetaStoreTest, RemoveRefusesParentsAndIdsAreNotReused) {
  Committed("base", "");
  ASSERT_OK_AND_ASSIGN(Transaction tx, ms_->Begin(true));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord child,
                       ms_->CreateSnapshot(tx, Kind::kActive, "child", "base", {}, absl::Now()));
  EXPECT_THAT(ms_->Remove(tx, "base"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ms_->Remove(tx, "nope"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(ms_->Remove(tx, "child").status());
  ASSERT_OK(tx.Commit());
  ASSERT_OK_AND_ASSIGN(Transaction tx2, ms_->Begin(true));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord again,
                       ms_->CreateSnapshot(tx2, Kind::kActive, "child", "base", {}, absl::Now()));
  EXPECT_GT(again.id, child.id) << "a removed id must never be handed out again";
}

TEST_F(MetaStoreTest, UpdateFieldPaths) {
  ASSERT_OK_AND_ASSIGN(Transaction tx, ms_->Begin(true));
  ASSERT_OK(ms_->CreateSnapshot(tx, Kind::kActive, "a", "", {{"x", "1"}, {"y", "2"}}, absl::Now()));
  Info in;
  in.name = "a";
  in.labels = {{"y", "20"}, {"z", "30"}};
  ASSERT_OK_AND_ASSIGN(Info one, ms_->UpdateInfo(tx, in, {"labels.y"}, absl::Now()));
  EXPECT_EQ(one.labels, (Labels{{"x", "1"}, {"y", "20"}}));
  ASSERT_OK_AND_ASSIGN(Info del, ms_->UpdateInfo(tx, in, {"labels.x"}, absl::Now()));
  EXPECT_EQ(del.labels, (Labels{{"y", "20"}})) << "a label absent from info is deleted";
  ASSERT_OK_AND_ASSIGN(Info all, ms_->UpdateInfo(tx, in, {}, absl::Now()));
  EXPECT_EQ(all.labels, in.labels);
  EXPECT_THAT(ms_->UpdateInfo(tx, in, {"name"}, absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  in.name = "missing";
  EXPECT_THAT(ms_->UpdateInfo(tx, in, {}, absl::Now()), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(MetaStoreTest, UncommittedTransactionRollsBack) {
  {
    ASSERT_OK_AND_ASSIGN(Transaction tx, ms_->Begin(true));
    ASSERT_OK(ms_->CreateSnapshot(tx, Kind::kActive, "gone", "", {}, absl::Now()));
  }
  ASSERT_OK_AND_ASSIGN(Transaction tx, ms_->Begin(false));
  EXPECT_THAT(ms_->Get(tx, "gone"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(MetaStoreTest, SurvivesKillDuringWrites) {
  // A child process writes committed transactions and is killed with
  // SIGKILL mid-stream; the database must open and hold a prefix of them.
  std::string path = tmp_.path() + "/crash.db";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto ms = MetaStore::Open(path);
    if (!ms.ok()) ::_exit(3);
    for (int i = 0;; ++i) {
      auto tx = (*ms)->Begin(true);
      if (!tx.ok()) ::_exit(4);
      std::string key = "k" + std::to_string(i);
      if (!(*ms)->CreateSnapshot(*tx, Kind::kActive, key, "", {{"i", key}}, absl::Now()).ok())
        ::_exit(5);
      if (!tx->Commit().ok()) ::_exit(6);
      if (i == 50) {
        // Tell the parent we are well under way.
        ::close(::open((path + ".go").c_str(), O_CREAT | O_WRONLY, 0600));
      }
    }
  }
  while (::access((path + ".go").c_str(), F_OK) != 0) {
    int status;
    ASSERT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "writer exited early";
    ::usleep(1000);
  }
  ::kill(pid, SIGKILL);
  int status;
  ::waitpid(pid, &status, 0);
  ASSERT_OK_AND_ASSIGN(auto ms, MetaStore::Open(path));
  ASSERT_OK_AND_ASSIGN(Transaction tx, ms->Begin(false));
  int count = 0;
  int64_t last = 0;
  ASSERT_OK(ms->Walk(tx, [&](const SnapshotRecord& rec) {
    ++count;
    EXPECT_GT(rec.id, last);
    last = rec.id;
    EXPECT_EQ(rec.info.labels.at("i"), rec.info.name) << "labels belong to their snapshot";
    return absl::OkStatus();
  }));
  EXPECT_GE(count, 51);
  for (int i = 0; i < count; ++i) {
    EXPECT_OK(ms->Get(tx, "k" + std::to_string(i)).status()) << "a prefix of the writes, no gaps";
  }
}

}  // namespace
}  // namespace accel::snapshotter
