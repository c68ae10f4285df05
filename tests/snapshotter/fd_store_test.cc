// The fd store's protocols without a service manager: descriptor names, the
// sd_notify messages of the systemd store (received on a socket standing in
// for $NOTIFY_SOCKET, descriptor attached), the mode choice, and the fd
// message framing the holder speaks.

#include "snapshotter/fd_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "snapshotter/fd_message.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace accel::snapshotter {
namespace {

using ::accel::testing::StatusIs;

TEST(FdStoreTest, NamesFollowSystemdsFdnameRule) {
  EXPECT_OK(ValidateFdName("fuse-0123abcd"));
  EXPECT_OK(ValidateFdName("grpc-listen"));
  for (const std::string& bad : {std::string(""), std::string("a:b"), std::string("a b"),
                                 std::string(256, 'x'), std::string("tab\t")}) {
    EXPECT_THAT(ValidateFdName(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

// Receives one datagram and its descriptor from `sock`.
std::string Receive(int sock, UniqueFd* fd) {
  char buf[512];
  iovec iov{buf, sizeof(buf)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return "";
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_type == SCM_RIGHTS) {
      int f;
      std::memcpy(&f, CMSG_DATA(c), sizeof(f));
      fd->Reset(f);
    }
  }
  return std::string(buf, static_cast<size_t>(n));
}

TEST(FdStoreTest, SystemdStoreSendsFdstoreMessagesWithTheDescriptor) {
  accel::testing::TempDir tmp;
  const std::string path = tmp.path() + "/notify";
  UniqueFd sock(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  ASSERT_EQ(bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  setenv("LISTEN_FDNAMES", "", 1);
  absl::StatusOr<std::unique_ptr<FdStore>> store = OpenFdStore(FdStoreOptions{"auto", "", ""});
  ASSERT_OK(store.status());
  EXPECT_EQ((*store)->kind(), "systemd") << "auto picks systemd when it passes descriptors";
  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_OK((*store)->Put("fuse-abc", file.get()));
  UniqueFd got;
  // Put first drops an older descriptor of that name, then stores.
  EXPECT_EQ(Receive(sock.get(), &got), "FDSTOREREMOVE=1\nFDNAME=fuse-abc");
  EXPECT_EQ(Receive(sock.get(), &got), "FDSTORE=1\nFDNAME=fuse-abc");
  ASSERT_TRUE(got.valid()) << "the descriptor travels with the message";
  struct stat a, b;
  ASSERT_EQ(fstat(got.get(), &a), 0);
  ASSERT_EQ(fstat(file.get(), &b), 0);
  EXPECT_EQ(a.st_rdev, b.st_rdev);
  ASSERT_OK((*store)->Remove("fuse-abc"));
  EXPECT_EQ(Receive(sock.get(), &got), "FDSTOREREMOVE=1\nFDNAME=fuse-abc");
  EXPECT_THAT((*store)->Put("bad:name", file.get()), StatusIs(absl::StatusCode::kInvalidArgument));
  unsetenv("NOTIFY_SOCKET");
  unsetenv("LISTEN_FDNAMES");
}

TEST(FdStoreTest, ModeChoice) {
  unsetenv("NOTIFY_SOCKET");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FdStore> none, OpenFdStore(FdStoreOptions{"none", "", ""}));
  EXPECT_EQ(none->kind(), "none");
  EXPECT_OK(none->Put("x", 0));
  ASSERT_OK_AND_ASSIGN(auto held, none->Fetch());
  EXPECT_TRUE(held.empty());
  EXPECT_THAT(OpenFdStore(FdStoreOptions{"bogus", "", ""}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FdStoreTest, HolderMessagesCarryOneDescriptor) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_OK(internal::SendFdMessage(a.get(), "PUT fuse-1", file.get()));
  ASSERT_OK_AND_ASSIGN(internal::FdMessage m, internal::RecvFdMessage(b.get()));
  EXPECT_EQ(m.text, "PUT fuse-1");
  EXPECT_TRUE(m.fd.valid());
  ASSERT_OK(internal::SendFdMessage(a.get(), "LIST"));
  ASSERT_OK_AND_ASSIGN(m, internal::RecvFdMessage(b.get()));
  EXPECT_EQ(m.text, "LIST");
  EXPECT_FALSE(m.fd.valid());
  a.Reset();
  EXPECT_THAT(internal::RecvFdMessage(b.get()), StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace accel::snapshotter
