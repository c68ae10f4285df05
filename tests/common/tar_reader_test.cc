#include "common/tar_reader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "tests/store/tar_builder.h"
#include "tests/testing/status_matchers.h"

namespace accel {
namespace {

using ::accel::testing::StatusIs;
using ::accel::testing::TarBuilder;
using ::accel::testing::TarMeta;
using ::testing::HasSubstr;

ReadFn Input(const std::string& bytes, size_t step = 1000) {
  auto pos = std::make_shared<size_t>(0);
  return [&bytes, pos, step](char* buf, size_t len) -> absl::StatusOr<size_t> {
    const size_t n = std::min({len, step, bytes.size() - *pos});
    std::memcpy(buf, bytes.data() + *pos, n);
    *pos += n;
    return n;
  };
}

// Every member of `tar` with its data read through ReadData in pieces of `piece`.
absl::StatusOr<std::vector<std::pair<LayerEntry, std::string>>> ReadAll(const std::string& tar,
                                                                        size_t piece = 100) {
  std::vector<std::pair<LayerEntry, std::string>> out;
  absl::StatusOr<std::unique_ptr<TarReader>> r = TarReader::Open(Input(tar), 4096);
  if (!r.ok()) return r.status();
  for (;;) {
    absl::StatusOr<const LayerEntry*> e = (*r)->Next();
    if (!e.ok()) return e.status();
    if (*e == nullptr) return out;
    std::string data;
    std::string buf(piece, '\0');
    for (;;) {
      absl::StatusOr<size_t> n = (*r)->ReadData(buf.data(), buf.size());
      if (!n.ok()) return n.status();
      if (*n == 0) break;
      data.append(buf.data(), *n);
    }
    out.emplace_back(**e, std::move(data));
  }
}

TEST(TarReaderTest, YieldsCleanedEntriesAndTheirData) {
  TarMeta meta;
  meta.mode = 04755;
  meta.uid = 1000;
  meta.gid = 2000;
  meta.mtime = 1'700'000'000;
  meta.mtime_nsec = 5;
  meta.xattrs = {{"user.a", "1"}, {"security.capability", std::string("\0\1", 2)}};
  const std::string big(100000, 'b');
  const std::string tar = TarBuilder()
                              .Dir("./")
                              .Dir("./usr//bin/")
                              .File("usr/bin/tool", big, meta)
                              .Hardlink("usr/bin/alias", "./usr/bin/tool")
                              .Symlink("usr/lib", "../lib64")
                              .Device("dev/null", false, 1, 3)
                              .Device("dev/sda", true, 8, 0)
                              .Fifo("run/fifo")
                              .File("empty", "")
                              .Finish();
  ASSERT_OK_AND_ASSIGN(auto all, ReadAll(tar));
  ASSERT_EQ(all.size(), 9u);
  EXPECT_EQ(all[0].first.path, "");
  EXPECT_EQ(all[0].first.type, EntryType::kDirectory);
  EXPECT_EQ(all[1].first.path, "usr/bin");
  const LayerEntry& tool = all[2].first;
  EXPECT_EQ(tool.path, "usr/bin/tool");
  EXPECT_EQ(tool.type, EntryType::kRegular);
  EXPECT_EQ(tool.mode, 04755u);
  EXPECT_EQ(tool.uid, 1000u);
  EXPECT_EQ(tool.gid, 2000u);
  EXPECT_EQ(tool.mtime_sec, 1'700'000'000);
  EXPECT_EQ(tool.mtime_nsec, 5u);
  EXPECT_EQ(tool.size, big.size());
  EXPECT_EQ(tool.xattrs.at("security.capability"), std::string("\0\1", 2));
  EXPECT_EQ(all[2].second, big);
  EXPECT_EQ(all[3].first.type, EntryType::kHardlink);
  EXPECT_EQ(all[3].first.link_target, "usr/bin/tool");
  EXPECT_EQ(all[3].first.size, 0u);
  EXPECT_EQ(all[4].first.type, EntryType::kSymlink);
  EXPECT_EQ(all[4].first.link_target, "../lib64");  // symlink targets are kept as written
  EXPECT_EQ(all[5].first.type, EntryType::kCharDevice);
  EXPECT_EQ(all[5].first.dev_major, 1u);
  EXPECT_EQ(all[5].first.dev_minor, 3u);
  EXPECT_EQ(all[6].first.type, EntryType::kBlockDevice);
  EXPECT_EQ(all[7].first.type, EntryType::kFifo);
  EXPECT_EQ(all[8].first.size, 0u);
  EXPECT_EQ(all[8].second, "");
}

TEST(TarReaderTest, DataBlocksAreViewsAndDataCanBeLeftUnread) {
  const std::string a(300000, 'a');
  const std::string tar = TarBuilder().File("a", a).File("b", "bee").Finish();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TarReader> r, TarReader::Open(Input(tar, 1 << 20)));
  ASSERT_OK_AND_ASSIGN(const LayerEntry* e, r->Next());
  ASSERT_NE(e, nullptr);
  ASSERT_OK_AND_ASSIGN(absl::string_view block, r->NextDataBlock());
  EXPECT_FALSE(block.empty());
  EXPECT_EQ(block, absl::string_view(a).substr(0, block.size()));
  // The rest of "a" is skipped by the next Next().
  ASSERT_OK_AND_ASSIGN(e, r->Next());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->path, "b");
  std::string b;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(absl::string_view piece, r->NextDataBlock());
    if (piece.empty()) break;
    b.append(piece.data(), piece.size());
  }
  EXPECT_EQ(b, "bee");
  ASSERT_OK_AND_ASSIGN(e, r->Next());
  EXPECT_EQ(e, nullptr);
  EXPECT_EQ(r->entries(), 2u);
}

TEST(TarReaderTest, RefusesWhatALayerCannotHold) {
  struct Case {
    std::string name;
    std::string tar;
    absl::StatusCode code;
    std::string message;
  };
  TarMeta huge_xattr;
  huge_xattr.xattrs = {{"user.big", std::string(kMaxTarXattrBytes + 1, 'x')}};
  const Case cases[] = {
      {"dotdot", TarBuilder().File("a/../../etc/passwd", "x").Finish(),
       absl::StatusCode::kInvalidArgument, "escapes the layer"},
      {"absolute", TarBuilder().File("/etc/passwd", "x").Finish(),
       absl::StatusCode::kInvalidArgument, "absolute path"},
      {"hardlink out", TarBuilder().Hardlink("h", "../../etc/shadow").Finish(),
       absl::StatusCode::kInvalidArgument, "hard link target"},
      {"root not dir", TarBuilder().File(".", "x").Finish(), absl::StatusCode::kInvalidArgument,
       "root is not a directory"},
      {"xattr too big", TarBuilder().File("f", "x", huge_xattr).Finish(),
       absl::StatusCode::kInvalidArgument, "extended attribute"},
      {"not tar", std::string(4096, 'q'), absl::StatusCode::kDataLoss, "not a tar stream"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ReadAll(c.tar), StatusIs(c.code, HasSubstr(c.message))) << c.name;
  }
  // A stream cut inside a file's data.
  const std::string tar = TarBuilder().File("f", std::string(100000, 'f')).Finish();
  EXPECT_THAT(ReadAll(tar.substr(0, 50000)), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(TarReaderTest, InputErrorsComeBackAsTheyAre) {
  const std::string tar = TarBuilder().File("f", std::string(100000, 'f')).Finish();
  size_t served = 0;
  ReadFn failing = [&](char* buf, size_t len) -> absl::StatusOr<size_t> {
    if (served >= 2048) return absl::UnavailableError("registry went away");
    const size_t n = std::min(len, size_t{1024});
    std::memcpy(buf, tar.data() + served, n);
    served += n;
    return n;
  };
  absl::StatusOr<std::unique_ptr<TarReader>> r = TarReader::Open(failing, 1024);
  ASSERT_OK(r.status());
  ASSERT_OK_AND_ASSIGN(const LayerEntry* e, (*r)->Next());
  ASSERT_NE(e, nullptr);
  absl::Status status;
  for (;;) {
    absl::StatusOr<absl::string_view> block = (*r)->NextDataBlock();
    if (!block.ok()) {
      status = block.status();
      break;
    }
    if (block->empty()) break;
  }
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("went away")));
}

}  // namespace
}  // namespace accel
