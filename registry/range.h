#pragma once

// HTTP byte ranges for blob reads and resumed downloads (RFC 9110 §14).
//
// A resumed download asks for "bytes=<received>-" and must get back either
// 206 with a Content-Range that starts exactly there, or 200 with the whole
// blob (the server ignored Range), in which case the first <received> bytes
// are skipped. Anything else is an error: appending the wrong bytes would
// only be caught by the final digest check, after wasting the transfer.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accel::registry {

struct ContentRange {
  int64_t first = 0;
  int64_t last = 0;    // inclusive
  int64_t total = -1;  // -1 for "*"
};

// Parses "bytes FIRST-LAST/TOTAL" (TOTAL may be "*").
absl::StatusOr<ContentRange> ParseContentRange(absl::string_view value);

// "bytes=FIRST-LAST", or "bytes=FIRST-" when `last` < 0.
std::string RangeHeader(int64_t first, int64_t last);

// How to consume the body of a response to a range request for
// [first, last] (last < 0: to the end).
struct RangePlan {
  int64_t skip = 0;  // body bytes to drop before the wanted ones
};

// Checks a response (`status`, its Content-Range value or "") to a request
// for bytes [first, last] of a blob of `blob_size` bytes (-1 if unknown).
// Returns how to read the body, or FailedPrecondition/DataLoss naming the
// mismatch (416, a range that starts elsewhere, a total that disagrees).
absl::StatusOr<RangePlan> PlanRangeResponse(long status, absl::string_view content_range,
                                            int64_t first, int64_t last, int64_t blob_size);

}  // namespace accel::registry
