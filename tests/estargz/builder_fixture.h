#pragma once

// The estargz builder tests' fixture: a layer with every entry type, and
// helpers to build a blob in memory and read files back through the TOC.

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "estargz/builder.h"
#include "estargz/chunk.h"
#include "estargz/toc.h"
#include "tests/estargz/test_util.h"
#include "tests/store/tar_builder.h"

namespace accel::estargz::testing {

using ::accel::testing::TarBuilder;
using ::accel::testing::TarMeta;

inline std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

struct Built {
  std::string blob;
  BuildResult result;
};

inline absl::StatusOr<Built> BuildBlob(const std::string& tar, const BuildOptions& options) {
  Built b;
  absl::StatusOr<BuildResult> r = Build(
      StringInput(tar),
      [&b](absl::string_view bytes) {
        b.blob.append(bytes.data(), bytes.size());
        return absl::OkStatus();
      },
      options);
  if (!r.ok()) return r.status();
  b.result = std::move(*r);
  return b;
}

// Reads a regular entry's content back through its chunks.
inline std::string ReadFile(const Toc& toc, const std::string& blob, const LayerEntry& e) {
  std::string out;
  for (const Chunk& c : toc.FileChunks(e)) {
    EXPECT_EQ(c.file_offset, out.size());
    absl::StatusOr<std::string> data = DecodeChunk(
        absl::string_view(blob).substr(c.blob_offset, c.compressed_size), toc.compression, c);
    EXPECT_TRUE(data.ok()) << data.status();
    if (!data.ok()) return "<error>";
    out += *data;
  }
  return out;
}

class BuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    big_ = RandomBytes(3500, 1);   // 4 chunks of 1000
    even_ = RandomBytes(2000, 2);  // exactly 2 chunks
    TarMeta hosts_meta;
    hosts_meta.uid = 1000;
    hosts_meta.gid = 1001;
    hosts_meta.mtime = 1'700'000'000;
    hosts_meta.mtime_nsec = 123'456'789;
    hosts_meta.xattrs = {{"user.comment", "hi"},
                         {"security.capability", std::string("\x01\x00\x00\x02", 4)}};
    TarMeta suid;
    suid.mode = 04755;
    tar_ = TarBuilder()
               .Dir("./")
               .Dir("etc")
               .File("etc/hosts", "127.0.0.1 localhost\n", hosts_meta)
               .Symlink("etc/link", "hosts")
               .Hardlink("etc/hosts2", "etc/hosts")
               .Dir("usr")
               .Dir("usr/bin")
               .File("usr/bin/big", big_, suid)
               .File("usr/bin/even", even_)
               .File("empty", "")
               .File(".wh.gone", "")
               .Dir("dev")
               .Device("dev/null", false, 1, 3)
               .Device("dev/sda", true, 8, 0)
               .Dir("run")
               .Fifo("run/fifo")
               .File(
                   "donn\xc3\xa9"
                   "es.txt",
                   "utf-8 name")
               .File("stargz.index.json", "an old TOC: dropped")
               .Finish();
    options_.chunk_size = 1000;
  }

  std::string tar_, big_, even_;
  BuildOptions options_;
};

}  // namespace accel::estargz::testing
