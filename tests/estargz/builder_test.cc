// Round trips: tar --Build--> eStargz blob --ReadToc/DecodeChunk--> the same
// entries and bytes; the blob gunzipped is the same tar plus the format's
// entries.

#include "estargz/builder.h"

#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/sha256.h"
#include "estargz/chunk.h"
#include "estargz/toc.h"
#include "tests/estargz/builder_fixture.h"
#include "tests/estargz/test_util.h"
#include "tests/store/tar_builder.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::estargz {
namespace {

using ::accel::testing::StatusIs;
using ::accel::testing::TarBuilder;
using ::accel::testing::TarMeta;
using ::accel::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace ::accel::estargz::testing;  // NOLINT(build/namespaces)

TEST_F(BuilderTest, RoundTripWithPrioritizedFiles) {
  options_.prioritized_paths = {"usr/bin/big", "/etc/hosts2"};
  TempDir tmp;
  options_.tmp_dir = tmp.path();
  ASSERT_OK_AND_ASSIGN(Built b, BuildBlob(tar_, options_));
  const std::string& blob = b.blob;
  EXPECT_EQ(b.result.blob_size, blob.size());
  EXPECT_EQ(b.result.blob_digest, Sha256::Of(blob));
  EXPECT_TRUE(b.result.missing_prioritized.empty());

  // The spool file is gone.
  DIR* d = opendir(tmp.path().c_str());
  ASSERT_NE(d, nullptr);
  int files = 0;
  while (struct dirent* de = readdir(d)) files += de->d_name[0] != '.';
  closedir(d);
  EXPECT_EQ(files, 0);

  // Two round trips, TOC verified against the digest the build reported.
  int calls = 0;
  ASSERT_OK_AND_ASSIGN(Toc toc,
                       ReadToc(MemoryReader(blob, &calls), blob.size(), b.result.toc_digest));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(toc.digest, b.result.toc_digest);
  EXPECT_EQ(toc.compression, Compression::kGzip);
  EXPECT_TRUE(toc.all_chunks_have_digests);

  std::vector<std::string> order;
  std::map<std::string, const LayerEntry*> by_path;
  for (const LayerEntry& e : toc.entries) {
    order.push_back(e.path);
    by_path[e.path] = &e;
  }
  // Prioritized first (with parents and the hard link's target), in the
  // order asked for; then the rest in tar order. The format's entries are
  // not among them, and the old stargz.index.json is gone.
  EXPECT_THAT(order, ElementsAre("", "usr", "usr/bin", "usr/bin/big", "etc", "etc/hosts",
                                 "etc/hosts2", "etc/link", "usr/bin/even", "empty", ".wh.gone",
                                 "dev", "dev/null", "dev/sda", "run", "run/fifo",
                                 "donn\xc3\xa9"
                                 "es.txt"));
  ASSERT_EQ(toc.metadata.size(), 1u);
  EXPECT_EQ(toc.metadata[0].path, ".prefetch.landmark");
  EXPECT_TRUE(toc.has_prefetch_landmark);
  EXPECT_FALSE(toc.has_no_prefetch_landmark);
  std::vector<std::string> prioritized;
  for (size_t i : toc.prioritized) prioritized.push_back(toc.entries[i].path);
  EXPECT_THAT(prioritized, ElementsAre("usr/bin/big", "etc/hosts"));
  const Chunk& landmark = toc.FileChunks(toc.metadata[0])[0];
  EXPECT_EQ(toc.prefetch_size, landmark.blob_offset);
  EXPECT_EQ(ReadFile(toc, blob, toc.metadata[0]), "\x0f");

  const LayerEntry& hosts = *by_path.at("etc/hosts");
  EXPECT_EQ(hosts.type, EntryType::kRegular);
  EXPECT_EQ(hosts.mode, 0644u);
  EXPECT_EQ(hosts.uid, 1000u);
  EXPECT_EQ(hosts.gid, 1001u);
  EXPECT_EQ(hosts.mtime_sec, 1'700'000'000);
  EXPECT_EQ(hosts.mtime_nsec, 123'456'789u);
  EXPECT_EQ(hosts.size, 20u);
  EXPECT_EQ(hosts.digest, Sha256::Of("127.0.0.1 localhost\n"));
  EXPECT_EQ(hosts.xattrs.at("user.comment"), "hi");
  EXPECT_EQ(hosts.xattrs.at("security.capability"), std::string("\x01\x00\x00\x02", 4));
  EXPECT_EQ(ReadFile(toc, blob, hosts), "127.0.0.1 localhost\n");

  const LayerEntry& big = *by_path.at("usr/bin/big");
  EXPECT_EQ(big.mode, 04755u);
  EXPECT_EQ(big.size, big_.size());
  EXPECT_EQ(big.digest, Sha256::Of(big_));
  EXPECT_EQ(big.mtime_sec, 1'600'000'000);
  auto big_chunks = toc.FileChunks(big);
  ASSERT_EQ(big_chunks.size(), 4u);
  EXPECT_EQ(big_chunks[3].size, 500u);
  EXPECT_EQ(ReadFile(toc, blob, big), big_);
  // The whole file in one range request.
  const uint64_t from = big_chunks.front().blob_offset;
  const uint64_t to = big_chunks.back().blob_offset + big_chunks.back().compressed_size;
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> pieces,
                       DecodeChunks(absl::string_view(blob).substr(from, to - from), from,
                                    toc.compression, big_chunks));
  std::string joined;
  for (const std::string& p : pieces) joined += p;
  EXPECT_EQ(joined, big_);

  const LayerEntry& even = *by_path.at("usr/bin/even");
  EXPECT_EQ(toc.FileChunks(even).size(), 2u);
  EXPECT_EQ(ReadFile(toc, blob, even), even_);

  EXPECT_EQ(by_path.at("")->type, EntryType::kDirectory);
  EXPECT_EQ(by_path.at("etc")->mode, 0755u);
  EXPECT_EQ(by_path.at("etc/link")->type, EntryType::kSymlink);
  EXPECT_EQ(by_path.at("etc/link")->link_target, "hosts");
  EXPECT_EQ(by_path.at("etc/hosts2")->type, EntryType::kHardlink);
  EXPECT_EQ(by_path.at("etc/hosts2")->link_target, "etc/hosts");
  EXPECT_EQ(by_path.at("empty")->size, 0u);
  EXPECT_EQ(by_path.at("empty")->digest, Sha256::Of(""));
  EXPECT_EQ(by_path.at(".wh.gone")->type, EntryType::kRegular);
  EXPECT_EQ(by_path.at("dev/null")->type, EntryType::kCharDevice);
  EXPECT_EQ(by_path.at("dev/null")->dev_major, 1u);
  EXPECT_EQ(by_path.at("dev/null")->dev_minor, 3u);
  EXPECT_EQ(by_path.at("dev/sda")->type, EntryType::kBlockDevice);
  EXPECT_EQ(by_path.at("dev/sda")->dev_major, 8u);
  EXPECT_EQ(by_path.at("run/fifo")->type, EntryType::kFifo);
  EXPECT_EQ(ReadFile(toc, blob,
                     *by_path.at("donn\xc3\xa9"
                                 "es.txt")),
            "utf-8 name");

  // Every chunk begins a gzip member.
  for (const Chunk& c : toc.chunks) {
    EXPECT_EQ(static_cast<unsigned char>(blob[c.blob_offset]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>(blob[c.blob_offset + 1]), 0x8b);
  }

  // The blob gunzipped: a tar of the input's members (reordered), the
  // landmark and the TOC; its digest is the diff id.
  const std::string plain = Gunzip(blob);
  EXPECT_EQ(Sha256::Of(plain), b.result.diff_id);
  EXPECT_EQ(plain.size(), b.result.uncompressed_size);
  std::vector<TarMember> out = ReadTarMembers(plain);
  std::vector<TarMember> in = ReadTarMembers(tar_);
  ASSERT_EQ(out.size(), in.size() + 1);  // + landmark + TOC - old TOC
  EXPECT_EQ(out[7].path, ".prefetch.landmark");
  EXPECT_EQ(out[7].content, "\x0f");
  EXPECT_EQ(out.back().path, "stargz.index.json");
  EXPECT_EQ(Sha256::Of(out.back().content), b.result.toc_digest);
  std::map<std::string, const TarMember*> out_by_path;
  for (const TarMember& m : out) out_by_path[m.path] = &m;
  for (const TarMember& m : in) {
    if (m.path == "stargz.index.json") continue;
    SCOPED_TRACE(m.path);
    ASSERT_TRUE(out_by_path.count(m.path));
    const TarMember& o = *out_by_path.at(m.path);
    EXPECT_EQ(o.filetype, m.filetype);
    EXPECT_EQ(o.perm, m.perm);
    EXPECT_EQ(o.uid, m.uid);
    EXPECT_EQ(o.gid, m.gid);
    EXPECT_EQ(o.mtime, m.mtime);
    EXPECT_EQ(o.mtime_nsec, m.mtime_nsec);
    EXPECT_EQ(o.content, m.content);
    EXPECT_EQ(o.symlink, m.symlink);
    EXPECT_EQ(o.hardlink, m.hardlink);
    EXPECT_EQ(o.dev_major, m.dev_major);
    EXPECT_EQ(o.dev_minor, m.dev_minor);
    EXPECT_EQ(o.xattrs, m.xattrs);
  }
}

TEST_F(BuilderTest, NothingPrioritizedPutsNoPrefetchLandmarkFirst) {
  ASSERT_OK_AND_ASSIGN(Built b, BuildBlob(tar_, options_));
  ASSERT_OK_AND_ASSIGN(Toc toc,
                       ReadToc(MemoryReader(b.blob, nullptr), b.blob.size(), b.result.toc_digest));
  EXPECT_TRUE(toc.has_no_prefetch_landmark);
  EXPECT_FALSE(toc.has_prefetch_landmark);
  EXPECT_TRUE(toc.prioritized.empty());
  ASSERT_EQ(toc.metadata.size(), 1u);
  EXPECT_EQ(toc.metadata[0].path, ".no.prefetch.landmark");
  // Input order is kept.
  EXPECT_EQ(toc.entries[0].path, "");
  EXPECT_EQ(toc.entries[1].path, "etc");
  // The landmark is the first member of the blob's data.
  EXPECT_EQ(toc.chunks[0].blob_offset, toc.FileChunks(toc.metadata[0])[0].blob_offset);
  const std::string plain = Gunzip(b.blob);
  EXPECT_EQ(Sha256::Of(plain), b.result.diff_id);
  std::vector<TarMember> out = ReadTarMembers(plain);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0].path, ".no.prefetch.landmark");
  for (const LayerEntry& e : toc.entries) {
    if (e.type == EntryType::kRegular && e.size > 0) {
      EXPECT_EQ(Sha256::Of(ReadFile(toc, b.blob, e)), e.digest) << e.path;
    }
  }
}

TEST_F(BuilderTest, MissingPrioritizedPath) {
  options_.prioritized_paths = {"nope"};
  EXPECT_THAT(BuildBlob(tar_, options_), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  options_.allow_missing_prioritized = true;
  options_.prioritized_paths = {"nope", "etc/hosts"};
  ASSERT_OK_AND_ASSIGN(Built b, BuildBlob(tar_, options_));
  EXPECT_THAT(b.result.missing_prioritized, ElementsAre("nope"));
  ASSERT_OK_AND_ASSIGN(Toc toc, ReadToc(MemoryReader(b.blob, nullptr), b.blob.size(), ""));
  ASSERT_EQ(toc.prioritized.size(), 1u);
  EXPECT_EQ(toc.entries[toc.prioritized[0]].path, "etc/hosts");
}

TEST_F(BuilderTest, DuplicatesOfAPrioritizedPathAreDropped) {
  const std::string tar = TarBuilder().File("a", "old").File("b", "bee").File("a", "new").Finish();
  options_.prioritized_paths = {"a"};
  ASSERT_OK_AND_ASSIGN(Built b, BuildBlob(tar, options_));
  ASSERT_OK_AND_ASSIGN(Toc toc, ReadToc(MemoryReader(b.blob, nullptr), b.blob.size(), ""));
  ASSERT_EQ(toc.entries.size(), 2u);
  EXPECT_EQ(toc.entries[0].path, "a");
  EXPECT_EQ(ReadFile(toc, b.blob, toc.entries[0]), "new");
  EXPECT_EQ(toc.entries[1].path, "b");
}

TEST_F(BuilderTest, DuplicatesAreKeptWithoutReordering) {
  const std::string tar = TarBuilder().File("a", "old").File("a", "new").Finish();
  ASSERT_OK_AND_ASSIGN(Built b, BuildBlob(tar, options_));
  ASSERT_OK_AND_ASSIGN(Toc toc, ReadToc(MemoryReader(b.blob, nullptr), b.blob.size(), ""));
  ASSERT_EQ(toc.entries.size(), 2u);
  EXPECT_EQ(ReadFile(toc, b.blob, toc.entries[1]), "new");
}

TEST_F(BuilderTest, EmptyLayer) {
  const std::string tar = TarBuilder().Finish();
  ASSERT_OK_AND_ASSIGN(Built b, BuildBlob(tar, options_));
  ASSERT_OK_AND_ASSIGN(Toc toc,
                       ReadToc(MemoryReader(b.blob, nullptr), b.blob.size(), b.result.toc_digest));
  EXPECT_TRUE(toc.entries.empty());
  EXPECT_TRUE(toc.has_no_prefetch_landmark);
}

TEST_F(BuilderTest, LargeFileStreamsInDefaultChunks) {
  const std::string data = RandomBytes(9 << 20, 3);
  const std::string tar = TarBuilder().File("blob", data).Finish();
  ASSERT_OK_AND_ASSIGN(Built b, BuildBlob(tar, BuildOptions()));
  ASSERT_OK_AND_ASSIGN(Toc toc,
                       ReadToc(MemoryReader(b.blob, nullptr), b.blob.size(), b.result.toc_digest));
  ASSERT_EQ(toc.entries.size(), 1u);
  auto chunks = toc.FileChunks(toc.entries[0]);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].size, 4u << 20);
  EXPECT_EQ(chunks[2].size, 1u << 20);
  EXPECT_EQ(ReadFile(toc, b.blob, toc.entries[0]), data);
}

TEST_F(BuilderTest, RejectsBadInput) {
  EXPECT_THAT(BuildBlob(TarBuilder().File("../escape", "x").Finish(), options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("escapes")));
  EXPECT_THAT(
      BuildBlob(TarBuilder().Hardlink("h", "missing").Finish(), options_),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an earlier regular file")));
  EXPECT_THAT(BuildBlob(std::string(2000, 'x'), options_), StatusIs(absl::StatusCode::kDataLoss));
  BuildOptions bad = options_;
  bad.chunk_size = 0;
  EXPECT_THAT(BuildBlob(tar_, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunk size")));
  bad = options_;
  bad.gzip_level = 12;
  EXPECT_THAT(BuildBlob(tar_, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gzip level")));
}

TEST_F(BuilderTest, SinkErrorsPropagate) {
  absl::StatusOr<BuildResult> r = Build(
      StringInput(tar_), [](absl::string_view) { return absl::UnavailableError("disk full"); },
      options_);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disk full")));
}

// ReadToc over built blobs, damaged in various ways.
class ReadTocTest : public BuilderTest {
 protected:
  void SetUp() override {
    BuilderTest::SetUp();
    absl::StatusOr<Built> b = BuildBlob(tar_, options_);
    ASSERT_TRUE(b.ok()) << b.status();
    built_ = std::move(*b);
  }
  Built built_;
};

TEST_F(ReadTocTest, WrongDigest) {
  EXPECT_THAT(ReadToc(MemoryReader(built_.blob, nullptr), built_.blob.size(), Sha256::Of("x")),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("TOC digest mismatch")));
  EXPECT_THAT(ReadToc(MemoryReader(built_.blob, nullptr), built_.blob.size(), "sha256:nothex"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected TOC digest")));
}

TEST_F(ReadTocTest, DamagedBlobs) {
  const std::string& blob = built_.blob;
  // Truncated: the footer is gone.
  std::string cut = blob.substr(0, blob.size() - 10);
  EXPECT_THAT(ReadToc(MemoryReader(cut, nullptr), cut.size(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("footer")));
  // Tiny.
  std::string tiny = "abc";
  EXPECT_THAT(ReadToc(MemoryReader(tiny, nullptr), tiny.size(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too small")));
  // A corrupt TOC member.
  ASSERT_OK_AND_ASSIGN(Footer f,
                       ParseFooter(blob.substr(blob.size() - kMaxFooterSize), blob.size()));
  std::string corrupt = blob;
  corrupt[f.toc_offset + 40] ^= 0x55;
  EXPECT_THAT(ReadToc(MemoryReader(corrupt, nullptr), corrupt.size(), ""),
              StatusIs(absl::StatusCode::kDataLoss));
  // The reader fails or returns short.
  ReadAtFn failing = [](uint64_t, uint64_t) -> absl::StatusOr<std::string> {
    return absl::UnavailableError("registry down");
  };
  EXPECT_THAT(
      ReadToc(failing, blob.size(), ""),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("read eStargz footer: registry down")));
  ReadAtFn short_reads = [&blob](uint64_t off, uint64_t len) -> absl::StatusOr<std::string> {
    return blob.substr(off, len / 2);
  };
  EXPECT_THAT(ReadToc(short_reads, blob.size(), ""), StatusIs(absl::StatusCode::kDataLoss));
  // A footer pointing at the wrong place.
  std::string moved =
      blob.substr(0, blob.size() - kEstargzFooterSize) + EncodeEstargzFooter(f.toc_offset - 1);
  EXPECT_FALSE(ReadToc(MemoryReader(moved, nullptr), moved.size(), "").ok());
}

// A hand-made gzip TOC member: a tar header naming stargz.index.json.
std::string TocMember(const std::string& name, uint64_t declared, const std::string& content) {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), name.size());
  std::memcpy(h.data() + 100, "0000644", 7);
  std::memcpy(h.data() + 108, "0000000", 7);
  std::memcpy(h.data() + 116, "0000000", 7);
  std::snprintf(h.data() + 124, 12, "%011llo", static_cast<unsigned long long>(declared));
  std::memcpy(h.data() + 136, "00000000000", 11);
  h[156] = '0';
  std::memcpy(h.data() + 257, "ustar", 6);
  std::memcpy(h.data() + 263, "00", 2);
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  std::string body = content;
  body.resize((content.size() + 511) / 512 * 512, '\0');
  return accel::testing::Gzip(h + body + std::string(1024, '\0'));
}

std::string GzipBlob(const std::string& toc_member) {
  const std::string data = accel::testing::Gzip(std::string(512, '\0'));
  return data + toc_member + EncodeEstargzFooter(data.size());
}

TEST(ReadTocHandMadeTest, TocTarChecks) {
  const std::string json = R"({"version":1,"entries":[{"name":"a","type":"dir"}]})";
  std::string ok = GzipBlob(TocMember("stargz.index.json", json.size(), json));
  ASSERT_OK_AND_ASSIGN(Toc toc, ReadToc(MemoryReader(ok, nullptr), ok.size(), Sha256::Of(json)));
  EXPECT_EQ(toc.entries.size(), 1u);

  std::string wrong_name = GzipBlob(TocMember("index.json", json.size(), json));
  EXPECT_THAT(ReadToc(MemoryReader(wrong_name, nullptr), wrong_name.size(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not \"stargz.index.json\"")));

  // A TOC declared beyond the bound is refused before it is read.
  std::string huge = GzipBlob(TocMember("stargz.index.json", kMaxTocSize + 1, json));
  EXPECT_THAT(ReadToc(MemoryReader(huge, nullptr), huge.size(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than the limit")));

  // Declared longer than what follows.
  std::string truncated = GzipBlob(TocMember("stargz.index.json", json.size() + 5000, json));
  EXPECT_THAT(ReadToc(MemoryReader(truncated, nullptr), truncated.size(), ""),
              StatusIs(absl::StatusCode::kDataLoss));

  // Not JSON.
  std::string not_json = GzipBlob(TocMember("stargz.index.json", 5, "hello"));
  EXPECT_THAT(ReadToc(MemoryReader(not_json, nullptr), not_json.size(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON")));
}

// zstd:chunked: [frame: tar header + data "hello" + padding][skippable: zstd TOC][skippable:
// footer]
std::string ZstdChunkedBlob(const std::string& toc_json, uint64_t declared_uncompressed,
                            uint64_t* data_offset) {
  std::string blob = ZstdFrame(std::string(512, 'h'));
  *data_offset = blob.size();
  blob += ZstdFrame("hello" + std::string(507, '\0'));
  const uint64_t toc_offset = blob.size() + 8;
  const std::string toc = ZstdFrame(toc_json);
  blob += SkippableFrame(toc);
  blob += ZstdChunkedFooter(toc_offset, toc.size(), declared_uncompressed);
  return blob;
}

TEST(ReadTocZstdTest, ReadsAndDecodes) {
  uint64_t data_offset = 0;
  // The data frame's offset is known only after building the first frame.
  ZstdChunkedBlob("{}", 2, &data_offset);
  const std::string json =
      absl::StrCat(R"({"version":1,"entries":[{"name":"f","type":"reg","size":5,"offset":)",
                   data_offset, R"(,"chunkDigest":")", Sha256::Of("hello"), R"("}]})");
  const std::string blob = ZstdChunkedBlob(json, json.size(), &data_offset);
  int calls = 0;
  ASSERT_OK_AND_ASSIGN(Toc toc, ReadToc(MemoryReader(blob, &calls), blob.size(), Sha256::Of(json)));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(toc.compression, Compression::kZstd);
  ASSERT_EQ(toc.entries.size(), 1u);
  auto chunks = toc.FileChunks(toc.entries[0]);
  ASSERT_EQ(chunks.size(), 1u);
  ASSERT_OK_AND_ASSIGN(
      std::string data,
      DecodeChunk(absl::string_view(blob).substr(chunks[0].blob_offset, chunks[0].compressed_size),
                  Compression::kZstd, chunks[0]));
  EXPECT_EQ(data, "hello");

  // The TOC decompresses beyond what the footer declares.
  const std::string lying = ZstdChunkedBlob(json, json.size() - 10, &data_offset);
  EXPECT_THAT(ReadToc(MemoryReader(lying, nullptr), lying.size(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than")));
  // ... or short of it.
  const std::string short_toc = ZstdChunkedBlob(json, json.size() + 10, &data_offset);
  EXPECT_THAT(ReadToc(MemoryReader(short_toc, nullptr), short_toc.size(), ""),
              StatusIs(absl::StatusCode::kDataLoss));
  // ... or declares more than the bound.
  const std::string huge = ZstdChunkedBlob(json, kMaxTocSize + 1, &data_offset);
  EXPECT_THAT(ReadToc(MemoryReader(huge, nullptr), huge.size(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than the limit")));
}

}  // namespace
}  // namespace accel::estargz
