#pragma once

// Streaming SHA-256 giving OCI-style digests ("sha256:<64 lowercase hex>").
// Not thread-safe (one stream each).

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace accel {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void Update(absl::string_view data);
  void Update(const void* data, size_t n) {
    Update(absl::string_view(static_cast<const char*>(data), n));
  }
  // The raw 32-byte digest of everything so far (the stream can go on).
  std::array<uint8_t, 32> Raw() const;
  // "sha256:<hex>" of everything so far (the stream can go on).
  std::string Digest() const;

  // One-shot helpers.
  static std::string Of(absl::string_view data);
  static std::array<uint8_t, 32> RawOf(absl::string_view data);

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace accel
