#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/index_format.h"
#include "tests/store/tar_builder.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::store {
namespace {

using ::accel::testing::Gzip;
using ::accel::testing::StatusIs;
using ::accel::testing::TarBuilder;
using ::accel::testing::TempDir;
using ::accel::testing::Zstd;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// A ReadFn over `bytes`, handing out at most `chunk` bytes per call.
ReadFn Reader(const std::string& bytes, size_t chunk = 7777) {
  auto pos = std::make_shared<size_t>(0);
  return [&bytes, pos, chunk](char* buf, size_t len) -> absl::StatusOr<size_t> {
    size_t n = std::min({len, chunk, bytes.size() - *pos});
    std::memcpy(buf, bytes.data() + *pos, n);
    *pos += n;
    return n;
  };
}

// Every entry type, long names (PAX), xattrs, hard links, whiteouts.
std::string EveryTypeLayer() {
  const std::string long_name = "deep/" + std::string(200, 'n') + "/" + std::string(180, 'f');
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) ^ (i >> 9));
  return TarBuilder()
      .Dir("./", {.mode = 0755})
      .Dir("etc", {.mode = 0755, .mtime = 1'500'000'000})
      .File("etc/passwd", "root:x:0:0::/root:/bin/sh\n",
            {.mode = 0644, .mtime = 1'500'000'001, .mtime_nsec = 123456789})
      .File("etc/shadow", "secret\n", {.mode = 0640, .uid = 0, .gid = 42})
      .File("bin/suid", "#!/bin/sh\n", {.mode = 04755})
      .File("big", big)
      .File("empty", "")
      .File("with-xattr", "x",
            {.xattrs = {{"user.note", "hello"},
                        {"security.capability", std::string("\x01\x00\x00\x02", 4)}}})
      .Hardlink("etc/passwd-link", "etc/passwd")
      .Symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
      .Device("dev/null", false, 1, 3, {.mode = 0666})
      .Device("dev/sda", true, 8, 0, {.mode = 0660, .gid = 6})
      .Fifo("run/fifo")
      .File(long_name, "long")
      .File("opq/.wh..wh..opq", "")
      .File(".wh.removed", "")
      .Dir("tmp", {.mode = 01777, .uid = 0})
      .Finish();
}

const LayerEntry* Find(const LayerIndex& index, const std::string& path) {
  for (const LayerEntry& e : index.entries) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

std::string ReadContent(const OpenLayer& layer, const LayerEntry& e) {
  std::string out(e.size, '\0');
  EXPECT_EQ(::pread(layer.data.get(), out.data(), out.size(), static_cast<off_t>(e.data_offset)),
            static_cast<ssize_t>(out.size()));
  return out;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(store_, Store::Open(dir_.path() + "/store", true)); }
  // Names under tmp/ and layers/ (to show a failed write left nothing).
  std::vector<std::string> Leftovers() {
    std::vector<std::string> out;
    for (const char* sub : {"tmp", "layers/sha256"}) {
      std::string d = absl::StrCat(store_->dir(), "/", sub);
      for (const auto& name : std::vector<std::string>(ListNames(d)))
        out.push_back(absl::StrCat(sub, "/", name));
    }
    return out;
  }
  static std::vector<std::string> ListNames(const std::string& d) {
    std::vector<std::string> out;
    if (DIR* dir = ::opendir(d.c_str())) {
      while (auto* de = ::readdir(dir)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") out.push_back(n);
      }
      ::closedir(dir);
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, WritesEveryEntryTypeAndReadsItBack) {
  const std::string tar = EveryTypeLayer();
  const std::string diff_id = Sha256::Of(tar);
  ASSERT_OK_AND_ASSIGN(WriteResult w, store_->WriteLayer(diff_id, Reader(tar)));
  EXPECT_FALSE(w.existed);
  EXPECT_EQ(w.info.entries, 17u);
  ASSERT_OK_AND_ASSIGN(OpenLayer layer, store_->Open(diff_id));
  const LayerIndex& idx = layer.index;
  EXPECT_EQ(idx.diff_id, diff_id);

  const LayerEntry* root = Find(idx, "");
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->type, EntryType::kDirectory);

  const LayerEntry* passwd = Find(idx, "etc/passwd");
  ASSERT_NE(passwd, nullptr);
  EXPECT_EQ(passwd->type, EntryType::kRegular);
  EXPECT_EQ(passwd->mode, 0644u);
  EXPECT_EQ(passwd->mtime_sec, 1'500'000'001);
  EXPECT_EQ(passwd->mtime_nsec, 123456789u);
  EXPECT_EQ(ReadContent(layer, *passwd), "root:x:0:0::/root:/bin/sh\n");
  EXPECT_EQ(passwd->digest, Sha256::Of("root:x:0:0::/root:/bin/sh\n"));

  const LayerEntry* shadow = Find(idx, "etc/shadow");
  ASSERT_NE(shadow, nullptr);
  EXPECT_EQ(shadow->gid, 42u);
  EXPECT_EQ(shadow->mode, 0640u);
  EXPECT_EQ(Find(idx, "bin/suid")->mode, 04755u);
  EXPECT_EQ(Find(idx, "tmp")->mode, 01777u);

  const LayerEntry* big = Find(idx, "big");
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->size, 3u << 20);
  std::string content = ReadContent(layer, *big);
  EXPECT_EQ(Sha256::Of(content), big->digest);
  EXPECT_EQ(content[12345], static_cast<char>((12345 * 131) ^ (12345 >> 9)));
  EXPECT_EQ(Find(idx, "empty")->size, 0u);

  const LayerEntry* xa = Find(idx, "with-xattr");
  ASSERT_NE(xa, nullptr);
  EXPECT_EQ(xa->xattrs.at("user.note"), "hello");
  EXPECT_EQ(xa->xattrs.at("security.capability"), std::string("\x01\x00\x00\x02", 4));

  const LayerEntry* hl = Find(idx, "etc/passwd-link");
  ASSERT_NE(hl, nullptr);
  EXPECT_EQ(hl->type, EntryType::kHardlink);
  EXPECT_EQ(hl->link_target, "etc/passwd");

  const LayerEntry* sl = Find(idx, "etc/localtime");
  ASSERT_NE(sl, nullptr);
  EXPECT_EQ(sl->type, EntryType::kSymlink);
  EXPECT_EQ(sl->link_target, "/usr/share/zoneinfo/UTC");

  const LayerEntry* null = Find(idx, "dev/null");
  ASSERT_NE(null, nullptr);
  EXPECT_EQ(null->type, EntryType::kCharDevice);
  EXPECT_EQ(null->dev_major, 1u);
  EXPECT_EQ(null->dev_minor, 3u);
  EXPECT_EQ(Find(idx, "dev/sda")->type, EntryType::kBlockDevice);
  EXPECT_EQ(Find(idx, "dev/sda")->dev_major, 8u);
  EXPECT_EQ(Find(idx, "run/fifo")->type, EntryType::kFifo);

  const std::string long_name = "deep/" + std::string(200, 'n') + "/" + std::string(180, 'f');
  ASSERT_NE(Find(idx, long_name), nullptr);
  EXPECT_EQ(ReadContent(layer, *Find(idx, long_name)), "long");
  // Whiteouts are kept as the layer wrote them (fuse/ translates them).
  EXPECT_NE(Find(idx, "opq/.wh..wh..opq"), nullptr);
  EXPECT_NE(Find(idx, ".wh.removed"), nullptr);
  EXPECT_THAT(ListNames(store_->dir() + "/tmp"), IsEmpty());
}

TEST_F(StoreTest, GzipAndZstdGiveTheSameLayer) {
  const std::string tar = EveryTypeLayer();
  const std::string diff_id = Sha256::Of(tar);
  TempDir other;
  ASSERT_OK_AND_ASSIGN(auto gz_store, Store::Open(other.path() + "/gz", true));
  ASSERT_OK_AND_ASSIGN(auto zst_store, Store::Open(other.path() + "/zst", true));
  const std::string gz = Gzip(tar), zst = Zstd(tar);
  ASSERT_OK(store_->WriteLayer(diff_id, Reader(tar)).status());
  ASSERT_OK(gz_store->WriteLayer(diff_id, Reader(gz)).status());
  ASSERT_OK(zst_store->WriteLayer(diff_id, Reader(zst, 1000)).status());
  ASSERT_OK_AND_ASSIGN(std::string a, ReadFile(store_->LayerDir(diff_id) + "/index"));
  ASSERT_OK_AND_ASSIGN(std::string b, ReadFile(gz_store->LayerDir(diff_id) + "/index"));
  ASSERT_OK_AND_ASSIGN(std::string c, ReadFile(zst_store->LayerDir(diff_id) + "/index"));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
}

TEST_F(StoreTest, ConcatenatedGzipMembersAreOneStream) {
  const std::string tar = TarBuilder().File("a", std::string(100000, 'a')).Finish();
  const std::string gz = Gzip(tar.substr(0, 5000)) + Gzip(tar.substr(5000));
  ASSERT_OK(store_->WriteLayer(Sha256::Of(tar), Reader(gz)).status());
}

TEST_F(StoreTest, SecondWriteIsSkipped) {
  const std::string tar = TarBuilder().File("a", "a").Finish();
  ASSERT_OK_AND_ASSIGN(WriteResult first, store_->WriteLayer(Sha256::Of(tar), Reader(tar)));
  EXPECT_FALSE(first.existed);
  bool read = false;
  ASSERT_OK_AND_ASSIGN(
      WriteResult second,
      store_->WriteLayer(Sha256::Of(tar), [&](char*, size_t) -> absl::StatusOr<size_t> {
        read = true;
        return size_t{0};
      }));
  EXPECT_TRUE(second.existed);
  EXPECT_FALSE(read);
}

TEST_F(StoreTest, ConcurrentWritersBothSucceedWithOneCopy) {
  std::string big(8 << 20, 'z');
  const std::string tar = TarBuilder().File("f", big).File("g", "g").Finish();
  const std::string diff_id = Sha256::Of(tar);
  // Two stores on the same directory stand in for two nodes.
  ASSERT_OK_AND_ASSIGN(auto other, Store::Open(store_->dir(), false));
  EXPECT_EQ(other->id(), store_->id());
  absl::Status s1, s2;
  std::thread t1([&] { s1 = store_->WriteLayer(diff_id, Reader(tar, 4096)).status(); });
  std::thread t2([&] { s2 = other->WriteLayer(diff_id, Reader(tar, 4096)).status(); });
  t1.join();
  t2.join();
  EXPECT_OK(s1);
  EXPECT_OK(s2);
  EXPECT_THAT(ListNames(store_->dir() + "/layers/sha256"), SizeIs(1));
  EXPECT_THAT(ListNames(store_->dir() + "/tmp"), IsEmpty());
  ASSERT_OK_AND_ASSIGN(auto problems, store_->VerifyLayer(diff_id));
  EXPECT_THAT(problems, IsEmpty());
}

TEST_F(StoreTest, HostileLayersAreRejectedAndLeaveNothing) {
  struct Case {
    std::string name;
    std::string tar;
    std::string message;
  };
  std::vector<Case> cases = {
      {"dotdot", TarBuilder().File("a/../../etc/passwd", "x").Finish(), "escapes the layer"},
      {"absolute", TarBuilder().File("/etc/passwd", "x").Finish(), "absolute path"},
      {"hardlink out", TarBuilder().Hardlink("h", "../../etc/shadow").Finish(),
       "escapes the layer"},
      {"hardlink missing", TarBuilder().Hardlink("h", "nowhere").Finish(),
       "not an earlier regular file"},
      {"hardlink to dir", TarBuilder().Dir("d").Hardlink("h", "d").Finish(),
       "not an earlier regular file"},
      {"below symlink", TarBuilder().Symlink("s", "/etc").File("s/passwd", "x").Finish(),
       "below a non-directory"},
      {"not tar", std::string(4096, 'q'), "not a tar stream"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::Status s = store_->WriteLayer(Sha256::Of(c.tar), Reader(c.tar)).status();
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
    EXPECT_THAT(Leftovers(), IsEmpty());
  }
}

TEST_F(StoreTest, WrongDigestTruncatedAndCorruptStreamsAreRejected) {
  const std::string tar = EveryTypeLayer();
  const std::string gz = Gzip(tar);
  EXPECT_THAT(store_->WriteLayer(Sha256::Of("other"), Reader(tar)).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("digest")));
  EXPECT_THAT(Leftovers(), IsEmpty());

  const std::string truncated = gz.substr(0, gz.size() / 2);
  absl::Status s = store_->WriteLayer(Sha256::Of(tar), Reader(truncated)).status();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("truncated"));
  EXPECT_THAT(Leftovers(), IsEmpty());

  std::string corrupt = gz;
  corrupt[corrupt.size() / 2] ^= 0x55;
  EXPECT_FALSE(store_->WriteLayer(Sha256::Of(tar), Reader(corrupt)).ok());
  EXPECT_THAT(Leftovers(), IsEmpty());

  const std::string zst = Zstd(tar);
  s = store_->WriteLayer(Sha256::Of(tar), Reader(zst.substr(0, zst.size() - 10))).status();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Leftovers(), IsEmpty());

  // A read error from the source (e.g. the registry) fails the write too.
  s = store_
          ->WriteLayer(Sha256::Of(tar),
                       [](char*, size_t) -> absl::StatusOr<size_t> {
                         return absl::UnavailableError("registry went away");
                       })
          .status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("registry went away")));
  EXPECT_THAT(Leftovers(), IsEmpty());
}

TEST_F(StoreTest, IndexCorruptionIsDetected) {
  const std::string tar = EveryTypeLayer();
  const std::string diff_id = Sha256::Of(tar);
  ASSERT_OK(store_->WriteLayer(diff_id, Reader(tar)).status());
  const std::string path = store_->LayerDir(diff_id) + "/index";
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(path));
  ASSERT_OK_AND_ASSIGN(LayerIndex good, DecodeIndex(bytes, "x"));
  EXPECT_EQ(good.entries.size(), 17u);
  for (size_t pos : {size_t{0}, size_t{20}, bytes.size() / 2, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[pos] ^= 1;
    EXPECT_THAT(DecodeIndex(bad, "x").status(), StatusIs(absl::StatusCode::kDataLoss));
  }
  EXPECT_THAT(DecodeIndex(bytes.substr(0, bytes.size() - 40), "x").status(),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(IndexFormatTest, DecodeRejectsHostileButWellChecksummedIndexes) {
  auto encode = [](LayerEntry e, uint64_t data_size) {
    LayerIndex idx;
    idx.diff_id = Sha256::Of("x");
    idx.data_size = data_size;
    idx.entries.push_back(std::move(e));
    return EncodeIndex(idx);
  };
  LayerEntry escape;
  escape.path = "../etc/passwd";
  EXPECT_THAT(DecodeIndex(encode(escape, 0), "x").status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("escapes")));
  LayerEntry outside;
  outside.path = "f";
  outside.size = 10;
  outside.data_offset = 5;
  EXPECT_THAT(DecodeIndex(encode(outside, 12), "x").status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("outside the data file")));
  LayerEntry huge = outside;
  huge.data_offset = ~uint64_t{0} - 2;
  EXPECT_FALSE(DecodeIndex(encode(huge, 12), "x").ok());
  LayerEntry fine = outside;
  fine.data_offset = 2;
  EXPECT_OK(DecodeIndex(encode(fine, 12), "x").status());
}

TEST(IndexFormatTest, ValidateLayerPath) {
  EXPECT_OK(ValidateLayerPath(""));
  EXPECT_OK(ValidateLayerPath("a/b/c"));
  const std::string long_component(300, 'x');
  for (std::string bad : {"/a", "a//b", "a/./b", "a/../b", "..", "a/", long_component.c_str()}) {
    EXPECT_FALSE(ValidateLayerPath(bad).ok()) << bad;
  }
}

TEST_F(StoreTest, VerifyFindsCorruptedContent) {
  const std::string tar = EveryTypeLayer();
  const std::string diff_id = Sha256::Of(tar);
  ASSERT_OK(store_->WriteLayer(diff_id, Reader(tar)).status());
  ASSERT_OK_AND_ASSIGN(auto problems, store_->VerifyLayer(diff_id));
  EXPECT_THAT(problems, IsEmpty());
  ASSERT_OK_AND_ASSIGN(OpenLayer layer, store_->Open(diff_id));
  const LayerEntry* passwd = Find(layer.index, "etc/passwd");
  int fd = ::open((store_->LayerDir(diff_id) + "/data").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "R", 1, static_cast<off_t>(passwd->data_offset)), 1);
  ::close(fd);
  ASSERT_OK_AND_ASSIGN(problems, store_->VerifyLayer(diff_id));
  ASSERT_THAT(problems, SizeIs(1));
  EXPECT_THAT(problems[0].detail, HasSubstr("etc/passwd"));
}

TEST_F(StoreTest, LinksPlantedInTheStoreAreRefused) {
  const std::string tar = TarBuilder().File("f", "content").Finish();
  const std::string diff_id = Sha256::Of(tar);
  ASSERT_OK(store_->WriteLayer(diff_id, Reader(tar)).status());
  // A writer of the shared store swaps the data file for a link to a host
  // file of the same size: the daemon must not serve it.
  const std::string data = store_->LayerDir(diff_id) + "/data";
  ASSERT_OK(WriteFileAtomic(dir_.path() + "/host-secret", "1234567", 0600));
  ASSERT_EQ(::unlink(data.c_str()), 0);
  ASSERT_EQ(::symlink((dir_.path() + "/host-secret").c_str(), data.c_str()), 0);
  EXPECT_THAT(store_->Open(diff_id).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("symlink")));
  // A FIFO would block a reader forever: refused too.
  ASSERT_EQ(::unlink(data.c_str()), 0);
  ASSERT_EQ(::mkfifo(data.c_str(), 0600), 0);
  EXPECT_THAT(store_->Open(diff_id).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not a regular file")));
  // tmp/ as a link elsewhere (gc removes entries below it as root).
  ASSERT_OK(RemoveAll(store_->dir() + "/tmp"));
  ASSERT_EQ(::symlink(dir_.path().c_str(), (store_->dir() + "/tmp").c_str()), 0);
  EXPECT_THAT(Store::Open(store_->dir(), false).status(), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(StoreTest, StoreIdIsStableAndOpenWithoutCreateNeedsAStore) {
  ASSERT_OK_AND_ASSIGN(auto again, Store::Open(store_->dir() + "/", false));
  EXPECT_EQ(again->id(), store_->id());
  EXPECT_THAT(store_->id(), SizeIs(32));
  EXPECT_THAT(Store::Open(dir_.path(), false).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Store::Open(dir_.path() + "/missing", false).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(StoreTest, ImageRecordsAndGc) {
  const std::string t1 = TarBuilder().File("one", "1").Finish();
  const std::string t2 = TarBuilder().File("two", "2").Finish();
  const std::string t3 = TarBuilder().File("three", "3").Finish();
  for (const std::string* t : {&t1, &t2, &t3})
    ASSERT_OK(store_->WriteLayer(Sha256::Of(*t), Reader(*t)).status());
  ImageRecord a{.target = "reg/a:1-acc",
                .source = "reg/a:1",
                .manifest_digest = Sha256::Of("m"),
                .platform = "linux/amd64",
                .diff_ids = {Sha256::Of(t1), Sha256::Of(t2)},
                .blobs = {Sha256::Of("b1"), Sha256::Of("b2")},
                .created_unix = 5};
  ASSERT_OK(store_->PutImage(a));
  ASSERT_OK_AND_ASSIGN(ImageRecord got, store_->GetImage("reg/a:1-acc"));
  EXPECT_EQ(got.diff_ids, a.diff_ids);
  EXPECT_EQ(got.source, "reg/a:1");
  ASSERT_OK_AND_ASSIGN(auto images, store_->ListImages());
  EXPECT_THAT(images, SizeIs(1));
  EXPECT_THAT(store_->GetImage("reg/b").status(), StatusIs(absl::StatusCode::kNotFound));

  // A stale temporary and an unreferenced layer; the grace period protects
  // both until it passes.
  ASSERT_OK(MkdirAll(store_->dir() + "/tmp/layer.stale", 0755));
  ASSERT_OK_AND_ASSIGN(GcResult early, store_->Gc(3600, {}));
  EXPECT_THAT(early.removed_layers, IsEmpty());
  EXPECT_THAT(early.removed_temporaries, IsEmpty());
  ASSERT_OK_AND_ASSIGN(GcResult gc, store_->Gc(0, {}));
  EXPECT_THAT(gc.removed_layers, ::testing::ElementsAre(Sha256::Of(t3)));
  EXPECT_THAT(gc.removed_temporaries, ::testing::ElementsAre("layer.stale"));
  EXPECT_TRUE(store_->HasLayer(Sha256::Of(t1)));
  EXPECT_FALSE(store_->HasLayer(Sha256::Of(t3)));

  // `keep` protects layers in use even without a record.
  ASSERT_OK(store_->RemoveImage("reg/a:1-acc"));
  ASSERT_OK_AND_ASSIGN(gc, store_->Gc(0, {Sha256::Of(t2)}));
  EXPECT_THAT(gc.removed_layers, ::testing::ElementsAre(Sha256::Of(t1)));
  EXPECT_TRUE(store_->HasLayer(Sha256::Of(t2)));
  EXPECT_THAT(store_->RemoveImage("reg/a:1-acc"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace accel::store
