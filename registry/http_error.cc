#include "registry/http_error.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace accel::registry {
namespace {

using nlohmann::json;

absl::StatusCode CodeForHttp(long status) {
  switch (status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 405:
      return absl::StatusCode::kUnimplemented;
    case 409:
      return absl::StatusCode::kAlreadyExists;
    case 416:
      return absl::StatusCode::kOutOfRange;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    default:
      return status >= 500 ? absl::StatusCode::kUnavailable : absl::StatusCode::kUnknown;
  }
}

}  // namespace

std::string Sanitize(absl::string_view s, size_t max) {
  std::string out;
  for (char c : s.substr(0, max)) {
    out.push_back(absl::ascii_isprint(static_cast<unsigned char>(c)) ? c : ' ');
  }
  if (s.size() > max) out += "...";
  return out;
}

absl::Status HttpError(const HttpResponse& r) {
  std::string msg = absl::StrCat("HTTP ", r.status);
  json j = json::parse(r.body, nullptr, false);
  bool described = false;
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const json& e : j["errors"]) {
      if (!e.is_object()) continue;
      std::string code =
          e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
      std::string m =
          e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
      absl::StrAppend(&msg, " ", Sanitize(code), code.empty() || m.empty() ? "" : ": ",
                      Sanitize(m));
      described = true;
      break;
    }
  }
  if (!described) {
    switch (r.status) {
      case 401:
        msg += " unauthorized";
        break;
      case 403:
        msg += " forbidden";
        break;
      case 404:
        msg += " not found";
        break;
      case 429:
        msg += " too many requests";
        break;
      default:
        break;
    }
  }
  return absl::Status(CodeForHttp(r.status), msg);
}

}  // namespace accel::registry
