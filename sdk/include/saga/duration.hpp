// Durations as workflows write them: "250ms", "10s", "5m", "1h30m", "2d". sagad reads every
// duration of a workflow with this, and a step type that takes a duration parameter can too.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace saga {

struct DurationUnit {
  std::string_view suffix;
  int64_t ms;
};

// Largest first: a duration lists its units in this order, each at most once.
inline constexpr std::array<DurationUnit, 5> kDurationUnits{{
    {"d", 86'400'000},
    {"h", 3'600'000},
    {"m", 60'000},
    {"s", 1'000},
    {"ms", 1},
}};

// The longest duration there is: 100 years (36500d). Longer is no different in practice, and
// keeps `now + duration` far from where the milliseconds since 1970 overflow.
inline constexpr std::chrono::milliseconds kMaxDuration{36'500LL * 86'400'000};

// A number and a unit, combinable ("1h30m"); nullopt when malformed or longer than `max`.
inline std::optional<std::chrono::milliseconds> parse_duration(
    std::string_view text, std::chrono::milliseconds max = kMaxDuration) {
  if (text.empty()) return std::nullopt;
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  int64_t total = 0;
  size_t next_unit = 0;  // index into kDurationUnits of the smallest unit still allowed
  size_t pos = 0;
  while (pos < text.size()) {
    if (!is_digit(text[pos])) return std::nullopt;
    int64_t number = 0;
    while (pos < text.size() && is_digit(text[pos])) {
      const int digit = text[pos] - '0';
      if (number > (kMax - digit) / 10) return std::nullopt;
      number = number * 10 + digit;
      ++pos;
    }
    const std::string_view rest = text.substr(pos);
    // "ms" before "m": the longer suffix wins when both match.
    std::optional<size_t> unit;
    for (size_t i = 0; i < kDurationUnits.size(); ++i) {
      if (rest.starts_with(kDurationUnits[i].suffix) &&
          (!unit || kDurationUnits[i].suffix.size() > kDurationUnits[*unit].suffix.size())) {
        unit = i;
      }
    }
    if (!unit || *unit < next_unit) return std::nullopt;
    pos += kDurationUnits[*unit].suffix.size();
    next_unit = *unit + 1;
    const int64_t unit_ms = kDurationUnits[*unit].ms;
    if (number > kMax / unit_ms) return std::nullopt;
    const int64_t part = number * unit_ms;
    if (total > kMax - part) return std::nullopt;
    total += part;
  }
  if (total > max.count()) return std::nullopt;
  return std::chrono::milliseconds{total};
}

}  // namespace saga
