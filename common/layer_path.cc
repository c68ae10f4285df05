#include "common/layer_path.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace accel {
namespace {

// How much of an untrusted name an error message repeats.
constexpr size_t kMaxShown = 300;

std::string Shown(absl::string_view name) { return absl::CHexEscape(name.substr(0, kMaxShown)); }

}  // namespace

absl::Status ValidateLayerPath(absl::string_view path) {
  if (path.empty()) return absl::OkStatus();
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("path \"", Shown(path), "\": ", why));
  };
  if (path.size() > kMaxLayerPathBytes) {
    return bad(absl::StrCat("longer than ", kMaxLayerPathBytes, " bytes"));
  }
  if (path.find('\0') != absl::string_view::npos) return bad("NUL byte in path");
  if (path.front() == '/') return bad("absolute path");
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == absl::string_view::npos) end = path.size();
    absl::string_view part = path.substr(start, end - start);
    if (part.empty()) return bad("empty path component");
    if (part == ".") return bad("\".\" path component");
    if (part == "..") return bad("\"..\" path component escapes the layer");
    if (part.size() > kMaxLayerNameBytes) {
      return bad(absl::StrCat("name longer than ", kMaxLayerNameBytes, " bytes"));
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CleanLayerPath(absl::string_view raw, absl::string_view what) {
  if (raw.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " has an empty name"));
  if (raw.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", Shown(raw), "\" has an absolute path"));
  }
  std::string out;
  out.reserve(raw.size());
  size_t start = 0;
  while (start <= raw.size()) {
    size_t end = raw.find('/', start);
    if (end == absl::string_view::npos) end = raw.size();
    absl::string_view part = raw.substr(start, end - start);
    start = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " \"", Shown(raw), "\" escapes the layer (\"..\")"));
    }
    if (!out.empty()) out.push_back('/');
    out.append(part.data(), part.size());
  }
  absl::Status valid = ValidateLayerPath(out);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", valid.message()));
  }
  return out;
}

absl::string_view LayerPathParent(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == absl::string_view::npos ? absl::string_view() : path.substr(0, slash);
}

}  // namespace accel
