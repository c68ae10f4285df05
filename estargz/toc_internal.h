#pragma once

// Internal to estargz/: ParseToc with a digest the caller already computed
// (ReadToc hashes the TOC once to compare it with the annotation).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "estargz/toc.h"

namespace accel::estargz::internal {

// `max_entries` is kMaxTocEntries except in tests.
absl::StatusOr<Toc> ParseTocWithDigest(absl::string_view json, Compression kind,
                                       uint64_t payload_end, std::string digest,
                                       uint64_t max_entries = kMaxTocEntries);

}  // namespace accel::estargz::internal
