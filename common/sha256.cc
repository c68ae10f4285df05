#include "common/sha256.h"

#include <openssl/evp.h>

#include "common/log.h"

namespace accel {

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  ACCEL_CHECK(ctx_->md != nullptr && EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) == 1);
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(absl::string_view data) {
  if (!data.empty()) EVP_DigestUpdate(ctx_->md, data.data(), data.size());
}

std::array<uint8_t, 32> Sha256::Raw() const {
  std::array<uint8_t, 32> out{};
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  ACCEL_CHECK(copy != nullptr && EVP_MD_CTX_copy_ex(copy, ctx_->md) == 1);
  unsigned int n = 0;
  EVP_DigestFinal_ex(copy, out.data(), &n);
  EVP_MD_CTX_free(copy);
  return out;
}

std::string Sha256::Digest() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::array<uint8_t, 32> raw = Raw();
  std::string out = "sha256:";
  out.reserve(7 + 64);
  for (uint8_t b : raw) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::string Sha256::Of(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Digest();
}

std::array<uint8_t, 32> Sha256::RawOf(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Raw();
}

}  // namespace accel
