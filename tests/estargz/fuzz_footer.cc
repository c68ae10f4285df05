// libFuzzer target: ParseFooter over arbitrary blob tails and blob sizes.
// Whatever the input, it must return cleanly, and an accepted footer must
// describe ranges inside the blob.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "estargz/footer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using accel::estargz::Footer;
  using accel::estargz::ParseFooter;
  if (size < 8) return 0;
  // The first 8 bytes pick how much blob precedes the tail.
  uint64_t before = 0;
  std::memcpy(&before, data, 8);
  before %= (1ull << 50);
  const absl::string_view tail(reinterpret_cast<const char*>(data + 8), size - 8);
  for (uint64_t blob_size :
       {uint64_t{tail.size()}, tail.size() + before, tail.size() + (before & 0xffff)}) {
    absl::StatusOr<Footer> f = ParseFooter(tail, blob_size);
    if (!f.ok()) continue;
    if (f->footer_size > blob_size || f->toc_offset > blob_size - f->footer_size ||
        f->toc_size > blob_size - f->footer_size - f->toc_offset || f->toc_size == 0 ||
        f->payload_end > f->toc_offset) {
      std::abort();
    }
  }
  return 0;
}
