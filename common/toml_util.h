#pragma once

// TOML parsing behind a Status: toml++ throws, project code does not.

#include <toml++/toml.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accel {

// Parses `text`; a syntax error is InvalidArgument "ORIGIN:LINE:COL: what".
absl::StatusOr<toml::table> ParseToml(absl::string_view text, absl::string_view origin);

}  // namespace accel
