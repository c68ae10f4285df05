#include "common/errno_status.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "common/status_macros.h"

namespace accel {
namespace {

TEST(ErrnoStatusTest, MapsCodesAndKeepsErrno) {
  struct Case {
    int err;
    absl::StatusCode code;
  } cases[] = {
      {ENOENT, absl::StatusCode::kNotFound},
      {EEXIST, absl::StatusCode::kAlreadyExists},
      {ENOTEMPTY, absl::StatusCode::kFailedPrecondition},
      {EBUSY, absl::StatusCode::kFailedPrecondition},
      {EINVAL, absl::StatusCode::kInvalidArgument},
      {EACCES, absl::StatusCode::kPermissionDenied},
      {EPERM, absl::StatusCode::kPermissionDenied},
      {ENOSPC, absl::StatusCode::kResourceExhausted},
      {EIO, absl::StatusCode::kInternal},
  };
  for (const Case& c : cases) {
    absl::Status s = ErrnoToStatus(c.err, "open /x");
    EXPECT_EQ(s.code(), c.code) << c.err;
    EXPECT_EQ(StatusToErrno(s), c.err) << "errno must survive the round trip";
    EXPECT_NE(s.message().find("open /x"), absl::string_view::npos);
  }
}

TEST(ErrnoStatusTest, ErrnoSurvivesAnnotate) {
  absl::Status s = Annotate(ErrnoToStatus(ENOTDIR, "lookup"), "layer sha256:abc");
  EXPECT_EQ(StatusToErrno(s), ENOTDIR);
  EXPECT_EQ(s.message(), "layer sha256:abc: lookup: Not a directory");
}

TEST(ErrnoStatusTest, PlainStatusesMapByCode) {
  EXPECT_EQ(StatusToErrno(absl::OkStatus()), 0);
  EXPECT_EQ(StatusToErrno(absl::NotFoundError("x")), ENOENT);
  EXPECT_EQ(StatusToErrno(absl::DataLossError("bad chunk")), EIO);
  EXPECT_EQ(StatusToErrno(absl::UnimplementedError("x")), ENOSYS);
}

}  // namespace
}  // namespace accel
