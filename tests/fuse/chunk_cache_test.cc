#include "fuse/chunk_cache.h"

#include <dirent.h>
#include <sys/stat.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::fuse {
namespace {

using ::accel::testing::TempDir;

std::string KeyOf(const std::string& data) { return Sha256::Of(data).substr(7); }
std::shared_ptr<const std::string> Shared(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

TEST(ChunkCacheTest, PutGetAndSurvivesReopen) {
  TempDir dir;
  const std::string a(1000, 'a'), b(2000, 'b');
  {
    ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 1 << 20, 0}));
    EXPECT_FALSE(cache->Get(KeyOf(a)).has_value());
    ASSERT_OK(cache->Put(KeyOf(a), Shared(a)));
    ASSERT_OK(cache->Put(KeyOf(b), Shared(b)));
    auto got = cache->Get(KeyOf(a));
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(**got, a);
    EXPECT_EQ(cache->disk_bytes(), 3000u);
  }
  // A new process (daemon restart) finds what the old one cached.
  ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 1 << 20, 0}));
  EXPECT_EQ(cache->disk_entries(), 2u);
  auto got = cache->Get(KeyOf(b));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(**got, b);
  EXPECT_FALSE(cache->Put("not-a-key", Shared("x")).ok());
}

TEST(ChunkCacheTest, EvictsLeastRecentlyUsedBeyondTheBound) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 2500, 0}));
  const std::string a(1000, 'a'), b(1000, 'b'), c(1000, 'c');
  ASSERT_OK(cache->Put(KeyOf(a), Shared(a)));
  ASSERT_OK(cache->Put(KeyOf(b), Shared(b)));
  ASSERT_TRUE(cache->Get(KeyOf(a)).has_value());  // a is now more recent than b
  ASSERT_OK(cache->Put(KeyOf(c), Shared(c)));
  EXPECT_LE(cache->disk_bytes(), 2500u);
  EXPECT_TRUE(cache->Get(KeyOf(a)).has_value());
  EXPECT_FALSE(cache->Get(KeyOf(b)).has_value());
  EXPECT_TRUE(cache->Get(KeyOf(c)).has_value());
  struct stat st;
  EXPECT_NE(
      ::stat(absl::StrCat(dir.path(), "/c/", KeyOf(b).substr(0, 2), "/", KeyOf(b)).c_str(), &st),
      0);
}

TEST(ChunkCacheTest, DamagedFileIsAMissNotWrongBytes) {
  TempDir dir;
  const std::string a(4096, 'a');
  {
    ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 1 << 20, 0}));
    ASSERT_OK(cache->Put(KeyOf(a), Shared(a)));
  }
  const std::string path = absl::StrCat(dir.path(), "/c/", KeyOf(a).substr(0, 2), "/", KeyOf(a));
  ASSERT_OK(WriteFileAtomic(path, std::string(4096, 'X'), 0600));
  ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 1 << 20, 0}));
  EXPECT_FALSE(cache->Get(KeyOf(a)).has_value());
  EXPECT_EQ(cache->disk_entries(), 0u);
}

TEST(ChunkCacheTest, OpenTouchesNothingButItsOwnFiles) {
  // The cache lives inside the daemon's root: opening it must never remove
  // a neighbour (a regression once deleted metadata.db through "..").
  TempDir dir;
  ASSERT_OK(WriteFileAtomic(dir.path() + "/metadata.db", "precious", 0600));
  ASSERT_OK(MkdirAll(dir.path() + "/c/zz", 0700));
  ASSERT_OK(WriteFileAtomic(dir.path() + "/c/zz/other", "keep", 0600));
  ASSERT_OK(MkdirAll(dir.path() + "/c/ab", 0700));
  ASSERT_OK(WriteFileAtomic(dir.path() + "/c/ab/notakey", "keep", 0600));
  const std::string tmp = dir.path() + "/c/ab/" + std::string(64, 'a') + ".tmp.123";
  ASSERT_OK(WriteFileAtomic(tmp, "half", 0600));
  ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 1 << 20, 0}));
  struct stat st;
  EXPECT_EQ(::stat((dir.path() + "/metadata.db").c_str(), &st), 0);
  EXPECT_EQ(::stat((dir.path() + "/c/zz/other").c_str(), &st), 0);
  EXPECT_EQ(::stat((dir.path() + "/c/ab/notakey").c_str(), &st), 0);
  EXPECT_NE(::stat(tmp.c_str(), &st), 0);  // an interrupted Put's temporary goes
  EXPECT_EQ(cache->disk_entries(), 0u);
}

TEST(ChunkCacheTest, ReadRangeFromMemoryFileAndAfterReopen) {
  TempDir dir;
  std::string a;
  for (int i = 0; i < 5000; ++i) a += static_cast<char>('a' + i % 26);
  char buf[100];
  {
    // No memory front: ranges come from the (written, so trusted) file.
    ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 1 << 20, 0}));
    EXPECT_FALSE(cache->ReadRange(KeyOf(a), 5000, 0, 10, buf));  // a miss
    ASSERT_OK(cache->Put(KeyOf(a), Shared(a)));
    ASSERT_TRUE(cache->ReadRange(KeyOf(a), 5000, 1234, 100, buf));
    EXPECT_EQ(std::string(buf, 100), a.substr(1234, 100));
    ASSERT_TRUE(cache->ReadRange(KeyOf(a), 5000, 4900, 100, buf));  // up to the end
    EXPECT_EQ(std::string(buf, 100), a.substr(4900, 100));
    EXPECT_FALSE(cache->ReadRange(KeyOf(a), 5000, 4950, 100, buf));  // past the end
    EXPECT_FALSE(cache->ReadRange(KeyOf(a), 5000, 6000, 1, buf));
    // A TOC that gives the chunk another size gets nothing from the cache.
    EXPECT_FALSE(cache->ReadRange(KeyOf(a), 4000, 0, 10, buf));
    EXPECT_FALSE(cache->ReadRange(KeyOf(a), 6000, 0, 10, buf));
  }
  {
    // With a memory front.
    ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 1 << 20, 1 << 20}));
    ASSERT_TRUE(cache->ReadRange(KeyOf(a), 5000, 7, 50, buf));  // verified, then kept in memory
    EXPECT_EQ(std::string(buf, 50), a.substr(7, 50));
    ASSERT_TRUE(cache->ReadRange(KeyOf(a), 5000, 100, 100, buf));
    EXPECT_EQ(std::string(buf, 100), a.substr(100, 100));
    EXPECT_FALSE(cache->ReadRange(KeyOf(a), 4999, 0, 10, buf));  // wrong size, from memory
    EXPECT_FALSE(cache->ReadRange(KeyOf(a), 5000, 4990, 20, buf));
  }
  // A new process does not trust the file until it has verified it: a
  // damaged file is a miss (and dropped), never wrong bytes.
  const std::string path = absl::StrCat(dir.path(), "/c/", KeyOf(a).substr(0, 2), "/", KeyOf(a));
  std::string damaged = a;
  damaged[3000] = '#';
  ASSERT_OK(WriteFileAtomic(path, damaged, 0600));
  ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 1 << 20, 0}));
  EXPECT_FALSE(cache->ReadRange(KeyOf(a), 5000, 0, 10, buf));
  EXPECT_EQ(cache->disk_entries(), 0u);
}

int OpenFds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

TEST(ChunkCacheTest, ReadRangeAfterEvictionIsAMissAndClosesItsDescriptor) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 2500, 0}));
  const std::string a(1000, 'a'), b(1000, 'b'), c(1000, 'c');
  char buf[10];
  const int fds0 = OpenFds();
  ASSERT_OK(cache->Put(KeyOf(a), Shared(a)));
  ASSERT_TRUE(cache->ReadRange(KeyOf(a), 1000, 0, 10, buf));  // opens and keeps a descriptor
  EXPECT_EQ(OpenFds(), fds0 + 1);
  ASSERT_OK(cache->Put(KeyOf(b), Shared(b)));
  ASSERT_OK(cache->Put(KeyOf(c), Shared(c)));  // evicts a, and closes its descriptor
  EXPECT_EQ(OpenFds(), fds0);
  EXPECT_FALSE(cache->ReadRange(KeyOf(a), 1000, 0, 10, buf));
  ASSERT_TRUE(cache->ReadRange(KeyOf(c), 1000, 990, 10, buf));
  EXPECT_EQ(std::string(buf, 10), std::string(10, 'c'));
}

TEST(ChunkCacheTest, KeepsAtMost128Descriptors) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto cache, ChunkCache::Open({dir.path() + "/c", 1 << 20, 0}));
  const int fds0 = OpenFds();
  char buf[4];
  for (int i = 0; i < 200; ++i) {
    const std::string data = absl::StrCat("chunk ", i);
    ASSERT_OK(cache->Put(KeyOf(data), Shared(data)));
    ASSERT_TRUE(cache->ReadRange(KeyOf(data), data.size(), 0, 4, buf));
    EXPECT_EQ(std::string(buf, 4), "chun");
  }
  EXPECT_EQ(OpenFds(), fds0 + 128);
}

}  // namespace
}  // namespace accel::fuse
