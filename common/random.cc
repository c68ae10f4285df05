#include "common/random.h"

#include <sys/random.h>

#include <cerrno>

#include "common/log.h"
#include "common/sha256.h"

namespace accel {

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    ACCEL_CHECK(n > 0);
    got += static_cast<size_t>(n);
  }
  return LowerHex(raw);
}

}  // namespace accel
