#pragma once

// Internal to estargz/: TocAssembler checks the TOC's entries one by one,
// as ParseTocJson hands them over, and builds the Toc: every check listed
// in toc.h, then each chunk's compressed size and the prefetch range.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "estargz/toc.h"
#include "estargz/toc_json.h"

namespace accel::estargz::internal {

class TocAssembler {
 public:
  // A TOC of a blob compressed with `kind` whose data area ends at
  // `payload_end`; more than `max_entries` entries is InvalidArgument.
  TocAssembler(Compression kind, uint64_t payload_end, uint64_t max_entries);
  ~TocAssembler();

  // Checks and adds entry number `index`. InvalidArgument naming the entry.
  absl::Status Add(RawEntry& raw, uint64_t index);

  // Ends the TOC (its last file must be complete); `digest` is its sha256.
  absl::StatusOr<Toc> Finish(std::string digest);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace accel::estargz::internal
