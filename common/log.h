#pragma once

// A small leveled logger: one line per event on stderr,
//   2026-11-22T10:00:00.123Z level=info msg="prepare" key=ns/1/abc
// Thread-safe (each line is written with one write(2)). No global state
// besides the level threshold, which is set once at start-up.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace accel {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Parses "debug", "info", "warn"/"warning", "error".
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Writes one line: timestamp, level, then `text` (already formatted
// key=value pairs; use LogField to quote values).
void LogLine(LogLevel level, absl::string_view text);

// Returns ` key="value"` with quotes and backslashes escaped.
std::string LogField(absl::string_view key, absl::string_view value);

}  // namespace accel

#define ACCEL_LOG(level, ...)                                                  \
  do {                                                                         \
    if (::accel::LogEnabled(::accel::LogLevel::level))                         \
      ::accel::LogLine(::accel::LogLevel::level, ::absl::StrCat(__VA_ARGS__)); \
  } while (0)

// ACCEL_CHECK(cond) aborts with a message when an invariant is violated.
#define ACCEL_CHECK(cond)                                         \
  do {                                                            \
    if (!(cond)) ::accel::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (0)

namespace accel {
[[noreturn]] void CheckFailed(const char* file, int line, const char* cond);
}  // namespace accel
