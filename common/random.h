#pragma once

// Unpredictable names for temporary files, leases, content-store refs and
// snapshot keys: bytes from the kernel's random source, as lowercase hex.
// Unlike a pid or a clock reading, such a name does not collide across
// hosts sharing a directory, containers, or processes started together.
//
// Thread-safe.

#include <cstddef>
#include <string>

namespace accel {

// `bytes` random bytes as 2 * `bytes` lowercase hex digits. Aborts if the
// kernel has no random source (getrandom(2) fails other than EINTR).
std::string RandomHex(size_t bytes);

}  // namespace accel
