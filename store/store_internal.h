#pragma once

// Helpers shared by the store's implementation files (not a public API).

#include <cstddef>
#include <string>

namespace accel::store {

// `bytes` random bytes from the kernel, as lowercase hex.
std::string RandomHex(size_t bytes);

}  // namespace accel::store
