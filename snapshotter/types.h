#pragma once

// Domain types of the snapshotter, independent of protobuf and gRPC.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace accel::snapshotter {

// containerd's snapshot kinds; the numbers match the API's enum.
enum class Kind { kUnknown = 0, kView = 1, kActive = 2, kCommitted = 3 };

// Lower-case name used by filters and logs: "view", "active", "committed".
const char* KindName(Kind kind);

using Labels = std::map<std::string, std::string>;

struct Info {
  std::string name;
  std::string parent;  // "" for none
  Kind kind = Kind::kUnknown;
  absl::Time created;
  absl::Time updated;
  Labels labels;
};

struct Usage {
  int64_t size = 0;  // bytes
  int64_t inodes = 0;
};

// One mount(2) the caller should perform, as containerd's Mount type.
struct Mount {
  std::string type;
  std::string source;
  std::vector<std::string> options;

  bool operator==(const Mount&) const = default;
};

}  // namespace accel::snapshotter
