#include "estargz/codec.h"

#include <zstd.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace accel::estargz::internal {
namespace {

constexpr size_t kScratch = 64 << 10;
// Output is grown in steps of at most this much, so a hostile size never
// becomes one huge allocation before any data arrives.
constexpr size_t kGrowStep = 1 << 20;
constexpr uInt kMaxZlibChunk = 1u << 30;

// Where the next decompressed bytes go: the scratch buffer while skipping,
// then the output string.
struct Target {
  char* ptr;
  size_t len;
  bool skipping;
};

Target NextTarget(uint64_t position, uint64_t skip, uint64_t want, std::string& out,
                  char* scratch) {
  if (position < skip) {
    return {scratch, static_cast<size_t>(std::min<uint64_t>(kScratch, skip - position)), true};
  }
  const size_t old = out.size();
  const size_t grab = static_cast<size_t>(std::min<uint64_t>(want - old, kGrowStep));
  out.resize(old + grab);
  return {out.data() + old, grab, false};
}

absl::StatusOr<std::string> InflateRange(absl::string_view in, uint64_t skip, uint64_t want) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return absl::InternalError("inflateInit2 failed");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
  std::string out;
  out.reserve(static_cast<size_t>(std::min<uint64_t>(want, 4 << 20)));
  std::unique_ptr<char[]> scratch(new char[kScratch]);
  uint64_t position = 0;  // decompressed bytes so far (skipped ones included)
  size_t in_pos = 0;
  bool member_done = false;
  while (out.size() < want || position < skip) {
    if (member_done) {
      if (in_pos == in.size()) break;  // truncated: reported below
      inflateReset(&z);
      member_done = false;
    }
    Target t = NextTarget(position, skip, want, out, scratch.get());
    const size_t out_before = t.skipping ? 0 : out.size() - t.len;
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + in_pos));
    z.avail_in = static_cast<uInt>(std::min<size_t>(in.size() - in_pos, kMaxZlibChunk));
    z.next_out = reinterpret_cast<Bytef*>(t.ptr);
    z.avail_out = static_cast<uInt>(t.len);
    const uInt avail_in_before = z.avail_in;
    int rc = inflate(&z, Z_NO_FLUSH);
    const size_t consumed = avail_in_before - z.avail_in;
    const size_t produced = t.len - z.avail_out;
    in_pos += consumed;
    position += produced;
    if (!t.skipping) out.resize(out_before + produced);
    if (rc == Z_STREAM_END) {
      member_done = true;
    } else if (rc == Z_BUF_ERROR || (rc == Z_OK && consumed == 0 && produced == 0)) {
      if (in_pos == in.size()) break;  // needs more input than there is
      if (consumed == 0 && produced == 0)
        return absl::DataLossError("gzip data is corrupt (no progress)");
    } else if (rc != Z_OK) {
      return absl::DataLossError(
          absl::StrCat("gzip data is corrupt: ", z.msg ? z.msg : "inflate error"));
    }
  }
  if (out.size() < want || position < skip) {
    return absl::DataLossError(absl::StrFormat(
        "gzip data ends after %d decompressed bytes, %d needed", position, skip + want));
  }
  return out;
}

absl::StatusOr<std::string> ZstdRange(absl::string_view in, uint64_t skip, uint64_t want) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (ctx == nullptr) return absl::InternalError("ZSTD_createDCtx failed");
  std::string out;
  out.reserve(static_cast<size_t>(std::min<uint64_t>(want, 4 << 20)));
  std::unique_ptr<char[]> scratch(new char[kScratch]);
  uint64_t position = 0;
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  while (out.size() < want || position < skip) {
    Target t = NextTarget(position, skip, want, out, scratch.get());
    const size_t out_before = t.skipping ? 0 : out.size() - t.len;
    ZSTD_outBuffer ob{t.ptr, t.len, 0};
    const size_t in_before = ib.pos;
    size_t rc = ZSTD_decompressStream(ctx.get(), &ob, &ib);
    if (!t.skipping) out.resize(out_before + ob.pos);
    if (ZSTD_isError(rc)) {
      return absl::DataLossError(absl::StrCat("zstd data is corrupt: ", ZSTD_getErrorName(rc)));
    }
    position += ob.pos;
    if (ob.pos == 0 && ib.pos == in_before) break;  // input exhausted
  }
  if (out.size() < want || position < skip) {
    return absl::DataLossError(absl::StrFormat(
        "zstd data ends after %d decompressed bytes, %d needed", position, skip + want));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> DecompressRange(absl::string_view in, Compression kind, uint64_t skip,
                                            uint64_t want) {
  return kind == Compression::kZstd ? ZstdRange(in, skip, want) : InflateRange(in, skip, want);
}

absl::StatusOr<std::string> ZstdDecompressAll(absl::string_view in, uint64_t limit) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (ctx == nullptr) return absl::InternalError("ZSTD_createDCtx failed");
  std::string out;
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  size_t pending = 1;  // ZSTD_decompressStream's last hint; 0 = frame complete
  for (;;) {
    const size_t old = out.size();
    // One byte more than the limit lets an oversized stream show itself.
    const uint64_t room = limit + 1 - old;
    const size_t grab = static_cast<size_t>(std::min<uint64_t>(room, kGrowStep));
    out.resize(old + grab);
    ZSTD_outBuffer ob{out.data() + old, grab, 0};
    const size_t in_before = ib.pos;
    size_t rc = ZSTD_decompressStream(ctx.get(), &ob, &ib);
    out.resize(old + ob.pos);
    if (ZSTD_isError(rc)) {
      return absl::DataLossError(absl::StrCat("zstd data is corrupt: ", ZSTD_getErrorName(rc)));
    }
    const bool progress = ob.pos > 0 || ib.pos != in_before;
    // Called again after a frame ends, zstd hints at the next frame's
    // header: only a call that did something says where the stream is.
    if (progress) pending = rc;
    if (out.size() > limit) {
      return absl::InvalidArgumentError(
          absl::StrFormat("zstd data decompresses to more than %d bytes", limit));
    }
    if (!progress) break;
  }
  if (ib.pos != ib.size || pending != 0) {
    return absl::DataLossError("zstd data is truncated (input ended inside a frame)");
  }
  return out;
}

GzipMemberReader::GzipMemberReader(absl::string_view in, uint64_t limit) : in_(in), limit_(limit) {
  init_ = inflateInit2(&z_, 15 + 16) == Z_OK;
}

GzipMemberReader::~GzipMemberReader() {
  if (init_) inflateEnd(&z_);
}

absl::StatusOr<size_t> GzipMemberReader::Read(char* out, size_t len) {
  if (!init_) return absl::InternalError("inflateInit2 failed");
  if (done_ || len == 0) return size_t{0};
  for (;;) {
    if (z_.avail_in == 0 && !in_.empty()) {
      const size_t n = std::min<size_t>(in_.size(), kMaxZlibChunk);
      z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in_.data()));
      z_.avail_in = static_cast<uInt>(n);
      in_.remove_prefix(n);
    }
    z_.next_out = reinterpret_cast<Bytef*>(out);
    z_.avail_out = static_cast<uInt>(std::min<size_t>(len, kMaxZlibChunk));
    const uInt avail_out_before = z_.avail_out;
    const uInt avail_in_before = z_.avail_in;
    int rc = inflate(&z_, Z_NO_FLUSH);
    const size_t produced = avail_out_before - z_.avail_out;
    produced_ += produced;
    if (produced_ > limit_) {
      return absl::InvalidArgumentError(
          absl::StrFormat("gzip data decompresses to more than %d bytes", limit_));
    }
    if (rc == Z_STREAM_END) {
      done_ = true;
      return produced;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return absl::DataLossError(
          absl::StrCat("gzip data is corrupt: ", z_.msg ? z_.msg : "inflate error"));
    }
    if (produced > 0) return produced;
    if ((z_.avail_in == 0 && in_.empty()) || avail_in_before == z_.avail_in) {
      return absl::DataLossError("gzip data is truncated (input ended inside a member)");
    }
  }
}

GzipMemberWriter::GzipMemberWriter(int level) : level_(level) {}

GzipMemberWriter::~GzipMemberWriter() {
  if (init_) deflateEnd(&z_);
}

absl::Status GzipMemberWriter::Init() {
  if (level_ < -1 || level_ > 9) {
    return absl::InvalidArgumentError(absl::StrCat("gzip level ", level_, " is not in -1..9"));
  }
  if (deflateInit2(&z_, level_, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError("deflateInit2 failed");
  }
  init_ = true;
  buf_.resize(256 << 10);
  return absl::OkStatus();
}

void GzipMemberWriter::Start() {
  deflateReset(&z_);
  in_member_ = true;
}

absl::Status GzipMemberWriter::Run(int flush,
                                   const std::function<absl::Status(absl::string_view)>& emit) {
  for (;;) {
    z_.next_out = reinterpret_cast<Bytef*>(buf_.data());
    z_.avail_out = static_cast<uInt>(buf_.size());
    int rc = deflate(&z_, flush);
    if (rc == Z_STREAM_ERROR) return absl::InternalError("deflate failed");
    const size_t n = buf_.size() - z_.avail_out;
    if (n > 0) {
      absl::Status s = emit(absl::string_view(buf_.data(), n));
      if (!s.ok()) return s;
    }
    if (flush == Z_FINISH) {
      if (rc == Z_STREAM_END) return absl::OkStatus();
    } else if (z_.avail_in == 0 && z_.avail_out != 0) {
      return absl::OkStatus();
    }
  }
}

absl::Status GzipMemberWriter::Write(absl::string_view data,
                                     const std::function<absl::Status(absl::string_view)>& emit) {
  while (!data.empty()) {
    const size_t n = std::min<size_t>(data.size(), kMaxZlibChunk);
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z_.avail_in = static_cast<uInt>(n);
    absl::Status s = Run(Z_NO_FLUSH, emit);
    if (!s.ok()) return s;
    data.remove_prefix(n);
  }
  return absl::OkStatus();
}

absl::Status GzipMemberWriter::Finish(const std::function<absl::Status(absl::string_view)>& emit) {
  z_.next_in = nullptr;
  z_.avail_in = 0;
  in_member_ = false;
  return Run(Z_FINISH, emit);
}

}  // namespace accel::estargz::internal
