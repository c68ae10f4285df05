#pragma once

// Streaming content hashes giving OCI-style digests ("sha256:<64 lowercase
// hex>", "sha512:<128 lowercase hex>"). The only code that calls OpenSSL's
// digest API: everything that hashes content goes through Hasher (or its
// SHA-256 form, Sha256). Not thread-safe (one stream each).

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace accel {

enum class DigestAlgorithm { kSha256, kSha512 };

// "sha256" or "sha512".
absl::string_view DigestAlgorithmName(DigestAlgorithm algorithm);

class Hasher {
 public:
  explicit Hasher(DigestAlgorithm algorithm);
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;

  DigestAlgorithm algorithm() const { return algorithm_; }

  void Update(absl::string_view data);
  void Update(const void* data, size_t n) {
    Update(absl::string_view(static_cast<const char*>(data), n));
  }
  // The raw digest bytes of everything so far (the stream can go on).
  std::string RawBytes() const;
  // "<algorithm>:<hex>" of everything so far (the stream can go on).
  std::string Digest() const;

 private:
  struct Ctx;
  DigestAlgorithm algorithm_;
  std::unique_ptr<Ctx> ctx_;
};

class Sha256 : public Hasher {
 public:
  Sha256() : Hasher(DigestAlgorithm::kSha256) {}

  // The raw 32-byte digest of everything so far (the stream can go on).
  std::array<uint8_t, 32> Raw() const;

  // One-shot helpers.
  static std::string Of(absl::string_view data);
  static std::array<uint8_t, 32> RawOf(absl::string_view data);
};

// Lowercase hex of `bytes`.
std::string LowerHex(absl::string_view bytes);

}  // namespace accel
