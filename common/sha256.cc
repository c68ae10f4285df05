#include "common/sha256.h"

#include <openssl/evp.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace accel {

struct Hasher::Ctx {
  EVP_MD_CTX* md = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

absl::string_view DigestAlgorithmName(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::kSha512 ? "sha512" : "sha256";
}

Hasher::Hasher(DigestAlgorithm algorithm) : algorithm_(algorithm), ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  const EVP_MD* md = algorithm == DigestAlgorithm::kSha512 ? EVP_sha512() : EVP_sha256();
  ACCEL_CHECK(ctx_->md != nullptr && EVP_DigestInit_ex(ctx_->md, md, nullptr) == 1);
}
Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

void Hasher::Update(absl::string_view data) {
  if (!data.empty()) EVP_DigestUpdate(ctx_->md, data.data(), data.size());
}

std::string Hasher::RawBytes() const {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  ACCEL_CHECK(copy != nullptr && EVP_MD_CTX_copy_ex(copy, ctx_->md) == 1);
  EVP_DigestFinal_ex(copy, out, &n);
  EVP_MD_CTX_free(copy);
  return std::string(reinterpret_cast<const char*>(out), n);
}

std::string Hasher::Digest() const {
  return absl::StrCat(DigestAlgorithmName(algorithm_), ":", LowerHex(RawBytes()));
}

std::array<uint8_t, 32> Sha256::Raw() const {
  std::array<uint8_t, 32> out{};
  const std::string raw = RawBytes();
  ACCEL_CHECK(raw.size() == out.size());
  std::memcpy(out.data(), raw.data(), out.size());
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

std::string LowerHex(absl::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const auto b = static_cast<uint8_t>(c);
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace accel
