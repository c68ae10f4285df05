// The one retry loop (RetryRequest, RetryOperation) and the token request
// the authenticator sends through it.

#include <gtest/gtest.h>

#include <vector>

#include "registry/authenticator.h"
#include "registry/retry.h"
#include "tests/testing/status_matchers.h"

namespace accel::registry {
namespace {

using ::accel::testing::StatusIs;

HttpResponse Answer(long status, const std::string& retry_after = "") {
  HttpResponse r;
  r.status = status;
  if (!retry_after.empty()) r.headers.emplace_back("retry-after", retry_after);
  return r;
}

class RetryLoopTest : public ::testing::Test {
 protected:
  RetryLoopTest() { policy_.max_attempts = 3; }
  Sleeper sleeper() {
    return [this](absl::Duration d) { slept_.push_back(d); };
  }
  RetryPolicy policy_;
  std::vector<absl::Duration> slept_;
};

TEST_F(RetryLoopTest, RetriesBusyAnswersHonouringRetryAfter) {
  std::vector<absl::StatusOr<HttpResponse>> answers = {Answer(503, "7"), Answer(429), Answer(200)};
  size_t calls = 0;
  absl::StatusOr<HttpResponse> r =
      RetryRequest(policy_, sleeper(), RetryOptions(), [&] { return answers[calls++]; });
  ASSERT_OK(r.status());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(calls, 3u);
  ASSERT_EQ(slept_.size(), 2u);
  EXPECT_EQ(slept_[0], absl::Seconds(7));
}

TEST_F(RetryLoopTest, GivesUpAfterMaxAttemptsAndReturnsTheLastAnswer) {
  size_t calls = 0;
  absl::StatusOr<HttpResponse> busy = RetryRequest(policy_, sleeper(), RetryOptions(), [&] {
    ++calls;
    return absl::StatusOr<HttpResponse>(Answer(503));
  });
  ASSERT_OK(busy.status());
  EXPECT_EQ(busy->status, 503);
  EXPECT_EQ(calls, 3u);
  calls = 0;
  absl::StatusOr<HttpResponse> down = RetryRequest(policy_, sleeper(), RetryOptions(), [&] {
    ++calls;
    return absl::StatusOr<HttpResponse>(absl::UnavailableError("reset"));
  });
  EXPECT_THAT(down, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(calls, 3u);
}

TEST_F(RetryLoopTest, FinalAnswersAndNoRetryAreNotRepeated) {
  size_t calls = 0;
  auto not_found = [&] {
    ++calls;
    return absl::StatusOr<HttpResponse>(Answer(404));
  };
  ASSERT_OK(RetryRequest(policy_, sleeper(), RetryOptions(), not_found).status());
  EXPECT_EQ(calls, 1u);
  RetryOptions once;
  once.retry = false;
  calls = 0;
  auto busy = [&] {
    ++calls;
    return absl::StatusOr<HttpResponse>(Answer(503));
  };
  ASSERT_OK(RetryRequest(policy_, sleeper(), once, busy).status());
  EXPECT_EQ(calls, 1u);
  EXPECT_TRUE(slept_.empty());
}

TEST_F(RetryLoopTest, RefusedConnectionIsFinalWhenAnotherHostFollows) {
  absl::Status refused = absl::UnavailableError("connection refused");
  refused.SetPayload(kConnectFailedPayload, absl::Cord("1"));
  ASSERT_TRUE(IsConnectFailure(refused));
  RetryOptions with_fallback;
  with_fallback.connect_failure_is_final = true;
  size_t calls = 0;
  auto attempt = [&] {
    ++calls;
    return absl::StatusOr<HttpResponse>(refused);
  };
  EXPECT_THAT(RetryRequest(policy_, sleeper(), with_fallback, attempt),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(calls, 1u);
  calls = 0;
  EXPECT_THAT(RetryRequest(policy_, sleeper(), RetryOptions(), attempt),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(calls, 3u);
}

TEST_F(RetryLoopTest, ProgressEarnsAFreshBudget) {
  int64_t received = 0;
  RetryOptions download;
  download.progress = [&] { return received; };
  size_t calls = 0;
  // Each attempt moves some bytes, then the connection breaks; the 6th works.
  absl::StatusOr<HttpResponse> r = RetryRequest(policy_, sleeper(), download, [&] {
    ++calls;
    received += 100;
    if (calls < 6) return absl::StatusOr<HttpResponse>(absl::UnavailableError("reset"));
    return absl::StatusOr<HttpResponse>(Answer(206));
  });
  ASSERT_OK(r.status());
  EXPECT_EQ(calls, 6u);
}

TEST_F(RetryLoopTest, OperationsRetryWhatTheCallerSays) {
  int tries = 0;
  absl::Status s = RetryOperation(
      policy_, sleeper(), [](const absl::Status& st) { return absl::IsUnavailable(st); },
      [&] {
        ++tries;
        return tries < 2 ? absl::UnavailableError("reset") : absl::OkStatus();
      });
  EXPECT_OK(s);
  EXPECT_EQ(tries, 2);
  tries = 0;
  s = RetryOperation(
      policy_, sleeper(), [](const absl::Status& st) { return absl::IsUnavailable(st); },
      [&] {
        ++tries;
        return absl::DataLossError("digest mismatch");
      });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(tries, 1);
}

TEST(TokenRequestTest, AnonymousBasicAndRefreshToken) {
  Challenge c;
  c.scheme = "bearer";
  c.params = {{"realm", "https://auth.example/token"},
              {"service", "reg istry"},
              {"scope", "repository:a:pull"}};
  ASSERT_OK_AND_ASSIGN(HttpRequest anon, TokenRequest(c, {"repository:b:pull"}, std::nullopt));
  EXPECT_EQ(anon.method, "GET");
  EXPECT_EQ(anon.url,
            "https://auth.example/token?service=reg%20istry&scope=repository%3Ab%3Apull"
            "&scope=repository%3Aa%3Apull");
  EXPECT_TRUE(anon.headers.empty());

  Credentials basic;
  basic.username = "u";
  basic.password = "p";
  ASSERT_OK_AND_ASSIGN(HttpRequest with_basic, TokenRequest(c, {"repository:a:pull"}, basic));
  ASSERT_EQ(with_basic.headers.size(), 1u);
  EXPECT_EQ(with_basic.headers[0].first, "Authorization");

  Credentials refresh;
  refresh.identity_token = "r3fresh";
  ASSERT_OK_AND_ASSIGN(HttpRequest post, TokenRequest(c, {}, refresh));
  EXPECT_EQ(post.method, "POST");
  EXPECT_EQ(post.url, "https://auth.example/token");
  EXPECT_NE(post.body.find("grant_type=refresh_token"), std::string::npos);
  EXPECT_NE(post.body.find("refresh_token=r3fresh"), std::string::npos);

  Challenge no_realm;
  no_realm.scheme = "bearer";
  EXPECT_THAT(TokenRequest(no_realm, {}, std::nullopt),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace accel::registry
