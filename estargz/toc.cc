#include "estargz/toc.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/tar_reader.h"
#include "estargz/codec.h"
#include "estargz/toc_assembler.h"
#include "estargz/toc_internal.h"
#include "estargz/toc_json.h"

namespace accel::estargz {
namespace {

// Takes the TOC JSON out of the gzip member at the start of `region`: a tar
// whose first entry is kTocName.
absl::StatusOr<std::string> ExtractGzipToc(absl::string_view region) {
  // Room for the tar headers, padding and end marker around the JSON.
  internal::GzipMemberReader reader(region, kMaxTocSize + (1 << 20));
  absl::StatusOr<std::unique_ptr<TarReader>> tar =
      TarReader::Open([&reader](char* buf, size_t len) { return reader.Read(buf, len); }, 64 << 10);
  if (!tar.ok()) return Annotate(tar.status(), "TOC is not a tar in a gzip member");
  absl::StatusOr<const LayerEntry*> e = (*tar)->Next();
  if (!e.ok()) return Annotate(e.status(), "TOC");
  if (*e == nullptr) return absl::DataLossError("TOC tar is empty");
  if ((*e)->path != kTocName) {
    return absl::InvalidArgumentError(absl::StrCat("TOC tar entry is named \"",
                                                   absl::string_view((*e)->path).substr(0, 100),
                                                   "\", not \"", kTocName, "\""));
  }
  if ((*e)->type != EntryType::kRegular) {
    return absl::InvalidArgumentError("TOC tar entry is not a regular file");
  }
  if ((*e)->size > kMaxTocSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("TOC is ", (*e)->size, " bytes, more than the limit of ", kMaxTocSize));
  }
  std::string json;
  for (;;) {
    absl::StatusOr<absl::string_view> block = (*tar)->NextDataBlock();
    if (!block.ok()) return Annotate(block.status(), "TOC");
    if (block->empty()) break;
    json.append(block->data(), block->size());
  }
  return json;
}

}  // namespace

namespace internal {

absl::StatusOr<Toc> ParseTocWithDigest(absl::string_view json, Compression kind,
                                       uint64_t payload_end, std::string digest,
                                       uint64_t max_entries) {
  if (json.size() > kMaxTocSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("TOC is ", json.size(), " bytes, more than the limit of ", kMaxTocSize));
  }
  TocAssembler assembler(kind, payload_end, max_entries);
  ACCEL_RETURN_IF_ERROR(
      ParseTocJson(json, [&](RawEntry& raw, uint64_t index) { return assembler.Add(raw, index); }));
  return assembler.Finish(std::move(digest));
}

}  // namespace internal

absl::Span<const Chunk> Toc::FileChunks(uint64_t first_chunk, uint64_t file_size) const {
  if (file_size == 0 || first_chunk >= chunks.size()) return {};
  const uint64_t n = 1 + static_cast<uint64_t>(chunks[first_chunk].chunks_after);
  if (n > chunks.size() - first_chunk) return {};
  return absl::Span<const Chunk>(chunks.data() + first_chunk, static_cast<size_t>(n));
}

absl::StatusOr<Toc> ParseToc(absl::string_view json, Compression kind, uint64_t payload_end) {
  return internal::ParseTocWithDigest(json, kind, payload_end, Sha256::Of(json));
}

absl::StatusOr<Toc> ReadToc(const ReadAtFn& read_at, uint64_t blob_size,
                            absl::string_view expected_toc_digest) {
  if (!expected_toc_digest.empty()) {
    ACCEL_RETURN_IF_ERROR(
        Annotate(ValidateSha256Digest(expected_toc_digest), "expected TOC digest"));
  }
  if (blob_size < kLegacyFooterSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob of ", blob_size, " bytes is too small to hold an eStargz footer"));
  }
  const uint64_t tail_len = std::min<uint64_t>(blob_size, kMaxFooterSize);
  absl::StatusOr<std::string> tail = read_at(blob_size - tail_len, tail_len);
  if (!tail.ok()) return Annotate(tail.status(), "read eStargz footer");
  if (tail->size() != tail_len) {
    return absl::DataLossError(
        absl::StrCat("read eStargz footer: got ", tail->size(), " of ", tail_len, " bytes"));
  }
  ACCEL_ASSIGN_OR_RETURN(Footer footer, ParseFooter(*tail, blob_size));

  constexpr uint64_t kMaxCompressedToc = kMaxTocSize + (1 << 20);
  if (footer.toc_size > kMaxCompressedToc) {
    return absl::InvalidArgumentError(absl::StrCat("compressed TOC is ", footer.toc_size,
                                                   " bytes, more than the limit of ",
                                                   kMaxCompressedToc));
  }
  if (footer.compression == Compression::kZstd && footer.toc_uncompressed_size > kMaxTocSize) {
    return absl::InvalidArgumentError(absl::StrCat("TOC is ", footer.toc_uncompressed_size,
                                                   " bytes, more than the limit of ", kMaxTocSize));
  }
  absl::StatusOr<std::string> region = read_at(footer.toc_offset, footer.toc_size);
  if (!region.ok()) return Annotate(region.status(), "read eStargz TOC");
  if (region->size() != footer.toc_size) {
    return absl::DataLossError(
        absl::StrCat("read eStargz TOC: got ", region->size(), " of ", footer.toc_size, " bytes"));
  }
  std::string json;
  if (footer.compression == Compression::kZstd) {
    absl::StatusOr<std::string> out =
        internal::ZstdDecompressAll(*region, footer.toc_uncompressed_size);
    if (!out.ok()) return Annotate(out.status(), "TOC");
    if (out->size() != footer.toc_uncompressed_size) {
      return absl::DataLossError(absl::StrCat("TOC decompresses to ", out->size(),
                                              " bytes, the footer says ",
                                              footer.toc_uncompressed_size));
    }
    json = std::move(*out);
  } else {
    ACCEL_ASSIGN_OR_RETURN(json, ExtractGzipToc(*region));
  }
  std::string digest = Sha256::Of(json);
  if (!expected_toc_digest.empty() && digest != expected_toc_digest) {
    return absl::DataLossError(absl::StrCat("TOC digest mismatch: the TOC is ", digest,
                                            ", the layer annotation says ", expected_toc_digest));
  }
  return internal::ParseTocWithDigest(json, footer.compression, footer.payload_end,
                                      std::move(digest));
}

}  // namespace accel::estargz
