#pragma once

// Internal to the fd store: one message over a SOCK_SEQPACKET unix socket,
// a short text with at most one descriptor attached (SCM_RIGHTS).
//
//   daemon -> holder   "PUT NAME" + fd | "DEL NAME" | "LIST"
//   holder -> daemon   "OK" | "ERR TEXT" | "FD NAME" + fd ... "END"

#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace accel::snapshotter::internal {

inline constexpr size_t kMaxFdMessage = 512;

// Sends `text` (and `fd` unless -1) as one message.
absl::Status SendFdMessage(int sock, const std::string& text, int fd = -1);

struct FdMessage {
  std::string text;
  UniqueFd fd;  // invalid when none was attached
};
// Receives one message; Unavailable when the peer closed the socket.
absl::StatusOr<FdMessage> RecvFdMessage(int sock);

}  // namespace accel::snapshotter::internal
