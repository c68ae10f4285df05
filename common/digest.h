#pragma once

// Content digests as OCI descriptors, layer diff ids, eStargz TOCs and
// chunk caches spell them: "sha256:<64 lowercase hex>" or
// "sha512:<128 lowercase hex>". Digests arrive from untrusted places (a
// registry, an image, a store, a label): parse them here, once, and errors
// say what was wrong and quote (a bounded part of) the value.
//
// DigestVerifier hashes bytes as they stream past; only after Verify()
// returns OK may the bytes be trusted.
//
// Thread-safety: Digest is a plain value; a DigestVerifier is used by one
// thread at a time.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/sha256.h"

namespace accel {

// A validated digest.
class Digest {
 public:
  // Accepts sha256 and sha512. InvalidArgument otherwise (see ValidateDigest).
  static absl::StatusOr<Digest> Parse(absl::string_view text);
  // Accepts sha256 only. InvalidArgument otherwise (see ValidateSha256Digest).
  static absl::StatusOr<Digest> ParseSha256(absl::string_view text);
  // The sha256 digest of `data`.
  static Digest Sha256Of(absl::string_view data);

  DigestAlgorithm algorithm() const { return algorithm_; }
  // "<algorithm>:<hex>".
  const std::string& str() const { return text_; }
  // The hex part.
  absl::string_view hex() const;

  bool operator==(const Digest& other) const { return text_ == other.text_; }
  bool operator!=(const Digest& other) const { return text_ != other.text_; }

 private:
  Digest(DigestAlgorithm algorithm, std::string text)
      : algorithm_(algorithm), text_(std::move(text)) {}

  DigestAlgorithm algorithm_;
  std::string text_;
};

// OK if `digest` is "sha256:" + 64 or "sha512:" + 128 lowercase hex digits;
// InvalidArgument `invalid digest "X" (want ...)` otherwise.
absl::Status ValidateDigest(absl::string_view digest);

// OK if `digest` is "sha256:" + 64 lowercase hex digits; InvalidArgument
// `"X" is not a sha256 digest (...)` otherwise.
absl::Status ValidateSha256Digest(absl::string_view digest);

// True if `s` is non-empty and only 0-9, a-f.
bool IsLowerHex(absl::string_view s);

// True if `s` is 64 lowercase hex digits (the hex part of a sha256 digest).
bool IsSha256Hex(absl::string_view s);

class DigestVerifier {
 public:
  // `expected` must pass ValidateDigest.
  static absl::StatusOr<DigestVerifier> Create(absl::string_view expected);

  void Update(absl::string_view data) { hasher_.Update(data); }
  // Digest of the bytes seen so far (does not end the stream).
  std::string Current() const { return hasher_.Digest(); }
  // OK if the bytes seen so far hash to the expected digest, else DataLoss
  // "digest mismatch: expected X, got Y".
  absl::Status Verify() const;
  const std::string& expected() const { return expected_.str(); }

 private:
  explicit DigestVerifier(Digest expected)
      : expected_(std::move(expected)), hasher_(expected_.algorithm()) {}

  Digest expected_;
  Hasher hasher_;
};

}  // namespace accel
