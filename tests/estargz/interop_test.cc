// Interop with the reference implementation: our blobs read by it, its
// blobs read by us.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/sha256.h"
#include "estargz/builder.h"
#include "estargz/toc.h"
#include "tests/estargz/builder_fixture.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::estargz {
namespace {

using ::accel::testing::TempDir;
using ::testing::ElementsAre;
using namespace ::accel::estargz::testing;  // NOLINT(build/namespaces)

// Interop with the reference implementation (Debian's Go package
// github.com/containerd/stargz-snapshotter/estargz), through the helper
// built from tests/estargz/interop/main.go. Skipped where Go or the package
// is missing (the helper then exits 77).

#ifndef ESTARGZ_INTEROP_HELPER
#define ESTARGZ_INTEROP_HELPER ""
#endif

struct RunResult {
  int exit_code = -1;
  std::string out;
};

RunResult RunCommand(const std::string& command) {
  RunResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string Hex(const std::string& digest) { return digest.substr(7); }

class InteropTest : public BuilderTest {
 protected:
  void SetUp() override {
    BuilderTest::SetUp();
    helper_ = ESTARGZ_INTEROP_HELPER;
    if (helper_.empty() || ::access(helper_.c_str(), X_OK) != 0)
      GTEST_SKIP() << "no interop helper";
    RunResult probe = RunCommand(helper_);
    if (probe.exit_code == 77)
      GTEST_SKIP() << "interop helper not built (no Go or no reference package)";
  }
  std::string helper_;
  TempDir tmp_;
};

TEST_F(InteropTest, ReferenceReaderAcceptsOurBlob) {
  options_.prioritized_paths = {"usr/bin/big"};
  ASSERT_OK_AND_ASSIGN(Built b, BuildBlob(tar_, options_));
  const std::string blob_path = tmp_.path() + "/ours.blob";
  WriteFile(blob_path, b.blob);
  RunResult r = RunCommand(helper_ + " check " + blob_path + " " + b.result.toc_digest);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string hosts = Hex(Sha256::Of("127.0.0.1 localhost\n"));
  const std::string empty = Hex(Sha256::Of(""));
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  EXPECT_THAT(
      lines,
      ::testing::UnorderedElementsAre(
          "reg .prefetch.landmark 1 " + Hex(Sha256::Of("\x0f")), "reg .wh.gone 0 " + empty,
          "dir dev 0 -", "block dev/sda 0 -", "char dev/null 0 -",
          "reg donn\xc3\xa9"
          "es.txt 10 " +
              Hex(Sha256::Of("utf-8 name")),
          "reg empty 0 " + empty, "dir etc 0 -", "reg etc/hosts 20 " + hosts,
          "reg etc/hosts2 20 " + hosts, "symlink etc/link 0 -", "dir run 0 -", "fifo run/fifo 0 -",
          "dir usr 0 -", "dir usr/bin 0 -", "reg usr/bin/big 3500 " + Hex(Sha256::Of(big_)),
          "reg usr/bin/even 2000 " + Hex(Sha256::Of(even_)), "landmark .prefetch.landmark"));
}

TEST_F(InteropTest, WeReadTheReferenceBlob) {
  const std::string tar_path = tmp_.path() + "/in.tar";
  const std::string blob_path = tmp_.path() + "/theirs.blob";
  WriteFile(tar_path, tar_);
  RunResult r =
      RunCommand(helper_ + " build " + tar_path + " " + blob_path + " 1000 usr/bin/big etc/hosts2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::map<std::string, std::string> printed;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(line, ' ');
    ASSERT_EQ(kv.size(), 2u) << line;
    printed[kv[0]] = kv[1];
  }
  const std::string blob = ReadWholeFile(blob_path);
  int calls = 0;
  ASSERT_OK_AND_ASSIGN(Toc toc, ReadToc(MemoryReader(blob, &calls), blob.size(), printed["toc"]));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(Sha256::Of(Gunzip(blob)), printed["diffid"]);
  EXPECT_TRUE(toc.has_prefetch_landmark);
  EXPECT_TRUE(toc.all_chunks_have_digests);
  std::vector<std::string> prioritized;
  for (size_t i : toc.prioritized) prioritized.push_back(toc.entries[i].path);
  EXPECT_THAT(prioritized, ElementsAre("usr/bin/big", "etc/hosts"));
  EXPECT_LE(toc.prefetch_size, toc.FileChunks(toc.metadata[0])[0].blob_offset + 1);

  std::map<std::string, const LayerEntry*> by_path;
  for (const LayerEntry& e : toc.entries) by_path[e.path] = &e;
  std::vector<TarMember> in = ReadTarMembers(tar_);
  for (const TarMember& m : in) {
    if (m.path == "stargz.index.json") continue;
    std::string path = m.path;
    if (path == "./") path.clear();
    if (!path.empty() && path.back() == '/') path.pop_back();
    SCOPED_TRACE(path);
    ASSERT_TRUE(by_path.count(path));
    const LayerEntry& e = *by_path.at(path);
    EXPECT_EQ(e.mode, m.perm);
    EXPECT_EQ(e.uid, static_cast<uint32_t>(m.uid));
    EXPECT_EQ(e.gid, static_cast<uint32_t>(m.gid));
    EXPECT_EQ(e.mtime_sec, m.mtime);  // the reference rounds to seconds
    if (!m.hardlink.empty()) {
      EXPECT_EQ(e.type, EntryType::kHardlink);
      EXPECT_EQ(e.link_target, m.hardlink);
    } else if (m.filetype == AE_IFREG) {
      EXPECT_EQ(e.type, EntryType::kRegular);
      EXPECT_EQ(e.size, m.content.size());
      EXPECT_EQ(e.digest, Sha256::Of(m.content));
      EXPECT_EQ(ReadFile(toc, blob, e), m.content);
      EXPECT_EQ(e.xattrs, m.xattrs);
    } else if (m.filetype == AE_IFLNK) {
      EXPECT_EQ(e.link_target, m.symlink);
    } else if (m.filetype == AE_IFCHR || m.filetype == AE_IFBLK) {
      EXPECT_EQ(e.dev_major, m.dev_major);
      EXPECT_EQ(e.dev_minor, m.dev_minor);
    }
  }
  EXPECT_EQ(toc.FileChunks(*by_path.at("usr/bin/big")).size(), 4u);
}

}  // namespace
}  // namespace accel::estargz
