// MountTable, LayerResolver and StoreLayers through their small interfaces:
// fakes for the layer source, the mounter, the records and the fd store
// (no kernel, no database).

#include "snapshotter/mount_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/chain_id.h"
#include "common/labels.h"
#include "fuse/layer_tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "snapshotter/store_layers.h"
#include "tests/testing/status_matchers.h"

namespace accel::snapshotter {
namespace {

using ::accel::testing::StatusIs;
using ::testing::HasSubstr;

const std::string kDiff = "sha256:" + std::string(64, 'a');

// Recognises labels with "test/layer"; Load fails while `broken`.
class FakeSource final : public LayerSource {
 public:
  explicit FakeSource(std::string kind, bool with_diff = true)
      : kind_(kind), with_diff_(with_diff) {}
  std::string kind() const override { return kind_; }
  fuse::FuseServer::Pool pool() const override { return fuse::FuseServer::Pool::kLocal; }
  std::optional<LayerMatch> Identify(const Labels& labels) override {
    auto it = labels.find("test/layer");
    if (it == labels.end()) return std::nullopt;
    return LayerMatch{kind_, it->second, with_diff_ ? it->second : ""};
  }
  absl::StatusOr<std::optional<LoadedLayer>> Load(const Labels&, const LayerMatch& m,
                                                  bool) override {
    loads++;
    if (broken) return absl::NotFoundError("layer " + m.layer + " is gone");
    LoadedLayer l;
    l.id = m.layer;
    l.fsname = "test";
    return std::optional<LoadedLayer>(l);
  }
  std::atomic<bool> broken{false};
  std::atomic<int> loads{0};

 private:
  std::string kind_;
  bool with_diff_;
};

class FakeMounter final : public LayerMounter {
 public:
  absl::StatusOr<fuse::proto::ConnParams> Mount(const std::string& mp, const LoadedLayer&,
                                                fuse::FuseServer::Pool) override {
    absl::MutexLock l(&mu);
    log.push_back("mount " + mp);
    return fuse::proto::ConnParams{7, 31, 0, 1, 2, 3};
  }
  absl::Status Adopt(const std::string& mp, UniqueFd, const fuse::proto::ConnParams& c,
                     fuse::FuseServer::Pool) override {
    absl::MutexLock l(&mu);
    log.push_back("adopt " + mp + " " + c.Serialize());
    return absl::OkStatus();
  }
  absl::Status Serve(const std::string& mp, const LoadedLayer&) override {
    absl::MutexLock l(&mu);
    log.push_back("serve " + mp);
    return absl::OkStatus();
  }
  absl::Status Fail(const std::string& mp) override {
    absl::MutexLock l(&mu);
    log.push_back("fail " + mp);
    return absl::OkStatus();
  }
  absl::Status Unmount(const std::string& mp) override {
    absl::MutexLock l(&mu);
    log.push_back("unmount " + mp);
    return busy ? absl::FailedPreconditionError("busy") : absl::OkStatus();
  }
  absl::StatusOr<UniqueFd> DupDevice(const std::string&) override {
    return UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  }
  absl::Status DetachStale(const std::string&) override { return absl::OkStatus(); }
  std::vector<std::string> Log() {
    absl::MutexLock l(&mu);
    return log;
  }
  bool busy = false;
  absl::Mutex mu;
  std::vector<std::string> log ABSL_GUARDED_BY(mu);
};

class MemRecords final : public MountRecords {
 public:
  absl::StatusOr<std::vector<MountRecord>> List() override {
    absl::MutexLock l(&mu);
    std::vector<MountRecord> out;
    for (auto& [k, v] : rows) out.push_back(v);
    return out;
  }
  absl::Status Put(const MountRecord& r) override {
    absl::MutexLock l(&mu);
    rows[r.mountpoint] = r;
    return absl::OkStatus();
  }
  absl::Status Delete(const std::string& mp) override {
    absl::MutexLock l(&mu);
    rows.erase(mp);
    return absl::OkStatus();
  }
  absl::Mutex mu;
  std::map<std::string, MountRecord> rows;
};

class MemFds final : public FdStore {
 public:
  std::string kind() const override { return "test"; }
  absl::StatusOr<std::map<std::string, UniqueFd>> Fetch() override {
    return std::map<std::string, UniqueFd>();
  }
  absl::Status Put(const std::string& name, int) override {
    absl::MutexLock l(&mu);
    names.insert(name);
    return absl::OkStatus();
  }
  absl::Status Remove(const std::string& name) override {
    absl::MutexLock l(&mu);
    names.erase(name);
    return absl::OkStatus();
  }
  absl::Mutex mu;
  std::set<std::string> names;
};

Labels LayerLabels(const std::string& layer, const std::string& target) {
  return {{"test/layer", layer}, {kTargetRefLabel, target}};
}

TEST(LayerResolverTest, ChecksTheChainIdForEveryKindAndFallsThrough) {
  FakeSource a("a"), b("b", /*with_diff=*/false);
  LayerResolver r;
  r.Add(&a);
  r.Add(&b);
  // Bottom layer: the target must be the diff id itself.
  ASSERT_OK_AND_ASSIGN(auto got, r.Resolve(LayerLabels(kDiff, kDiff), ""));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->source, &a);
  // Above a parent ("ns/id/name" form): sha256("<parent> <diff>").
  const std::string parent = "sha256:" + std::string(64, 'b');
  ASSERT_OK_AND_ASSIGN(got,
                       r.Resolve(LayerLabels(kDiff, ChainId(parent, kDiff)), "ns/3/" + parent));
  EXPECT_EQ(got->source, &a);
  // A target that is not the chain id: not served by `a`; `b` (no diff id
  // known) is asked next.
  ASSERT_OK_AND_ASSIGN(got, r.Resolve(LayerLabels(kDiff, "sha256:other"), parent));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->source, &b);
  // A failing source: the next is asked; if none serves, the error.
  a.broken = true;
  ASSERT_OK_AND_ASSIGN(got, r.Resolve(LayerLabels(kDiff, kDiff), ""));
  EXPECT_EQ(got->source, &b);
  b.broken = true;
  EXPECT_THAT(r.Resolve(LayerLabels(kDiff, kDiff), ""), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(r.Find("b"), &b);
  EXPECT_EQ(r.Find("c"), nullptr);
}

class MountTableTest : public ::testing::Test {
 protected:
  MountTableTest() { resolver_.Add(&source_); }
  std::unique_ptr<MountTable> Table(std::map<std::string, UniqueFd> held = {}) {
    MountTableOptions o;
    o.restore_wait = absl::Milliseconds(200);
    o.retry_initial = absl::Milliseconds(50);
    o.retry_max = absl::Milliseconds(100);
    o.restore_threads = 2;
    return std::make_unique<MountTable>(&resolver_, &mounter_, &records_, &fds_, std::move(held),
                                        o);
  }
  std::string State(MountTable& t, const std::string& mp) {
    for (const MountStatus& s : t.Status()) {
      if (s.mountpoint == mp) return s.state;
    }
    return "";
  }
  bool WaitState(MountTable& t, const std::string& mp, const std::string& want) {
    for (int i = 0; i < 200; ++i) {
      if (State(t, mp) == want) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  FakeSource source_{"fake"};
  LayerResolver resolver_;
  FakeMounter mounter_;
  MemRecords records_;
  MemFds fds_;
};

TEST_F(MountTableTest, MountPersistsAndKeepsTheDescriptorUnmountForgetsBoth) {
  auto t = Table();
  ASSERT_OK_AND_ASSIGN(std::string kind, t->Mount(LayerLabels(kDiff, kDiff), "", "/m/1"));
  EXPECT_EQ(kind, "fake");
  ASSERT_EQ(records_.rows.size(), 1u);
  EXPECT_EQ(records_.rows["/m/1"].snapshot, kDiff);
  EXPECT_EQ(records_.rows["/m/1"].conn, "7.31 flags=0x0 ra=1 mw=2 mp=3");
  EXPECT_TRUE(fds_.names.contains(MountTable::FdName("/m/1")));
  EXPECT_EQ(State(*t, "/m/1"), "serving");
  // Not remote: nothing happens.
  ASSERT_OK_AND_ASSIGN(kind, t->Mount({{kTargetRefLabel, kDiff}}, "", "/m/2"));
  EXPECT_EQ(kind, "");
  mounter_.busy = true;
  EXPECT_THAT(t->Unmount("/m/1"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(records_.rows.size(), 1u) << "a busy unmount keeps the record";
  mounter_.busy = false;
  ASSERT_OK(t->Unmount("/m/1"));
  EXPECT_TRUE(records_.rows.empty());
  EXPECT_TRUE(fds_.names.empty());
  EXPECT_TRUE(t->Status().empty());
}

TEST_F(MountTableTest, RestoreAdoptsKeptConnectionsAndServesThemOnceLoaded) {
  records_.rows["/m/1"] =
      MountRecord{"/m/1", kDiff, "fake", kDiff, "7.31 flags=0x0 ra=1 mw=2 mp=3"};
  records_.rows["/m/gone"] = MountRecord{"/m/gone", "sha256:gone", "fake", kDiff, ""};
  std::map<std::string, UniqueFd> held;
  held[MountTable::FdName("/m/1")] = UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  held[MountTable::FdName("/m/stale")] = UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  fds_.names.insert(MountTable::FdName("/m/stale"));
  auto t = Table(std::move(held));
  Labels labels = LayerLabels(kDiff, kDiff);
  labels[kRemoteKindLabel] = "fake";
  ASSERT_OK(t->RestoreAll(
      {RemoteSnapshot{kDiff, labels, "/m/1"}, RemoteSnapshot{"sha256:x", labels, "/m/2"}}));
  ASSERT_TRUE(WaitState(*t, "/m/1", "serving"));
  ASSERT_TRUE(WaitState(*t, "/m/2", "serving"));
  std::vector<std::string> log = mounter_.Log();
  EXPECT_THAT(log, ::testing::Contains("adopt /m/1 7.31 flags=0x0 ra=1 mw=2 mp=3"));
  EXPECT_THAT(log, ::testing::Contains("serve /m/1"));
  EXPECT_THAT(log, ::testing::Contains("mount /m/2")) << "no kept connection: mounted again";
  EXPECT_FALSE(records_.rows.contains("/m/gone")) << "a removed snapshot's record is dropped";
  EXPECT_FALSE(fds_.names.contains(MountTable::FdName("/m/stale")));
  EXPECT_TRUE(records_.rows.contains("/m/2"));
}

TEST_F(MountTableTest, ALayerThatCannotBeRestoredFailsWithEioAndIsRetried) {
  records_.rows["/m/1"] =
      MountRecord{"/m/1", kDiff, "fake", kDiff, "7.31 flags=0x0 ra=1 mw=2 mp=3"};
  std::map<std::string, UniqueFd> held;
  held[MountTable::FdName("/m/1")] = UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  source_.broken = true;
  auto t = Table(std::move(held));
  Labels labels = LayerLabels(kDiff, kDiff);
  labels[kRemoteKindLabel] = "fake";
  ASSERT_OK(t->RestoreAll(
      {RemoteSnapshot{kDiff, labels, "/m/1"}, RemoteSnapshot{"sha256:y", labels, "/m/2"}}));
  ASSERT_TRUE(WaitState(*t, "/m/1", "failed"));
  EXPECT_THAT(mounter_.Log(), ::testing::Contains("fail /m/1")) << "readers get EIO";
  absl::Status refused = t->CheckServable({"/m/1"});
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(refused.message()), HasSubstr(kDiff));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("is gone"));
  EXPECT_THAT(t->CheckServable({"/m/2"}), StatusIs(absl::StatusCode::kUnavailable));
  const int loads = source_.loads;
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_GT(source_.loads, loads) << "restore keeps retrying";
  source_.broken = false;
  ASSERT_TRUE(WaitState(*t, "/m/1", "serving"));
  ASSERT_TRUE(WaitState(*t, "/m/2", "serving"));
  EXPECT_OK(t->CheckServable({"/m/1", "/m/2"}));
  for (const MountStatus& s : t->Status()) EXPECT_GT(s.attempts, 1);
}

TEST(StoreLayersTest, RecognisesOnlyValidStoreLabelsAndFallsBackWithoutAStore) {
  StoreLayers none("");
  EXPECT_FALSE(none.Identify({{"x", "y"}}).has_value());
  EXPECT_FALSE(none.Identify({{kStoreLayerLabel, "sha256:short"}}).has_value());
  std::optional<LayerMatch> m = none.Identify({{kStoreLayerLabel, kDiff}});
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->diff_id, kDiff);
  ASSERT_OK_AND_ASSIGN(auto loaded, none.Load({}, *m, false));
  EXPECT_FALSE(loaded.has_value()) << "no store: downloaded";
  EXPECT_THAT(none.Load({}, *m, true), StatusIs(absl::StatusCode::kFailedPrecondition));
  StoreLayers missing("/nonexistent/store");
  ASSERT_OK_AND_ASSIGN(loaded, missing.Load({}, *m, false));
  EXPECT_FALSE(loaded.has_value());
  EXPECT_FALSE(missing.Load({}, *m, true).ok());
  EXPECT_FALSE(missing.Status().reachable);
}

}  // namespace
}  // namespace accel::snapshotter
