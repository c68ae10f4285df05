#pragma once

// Helpers for estargz tests: in-memory blob readers, gunzip of multi-member
// streams, tar listing with libarchive, and a hand-made zstd:chunked blob.

#include <archive.h>
#include <archive_entry.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "estargz/builder.h"
#include "estargz/toc.h"
#include "tests/testing/compress.h"

namespace accel::estargz::testing {

// A ReadAtFn over `blob` that counts its calls.
inline ReadAtFn MemoryReader(const std::string& blob, int* calls) {
  return [&blob, calls](uint64_t offset, uint64_t length) -> absl::StatusOr<std::string> {
    if (calls != nullptr) ++*calls;
    if (offset > blob.size() || length > blob.size() - offset) {
      return absl::OutOfRangeError(
          absl::StrCat("read [", offset, ", +", length, ") past the blob"));
    }
    return blob.substr(offset, length);
  };
}

// A TarInputFn over `tar`, handing out at most `step` bytes per call.
inline TarInputFn StringInput(const std::string& tar, size_t step = 1000) {
  auto pos = std::make_shared<size_t>(0);
  return [&tar, pos, step](char* buf, size_t len) -> absl::StatusOr<size_t> {
    size_t n = std::min({len, step, tar.size() - *pos});
    std::memcpy(buf, tar.data() + *pos, n);
    *pos += n;
    return n;
  };
}

using ::accel::testing::Gunzip;
// One zstd frame holding `in`.
inline constexpr auto& ZstdFrame = ::accel::testing::Zstd;

inline void PutLe32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutLe64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline std::string SkippableFrame(const std::string& payload) {
  std::string s;
  PutLe32(s, 0x184D2A50);
  PutLe32(s, static_cast<uint32_t>(payload.size()));
  return s + payload;
}

// The 48-byte zstd:chunked footer.
inline std::string ZstdChunkedFooter(uint64_t toc_offset, uint64_t compressed,
                                     uint64_t uncompressed, uint64_t type = 1) {
  std::string p;
  PutLe64(p, toc_offset);
  PutLe64(p, compressed);
  PutLe64(p, uncompressed);
  PutLe64(p, type);
  p += "GnUlInUx";
  return SkippableFrame(p);
}

// One member of a tar, as libarchive reads it.
struct TarMember {
  std::string path;  // as stored
  unsigned filetype = 0;
  unsigned perm = 0;
  int64_t uid = 0, gid = 0;
  int64_t mtime = 0;
  long mtime_nsec = 0;
  std::string content;
  std::string symlink;
  std::string hardlink;
  unsigned dev_major = 0, dev_minor = 0;
  std::map<std::string, std::string> xattrs;
};

inline std::vector<TarMember> ReadTarMembers(const std::string& tar) {
  std::vector<TarMember> out;
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  if (archive_read_open_memory(a, tar.data(), tar.size()) != ARCHIVE_OK) {
    archive_read_free(a);
    return out;
  }
  struct archive_entry* ae = nullptr;
  while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
    TarMember m;
    m.path = archive_entry_pathname(ae);
    m.filetype = archive_entry_filetype(ae);
    m.perm = archive_entry_perm(ae);
    m.uid = archive_entry_uid(ae);
    m.gid = archive_entry_gid(ae);
    m.mtime = archive_entry_mtime(ae);
    m.mtime_nsec = archive_entry_mtime_nsec(ae);
    if (const char* s = archive_entry_symlink(ae)) m.symlink = s;
    if (const char* h = archive_entry_hardlink(ae)) m.hardlink = h;
    m.dev_major = archive_entry_rdevmajor(ae);
    m.dev_minor = archive_entry_rdevminor(ae);
    archive_entry_xattr_reset(ae);
    const char* n = nullptr;
    const void* v = nullptr;
    size_t len = 0;
    while (archive_entry_xattr_next(ae, &n, &v, &len) == ARCHIVE_OK) {
      m.xattrs[n] = std::string(static_cast<const char*>(v), len);
    }
    char buf[8192];
    la_ssize_t r;
    while ((r = archive_read_data(a, buf, sizeof buf)) > 0) m.content.append(buf, r);
    out.push_back(std::move(m));
  }
  archive_read_free(a);
  return out;
}

}  // namespace accel::estargz::testing
