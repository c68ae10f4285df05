#include "registry/reference.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"

namespace accel::registry {
namespace {

constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;

bool IsAlnumLower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | -+
bool ValidPathComponent(absl::string_view c) {
  if (c.empty() || !IsAlnumLower(c.front()) || !IsAlnumLower(c.back())) return false;
  size_t i = 0;
  while (i < c.size()) {
    if (IsAlnumLower(c[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < c.size() && !IsAlnumLower(c[j])) ++j;
    absl::string_view sep = c.substr(i, j - i);
    bool ok = sep == "." || sep == "_" || sep == "__" ||
              sep.find_first_not_of('-') == absl::string_view::npos;
    if (!ok) return false;
    i = j;
  }
  return true;
}

bool ValidTag(absl::string_view t) {
  if (t.empty() || t.size() > kMaxTagLength) return false;
  auto word = [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t[0])) return false;
  for (char c : t) {
    if (!word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

bool ValidPort(absl::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  for (char c : p) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// host[:port] with host a DNS name / IPv4 or "[ipv6]".
bool ValidDomain(absl::string_view d) {
  if (d.empty()) return false;
  absl::string_view host = d;
  if (d.front() == '[') {
    size_t close = d.find(']');
    if (close == absl::string_view::npos || close == 1) return false;
    for (char c : d.substr(1, close - 1)) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return false;
    }
    absl::string_view rest = d.substr(close + 1);
    if (rest.empty()) return true;
    return rest.front() == ':' && ValidPort(rest.substr(1));
  }
  size_t colon = d.rfind(':');
  if (colon != absl::string_view::npos) {
    if (!ValidPort(d.substr(colon + 1))) return false;
    host = d.substr(0, colon);
  }
  if (host.empty()) return false;
  for (absl::string_view label : absl::StrSplit(host, '.')) {
    if (label.empty() || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
  }
  return true;
}

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid reference \"", text.substr(0, 300), "\": ", why));
}

}  // namespace

std::string NormalizeRegistryHost(absl::string_view host) {
  std::string h = absl::AsciiStrToLower(host);
  if (h == "index.docker.io" || h == "registry-1.docker.io" || h == "registry.hub.docker.com") {
    return kDockerHubDomain;
  }
  return h;
}

std::string Reference::Name() const { return absl::StrCat(domain, "/", repository); }

std::string Reference::String() const {
  std::string out = Name();
  if (!tag.empty()) absl::StrAppend(&out, ":", tag);
  if (!digest.empty()) absl::StrAppend(&out, "@", digest);
  return out;
}

Reference Reference::WithDigest(absl::string_view d) const {
  Reference r = *this;
  r.tag.clear();
  r.digest = std::string(d);
  return r;
}

absl::StatusOr<Reference> ParseReference(absl::string_view text) {
  if (text.empty()) return Invalid(text, "empty");
  Reference ref;
  absl::string_view rest = text;
  size_t at = rest.find('@');
  if (at != absl::string_view::npos) {
    absl::string_view digest = rest.substr(at + 1);
    if (!ValidateDigest(digest).ok()) {
      return Invalid(text, "bad digest (want sha256:<64 hex>)");
    }
    ref.digest = std::string(digest);
    rest = rest.substr(0, at);
  }
  size_t last_slash = rest.rfind('/');
  size_t last_colon = rest.rfind(':');
  if (last_colon != absl::string_view::npos &&
      (last_slash == absl::string_view::npos || last_colon > last_slash)) {
    absl::string_view tag = rest.substr(last_colon + 1);
    if (!ValidTag(tag)) return Invalid(text, "bad tag");
    ref.tag = std::string(tag);
    rest = rest.substr(0, last_colon);
  }
  if (rest.empty()) return Invalid(text, "no repository name");

  size_t slash = rest.find('/');
  absl::string_view first = rest.substr(0, slash);
  bool has_domain = slash != absl::string_view::npos &&
                    (absl::StrContains(first, '.') || absl::StrContains(first, ':') ||
                     first == "localhost" || absl::AsciiStrToLower(first) != first);
  absl::string_view path = rest;
  if (has_domain) {
    if (!ValidDomain(first)) return Invalid(text, "bad registry host");
    ref.domain = NormalizeRegistryHost(first);
    path = rest.substr(slash + 1);
  } else {
    ref.domain = kDockerHubDomain;
  }
  if (path.empty()) return Invalid(text, "no repository name");
  for (absl::string_view c : absl::StrSplit(path, '/')) {
    if (!ValidPathComponent(c)) {
      return Invalid(text, "repository name must be lowercase letters, digits and separators");
    }
  }
  ref.repository = std::string(path);
  if (ref.domain == kDockerHubDomain && !absl::StrContains(path, '/')) {
    ref.repository = absl::StrCat("library/", path);
  }
  if (ref.Name().size() > kMaxNameLength) return Invalid(text, "name longer than 255 characters");
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

}  // namespace accel::registry
