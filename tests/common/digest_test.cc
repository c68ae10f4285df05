#include "common/digest.h"

#include <gtest/gtest.h>

#include "common/chain_id.h"
#include "common/random.h"
#include "common/sha256.h"
#include "tests/testing/status_matchers.h"

namespace accel {
namespace {

using ::accel::testing::StatusIs;
using ::testing::HasSubstr;

const std::string kD1 = Sha256::Of("one");

TEST(DigestTest, Validate) {
  EXPECT_OK(ValidateDigest(kD1));
  EXPECT_OK(ValidateDigest("sha512:" + std::string(128, 'a')));
  EXPECT_THAT(ValidateDigest("sha256:" + std::string(64, 'A')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateDigest("sha256:abc"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateDigest("md5:" + std::string(32, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateDigest("sha256:"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(DigestTest, ValidateSha256) {
  EXPECT_OK(ValidateSha256Digest(kD1));
  EXPECT_THAT(ValidateSha256Digest("sha256:abc"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a sha256 digest")));
  EXPECT_FALSE(ValidateSha256Digest("sha512:" + std::string(64, 'a')).ok());
  EXPECT_FALSE(ValidateSha256Digest("sha512:" + std::string(128, 'a')).ok());
  EXPECT_FALSE(ValidateSha256Digest("").ok());
  // An error quotes a bounded part of a hostile value.
  const std::string huge = "sha256:" + std::string(100000, 'x');
  EXPECT_LT(ValidateSha256Digest(huge).message().size(), 300u);
}

TEST(DigestTest, ParseKeepsAlgorithmAndHex) {
  ASSERT_OK_AND_ASSIGN(Digest d, Digest::Parse(kD1));
  EXPECT_EQ(d.algorithm(), DigestAlgorithm::kSha256);
  EXPECT_EQ(d.str(), kD1);
  EXPECT_EQ(d.hex(), kD1.substr(7));
  EXPECT_TRUE(IsSha256Hex(d.hex()));
  ASSERT_OK_AND_ASSIGN(Digest d512, Digest::Parse("sha512:" + std::string(128, 'b')));
  EXPECT_EQ(d512.algorithm(), DigestAlgorithm::kSha512);
  EXPECT_THAT(Digest::ParseSha256(d512.str()), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Digest::Sha256Of("one"), d);
}

TEST(DigestTest, VerifierStreams) {
  std::string want = Sha256::Of("hello world");
  EXPECT_EQ(want, "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
  ASSERT_OK_AND_ASSIGN(DigestVerifier v, DigestVerifier::Create(want));
  v.Update("hello ");
  EXPECT_THAT(v.Verify(), StatusIs(absl::StatusCode::kDataLoss));
  v.Update("world");
  EXPECT_OK(v.Verify());
  EXPECT_THAT(DigestVerifier::Create("sha256:nothex"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(DigestTest, Sha512Verifier) {
  // sha512("abc"), FIPS 180-2 appendix C.
  const std::string want =
      "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
  ASSERT_OK_AND_ASSIGN(DigestVerifier v, DigestVerifier::Create(want));
  v.Update("abc");
  EXPECT_OK(v.Verify());
  EXPECT_EQ(v.Current(), want);
}

TEST(ChainIdTest, FollowsTheImageSpec) {
  EXPECT_EQ(ChainId("", kD1), kD1);
  const std::string d2 = Sha256::Of("two");
  EXPECT_EQ(ChainId(kD1, d2), Sha256::Of(kD1 + " " + d2));
  EXPECT_EQ(ChainIds({kD1, d2, kD1}),
            (std::vector<std::string>{kD1, ChainId(kD1, d2), ChainId(ChainId(kD1, d2), kD1)}));
  EXPECT_TRUE(ChainIds({}).empty());
}

TEST(RandomHexTest, LengthAndAlphabet) {
  const std::string a = RandomHex(16);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_TRUE(IsLowerHex(a));
  EXPECT_NE(a, RandomHex(16));
  EXPECT_EQ(RandomHex(0), "");
}

}  // namespace
}  // namespace accel
