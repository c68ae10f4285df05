#pragma once

// Chain ids: how containerd names the committed snapshot of a layer stack
// (OCI image spec, "ChainID"). The bottom layer's chain id is its diff id;
// above it, sha256 of "<parent's chain id> <diff id>". accelctl pull names
// the snapshots it commits this way, and the snapshotter checks that a
// layer it is asked to mount remotely is committed under the right name.
//
// Thread-safety: pure functions.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace accel {

// The chain id of a layer with diff id `diff_id` above the stack whose
// chain id is `parent_chain_id` ("" for the bottom layer).
std::string ChainId(absl::string_view parent_chain_id, absl::string_view diff_id);

// The chain id of every prefix of `diff_ids` (bottom layer first).
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

}  // namespace accel
