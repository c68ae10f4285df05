#pragma once

// Paths inside a layer, as every module sees them: relative to the layer
// root, cleaned, without a leading "/" and without "." or ".." components
// ("" is the root itself). Names come from untrusted input (a tar member, an
// eStargz TOC entry, a store index): one checker and one cleaner here, so a
// name is accepted or refused the same way wherever it arrives.
//
// Thread-safety: pure functions.

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accel {

// Longest path and longest component a layer path may have (PATH_MAX,
// NAME_MAX).
inline constexpr size_t kMaxLayerPathBytes = 4096;
inline constexpr size_t kMaxLayerNameBytes = 255;

// OK if `path` is a clean layer path: no leading "/", no empty, "." or ".."
// components, no NUL, components of at most kMaxLayerNameBytes, at most
// kMaxLayerPathBytes in all. "" (the layer root) is valid. Otherwise
// InvalidArgument: `path "P": <why>` (P escaped and shortened).
absl::Status ValidateLayerPath(absl::string_view path);

// Turns a name as an archive or TOC writes it (a tar member name, a
// hard-link target) into a clean layer path: "./" prefixes, "." components,
// repeated and trailing slashes go. A missing or empty name, an absolute
// name or a ".." component is InvalidArgument naming `what` (a layer must
// not reach outside itself); the result must pass ValidateLayerPath. "." and
// "./" are the layer root ("").
absl::StatusOr<std::string> CleanLayerPath(absl::string_view raw, absl::string_view what);

// The parent of a clean layer path ("" for a top-level name and the root).
absl::string_view LayerPathParent(absl::string_view path);

}  // namespace accel
