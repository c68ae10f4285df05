#include "common/decompress.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "tests/testing/compress.h"
#include "tests/testing/status_matchers.h"

namespace accel {
namespace {

using ::accel::testing::Gzip;
using ::accel::testing::StatusIs;
using ::accel::testing::Zstd;
using ::testing::HasSubstr;

// A ReadFn over `bytes` handing out at most `step` bytes per call.
ReadFn Stream(const std::string& bytes, size_t step) {
  auto pos = std::make_shared<size_t>(0);
  return [&bytes, pos, step](char* buf, size_t len) -> absl::StatusOr<size_t> {
    const size_t n = std::min({len, step, bytes.size() - *pos});
    std::memcpy(buf, bytes.data() + *pos, n);
    *pos += n;
    return n;
  };
}

absl::StatusOr<std::string> All(Decompressor& d, size_t read_size = 4096) {
  std::string out;
  std::string buf(read_size, '\0');
  for (;;) {
    absl::StatusOr<size_t> n = d.Read(buf.data(), buf.size());
    if (!n.ok()) return n.status();
    if (*n == 0) return out;
    out.append(buf.data(), *n);
  }
}

DecompressOptions Options(size_t block, uint64_t max_output) {
  DecompressOptions o;
  o.block = block;
  o.max_output = max_output;
  return o;
}

std::string Text(size_t n) {
  std::string s;
  while (s.size() < n) s += "the quick brown fox jumps over the lazy dog ";
  s.resize(n);
  return s;
}

TEST(DecompressTest, DetectsEachCodecFromStreamsAndMemory) {
  const std::string plain = Text(300000);
  struct Case {
    std::string input;
    Codec codec;
  };
  const Case cases[] = {
      {Gzip(plain), Codec::kGzip},
      {Zstd(plain), Codec::kZstd},
      {plain, Codec::kNone},
      // Members and frames one after another read as one stream.
      {Gzip(plain.substr(0, 1000)) + Gzip(plain.substr(1000)), Codec::kGzip},
      {Zstd(plain.substr(0, 1000)) + Zstd(plain.substr(1000)), Codec::kZstd},
  };
  for (const Case& c : cases) {
    for (size_t step : {size_t{1}, size_t{3}, size_t{4096}, size_t{1} << 20}) {
      Decompressor d(Stream(c.input, step), Options(4096, UINT64_MAX));
      ASSERT_OK_AND_ASSIGN(std::string got, All(d, 777));
      EXPECT_EQ(got, plain) << d.name() << " step " << step;
      EXPECT_EQ(d.codec(), c.codec);
      EXPECT_EQ(d.produced(), plain.size());
    }
    Decompressor m(c.input);
    ASSERT_OK_AND_ASSIGN(std::string got, All(m));
    EXPECT_EQ(got, plain);
  }
}

TEST(DecompressTest, ShortInputsAndEmptyOutput) {
  Decompressor empty(absl::string_view(""));
  ASSERT_OK_AND_ASSIGN(std::string got, All(empty));
  EXPECT_EQ(got, "");
  Decompressor one(absl::string_view("x"));
  ASSERT_OK_AND_ASSIGN(got, All(one));
  EXPECT_EQ(got, "x");
  const std::string gz = Gzip("");
  Decompressor empty_member(gz);
  ASSERT_OK_AND_ASSIGN(got, All(empty_member));
  EXPECT_EQ(got, "");
}

TEST(DecompressTest, TruncatedAndCorruptAreDataLoss) {
  const std::string plain = Text(200000);
  const std::string gz = Gzip(plain);
  const std::string zst = Zstd(plain);
  Decompressor gz_cut(absl::string_view(gz).substr(0, gz.size() / 2));
  EXPECT_THAT(All(gz_cut), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  Decompressor zst_cut(absl::string_view(zst).substr(0, zst.size() - 3));
  EXPECT_THAT(All(zst_cut), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  std::string bad = gz;
  bad[bad.size() / 2] ^= 0x55;
  Decompressor gz_bad(bad);
  EXPECT_THAT(All(gz_bad), StatusIs(absl::StatusCode::kDataLoss));
  Decompressor not_gzip(absl::string_view("garbage, not gzip"), {.codec = Codec::kGzip});
  EXPECT_THAT(All(not_gzip), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("corrupt")));
  Decompressor not_zstd(absl::string_view("garbage, not zstd"), {.codec = Codec::kZstd});
  EXPECT_THAT(All(not_zstd), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("corrupt")));
  // Garbage after a complete member is not a second member.
  const std::string trailing = gz + "trailing garbage";
  Decompressor gz_trailing(trailing);
  EXPECT_THAT(All(gz_trailing), StatusIs(absl::StatusCode::kDataLoss));
  // A read error of the input is passed on.
  Decompressor failing([](char*, size_t) -> absl::StatusOr<size_t> {
    return absl::UnavailableError("registry went away");
  });
  EXPECT_THAT(All(failing), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("went away")));
}

TEST(DecompressTest, OutputBoundHolds) {
  const std::string big(1 << 20, 'z');
  for (const std::string& input : {Gzip(big), Zstd(big), big}) {
    Decompressor over(input, Options(1 << 20, 1000));
    EXPECT_THAT(All(over),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than 1000")));
    Decompressor exact(input, Options(1 << 20, big.size()));
    ASSERT_OK_AND_ASSIGN(std::string got, All(exact));
    EXPECT_EQ(got, big);
  }
}

TEST(DecompressTest, FirstMemberOnlyStopsThere) {
  const std::string two = Gzip("first") + Gzip("second");
  Decompressor d(two, {.codec = Codec::kGzip, .first_member_only = true});
  ASSERT_OK_AND_ASSIGN(std::string got, All(d));
  EXPECT_EQ(got, "first");
}

TEST(DecompressTest, SkipAndReadExactly) {
  const std::string plain = Text(100000);
  for (const std::string& input : {Gzip(plain), Zstd(plain)}) {
    Decompressor d(input);
    ASSERT_OK(d.Skip(12345));
    std::string out;
    ASSERT_OK(d.ReadExactly(1000, out));
    EXPECT_EQ(out, plain.substr(12345, 1000));
    EXPECT_THAT(d.ReadExactly(plain.size(), out),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("ends after")));
    Decompressor past(input);
    EXPECT_THAT(past.Skip(plain.size() + 1),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("ends after")));
  }
}

}  // namespace
}  // namespace accel
