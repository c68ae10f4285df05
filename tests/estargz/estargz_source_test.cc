// EstargzSource::ReadAt over a real eStargz blob (built by estargz::Build)
// and a real chunk cache: ranges across chunk boundaries, what is fetched
// and what comes from the cache, the end of a file, and a TOC whose chunk
// size does not match the cached chunk (an error, never other bytes).

#include "fuse/estargz_source.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>

#include "estargz/builder.h"
#include "estargz/toc.h"
#include "fuse/chunk_cache.h"
#include "fuse/layer_tree.h"
#include "tests/estargz/test_util.h"
#include "tests/store/tar_builder.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::fuse {
namespace {

using estargz::testing::MemoryReader;
using estargz::testing::StringInput;

// The blob as the BlobReader EstargzSource reads from, counting reads.
class MemoryBlob final : public registry::BlobReader {
 public:
  MemoryBlob(const std::string& blob, int* calls)
      : read_(MemoryReader(blob, calls)), size_(blob.size()) {}
  int64_t size() const override { return static_cast<int64_t>(size_); }
  absl::StatusOr<std::string> ReadAt(int64_t offset, int64_t length) override {
    return read_(static_cast<uint64_t>(offset), static_cast<uint64_t>(length));
  }

 private:
  estargz::ReadAtFn read_;
  size_t size_;
};

std::shared_ptr<registry::BlobReader> Blob(const std::string& blob, int* calls) {
  return std::make_shared<MemoryBlob>(blob, calls);
}

std::string Random(size_t n) {
  std::mt19937 rng(7);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class EstargzSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    content_ = Random(10000);
    const std::string tar =
        accel::testing::TarBuilder().File("big", content_).File("small", "0123456789").Finish();
    estargz::BuildOptions options;
    options.chunk_size = 1000;  // "big" is 10 chunks
    ASSERT_OK_AND_ASSIGN(estargz::BuildResult built, estargz::Build(
                                                         StringInput(tar),
                                                         [this](absl::string_view b) {
                                                           blob_.append(b.data(), b.size());
                                                           return absl::OkStatus();
                                                         },
                                                         options));
    ASSERT_OK_AND_ASSIGN(estargz::Toc toc, estargz::ReadToc(MemoryReader(blob_, nullptr),
                                                            blob_.size(), built.toc_digest));
    toc_ = std::make_shared<const estargz::Toc>(std::move(toc));
    ASSERT_OK_AND_ASSIGN(tree_, LayerTree::Build(toc_->entries));
    big_ = tree_->Lookup(tree_->root()->ino, "big");
    ASSERT_NE(big_, nullptr);
    ASSERT_EQ(big_->size, content_.size());
    // No memory front: cached chunks come back from their files.
    ASSERT_OK_AND_ASSIGN(cache_, ChunkCache::Open({dir_.path() + "/chunks", 1 << 20, 0}));
  }

  std::string Read(EstargzSource& source, uint64_t offset, size_t len) {
    std::string buf(len, '\0');
    absl::StatusOr<size_t> n = source.ReadAt(*big_, offset, buf.data(), len);
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok()) return "";
    buf.resize(*n);
    return buf;
  }

  accel::testing::TempDir dir_;
  std::string content_;
  std::string blob_;
  std::shared_ptr<const estargz::Toc> toc_;
  std::unique_ptr<const LayerTree> tree_;
  const Node* big_ = nullptr;
  std::shared_ptr<ChunkCache> cache_;
};

TEST_F(EstargzSourceTest, FetchesMissingChunksOnceAndReadsCachedOnesByRange) {
  int calls = 0;
  EstargzSource source(toc_, Blob(blob_, &calls), cache_, "test");
  // Chunks 1..4, fetched in one merged request.
  EXPECT_EQ(Read(source, 1500, 3000), content_.substr(1500, 3000));
  EXPECT_EQ(calls, 1);
  // The same range again: all from the cache.
  EXPECT_EQ(Read(source, 1500, 3000), content_.substr(1500, 3000));
  EXPECT_EQ(calls, 1);
  // Chunk 4 cached, 5 and 6 fetched.
  EXPECT_EQ(Read(source, 4000, 2500), content_.substr(4000, 2500));
  EXPECT_EQ(calls, 2);
  // Inside one cached chunk; then the file's end (short), and past it.
  EXPECT_EQ(Read(source, 5001, 10), content_.substr(5001, 10));
  EXPECT_EQ(Read(source, 9990, 100), content_.substr(9990, 10));
  EXPECT_EQ(Read(source, 10000, 100), "");
  EXPECT_EQ(calls, 3);  // chunk 9
  // Everything, now that most is cached.
  EXPECT_EQ(Read(source, 0, 20000), content_);
  EXPECT_EQ(source.bytes_fetched() > 0, true);
}

TEST_F(EstargzSourceTest, ChunkSizeThatDoesNotMatchTheCachedChunkIsAnError) {
  int calls = 0;
  {
    EstargzSource source(toc_, Blob(blob_, &calls), cache_, "test");
    EXPECT_EQ(Read(source, 0, 1000), content_.substr(0, 1000));  // chunk 0 cached
  }
  // Another layer's TOC names the same chunk digest with another size.
  estargz::Toc lying = *toc_;
  lying.chunks[big_->data_offset].size = 999;
  EstargzSource source(std::make_shared<const estargz::Toc>(lying), Blob(blob_, &calls), cache_,
                       "lying");
  std::string buf(100, '\0');
  absl::StatusOr<size_t> n = source.ReadAt(*big_, 0, buf.data(), buf.size());
  EXPECT_FALSE(n.ok()) << "served " << (n.ok() ? *n : 0) << " bytes of a chunk of another size";
}

}  // namespace
}  // namespace accel::fuse
