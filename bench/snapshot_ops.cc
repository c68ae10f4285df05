// snapshot_ops: measures snapshot operation latency through containerd's
// snapshots service (containerd -> snapshotter), for several snapshotters in
// the same run, and prints each one's latency and its ratio to the first
// (the baseline).
//
//   snapshot_ops --address /run/containerd/containerd.sock
//       --snapshotters overlayfs,accel --iterations 200
//
// One iteration: Prepare(active above a committed parent) -> Commit ->
// Prepare(child) -> Mounts -> Remove(child) -> Remove(committed). Keys are
// unique per run, in the namespace "accel-bench".

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/labels.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"

namespace {

namespace pb = ::containerd::services::snapshots::v1;
using Clock = std::chrono::steady_clock;

struct Result {
  std::string snapshotter;
  std::vector<double> ms;  // per iteration
  double Percentile(double p) const {
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
    return v[i];
  }
  double Mean() const {
    double s = 0;
    for (double x : ms) s += x;
    return s / ms.size();
  }
};

void WithNs(grpc::ClientContext& ctx) { ctx.AddMetadata("containerd-namespace", "accel-bench"); }

bool Check(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return true;
  std::fprintf(stderr, "snapshot_ops: %s: %s (code %d)\n", what.c_str(), s.error_message().c_str(),
               s.error_code());
  return false;
}

bool Prepare(pb::Snapshots::Stub& stub, const std::string& sn, const std::string& key,
             const std::string& parent) {
  grpc::ClientContext ctx;
  WithNs(ctx);
  pb::PrepareSnapshotRequest req;
  req.set_snapshotter(sn);
  req.set_key(key);
  req.set_parent(parent);
  // Without a lease or this label containerd's GC may collect the snapshot
  // between our calls.
  (*req.mutable_labels())[accel::kGcRootLabel] = "bench";
  pb::PrepareSnapshotResponse resp;
  return Check(stub.Prepare(&ctx, req, &resp), "prepare " + key);
}

bool Commit(pb::Snapshots::Stub& stub, const std::string& sn, const std::string& name,
            const std::string& key) {
  grpc::ClientContext ctx;
  WithNs(ctx);
  pb::CommitSnapshotRequest req;
  req.set_snapshotter(sn);
  req.set_name(name);
  req.set_key(key);
  (*req.mutable_labels())[accel::kGcRootLabel] = "bench";
  google::protobuf::Empty resp;
  return Check(stub.Commit(&ctx, req, &resp), "commit " + key);
}

bool MountsOf(pb::Snapshots::Stub& stub, const std::string& sn, const std::string& key) {
  grpc::ClientContext ctx;
  WithNs(ctx);
  pb::MountsRequest req;
  req.set_snapshotter(sn);
  req.set_key(key);
  pb::MountsResponse resp;
  return Check(stub.Mounts(&ctx, req, &resp), "mounts " + key);
}

bool Remove(pb::Snapshots::Stub& stub, const std::string& sn, const std::string& key) {
  grpc::ClientContext ctx;
  WithNs(ctx);
  pb::RemoveSnapshotRequest req;
  req.set_snapshotter(sn);
  req.set_key(key);
  google::protobuf::Empty resp;
  return Check(stub.Remove(&ctx, req, &resp), "remove " + key);
}

int Usage() {
  std::fprintf(stderr,
               "Usage: snapshot_ops --address CONTAINERD_SOCKET --snapshotters BASE,OTHER[,...]\n"
               "                    [--iterations N] [--warmup N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address;
  std::vector<std::string> snapshotters;
  int iterations = 200, warmup = 20;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage();
    if (a == "--address") {
      address = argv[++i];
    } else if (a == "--snapshotters") {
      snapshotters = absl::StrSplit(argv[++i], ',', absl::SkipEmpty());
    } else if (a == "--iterations") {
      iterations = std::atoi(argv[++i]);
    } else if (a == "--warmup") {
      warmup = std::atoi(argv[++i]);
    } else {
      return Usage();
    }
  }
  if (address.empty() || snapshotters.size() < 2 || iterations <= 0) return Usage();
  auto stub = pb::Snapshots::NewStub(
      grpc::CreateChannel(absl::StrCat("unix:", address), grpc::InsecureChannelCredentials()));

  std::string run = absl::StrCat(::getpid(), "-", Clock::now().time_since_epoch().count());
  std::vector<Result> results;
  for (const std::string& sn : snapshotters) {
    // A committed base layer for the children to stack on.
    std::string base = absl::StrCat("base-", sn, "-", run);
    if (!Prepare(*stub, sn, base + "-a", "") || !Commit(*stub, sn, base, base + "-a")) return 1;
    Result r{sn, {}};
    for (int i = 0; i < warmup + iterations; ++i) {
      std::string k = absl::StrCat(sn, "-", run, "-", i);
      auto t0 = Clock::now();
      bool ok = Prepare(*stub, sn, k + "-a", base) && Commit(*stub, sn, k, k + "-a") &&
                Prepare(*stub, sn, k + "-c", k) && MountsOf(*stub, sn, k + "-c") &&
                Remove(*stub, sn, k + "-c") && Remove(*stub, sn, k);
      auto t1 = Clock::now();
      if (!ok) return 1;
      if (i >= warmup) r.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    if (!Remove(*stub, sn, base)) return 1;
    results.push_back(std::move(r));
  }

  std::printf(
      "snapshot operations through containerd (%d iterations, each: prepare, commit,\n"
      "prepare child, mounts, remove child, remove layer)\n\n",
      iterations);
  std::printf("%-12s %10s %10s %10s %12s\n", "snapshotter", "mean ms", "p50 ms", "p99 ms",
              "ratio(mean)");
  for (const Result& r : results) {
    std::printf("%-12s %10.3f %10.3f %10.3f %11.2fx\n", r.snapshotter.c_str(), r.Mean(),
                r.Percentile(0.5), r.Percentile(0.99), r.Mean() / results[0].Mean());
  }
  return 0;
}
