#pragma once

// Internal to estargz/: the builder's three outputs. BlobOut compresses tar
// bytes into gzip members (a new member wherever the builder says) and
// hashes both streams (blob digest, diff id); TarOut is libarchive's pax
// writer feeding BlobOut unblocked, so every byte reaches it before a call
// returns and member boundaries fall exactly where the builder puts them;
// TocJson writes the TOC as entries are emitted.
//
// Not thread-safe (one build each).

#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/sha256.h"
#include "estargz/builder.h"
#include "estargz/codec.h"

namespace accel::estargz::internal {

inline constexpr size_t kIoBlock = 1 << 20;

// Output: gzip members into a buffered sink, with both digests.
class BlobOut {
 public:
  BlobOut(const BlobSinkFn& sink, int level) : sink_(sink), gzip_(level) {}

  absl::Status Init() {
    buf_.reserve(kIoBlock);
    return gzip_.Init();
  }

  // Blob bytes produced so far (flushed or not).
  uint64_t offset() const { return blob_size_; }
  uint64_t uncompressed_size() const { return uncompressed_size_; }

  // Tar bytes into the current member; starts one if none is open.
  absl::Status Write(absl::string_view data) {
    if (data.empty()) return absl::OkStatus();
    if (!gzip_.in_member()) gzip_.Start();
    diff_hash_.Update(data);
    uncompressed_size_ += data.size();
    return gzip_.Write(data, emit_);
  }

  // Ends the current member, if any: the next Write starts a new one at offset().
  absl::Status EndMember() {
    if (!gzip_.in_member()) return absl::OkStatus();
    return gzip_.Finish(emit_);
  }

  // Bytes written to the blob as they are (the footer).
  absl::Status WriteRaw(absl::string_view bytes) { return Emit(bytes); }

  absl::Status Flush() {
    if (buf_.empty()) return absl::OkStatus();
    absl::Status s = sink_(buf_);
    buf_.clear();
    return s;
  }

  std::string blob_digest() const { return blob_hash_.Digest(); }
  std::string diff_id() const { return diff_hash_.Digest(); }

 private:
  absl::Status Emit(absl::string_view bytes) {
    blob_hash_.Update(bytes);
    blob_size_ += bytes.size();
    buf_.append(bytes.data(), bytes.size());
    if (buf_.size() >= kIoBlock) return Flush();
    return absl::OkStatus();
  }

  const BlobSinkFn& sink_;
  internal::GzipMemberWriter gzip_;
  std::function<absl::Status(absl::string_view)> emit_ = [this](absl::string_view b) {
    return Emit(b);
  };
  std::string buf_;
  Sha256 blob_hash_;
  Sha256 diff_hash_;
  uint64_t blob_size_ = 0;
  uint64_t uncompressed_size_ = 0;
};

// libarchive's pax writer feeding BlobOut, unblocked.
class TarOut {
 public:
  explicit TarOut(BlobOut& out) : out_(out) {}
  ~TarOut() {
    if (a_ != nullptr) {
      // Freeing closes the archive; whatever it still writes is not ours.
      discard_ = true;
      archive_write_free(a_);
    }
  }
  TarOut(const TarOut&) = delete;
  TarOut& operator=(const TarOut&) = delete;

  absl::Status Open() {
    a_ = archive_write_new();
    if (a_ == nullptr) return absl::InternalError("archive_write_new failed");
    if (archive_write_set_format_pax(a_) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(a_, 0) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a_, 1) != ARCHIVE_OK) {
      return Error("configure tar writer");
    }
    if (archive_write_open(a_, this, nullptr, &TarOut::OnWrite, nullptr) != ARCHIVE_OK) {
      return Error("open tar writer");
    }
    return absl::OkStatus();
  }

  absl::Status WriteHeader(struct archive_entry* ae, absl::string_view path) {
    int rc = archive_write_header(a_, ae);
    if (rc < ARCHIVE_WARN) return Error(absl::StrCat("write tar header of \"", path, "\""));
    return absl::OkStatus();
  }

  absl::Status WriteData(const char* p, size_t n) {
    while (n > 0) {
      la_ssize_t w = archive_write_data(a_, p, n);
      if (w <= 0) return Error("write tar data");
      p += w;
      n -= static_cast<size_t>(w);
    }
    return absl::OkStatus();
  }

  // Writes the padding of the entry written last.
  absl::Status FinishEntry() {
    if (archive_write_finish_entry(a_) < ARCHIVE_WARN) return Error("finish tar entry");
    return absl::OkStatus();
  }

  // Writes the end-of-archive marker.
  absl::Status Close() {
    int rc = archive_write_close(a_);
    if (rc < ARCHIVE_WARN) return Error("close tar writer");
    return absl::OkStatus();
  }

 private:
  static la_ssize_t OnWrite(struct archive* a, void* opaque, const void* buf, size_t n) {
    auto* self = static_cast<TarOut*>(opaque);
    if (self->discard_) return static_cast<la_ssize_t>(n);
    absl::Status s = self->out_.Write(absl::string_view(static_cast<const char*>(buf), n));
    if (!s.ok()) {
      self->error_ = s;
      archive_set_error(a, EIO, "%s", std::string(s.message()).c_str());
      return -1;
    }
    return static_cast<la_ssize_t>(n);
  }

  absl::Status Error(absl::string_view what) {
    if (!error_.ok()) return error_;
    const char* msg = a_ ? archive_error_string(a_) : nullptr;
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", msg ? msg : "libarchive error"));
  }

  BlobOut& out_;
  struct archive* a_ = nullptr;
  bool discard_ = false;
  absl::Status error_;
};

// TOC JSON, written as entries are emitted.
class TocJson {
 public:
  TocJson() { json_ = "{\"version\":1,\"entries\":["; }

  // Appends one entry object (built with Object).
  void Append(const std::string& object) {
    if (count_++ > 0) json_.push_back(',');
    json_.append(object);
  }
  std::string Finish() {
    json_.append("]}");
    return std::move(json_);
  }
  uint64_t size() const { return json_.size(); }
  uint64_t count() const { return count_; }

  // One JSON object, key by key.
  class Object {
   public:
    Object() : s_("{") {}
    Object& Str(absl::string_view key, absl::string_view value) {
      Key(key);
      // Replaces invalid UTF-8 (as Go's encoder does) so the TOC stays JSON.
      s_.append(nlohmann::json(std::string(value))
                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      return *this;
    }
    Object& Int(absl::string_view key, int64_t value) {
      Key(key);
      absl::StrAppend(&s_, value);
      return *this;
    }
    Object& Xattrs(const std::map<std::string, std::string>& xattrs) {
      if (xattrs.empty()) return *this;
      Key("xattrs");
      s_.push_back('{');
      bool first = true;
      for (const auto& [name, value] : xattrs) {
        if (!first) s_.push_back(',');
        first = false;
        s_.append(
            nlohmann::json(name).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        s_.push_back(':');
        s_.append(absl::StrCat("\"", absl::Base64Escape(value), "\""));
      }
      s_.push_back('}');
      return *this;
    }
    std::string Done() {
      s_.push_back('}');
      return std::move(s_);
    }

   private:
    void Key(absl::string_view key) {
      if (s_.size() > 1) s_.push_back(',');
      absl::StrAppend(&s_, "\"", key, "\":");
    }
    std::string s_;
  };

 private:
  std::string json_;
  uint64_t count_ = 0;
};

}  // namespace accel::estargz::internal
