// accelctl status: asks the daemon for its state and prints it as JSON.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "accelctl/commands.h"
#include "accelctl/store_flags.h"
#include "store/store.h"

namespace accel::ctl {
namespace {

constexpr char kStatusUsage[] = R"(Usage: accelctl status [--address SOCKET] [--timeout SECONDS]

Prints the daemon's state as JSON: whether it answers, its version, root
directory, socket, pid, uptime, how many snapshots it holds by kind, the
shared store (directory, reachable or not and why, id), the layers it
serves through FUSE, and for each image in the store its state on this
node: "mounted" (every layer mounted here), "partially-mounted",
"available" (every layer in the store) or "incomplete" (layers missing).
Exits 1 (after printing {"daemon": "down", ...}) when the daemon does not answer.

  --address SOCKET   the daemon's socket (default $ACCEL_ADDRESS, else
                     /run/accel-snapshotter/snapshotter.sock)
  --timeout SECONDS  how long to wait for an answer (default 5)
)";

// Per-image state from the store's records and this node's mounts.
nlohmann::json Images(const std::string& dir, const std::set<std::string>& mounted) {
  nlohmann::json out = nlohmann::json::array();
  absl::StatusOr<std::unique_ptr<store::Store>> st = store::Store::Open(dir, false);
  if (!st.ok()) return out;
  absl::StatusOr<std::vector<store::ImageRecord>> images = (*st)->ListImages();
  if (!images.ok()) return out;
  for (const auto& r : *images) {
    size_t here = 0, present = 0;
    for (const auto& d : r.diff_ids) {
      if (mounted.count(d)) ++here;
      if ((*st)->HasLayer(d)) ++present;
    }
    const char* state = here == r.diff_ids.size()      ? "mounted"
                        : here > 0                     ? "partially-mounted"
                        : present == r.diff_ids.size() ? "available"
                                                       : "incomplete";
    out.push_back({{"target", r.target},
                   {"layers", r.diff_ids.size()},
                   {"mounted_layers", here},
                   {"state", state}});
  }
  return out;
}

}  // namespace

int RunStatus(const Args& args) {
  std::string address;
  int timeout = 5;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kStatusUsage, stdout);
      return 0;
    } else if (a == "--address" && i + 1 < args.size()) {
      address = args[++i];
    } else if (a == "--timeout" && i + 1 < args.size()) {
      timeout = std::atoi(args[++i].c_str());
      if (timeout <= 0) return Fail("--timeout must be a positive number of seconds", 2);
    } else {
      return Fail(absl::StrCat("status: unexpected argument \"", a, "\" (see --help)"), 2);
    }
  }
  address = ResolveDaemonAddress(address);
  absl::StatusOr<::accel::v1::GetStatusResponse> resp = QueryDaemon(address, timeout);
  nlohmann::json out;
  out["address"] = address;
  if (!resp.ok()) {
    out["daemon"] = "down";
    out["error"] = std::string(resp.status().message());
    std::printf("%s\n", out.dump(2).c_str());
    return 1;
  }
  out["daemon"] = "up";
  out["version"] = resp->version();
  out["root"] = resp->root();
  out["pid"] = resp->pid();
  out["uptime_seconds"] = resp->uptime_seconds();
  if (!resp->fd_store().empty()) out["fd_store"] = resp->fd_store();
  out["snapshots"] = {{"active", resp->snapshots().active()},
                      {"committed", resp->snapshots().committed()},
                      {"view", resp->snapshots().view()}};
  const auto& store = resp->store();
  std::set<std::string> mounted;
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& m : resp->mounted_layers()) {
    mounted.insert(m.layer());
    nlohmann::json l = {{"mountpoint", m.mountpoint()}, {"kind", m.kind()}, {"layer", m.layer()}};
    if (m.kind() == "estargz") l["bytes_fetched"] = m.bytes_fetched();
    if (!m.state().empty()) l["state"] = m.state();
    if (!m.snapshot().empty()) l["snapshot"] = m.snapshot();
    if (!m.error().empty()) l["error"] = m.error();
    if (m.restore_attempts() > 0) l["restore_attempts"] = m.restore_attempts();
    layers.push_back(l);
  }
  if (store.dir().empty()) {
    out["store"] = {{"configured", false}};
  } else {
    out["store"] = {{"configured", true},
                    {"dir", store.dir()},
                    {"reachable", store.reachable()},
                    {"id", store.id()}};
    if (!store.error().empty()) out["store"]["error"] = store.error();
    if (store.reachable()) out["images"] = Images(store.dir(), mounted);
  }
  out["mounted_layers"] = layers;
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace accel::ctl
