#pragma once

// containerd's filter syntax, for ListSnapshots:
//
//   filter    := selector ("," selector)*       all selectors must match
//   selector  := fieldpath [operator value]     no operator: field is present
//   fieldpath := field ("." field)*
//   field     := quoted | [A-Za-z][A-Za-z0-9_]*
//   operator  := "==" | "!=" | "~="            ~= is a regular expression
//   value     := quoted | [^\s,]+
//   quoted    := "..." | /.../ | |...|          backslash escapes inside
//
// Several filter strings match if any of them matches; none matches all.
// Fields of a snapshot: name, parent, kind (view/active/committed), labels.KEY.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "snapshotter/types.h"

namespace accel::snapshotter {

class Filter {
 public:
  virtual ~Filter() = default;
  virtual bool Match(const Info& info) const = 0;
};

// Parses `filters` (OR of ANDs). InvalidArgument names the bad filter and
// the position of the error.
absl::StatusOr<std::unique_ptr<Filter>> ParseFilters(const std::vector<std::string>& filters);

}  // namespace accel::snapshotter
