#include "estargz/chunk.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/sha256.h"
#include "estargz/codec.h"
#include "tests/estargz/test_util.h"
#include "tests/store/tar_builder.h"
#include "tests/testing/status_matchers.h"

namespace accel::estargz {
namespace {

using ::accel::testing::Gzip;
using ::accel::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Chunk MakeChunk(uint64_t blob_offset, uint64_t compressed_size, const std::string& data,
                uint64_t inner = 0, uint64_t file_offset = 0) {
  Chunk c;
  c.blob_offset = blob_offset;
  c.compressed_size = compressed_size;
  c.size = data.size();
  c.inner_offset = inner;
  c.file_offset = file_offset;
  c.digest = Sha256::Of(data);
  return c;
}

TEST(DecodeChunkTest, GzipMemberWithTrailingTarBytes) {
  // As a writer lays it out: the chunk, then tar padding and the next
  // header in the same member.
  const std::string data = "hello world";
  const std::string member = Gzip(data + std::string(501, '\0') + "next header");
  ASSERT_OK_AND_ASSIGN(std::string got,
                       DecodeChunk(member, Compression::kGzip, MakeChunk(0, member.size(), data)));
  EXPECT_EQ(got, data);
}

TEST(DecodeChunkTest, InnerOffsetAcrossMembers) {
  // 600 bytes of something else, then the chunk, split over two members.
  const std::string data(3000, 'q');
  const std::string compressed =
      Gzip(std::string(600, 'a') + data.substr(0, 1000)) + Gzip(data.substr(1000));
  ASSERT_OK_AND_ASSIGN(std::string got, DecodeChunk(compressed, Compression::kGzip,
                                                    MakeChunk(0, compressed.size(), data, 600)));
  EXPECT_EQ(got, data);
}

TEST(DecodeChunkTest, Zstd) {
  const std::string data = "zstd chunk data";
  const std::string frame = testing::ZstdFrame(data + "trailer");
  ASSERT_OK_AND_ASSIGN(std::string got,
                       DecodeChunk(frame, Compression::kZstd, MakeChunk(0, frame.size(), data)));
  EXPECT_EQ(got, data);
}

TEST(DecodeChunkTest, NoDigestIsNotVerified) {
  const std::string member = Gzip("abc");
  Chunk c = MakeChunk(0, member.size(), "abc");
  c.digest.clear();
  ASSERT_OK_AND_ASSIGN(std::string got, DecodeChunk(member, Compression::kGzip, c));
  EXPECT_EQ(got, "abc");
}

TEST(DecodeChunkTest, Errors) {
  const std::string data = "the right bytes";
  const std::string member = Gzip(data);
  Chunk wrong = MakeChunk(0, member.size(), data);
  wrong.digest = Sha256::Of("other bytes");
  EXPECT_THAT(DecodeChunk(member, Compression::kGzip, wrong),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk digest mismatch")));
  EXPECT_THAT(DecodeChunk(member.substr(0, member.size() / 2), Compression::kGzip,
                          MakeChunk(0, member.size(), data)),
              StatusIs(absl::StatusCode::kDataLoss));
  Chunk too_big = MakeChunk(0, member.size(), data);
  too_big.size = data.size() + 1;
  EXPECT_THAT(DecodeChunk(member, Compression::kGzip, too_big),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("ends after")));
  EXPECT_THAT(DecodeChunk("garbage, not gzip", Compression::kGzip, MakeChunk(0, 17, data)),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DecodeChunk("garbage, not zstd", Compression::kZstd, MakeChunk(0, 17, data)),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DecodeChunk("", Compression::kGzip, MakeChunk(0, 0, data)),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(DecodeChunksTest, AdjacentChunksInOneRange) {
  const std::string a = "first chunk", b = "second chunk", c1 = "third", c2 = "fourth";
  const std::string ma = Gzip(a), mb = Gzip(b);
  // c1 and c2 share one member (inner offsets).
  const std::string mc = Gzip(c1 + std::string(507, '\0') + c2);
  const uint64_t base = 1000;
  const std::string range = ma + mb + mc;
  std::vector<Chunk> chunks = {
      MakeChunk(base, ma.size(), a),
      MakeChunk(base + ma.size(), mb.size(), b),
      MakeChunk(base + ma.size() + mb.size(), mc.size(), c1, 0),
      MakeChunk(base + ma.size() + mb.size(), mc.size(), c2, c1.size() + 507),
  };
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> got,
                       DecodeChunks(range, base, Compression::kGzip, chunks));
  EXPECT_THAT(got, ElementsAre(a, b, c1, c2));

  // A chunk outside the range.
  chunks.push_back(MakeChunk(base + range.size(), 10, "x"));
  EXPECT_THAT(
      DecodeChunks(range, base, Compression::kGzip, chunks),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not inside the fetched range")));
  chunks.pop_back();
  chunks[1].digest = Sha256::Of("nope");
  EXPECT_THAT(DecodeChunks(range, base, Compression::kGzip, chunks),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk digest mismatch")));
}

TEST(ChunkIndexForOffsetTest, FindsTheChunk) {
  std::vector<Chunk> chunks = {MakeChunk(0, 1, "abcd", 0, 0), MakeChunk(1, 1, "efgh", 0, 4),
                               MakeChunk(2, 1, "ij", 0, 8)};
  EXPECT_EQ(ChunkIndexForOffset(chunks, 0), 0u);
  EXPECT_EQ(ChunkIndexForOffset(chunks, 3), 0u);
  EXPECT_EQ(ChunkIndexForOffset(chunks, 4), 1u);
  EXPECT_EQ(ChunkIndexForOffset(chunks, 9), 2u);
  EXPECT_EQ(ChunkIndexForOffset(chunks, 10), 3u);
  EXPECT_EQ(ChunkIndexForOffset({}, 0), 0u);
}

TEST(CodecTest, BoundsHold) {
  const std::string big(1 << 20, 'z');
  const std::string compressed = Gzip(big + big);
  internal::GzipMemberReader reader(compressed, 1 << 20);
  std::string sink(64 << 10, '\0');
  absl::Status status;
  for (;;) {
    absl::StatusOr<size_t> n = reader.Read(sink.data(), sink.size());
    if (!n.ok()) {
      status = n.status();
      break;
    }
    if (*n == 0) break;
  }
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than")));
  EXPECT_THAT(internal::ZstdDecompressAll(testing::ZstdFrame(big), 1000),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than 1000")));
  ASSERT_OK_AND_ASSIGN(std::string all,
                       internal::ZstdDecompressAll(testing::ZstdFrame(big), big.size()));
  EXPECT_EQ(all, big);
  const std::string frame = testing::ZstdFrame(big);
  EXPECT_THAT(internal::ZstdDecompressAll(frame.substr(0, frame.size() - 3), big.size()),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace accel::estargz
