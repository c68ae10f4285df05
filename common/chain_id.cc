#include "common/chain_id.h"

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace accel {

std::string ChainId(absl::string_view parent_chain_id, absl::string_view diff_id) {
  if (parent_chain_id.empty()) return std::string(diff_id);
  return Sha256::Of(absl::StrCat(parent_chain_id, " ", diff_id));
}

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  out.reserve(diff_ids.size());
  for (const std::string& d : diff_ids) out.push_back(ChainId(out.empty() ? "" : out.back(), d));
  return out;
}

}  // namespace accel
