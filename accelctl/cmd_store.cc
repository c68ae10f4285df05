// accelctl store: list, inspect, remove, verify and garbage-collect what
// the shared store holds.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "accelctl/commands.h"
#include "accelctl/registry_flags.h"
#include "accelctl/store_flags.h"
#include "registry/reference.h"
#include "store/store.h"

namespace accel::ctl {
namespace {

constexpr char kStoreUsage[] = R"(Usage: accelctl store SUBCOMMAND [flags]

Manages the shared store of preloaded layers (see `accelctl convert`).

  ls [--json]                 images and layers, with sizes
  inspect REF|LAYER           one image record (with its layers) or one
                              layer (with the images that use it), as JSON
  rm [--force] REF            removes image REF and the layers no other image
                              uses; refuses while one of those layers is
                              mounted on this node, unless --force
  verify [REF|LAYER ...]      re-checks every file digest (all layers by
                              default) and that every image's layers exist;
                              exits 1 if anything is wrong
  gc [--grace SECONDS]        removes layers no image uses and stale
                              temporary files older than the grace period
                              (default 3600), keeping layers mounted here

Flags for every subcommand:
  --store DIR       the store (default: `store` in the daemon config)
  --config FILE     the daemon config to read `store` from
                    (default /etc/accel/config.toml)
  --address SOCKET  the daemon, asked which layers are mounted (default
                    $ACCEL_ADDRESS, else /run/accel-snapshotter/snapshotter.sock)
)";

std::string Mib(uint64_t bytes) { return absl::StrFormat("%.1f MiB", bytes / 1048576.0); }

// The image target as recorded (canonical form) for what the user typed.
std::string CanonicalRef(const std::string& text) {
  absl::StatusOr<registry::Reference> ref = registry::ParseReference(text);
  return ref.ok() ? ref->String() : text;
}

// Layers mounted on this node, from the daemon. An absent daemon mounts
// nothing; `note` says so.
std::set<std::string> MountedLayers(const std::string& address, std::string& note) {
  std::set<std::string> out;
  absl::StatusOr<::accel::v1::GetStatusResponse> st = QueryDaemon(address, 3);
  if (!st.ok()) {
    note = absl::StrCat("note: ", st.status().message(),
                        "; assuming no layer is mounted on this node");
    return out;
  }
  for (const auto& m : st->mounted_layers()) out.insert(m.layer());
  return out;
}

nlohmann::json LayerJson(const store::LayerInfo& l) {
  return {{"layer", l.diff_id},
          {"entries", l.entries},
          {"data_bytes", l.data_bytes},
          {"index_bytes", l.index_bytes},
          {"created_unix", l.created_unix}};
}

nlohmann::json ImageJson(const store::ImageRecord& r) {
  return {{"target", r.target},
          {"source", r.source},
          {"manifest_digest", r.manifest_digest},
          {"platform", r.platform},
          {"layers", r.diff_ids},
          {"blobs", r.blobs},
          {"created_unix", r.created_unix}};
}

int Ls(const store::Store& store, bool json) {
  absl::StatusOr<std::vector<store::ImageRecord>> images = store.ListImages();
  if (!images.ok()) return Fail(absl::StrCat("store ls: ", images.status().message()));
  absl::StatusOr<std::vector<store::LayerInfo>> layers = store.ListLayers();
  if (!layers.ok()) return Fail(absl::StrCat("store ls: ", layers.status().message()));
  std::map<std::string, store::LayerInfo> by_id;
  for (const auto& l : *layers) by_id[l.diff_id] = l;
  std::map<std::string, int> users;
  for (const auto& r : *images) {
    for (const auto& d : std::set<std::string>(r.diff_ids.begin(), r.diff_ids.end())) users[d]++;
  }
  if (json) {
    nlohmann::json out = {{"store", store.dir()},
                          {"id", store.id()},
                          {"images", nlohmann::json::array()},
                          {"layers", nlohmann::json::array()}};
    for (const auto& r : *images) {
      nlohmann::json j = ImageJson(r);
      uint64_t size = 0;
      bool complete = true;
      for (const auto& d : r.diff_ids) {
        auto it = by_id.find(d);
        if (it == by_id.end()) {
          complete = false;
        } else {
          size += it->second.data_bytes;
        }
      }
      j["size_bytes"] = size;
      j["complete"] = complete;
      out["images"].push_back(j);
    }
    for (const auto& l : *layers) {
      nlohmann::json j = LayerJson(l);
      j["images"] = users[l.diff_id];
      out["layers"].push_back(j);
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("store %s (id %s)\n\nIMAGES\n", store.dir().c_str(), store.id().c_str());
  for (const auto& r : *images) {
    uint64_t size = 0;
    int missing = 0;
    for (const auto& d : r.diff_ids) {
      auto it = by_id.find(d);
      if (it == by_id.end()) {
        ++missing;
      } else {
        size += it->second.data_bytes;
      }
    }
    std::printf("  %s  %zu layers  %s%s  (from %s)\n", r.target.c_str(), r.diff_ids.size(),
                Mib(size).c_str(), missing ? absl::StrCat(", ", missing, " MISSING").c_str() : "",
                r.source.c_str());
  }
  std::printf("\nLAYERS\n");
  for (const auto& l : *layers) {
    std::printf("  %s  %llu entries  %s  used by %d image(s)\n", l.diff_id.c_str(),
                static_cast<unsigned long long>(l.entries), Mib(l.data_bytes).c_str(),
                users[l.diff_id]);
  }
  return 0;
}

int Inspect(const store::Store& store, const std::string& what) {
  absl::StatusOr<std::vector<store::ImageRecord>> images = store.ListImages();
  if (!images.ok()) return Fail(absl::StrCat("store inspect: ", images.status().message()));
  if (absl::StartsWith(what, "sha256:")) {
    absl::StatusOr<store::LayerInfo> info = store.StatLayer(what);
    if (!info.ok()) return Fail(absl::StrCat("store inspect: ", info.status().message()));
    nlohmann::json j = LayerJson(*info);
    j["images"] = nlohmann::json::array();
    for (const auto& r : *images) {
      if (std::find(r.diff_ids.begin(), r.diff_ids.end(), what) != r.diff_ids.end()) {
        j["images"].push_back(r.target);
      }
    }
    j["path"] = store.LayerDir(what);
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  absl::StatusOr<store::ImageRecord> r = store.GetImage(CanonicalRef(what));
  if (!r.ok()) return Fail(absl::StrCat("store inspect: ", r.status().message()));
  nlohmann::json j = ImageJson(*r);
  j["layers"] = nlohmann::json::array();
  for (const auto& d : r->diff_ids) {
    absl::StatusOr<store::LayerInfo> info = store.StatLayer(d);
    nlohmann::json lj = info.ok() ? LayerJson(*info) : nlohmann::json{{"layer", d}};
    lj["present"] = info.ok();
    j["layers"].push_back(lj);
  }
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

int Rm(const store::Store& store, const std::string& ref, bool force, const std::string& address) {
  const std::string target = CanonicalRef(ref);
  absl::StatusOr<store::ImageRecord> record = store.GetImage(target);
  if (!record.ok()) return Fail(absl::StrCat("store rm: ", record.status().message()));
  absl::StatusOr<std::vector<store::ImageRecord>> images = store.ListImages();
  if (!images.ok()) return Fail(absl::StrCat("store rm: ", images.status().message()));
  std::set<std::string> others;
  for (const auto& r : *images) {
    if (r.target != target) others.insert(r.diff_ids.begin(), r.diff_ids.end());
  }
  std::vector<std::string> remove;
  for (const auto& d : std::set<std::string>(record->diff_ids.begin(), record->diff_ids.end())) {
    if (!others.count(d)) remove.push_back(d);
  }
  std::string note;
  std::set<std::string> mounted = MountedLayers(address, note);
  if (!note.empty()) std::fprintf(stderr, "%s\n", note.c_str());
  std::vector<std::string> busy;
  for (const auto& d : remove) {
    if (mounted.count(d)) busy.push_back(d);
  }
  if (!busy.empty() && !force) {
    return Fail(absl::StrCat("store rm: ", target, ": layer(s) ", absl::StrJoin(busy, ", "),
                             " are mounted on this node (remove the containers and images "
                             "using them first, or pass --force)"));
  }
  if (absl::Status s = store.RemoveImage(target); !s.ok()) {
    return Fail(absl::StrCat("store rm: ", s.message()));
  }
  int removed = 0;
  for (const auto& d : remove) {
    absl::Status s = store.RemoveLayer(d);
    if (s.ok()) {
      ++removed;
    } else if (!absl::IsNotFound(s)) {
      return Fail(absl::StrCat("store rm: ", s.message()));
    }
  }
  std::printf("removed %s: %d layer(s) removed, %zu kept for other images\n", target.c_str(),
              removed, record->diff_ids.size() - remove.size());
  return 0;
}

int Verify(const store::Store& store, const std::vector<std::string>& what) {
  absl::StatusOr<std::vector<store::ImageRecord>> images = store.ListImages();
  if (!images.ok()) return Fail(absl::StrCat("store verify: ", images.status().message()));
  std::vector<store::VerifyProblem> problems;
  std::vector<std::string> layers;
  std::vector<store::ImageRecord> check_images;
  if (what.empty()) {
    absl::StatusOr<std::vector<store::LayerInfo>> all = store.ListLayers();
    if (!all.ok()) return Fail(absl::StrCat("store verify: ", all.status().message()));
    for (const auto& l : *all) layers.push_back(l.diff_id);
    check_images = *images;
  } else {
    for (const std::string& w : what) {
      if (absl::StartsWith(w, "sha256:")) {
        layers.push_back(w);
        continue;
      }
      absl::StatusOr<store::ImageRecord> r = store.GetImage(CanonicalRef(w));
      if (!r.ok()) return Fail(absl::StrCat("store verify: ", r.status().message()));
      check_images.push_back(*r);
      layers.insert(layers.end(), r->diff_ids.begin(), r->diff_ids.end());
    }
  }
  for (const auto& r : check_images) {
    for (const auto& d : r.diff_ids) {
      if (!store.HasLayer(d))
        problems.push_back(
            {absl::StrCat("image ", r.target), absl::StrCat("layer ", d, " is missing")});
    }
  }
  std::set<std::string> done;
  int checked = 0;
  for (const auto& d : layers) {
    if (!done.insert(d).second || !store.HasLayer(d)) continue;
    absl::StatusOr<std::vector<store::VerifyProblem>> p = store.VerifyLayer(d);
    if (!p.ok()) {
      problems.push_back({absl::StrCat("layer ", d), std::string(p.status().message())});
      continue;
    }
    ++checked;
    problems.insert(problems.end(), p->begin(), p->end());
  }
  for (const auto& p : problems) std::printf("PROBLEM %s: %s\n", p.what.c_str(), p.detail.c_str());
  std::printf("verified %d layer(s) and %zu image(s): %zu problem(s)\n", checked,
              check_images.size(), problems.size());
  return problems.empty() ? 0 : 1;
}

int Gc(const store::Store& store, int64_t grace, const std::string& address) {
  std::string note;
  std::set<std::string> mounted = MountedLayers(address, note);
  if (!note.empty()) std::fprintf(stderr, "%s\n", note.c_str());
  absl::StatusOr<store::GcResult> r =
      store.Gc(grace, std::vector<std::string>(mounted.begin(), mounted.end()));
  if (!r.ok()) return Fail(absl::StrCat("store gc: ", r.status().message()));
  for (const auto& l : r->removed_layers) std::printf("removed layer %s\n", l.c_str());
  for (const auto& t : r->removed_temporaries) std::printf("removed temporary %s\n", t.c_str());
  std::printf("gc: %zu layer(s) and %zu temporary file(s) removed, %s freed\n",
              r->removed_layers.size(), r->removed_temporaries.size(), Mib(r->freed_bytes).c_str());
  return 0;
}

}  // namespace

int RunStore(const Args& args) {
  if (args.empty()) {
    std::fputs(kStoreUsage, stderr);
    return 2;
  }
  const std::string sub = args[0];
  if (sub == "-h" || sub == "--help" || sub == "help") {
    std::fputs(kStoreUsage, stdout);
    return 0;
  }
  std::string store_flag, config, address, grace_text = "3600";
  bool json = false, force = false;
  std::vector<std::string> positional;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string error;
    if (a == "-h" || a == "--help") {
      std::fputs(kStoreUsage, stdout);
      return 0;
    } else if (a == "--json" && sub == "ls") {
      json = true;
    } else if (a == "--force" && sub == "rm") {
      force = true;
    } else if (ConsumeValueFlag(args, i, "--store", store_flag, error) ||
               ConsumeValueFlag(args, i, "--config", config, error) ||
               ConsumeValueFlag(args, i, "--address", address, error) ||
               (sub == "gc" && ConsumeValueFlag(args, i, "--grace", grace_text, error))) {
      if (!error.empty()) return Fail(absl::StrCat("store ", sub, ": ", error), 2);
    } else if (!a.empty() && a[0] == '-') {
      return Fail(absl::StrCat("store ", sub, ": unknown flag \"", a, "\" (see --help)"), 2);
    } else {
      positional.push_back(a);
    }
  }
  int64_t grace = 0;
  if (!absl::SimpleAtoi(grace_text, &grace) || grace < 0) {
    return Fail("store gc: --grace must be a number of seconds", 2);
  }
  const bool known =
      sub == "ls" || sub == "inspect" || sub == "rm" || sub == "verify" || sub == "gc";
  if (!known) return Fail(absl::StrCat("store: unknown subcommand \"", sub, "\" (see --help)"), 2);
  if ((sub == "inspect" || sub == "rm") && positional.size() != 1) {
    return Fail(absl::StrCat("store ", sub, ": want exactly one image or layer"), 2);
  }
  if ((sub == "ls" || sub == "gc") && !positional.empty()) {
    return Fail(absl::StrCat("store ", sub, ": unexpected argument \"", positional[0], "\""), 2);
  }
  absl::StatusOr<std::string> dir = ResolveStoreDir(store_flag, config);
  if (!dir.ok()) return Fail(absl::StrCat("store ", sub, ": ", dir.status().message()), 2);
  absl::StatusOr<std::unique_ptr<store::Store>> store = store::Store::Open(*dir, false);
  if (!store.ok()) return Fail(absl::StrCat("store ", sub, ": ", store.status().message()));
  address = ResolveDaemonAddress(address);
  if (sub == "ls") return Ls(**store, json);
  if (sub == "inspect") return Inspect(**store, positional[0]);
  if (sub == "rm") return Rm(**store, positional[0], force, address);
  if (sub == "verify") return Verify(**store, positional);
  return Gc(**store, grace, address);
}

}  // namespace accel::ctl
