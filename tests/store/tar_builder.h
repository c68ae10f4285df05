#pragma once

// Builds tar layers in memory for tests (libarchive's writer, PAX format),
// and compresses them with gzip or zstd (tests/testing/compress.h).

#include <archive.h>
#include <archive_entry.h>

#include <map>
#include <string>

#include "common/sha256.h"
#include "tests/testing/compress.h"

namespace accel::testing {

// Metadata of one tar entry (defaults: root-owned, mode 0644).
struct TarMeta {
  unsigned mode = 0644;
  unsigned uid = 0, gid = 0;
  long mtime = 1'600'000'000;
  long mtime_nsec = 0;
  std::map<std::string, std::string> xattrs;
};

class TarBuilder {
 public:
  TarBuilder() {
    a_ = archive_write_new();
    archive_write_set_format_pax(a_);
    archive_write_set_bytes_in_last_block(a_, 1);
    archive_write_open(a_, &out_, nullptr, &TarBuilder::Write, nullptr);
  }
  ~TarBuilder() {
    if (a_ != nullptr) archive_write_free(a_);
  }

  using Meta = TarMeta;

  TarBuilder& File(const std::string& name, const std::string& content, Meta m = {}) {
    return Add(
        name, AE_IFREG, m, [&](archive_entry* e) { archive_entry_set_size(e, content.size()); },
        content);
  }
  TarBuilder& Dir(const std::string& name, Meta m = {.mode = 0755}) {
    return Add(name, AE_IFDIR, m, nullptr, "");
  }
  TarBuilder& Symlink(const std::string& name, const std::string& target, Meta m = {.mode = 0777}) {
    return Add(
        name, AE_IFLNK, m, [&](archive_entry* e) { archive_entry_set_symlink(e, target.c_str()); },
        "");
  }
  TarBuilder& Hardlink(const std::string& name, const std::string& target, Meta m = {}) {
    return Add(
        name, AE_IFREG, m,
        [&](archive_entry* e) {
          archive_entry_set_hardlink(e, target.c_str());
          archive_entry_set_size(e, 0);
        },
        "");
  }
  TarBuilder& Device(const std::string& name, bool block, unsigned major, unsigned minor,
                     Meta m = {}) {
    return Add(
        name, block ? AE_IFBLK : AE_IFCHR, m,
        [&](archive_entry* e) {
          archive_entry_set_rdevmajor(e, major);
          archive_entry_set_rdevminor(e, minor);
        },
        "");
  }
  TarBuilder& Fifo(const std::string& name, Meta m = {}) {
    return Add(name, AE_IFIFO, m, nullptr, "");
  }

  // Ends the archive and returns the uncompressed tar.
  std::string Finish() {
    archive_write_close(a_);
    archive_write_free(a_);
    a_ = nullptr;
    return out_;
  }

 private:
  template <typename Fn>
  TarBuilder& Add(const std::string& name, unsigned type, const Meta& m, Fn extra,
                  const std::string& content) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, m.mode);
    archive_entry_set_uid(e, m.uid);
    archive_entry_set_gid(e, m.gid);
    archive_entry_set_mtime(e, m.mtime, m.mtime_nsec);
    for (const auto& [k, v] : m.xattrs)
      archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    if constexpr (!std::is_same_v<Fn, std::nullptr_t>) extra(e);
    archive_write_header(a_, e);
    if (!content.empty()) archive_write_data(a_, content.data(), content.size());
    archive_entry_free(e);
    return *this;
  }
  static la_ssize_t Write(struct archive*, void* opaque, const void* buf, size_t n) {
    static_cast<std::string*>(opaque)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }

  struct archive* a_ = nullptr;
  std::string out_;
};

}  // namespace accel::testing
