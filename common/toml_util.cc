#include "common/toml_util.h"

#include <sstream>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace accel {

absl::StatusOr<toml::table> ParseToml(absl::string_view text, absl::string_view origin) {
  try {
    return toml::parse(std::string_view(text.data(), text.size()),
                       std::string_view(origin.data(), origin.size()));
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin;
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ":", where.str(), ": ", std::string(e.description())));
  }
}

}  // namespace accel
