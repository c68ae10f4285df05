// read_bench: read throughput of one file, for comparing a FUSE mount with
// the file it serves from.
//
//   read_bench seq FILE [OFFSET LENGTH]   sequential 1 MiB reads; prints MB/s
//   read_bench rand FILE COUNT [OFFSET LENGTH]
//                                         COUNT random 4 KiB preads (fixed
//                                         seed) within the range; prints IOPS
//
// OFFSET/LENGTH select a byte range (a file's place inside a store data
// file); the default is the whole file. Output: one line "<value> <unit>".

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: read_bench seq FILE [OFFSET LENGTH] | rand FILE COUNT [OFFSET LENGTH]\n");
    return 2;
  }
  const std::string mode = argv[1];
  int fd = ::open(argv[2], O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::perror(argv[2]);
    return 1;
  }
  struct stat st;
  ::fstat(fd, &st);
  int arg = 3;
  uint64_t count = 0;
  if (mode == "rand") {
    if (argc < 4) return 2;
    count = std::strtoull(argv[arg++], nullptr, 10);
  }
  uint64_t offset = 0, length = static_cast<uint64_t>(st.st_size);
  if (argc >= arg + 2) {
    offset = std::strtoull(argv[arg], nullptr, 10);
    length = std::strtoull(argv[arg + 1], nullptr, 10);
  }
  auto start = std::chrono::steady_clock::now();
  if (mode == "seq") {
    std::vector<char> buf(1 << 20);
    uint64_t done = 0;
    while (done < length) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), length - done));
      ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(offset + done));
      if (n <= 0) {
        std::perror("pread");
        return 1;
      }
      done += static_cast<uint64_t>(n);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%.1f MB/s\n", done / 1e6 / secs);
  } else if (mode == "rand") {
    std::mt19937_64 rng(42);
    char buf[4096];
    uint64_t blocks = length / 4096;
    if (blocks == 0) return 2;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t b = rng() % blocks;
      if (::pread(fd, buf, sizeof buf, static_cast<off_t>(offset + b * 4096)) != 4096) {
        std::perror("pread");
        return 1;
      }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%.0f IOPS\n", count / secs);
  } else {
    return 2;
  }
  ::close(fd);
  return 0;
}
