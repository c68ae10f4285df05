#pragma once

// Content digests ("sha256:<64 hex>", "sha512:<128 hex>") as used by OCI
// descriptors: validation and streaming verification.
//
// DigestVerifier hashes bytes as they stream past; only after Verify()
// returns OK may the bytes be trusted. Not thread-safe (one stream each).

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accel::registry {

// Returns OK if `digest` is "sha256:" + 64 lowercase hex or "sha512:" + 128
// lowercase hex; InvalidArgument (naming the digest) otherwise.
absl::Status ValidateDigest(absl::string_view digest);

// "sha256:<hex>" of `data`.
std::string Sha256Digest(absl::string_view data);

class DigestVerifier {
 public:
  // `expected` must pass ValidateDigest.
  static absl::StatusOr<DigestVerifier> Create(absl::string_view expected);

  DigestVerifier(DigestVerifier&&) noexcept;
  DigestVerifier& operator=(DigestVerifier&&) noexcept;
  ~DigestVerifier();

  void Update(absl::string_view data);
  // Digest of the bytes seen so far (does not end the stream).
  std::string Current() const;
  // OK if the bytes seen so far hash to the expected digest, else DataLoss
  // "digest mismatch: expected X, got Y".
  absl::Status Verify() const;
  const std::string& expected() const { return expected_; }

 private:
  struct Ctx;
  DigestVerifier(std::string expected, std::unique_ptr<Ctx> ctx);
  std::string expected_;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace accel::registry
