#pragma once

// Internal to estargz/: the TOC JSON, read as a stream. ParseTocJson walks
// the document with nlohmann's SAX interface and hands each entry of
// "entries" over as a RawEntry (fields as written, nothing checked but
// their JSON types) as soon as its object closes, so memory is one entry
// whatever the document's shape. TocAssembler (toc_assembler.h) checks
// them.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace accel::estargz::internal {

// One TOC entry as the JSON gives it, before any check.
struct RawEntry {
  std::string name, type, modtime, link_name, digest, chunk_digest;
  int64_t size = 0, mode = 0, uid = 0, gid = 0, dev_major = 0, dev_minor = 0;
  int64_t offset = 0, chunk_offset = 0, chunk_size = 0, inner_offset = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;  // name, base64 value
};

// Parses TOC JSON, calling `on_entry` with each entry and its index, in
// order; an error it returns stops the parse and is returned. Checks the
// document's shape: an object with "version": 1 and "entries" (an array of
// objects), each known field of the JSON type it needs (unknown fields are
// skipped). InvalidArgument naming what is wrong and which entry.
absl::Status ParseTocJson(absl::string_view json,
                          const std::function<absl::Status(RawEntry&, uint64_t)>& on_entry);

}  // namespace accel::estargz::internal
