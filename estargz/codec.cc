#include "estargz/codec.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace accel::estargz::internal {
namespace {

constexpr uInt kMaxZlibChunk = 1u << 30;

}  // namespace

absl::StatusOr<std::string> DecompressRange(absl::string_view in, Compression kind, uint64_t skip,
                                            uint64_t want) {
  Decompressor d(in, {.codec = kind == Compression::kZstd ? Codec::kZstd : Codec::kGzip});
  std::string out;
  out.reserve(static_cast<size_t>(std::min<uint64_t>(want, 4 << 20)));
  ACCEL_RETURN_IF_ERROR(d.Skip(skip));
  ACCEL_RETURN_IF_ERROR(d.ReadExactly(want, out));
  return out;
}

absl::StatusOr<std::string> ZstdDecompressAll(absl::string_view in, uint64_t limit) {
  Decompressor d(in, {.codec = Codec::kZstd, .max_output = limit});
  std::string out;
  ACCEL_RETURN_IF_ERROR(d.ReadToEnd(out));
  return out;
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
