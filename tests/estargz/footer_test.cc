#include "estargz/footer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

#include "absl/strings/str_format.h"
#include "tests/estargz/test_util.h"
#include "tests/testing/status_matchers.h"

namespace accel::estargz {
namespace {

using ::accel::testing::StatusIs;
using ::testing::HasSubstr;
using namespace ::accel::estargz::testing;  // NOLINT(build/namespaces)

// A legacy stargz footer built with zlib's own gzip header support.
std::string LegacyFooter(uint64_t toc_offset) {
  std::string extra = absl::StrFormat("%016xSTARGZ", toc_offset);
  gz_header h{};
  h.extra = reinterpret_cast<Bytef*>(extra.data());
  h.extra_len = static_cast<uInt>(extra.size());
  h.os = 255;
  return accel::testing::Gzip("", /*level=*/0, &h);
}

TEST(FooterTest, EncodeIs51BytesAndParses) {
  const std::string f = EncodeEstargzFooter(0x1234);
  ASSERT_EQ(f.size(), kEstargzFooterSize);
  std::string blob = std::string(0x2000, 'x') + f;
  ASSERT_OK_AND_ASSIGN(Footer got, ParseFooter(f, blob.size()));
  EXPECT_EQ(got.kind, FooterKind::kEstargz);
  EXPECT_EQ(got.compression, Compression::kGzip);
  EXPECT_EQ(got.toc_offset, 0x1234u);
  EXPECT_EQ(got.toc_size, blob.size() - kEstargzFooterSize - 0x1234);
  EXPECT_EQ(got.payload_end, 0x1234u);
  EXPECT_EQ(got.footer_size, kEstargzFooterSize);
  // The footer is an empty gzip member: gunzip gives nothing.
  EXPECT_EQ(Gunzip(f), "");
}

TEST(FooterTest, AcceptsLongerTail) {
  std::string blob = std::string(100, 'x') + EncodeEstargzFooter(10);
  ASSERT_OK_AND_ASSIGN(Footer got, ParseFooter(blob.substr(20), blob.size()));
  EXPECT_EQ(got.toc_offset, 10u);
}

TEST(FooterTest, LegacyFooter) {
  const std::string f = LegacyFooter(77);
  ASSERT_EQ(f.size(), kLegacyFooterSize);
  std::string blob = std::string(200, 'y') + f;
  // A reader fetches the last 51 bytes: 4 bytes of TOC before the footer.
  ASSERT_OK_AND_ASSIGN(Footer got,
                       ParseFooter(blob.substr(blob.size() - kMaxFooterSize), blob.size()));
  EXPECT_EQ(got.kind, FooterKind::kLegacyStargz);
  EXPECT_EQ(got.toc_offset, 77u);
  EXPECT_EQ(got.toc_size, blob.size() - kLegacyFooterSize - 77);
}

TEST(FooterTest, ZstdChunked) {
  std::string blob = std::string(300, 'z') + ZstdChunkedFooter(108, 150, 1000);
  ASSERT_OK_AND_ASSIGN(Footer got,
                       ParseFooter(blob.substr(blob.size() - kMaxFooterSize), blob.size()));
  EXPECT_EQ(got.kind, FooterKind::kZstdChunked);
  EXPECT_EQ(got.compression, Compression::kZstd);
  EXPECT_EQ(got.toc_offset, 108u);
  EXPECT_EQ(got.toc_size, 150u);
  EXPECT_EQ(got.toc_uncompressed_size, 1000u);
  EXPECT_EQ(got.payload_end, 100u);
  EXPECT_EQ(got.footer_size, kZstdChunkedFooterSize);
}

struct BadFooter {
  const char* name;
  std::string tail;
  uint64_t blob_size;
  const char* message;
};

std::string Patch(std::string s, size_t at, char c) {
  s[at] = c;
  return s;
}

TEST(FooterTest, RejectsMalformed) {
  const std::string good = EncodeEstargzFooter(100);
  const std::string z = ZstdChunkedFooter(108, 150, 1000);
  const BadFooter cases[] = {
      {"truncated", good.substr(10), 41, "shorter than any footer"},
      {"tail longer than blob", good, 40, "tail bytes"},
      {"not gzip", std::string(51, 'a'), 1000, "no eStargz"},
      {"bad hex", Patch(good, 20, 'g'), 1000, "not hexadecimal"},
      {"bad magic", Patch(good, 33, 'X'), 1000, "STARGZ"},
      {"bad subfield id", Patch(good, 12, 'E'), 1000, "subfield id"},
      {"bad flags", Patch(good, 3, 0x0c), 1000, "flags"},
      {"broken deflate", Patch(good, 39, 0x07), 1000, "not an empty gzip member"},
      {"crc not zero", Patch(good, 45, 0x01), 1000, "not an empty gzip member"},
      {"offset past footer", EncodeEstargzFooter(949), 1000, "not before the footer"},
      {"offset huge", EncodeEstargzFooter(~0ull), 1000, "out of range"},
      {"zstd truncated", z.substr(8), 1000, "truncated"},
      {"zstd bad frame", Patch(z, 0, 0x51), 1000, "skippable frame"},
      {"zstd past end", z, 300, "does not lie inside"},
      {"zstd offset too small", ZstdChunkedFooter(4, 10, 10), 300, "does not lie inside"},
      {"zstd empty toc", ZstdChunkedFooter(108, 0, 10), 300, "does not lie inside"},
      {"zstd type", ZstdChunkedFooter(108, 10, 10, 2), 300, "manifest type"},
      {"zstd no uncompressed size", ZstdChunkedFooter(108, 10, 0), 300, "empty TOC"},
  };
  for (const BadFooter& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseFooter(c.tail, c.blob_size),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
}

}  // namespace
}  // namespace accel::estargz
