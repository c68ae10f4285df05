#pragma once

// gtest helpers for absl::Status (abseil 20220623 ships none).
//   EXPECT_OK(expr); ASSERT_OK(expr);
//   EXPECT_THAT(expr, StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(expr, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("digest")));
//   ASSERT_OK_AND_ASSIGN(auto v, expr);

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace accel::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER_P(StatusIs, code, "") {
  const absl::Status& s = ::accel::testing::GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code;
}

// StatusIs(code, message_matcher), e.g. HasSubstr("digest").
MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = ::accel::testing::GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code && ::testing::Matches(message_matcher)(std::string(s.message()));
}

}  // namespace accel::testing

#define EXPECT_OK(expr)                               \
  EXPECT_TRUE(::accel::testing::GetStatus(expr).ok()) \
      << ::accel::testing::GetStatus(expr).ToString()
#define ASSERT_OK(expr)                                      \
  do {                                                       \
    const auto& accel_s_ = (expr);                           \
    ASSERT_TRUE(::accel::testing::GetStatus(accel_s_).ok())  \
        << ::accel::testing::GetStatus(accel_s_).ToString(); \
  } while (0)
#define ACCEL_TEST_CONCAT_INNER_(a, b) a##b
#define ACCEL_TEST_CONCAT_(a, b) ACCEL_TEST_CONCAT_INNER_(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(ACCEL_TEST_CONCAT_(accel_sor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(sor, lhs, expr)  \
  auto sor = (expr);                                \
  ASSERT_TRUE(sor.ok()) << sor.status().ToString(); \
  lhs = std::move(sor).value()
