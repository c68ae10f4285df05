#include "registry/range.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace accel::registry {
namespace {

bool ParseNonNegative(absl::string_view s, int64_t& out) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(s, &out) && out >= 0;
}

}  // namespace

absl::StatusOr<ContentRange> ParseContentRange(absl::string_view value) {
  absl::string_view v = absl::StripAsciiWhitespace(value);
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed Content-Range \"", value.substr(0, 100), "\""));
  };
  if (!absl::ConsumePrefix(&v, "bytes ")) return bad();
  size_t dash = v.find('-');
  size_t slash = v.find('/');
  if (dash == absl::string_view::npos || slash == absl::string_view::npos || dash > slash) {
    return bad();
  }
  ContentRange r;
  if (!ParseNonNegative(v.substr(0, dash), r.first) ||
      !ParseNonNegative(v.substr(dash + 1, slash - dash - 1), r.last) || r.last < r.first) {
    return bad();
  }
  absl::string_view total = v.substr(slash + 1);
  if (total != "*") {
    if (!ParseNonNegative(total, r.total) || r.total <= r.last) return bad();
  }
  return r;
}

std::string RangeHeader(int64_t first, int64_t last) {
  if (last < 0) return absl::StrCat("bytes=", first, "-");
  return absl::StrCat("bytes=", first, "-", last);
}

absl::StatusOr<RangePlan> PlanRangeResponse(long status, absl::string_view content_range,
                                            int64_t first, int64_t last, int64_t blob_size) {
  if (status == 200) {
    // The whole blob: drop what we did not ask for.
    return RangePlan{first};
  }
  if (status == 416) {
    return absl::OutOfRangeError(absl::StrCat("range ", RangeHeader(first, last),
                                              " not satisfiable (blob size ", blob_size, ")"));
  }
  if (status != 206) {
    return absl::FailedPreconditionError(
        absl::StrCat("unexpected HTTP ", status, " to a range request"));
  }
  absl::StatusOr<ContentRange> cr = ParseContentRange(content_range);
  if (!cr.ok()) return cr.status();
  if (cr->first != first) {
    return absl::DataLossError(absl::StrCat("asked for ", RangeHeader(first, last),
                                            ", server sent bytes from ", cr->first));
  }
  if (last >= 0 && cr->last > last) {
    return absl::DataLossError(
        absl::StrCat("asked for ", RangeHeader(first, last), ", server sent up to ", cr->last));
  }
  if (blob_size >= 0 && cr->total >= 0 && cr->total != blob_size) {
    return absl::DataLossError(absl::StrCat("server says the blob has ", cr->total,
                                            " bytes, its descriptor says ", blob_size));
  }
  return RangePlan{0};
}

}  // namespace accel::registry
