#pragma once

// Digests are parsed and verified by common/digest.h. This header keeps the
// registry:: name that snapshotter/estargz_layers.cc still uses; it goes
// once that file includes common/digest.h.

#include "common/digest.h"

namespace accel::registry {

using ::accel::ValidateDigest;

}  // namespace accel::registry
