#include "engine/time.hpp"

#include <array>
#include <cstdio>
#include <cstring>

namespace saga {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Reads exactly `n` digits at `pos`; advances `pos`.
std::optional<int> read_fixed(std::string_view text, size_t& pos, size_t n) {
  if (pos + n > text.size()) return std::nullopt;
  int value = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = text[pos + i];
    if (!is_digit(c)) return std::nullopt;
    value = value * 10 + (c - '0');
  }
  pos += n;
  return value;
}

bool expect(std::string_view text, size_t& pos, char c) {
  if (pos >= text.size() || text[pos] != c) return false;
  ++pos;
  return true;
}

}  // namespace

bool format_rfc3339_to(TimePoint t, char* out) {
  using namespace std::chrono;
  auto put = [out](size_t at, int value, int width) {
    for (int i = width - 1; i >= 0; --i, value /= 10) {
      out[at + static_cast<size_t>(i)] = static_cast<char>('0' + value % 10);
    }
  };
  // The times of one instance's records mostly fall in the same second: its text up to the
  // milliseconds is kept from the last call on this thread.
  thread_local sys_seconds last_second = sys_seconds::min();
  thread_local char last_text[kRfc3339Size];
  const sys_seconds second = floor<seconds>(t);
  const int millis = static_cast<int>((t - second).count());
  if (second == last_second) {
    std::memcpy(out, last_text, kRfc3339Size);
    put(20, millis, 3);
    return true;
  }
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const int year = static_cast<int>(ymd.year());
  if (year < 0 || year > 9999) return false;
  const hh_mm_ss<seconds> tod{second - day};
  // Called for every time field of every journaled record: digits by hand, not printf.
  std::memcpy(out, "0000-00-00T00:00:00.000Z", kRfc3339Size);
  put(0, year, 4);
  put(5, static_cast<int>(static_cast<unsigned>(ymd.month())), 2);
  put(8, static_cast<int>(static_cast<unsigned>(ymd.day())), 2);
  put(11, static_cast<int>(tod.hours().count()), 2);
  put(14, static_cast<int>(tod.minutes().count()), 2);
  put(17, static_cast<int>(tod.seconds().count()), 2);
  put(20, millis, 3);
  last_second = second;
  std::memcpy(last_text, out, kRfc3339Size);
  return true;
}

std::string format_rfc3339(TimePoint t) {
  char text[kRfc3339Size];
  if (format_rfc3339_to(t, text)) return std::string(text, kRfc3339Size);
  using namespace std::chrono;
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<Millis> tod{t - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(tod.hours().count()),
                static_cast<int>(tod.minutes().count()), static_cast<int>(tod.seconds().count()),
                static_cast<int>(tod.subseconds().count()));
  return buf;
}

// Accepts RFC 3339 date-times: any fraction (truncated to milliseconds), `Z` or a numeric
// offset. A leap second (:60) is rejected because system_clock does not count them.
std::optional<TimePoint> parse_rfc3339(std::string_view text) {
  using namespace std::chrono;
  size_t pos = 0;
  auto y = read_fixed(text, pos, 4);
  if (!y || !expect(text, pos, '-')) return std::nullopt;
  auto mo = read_fixed(text, pos, 2);
  if (!mo || !expect(text, pos, '-')) return std::nullopt;
  auto d = read_fixed(text, pos, 2);
  if (!d) return std::nullopt;
  if (pos >= text.size() || (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ')) {
    return std::nullopt;
  }
  ++pos;
  auto h = read_fixed(text, pos, 2);
  if (!h || !expect(text, pos, ':')) return std::nullopt;
  auto mi = read_fixed(text, pos, 2);
  if (!mi || !expect(text, pos, ':')) return std::nullopt;
  auto s = read_fixed(text, pos, 2);
  if (!s) return std::nullopt;

  int64_t frac_ms = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < text.size() && is_digit(text[pos])) {
      if (digits < 3) frac_ms = frac_ms * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (size_t i = digits; i < 3; ++i) frac_ms *= 10;
  }

  int64_t offset_min = 0;
  if (pos >= text.size()) return std::nullopt;
  if (text[pos] == 'Z' || text[pos] == 'z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    const int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    auto oh = read_fixed(text, pos, 2);
    if (!oh || !expect(text, pos, ':')) return std::nullopt;
    auto om = read_fixed(text, pos, 2);
    if (!om || *oh > 23 || *om > 59) return std::nullopt;
    offset_min = sign * (*oh * 60 + *om);
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;

  const year_month_day ymd{year{*y}, month{static_cast<unsigned>(*mo)},
                           day{static_cast<unsigned>(*d)}};
  if (!ymd.ok() || *h > 23 || *mi > 59 || *s > 59) return std::nullopt;
  const TimePoint t = time_point_cast<Millis>(sys_days{ymd}) + hours{*h} + minutes{*mi} +
                      seconds{*s} + Millis{frac_ms} - minutes{offset_min};
  return t;
}

std::string format_duration(Millis d) {
  int64_t count = d.count();
  if (count == 0) return "0s";
  std::string out;
  // Unsigned so that the most negative value still has a magnitude.
  uint64_t rest = static_cast<uint64_t>(count);
  if (count < 0) {
    out += '-';
    rest = ~rest + 1;
  }
  for (const DurationUnit& u : kDurationUnits) {
    const uint64_t n = rest / static_cast<uint64_t>(u.ms);
    if (n == 0) continue;
    rest -= n * static_cast<uint64_t>(u.ms);
    out += std::to_string(n);
    out += u.suffix;
  }
  return out;
}

}  // namespace saga
