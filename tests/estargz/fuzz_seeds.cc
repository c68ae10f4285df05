// Writes the seed corpora for the fuzz targets:
//   estargz_fuzz_seeds DIR  ->  DIR/footer/seed-*, DIR/toc/seed-*
// and creates DIR/footer.work and DIR/toc.work (libFuzzer's output corpora).
// Seeds: real footers of each kind, TOC JSON samples, and whole blobs made by
// the builder and by hand (zstd:chunked).

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "estargz/builder.h"
#include "estargz/footer.h"
#include "tests/estargz/test_util.h"
#include "tests/store/tar_builder.h"

namespace {

using namespace accel::estargz;           // NOLINT(build/namespaces)
using namespace accel::estargz::testing;  // NOLINT(build/namespaces)

void Write(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string Le64(uint64_t v) {
  std::string s;
  PutLe64(s, v);
  return s;
}

std::string BuildSample(const BuildOptions& options) {
  accel::testing::TarMeta x;
  x.xattrs = {{"user.k", "v"}};
  const std::string tar = accel::testing::TarBuilder()
                              .Dir("./")
                              .Dir("bin")
                              .File("bin/sh", std::string(300, 's'), x)
                              .File("bin/big", std::string(700, 'b') + "tail")
                              .Symlink("bin/ln", "sh")
                              .Hardlink("bin/hl", "bin/sh")
                              .Device("null", false, 1, 3)
                              .Fifo("fifo")
                              .File("empty", "")
                              .Finish();
  std::string blob;
  absl::StatusOr<BuildResult> r = Build(
      StringInput(tar),
      [&blob](absl::string_view b) {
        blob.append(b.data(), b.size());
        return absl::OkStatus();
      },
      options);
  return r.ok() ? blob : std::string();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  for (const char* sub : {"", "/footer", "/toc", "/footer.work", "/toc.work"}) {
    ::mkdir((dir + sub).c_str(), 0755);
  }
  const std::string footer_dir = dir + "/footer/";
  const std::string toc_dir = dir + "/toc/";

  // Footer seeds: 8 bytes of "blob before the tail", then the tail.
  Write(footer_dir + "seed-estargz", Le64(4096) + EncodeEstargzFooter(1000));
  Write(footer_dir + "seed-estargz-small", Le64(0) + std::string(20, 'x') + EncodeEstargzFooter(5));
  Write(footer_dir + "seed-zstd", Le64(200) + ZstdChunkedFooter(108, 100, 1000));
  {
    std::string legacy = EncodeEstargzFooter(1000);
    // The legacy layout: XLEN 22, no subfield header.
    legacy = legacy.substr(0, 10) + std::string("\x16\x00", 2) + legacy.substr(16);
    Write(footer_dir + "seed-legacy", Le64(4096) + legacy);
  }

  // TOC JSON seeds (mode byte even).
  const std::string d = accel::Sha256::Of("x");
  const std::vector<std::string> tocs = {
      R"({"version":1,"entries":[]})",
      absl::StrCat(
          R"({"version":1,"entries":[{"name":"./","type":"dir","mode":16877},)",
          R"({"name":"a","type":"reg","size":10,"offset":10,"chunkSize":4,"chunkDigest":")", d,
          R"(","digest":")", d,
          R"("},{"name":"a","type":"chunk","offset":20,"chunkOffset":4,"chunkSize":4},)",
          R"({"type":"chunk","offset":30,"chunkOffset":8},)",
          R"({"name":"h","type":"hardlink","linkName":"a"},)",
          R"({"name":"s","type":"symlink","linkName":"a"},)",
          R"({"name":"c","type":"char","devMajor":1,"devMinor":3,)",
          R"("modtime":"2020-01-01T00:00:00Z","xattrs":{"user.a":"aGk="}},)",
          R"({"name":".prefetch.landmark","type":"reg","size":1,"offset":40}]})"),
      absl::StrCat(R"({"version":1,"entries":[{"name":"a","type":"reg","size":3,"offset":1},)",
                   R"({"name":"b","type":"reg","size":4,"offset":1,"innerOffset":512}]})"),
  };
  for (size_t i = 0; i < tocs.size(); ++i) {
    Write(absl::StrCat(toc_dir, "seed-json-", i), std::string("\x14\x40", 2) + tocs[i]);
  }
  // Whole-blob seeds (mode byte odd).
  BuildOptions plain;
  plain.chunk_size = 256;
  Write(toc_dir + "seed-blob", "\x01" + BuildSample(plain));
  BuildOptions prioritized = plain;
  prioritized.prioritized_paths = {"bin/big"};
  Write(toc_dir + "seed-blob-prioritized", "\x01" + BuildSample(prioritized));
  {
    std::string blob = ZstdFrame(std::string(512, 'h'));
    const uint64_t data_offset = blob.size();
    blob += ZstdFrame("hello" + std::string(507, '\0'));
    const std::string json =
        absl::StrCat(R"({"version":1,"entries":[{"name":"f","type":"reg","size":5,"offset":)",
                     data_offset, R"(,"chunkDigest":")", accel::Sha256::Of("hello"), R"("}]})");
    const uint64_t toc_offset = blob.size() + 8;
    const std::string toc = ZstdFrame(json);
    blob += SkippableFrame(toc) + ZstdChunkedFooter(toc_offset, toc.size(), json.size());
    Write(toc_dir + "seed-zstd-blob", "\x01" + blob);
  }
  return 0;
}
