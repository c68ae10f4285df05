#include "common/fs_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel {
namespace {

using ::accel::testing::StatusIs;
using ::accel::testing::TempDir;

void WriteBytes(const std::string& path, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  std::string data(n, 'x');
  ASSERT_EQ(::write(fd, data.data(), n), static_cast<ssize_t>(n));
  ::close(fd);
}

TEST(FsUtilTest, DiskUsageCountsEachInodeOnce) {
  TempDir tmp;
  std::string d = tmp.path() + "/d";
  ASSERT_OK(MkdirAll(d + "/a/b", 0755));
  WriteBytes(d + "/a/f", 10000);
  ASSERT_EQ(::link((d + "/a/f").c_str(), (d + "/a/b/hard").c_str()), 0);
  ASSERT_EQ(::symlink("f", (d + "/a/link").c_str()), 0);
  ASSERT_OK_AND_ASSIGN(DiskUsageResult du, DiskUsage(d));
  // d, a, b, f (== hard), link
  EXPECT_EQ(du.inodes, 5);
  EXPECT_GE(du.bytes, 10000);
}

TEST(FsUtilTest, RemoveAllRemovesTreeAndToleratesMissing) {
  TempDir tmp;
  std::string d = tmp.path() + "/x";
  ASSERT_OK(MkdirAll(d + "/y/z", 0755));
  WriteBytes(d + "/y/z/file", 5);
  ASSERT_EQ(::chmod((d + "/y").c_str(), 0), 0);  // root ignores permissions
  ASSERT_OK(RemoveAll(d));
  EXPECT_NE(::access(d.c_str(), F_OK), 0);
  EXPECT_OK(RemoveAll(d));
}

TEST(FsUtilTest, MkdirAllRejectsFileInTheWay) {
  TempDir tmp;
  WriteBytes(tmp.path() + "/f", 1);
  EXPECT_THAT(MkdirAll(tmp.path() + "/f", 0755), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(MkdirAll("", 0755), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FsUtilTest, WriteFileAtomicReplacesContent) {
  TempDir tmp;
  std::string p = tmp.path() + "/cfg";
  ASSERT_OK(WriteFileAtomic(p, "one", 0600));
  ASSERT_OK(WriteFileAtomic(p, "two", 0600));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(p));
  EXPECT_EQ(got, "two");
  struct stat st;
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_THAT(ReadFile(tmp.path() + "/missing"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace accel
