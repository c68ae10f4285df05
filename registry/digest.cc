#include "registry/digest.h"

#include <openssl/evp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace accel::registry {
namespace {

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Hex(const unsigned char* data, unsigned int n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 15]);
  }
  return out;
}

}  // namespace

absl::Status ValidateDigest(absl::string_view digest) {
  size_t colon = digest.find(':');
  if (colon != absl::string_view::npos) {
    absl::string_view algo = digest.substr(0, colon);
    absl::string_view hex = digest.substr(colon + 1);
    if (((algo == "sha256" && hex.size() == 64) || (algo == "sha512" && hex.size() == 128)) &&
        IsLowerHex(hex)) {
      return absl::OkStatus();
    }
  }
  // Cap what we echo: the value may come from an untrusted registry.
  return absl::InvalidArgumentError(absl::StrCat("invalid digest \"", digest.substr(0, 140),
                                                 "\" (want sha256:<64 hex> or sha512:<128 hex>)"));
}

struct DigestVerifier::Ctx {
  EVP_MD_CTX* md = nullptr;
  std::string algo;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

DigestVerifier::DigestVerifier(std::string expected, std::unique_ptr<Ctx> ctx)
    : expected_(std::move(expected)), ctx_(std::move(ctx)) {}
DigestVerifier::DigestVerifier(DigestVerifier&&) noexcept = default;
DigestVerifier& DigestVerifier::operator=(DigestVerifier&&) noexcept = default;
DigestVerifier::~DigestVerifier() = default;

absl::StatusOr<DigestVerifier> DigestVerifier::Create(absl::string_view expected) {
  absl::Status s = ValidateDigest(expected);
  if (!s.ok()) return s;
  auto ctx = std::make_unique<Ctx>();
  ctx->algo = std::string(expected.substr(0, expected.find(':')));
  ctx->md = EVP_MD_CTX_new();
  const EVP_MD* md = ctx->algo == "sha256" ? EVP_sha256() : EVP_sha512();
  if (ctx->md == nullptr || EVP_DigestInit_ex(ctx->md, md, nullptr) != 1) {
    return absl::InternalError("cannot initialise digest context");
  }
  return DigestVerifier(std::string(expected), std::move(ctx));
}

void DigestVerifier::Update(absl::string_view data) {
  EVP_DigestUpdate(ctx_->md, data.data(), data.size());
}

std::string DigestVerifier::Current() const {
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_MD_CTX_copy_ex(copy, ctx_->md);
  EVP_DigestFinal_ex(copy, out, &n);
  EVP_MD_CTX_free(copy);
  return absl::StrCat(ctx_->algo, ":", Hex(out, n));
}

absl::Status DigestVerifier::Verify() const {
  std::string got = Current();
  if (got == expected_) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("digest mismatch: expected ", expected_, ", got ", got));
}

std::string Sha256Digest(absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_sha256(), nullptr);
  return absl::StrCat("sha256:", Hex(out, n));
}

}  // namespace accel::registry
