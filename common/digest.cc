#include "common/digest.h"

#include "absl/strings/str_cat.h"

namespace accel {
namespace {

constexpr absl::string_view kSha256Prefix = "sha256:";
constexpr absl::string_view kSha512Prefix = "sha512:";
// How much of an untrusted value an error message repeats.
constexpr size_t kMaxShown = 140;

bool HasHex(absl::string_view text, absl::string_view prefix, size_t hex_digits) {
  return text.size() == prefix.size() + hex_digits && text.substr(0, prefix.size()) == prefix &&
         IsLowerHex(text.substr(prefix.size()));
}

}  // namespace

bool IsLowerHex(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsSha256Hex(absl::string_view s) { return s.size() == 64 && IsLowerHex(s); }

absl::Status ValidateDigest(absl::string_view digest) {
  if (HasHex(digest, kSha256Prefix, 64) || HasHex(digest, kSha512Prefix, 128)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("invalid digest \"", digest.substr(0, kMaxShown),
                                                 "\" (want sha256:<64 hex> or sha512:<128 hex>)"));
}

absl::Status ValidateSha256Digest(absl::string_view digest) {
  if (HasHex(digest, kSha256Prefix, 64)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("\"", digest.substr(0, kMaxShown),
                                                 "\" is not a sha256 digest (sha256:<64 lowercase "
                                                 "hex>)"));
}

absl::StatusOr<Digest> Digest::Parse(absl::string_view text) {
  absl::Status valid = ValidateDigest(text);
  if (!valid.ok()) return valid;
  const DigestAlgorithm algorithm = text.substr(0, kSha512Prefix.size()) == kSha512Prefix
                                        ? DigestAlgorithm::kSha512
                                        : DigestAlgorithm::kSha256;
  return Digest(algorithm, std::string(text));
}

absl::StatusOr<Digest> Digest::ParseSha256(absl::string_view text) {
  absl::Status valid = ValidateSha256Digest(text);
  if (!valid.ok()) return valid;
  return Digest(DigestAlgorithm::kSha256, std::string(text));
}

Digest Digest::Sha256Of(absl::string_view data) {
  return Digest(DigestAlgorithm::kSha256, Sha256::Of(data));
}

absl::string_view Digest::hex() const {
  return absl::string_view(text_).substr(text_.find(':') + 1);
}

absl::StatusOr<DigestVerifier> DigestVerifier::Create(absl::string_view expected) {
  absl::StatusOr<Digest> digest = Digest::Parse(expected);
  if (!digest.ok()) return digest.status();
  return DigestVerifier(*std::move(digest));
}

absl::Status DigestVerifier::Verify() const {
  std::string got = Current();
  if (got == expected_.str()) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat("digest mismatch: expected ", expected_.str(), ", got ", got));
}

}  // namespace accel
