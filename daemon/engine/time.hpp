// Time as the engine sees it: wall-clock milliseconds, passed in by the caller (the core never
// reads a clock).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <saga/duration.hpp>
#include <string>
#include <string_view>

namespace saga {

using Millis = std::chrono::milliseconds;
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Millis>;

inline TimePoint now_ms() {
  return std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
}
inline int64_t to_unix_ms(TimePoint t) {
  return t.time_since_epoch().count();
}
inline TimePoint from_unix_ms(int64_t ms) {
  return TimePoint(Millis(ms));
}

// RFC 3339 UTC with milliseconds: 2026-11-23T10:00:00.123Z.
std::string format_rfc3339(TimePoint t);
// The same text for years 0 to 9999, written to out[0, kRfc3339Size); false for other years.
constexpr size_t kRfc3339Size = 24;
bool format_rfc3339_to(TimePoint t, char* out);
std::optional<TimePoint> parse_rfc3339(std::string_view text);

// parse_duration (saga/duration.hpp) reads "250ms", "10s", "1h30m", "2d". The shortest such text
// for a duration ("1h30m", "250ms", "0s").
std::string format_duration(Millis d);

}  // namespace saga
