#include <gtest/gtest.h>

#include "registry/range.h"
#include "registry/retry.h"
#include "tests/testing/status_matchers.h"

namespace accel::registry {
namespace {

using ::accel::testing::StatusIs;

TEST(RetryTest, BackoffGrowsAndCaps) {
  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(100);
  p.max_backoff = absl::Seconds(1);
  EXPECT_EQ(BackoffDelay(p, 0), absl::Milliseconds(100));
  EXPECT_EQ(BackoffDelay(p, 1), absl::Milliseconds(200));
  EXPECT_EQ(BackoffDelay(p, 3), absl::Milliseconds(800));
  EXPECT_EQ(BackoffDelay(p, 4), absl::Seconds(1));
  EXPECT_EQ(BackoffDelay(p, 1000), absl::Seconds(1));
  EXPECT_EQ(BackoffDelay(p, 1, 0.5), absl::Milliseconds(100));
  EXPECT_EQ(BackoffDelay(p, 1, 0.0), absl::Milliseconds(100));  // jitter clamped
}

TEST(RetryTest, RetryableStatuses) {
  for (long s : {408L, 429L, 500L, 502L, 503L, 504L}) EXPECT_TRUE(IsRetryableHttpStatus(s)) << s;
  for (long s : {200L, 206L, 400L, 401L, 403L, 404L, 416L, 501L}) {
    EXPECT_FALSE(IsRetryableHttpStatus(s)) << s;
  }
  EXPECT_TRUE(IsRetryableTransportError(absl::UnavailableError("reset")));
  EXPECT_TRUE(IsRetryableTransportError(absl::DeadlineExceededError("stall")));
  EXPECT_FALSE(IsRetryableTransportError(absl::FailedPreconditionError("tls")));
  EXPECT_FALSE(IsRetryableTransportError(absl::DataLossError("digest")));
}

TEST(RetryTest, RetryAfter) {
  absl::Time now;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, "2015-10-21T07:28:00Z", &now, nullptr));
  EXPECT_EQ(ParseRetryAfter("120", now), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter(" 0 ", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", now), absl::Seconds(30));
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:00:00 GMT", now), absl::ZeroDuration());
  EXPECT_FALSE(ParseRetryAfter("", now).has_value());
  EXPECT_FALSE(ParseRetryAfter("soon", now).has_value());
  EXPECT_FALSE(ParseRetryAfter("-5", now).has_value());

  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(100);
  p.max_retry_after = absl::Seconds(10);
  EXPECT_EQ(RetryDelay(p, 0, "", now), absl::Milliseconds(100));
  EXPECT_EQ(RetryDelay(p, 0, "2", now), absl::Seconds(2));         // server asks for longer
  EXPECT_EQ(RetryDelay(p, 0, "0", now), absl::Milliseconds(100));  // never shorter than backoff
  EXPECT_EQ(RetryDelay(p, 0, "3600", now), absl::Seconds(10));     // capped
}

TEST(RangeTest, ContentRange) {
  ASSERT_OK_AND_ASSIGN(ContentRange r, ParseContentRange("bytes 100-199/1000"));
  EXPECT_EQ(r.first, 100);
  EXPECT_EQ(r.last, 199);
  EXPECT_EQ(r.total, 1000);
  ASSERT_OK_AND_ASSIGN(r, ParseContentRange("bytes 0-0/*"));
  EXPECT_EQ(r.total, -1);
  for (const char* bad : {"", "bytes", "bytes 5-4/10", "bytes 0-9/9", "items 0-1/2",
                          "bytes -1-3/10", "bytes 0-x/10", "bytes 1-2"}) {
    EXPECT_THAT(ParseContentRange(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  EXPECT_EQ(RangeHeader(10, -1), "bytes=10-");
  EXPECT_EQ(RangeHeader(10, 19), "bytes=10-19");
}

TEST(RangeTest, PlansResume) {
  // 206 starting where we asked: take the body as is.
  ASSERT_OK_AND_ASSIGN(RangePlan p, PlanRangeResponse(206, "bytes 500-999/1000", 500, -1, 1000));
  EXPECT_EQ(p.skip, 0);
  // 200: the server ignored Range; drop what we already have.
  ASSERT_OK_AND_ASSIGN(p, PlanRangeResponse(200, "", 500, -1, 1000));
  EXPECT_EQ(p.skip, 500);
  // A range that starts elsewhere, runs past the request, or disagrees on size.
  EXPECT_THAT(PlanRangeResponse(206, "bytes 0-999/1000", 500, -1, 1000),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(PlanRangeResponse(206, "bytes 10-30/1000", 10, 19, 1000),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(PlanRangeResponse(206, "bytes 500-999/2000", 500, -1, 1000),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(PlanRangeResponse(206, "garbage", 500, -1, 1000),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PlanRangeResponse(416, "", 5000, -1, 1000), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(PlanRangeResponse(302, "", 0, -1, 1000),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace accel::registry
