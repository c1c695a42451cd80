#include "engine/time.hpp"

#include <catch2/catch.hpp>

using namespace saga;
using namespace std::chrono_literals;

TEST_CASE("parse_duration accepts single and combined units", "[time]") {
  struct Case {
    const char* text;
    Millis want;
  };
  const Case cases[] = {
      {"250ms", 250ms},
      {"10s", 10s},
      {"5m", 5min},
      {"2h", 2h},
      {"2d", 48h},
      {"1h30m", 90min},
      {"1d2h3m4s5ms", 93'784'005ms},
      {"0s", 0ms},
      {"0ms", 0ms},
      {"1m30s", 90s},
      {"90m", 90min},
      {"1s500ms", 1500ms},
      {"007s", 7s},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    auto d = parse_duration(c.text);
    REQUIRE(d);
    CHECK(*d == c.want);
  }
}

TEST_CASE("parse_duration rejects malformed text", "[time]") {
  const char* bad[] = {
      "",
      "s",
      "10",
      "-5s",
      "+5s",
      "1.5h",
      "10 s",
      " 10s",
      "10s ",
      "10sec",
      "5M",
      "1w",
      "30m1h",
      "1h1h",
      "1s1ms1s",
      "ms",
      "1msms",
      "abc",
      "1h30",
      "1d-1h",
      "10us",
      // Overflow of int64 milliseconds: in the number, the multiplication and the sum.
      "99999999999999999999ms",
      "9223372036854775807s",
      "106751991168d",
      "106751991167d23h",
      // Past 100 years: `now` plus that would overflow, or nearly.
      "106751991167d",
      "9223372036854775807ms",
      "36500d1ms",
      "36501d",
  };
  for (const char* text : bad) {
    INFO('"' << text << '"');
    CHECK_FALSE(parse_duration(text));
  }
  // The longest duration still parses.
  CHECK(parse_duration("36500d") == kMaxDuration);
  CHECK(parse_duration("36499d23h59m59s999ms") == kMaxDuration - Millis{1});
}

TEST_CASE("format_duration writes the canonical form and round-trips", "[time]") {
  CHECK(format_duration(0ms) == "0s");
  CHECK(format_duration(250ms) == "250ms");
  CHECK(format_duration(90min) == "1h30m");
  CHECK(format_duration(48h) == "2d");
  CHECK(format_duration(1500ms) == "1s500ms");
  CHECK(format_duration(93'784'005ms) == "1d2h3m4s5ms");
  CHECK(format_duration(-90s) == "-1m30s");
  for (int64_t ms : std::initializer_list<int64_t>{1, 999, 1000, 61'001, 86'400'000,
                                                   123'456'789'012, kMaxDuration.count()}) {
    INFO(ms);
    CHECK(parse_duration(format_duration(Millis{ms})) == Millis{ms});
  }
  CHECK(format_duration(Millis{INT64_MAX}) == "106751991167d7h12m55s807ms");
  CHECK(format_duration(Millis{INT64_MIN}).front() == '-');
}

TEST_CASE("format_rfc3339 writes UTC with milliseconds", "[time]") {
  CHECK(format_rfc3339(from_unix_ms(0)) == "1970-01-01T00:00:00.000Z");
  CHECK(format_rfc3339(from_unix_ms(1'795'428'000'123)) == "2026-11-23T10:00:00.123Z");
  CHECK(format_rfc3339(from_unix_ms(951'782'400'000)) == "2000-02-29T00:00:00.000Z");
  CHECK(format_rfc3339(from_unix_ms(-1)) == "1969-12-31T23:59:59.999Z");
  // Past the four digits of the fast path.
  CHECK(format_rfc3339(from_unix_ms(253'402'300'800'000)) == "10000-01-01T00:00:00.000Z");
  char text[kRfc3339Size];
  CHECK_FALSE(format_rfc3339_to(from_unix_ms(253'402'300'800'000), text));
  REQUIRE(format_rfc3339_to(from_unix_ms(253'402'300'799'999), text));
  CHECK(std::string(text, kRfc3339Size) == "9999-12-31T23:59:59.999Z");
}

TEST_CASE("format_rfc3339 is right for times in the same second as the last, and around it",
          "[time]") {
  // The text up to the milliseconds is reused within a second: every neighbour must still match
  // the date computed from scratch (parse_rfc3339 does not share that shortcut).
  for (int64_t base :
       {int64_t{1'795'428'000'000}, int64_t{0}, int64_t{-1000}, int64_t{-86'400'000}}) {
    for (int64_t ms : {base, base + 1, base + 999, base + 1000, base + 998, base - 1, base}) {
      auto text = format_rfc3339(from_unix_ms(ms));
      CHECK(parse_rfc3339(text) == from_unix_ms(ms));
    }
  }
  CHECK(format_rfc3339(from_unix_ms(1'795'428'000'999)) == "2026-11-23T10:00:00.999Z");
  CHECK(format_rfc3339(from_unix_ms(1'795'428'000'007)) == "2026-11-23T10:00:00.007Z");
  CHECK(format_rfc3339(from_unix_ms(1'795'428'001'000)) == "2026-11-23T10:00:01.000Z");
  CHECK(format_rfc3339(from_unix_ms(-999)) == "1969-12-31T23:59:59.001Z");
  CHECK(format_rfc3339(from_unix_ms(-1)) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("parse_rfc3339 reads what format_rfc3339 writes, and offsets", "[time]") {
  for (int64_t ms : std::initializer_list<int64_t>{0, 1, -1, 1'795'428'000'123, 951'782'400'000,
                                                   253'402'300'799'999}) {
    INFO(ms);
    CHECK(parse_rfc3339(format_rfc3339(from_unix_ms(ms))) == from_unix_ms(ms));
  }
  CHECK(parse_rfc3339("2026-11-23T10:00:00Z") == from_unix_ms(1'795'428'000'000));
  CHECK(parse_rfc3339("2026-11-23T10:00:00.1Z") == from_unix_ms(1'795'428'000'100));
  // Digits past milliseconds are truncated.
  CHECK(parse_rfc3339("2026-11-23T10:00:00.123999Z") == from_unix_ms(1'795'428'000'123));
  CHECK(parse_rfc3339("2026-11-23T11:30:00+01:30") == from_unix_ms(1'795'428'000'000));
  CHECK(parse_rfc3339("2026-11-23T05:00:00-05:00") == from_unix_ms(1'795'428'000'000));
  CHECK(parse_rfc3339("2026-11-23t10:00:00z") == from_unix_ms(1'795'428'000'000));
}

TEST_CASE("parse_rfc3339 rejects malformed and impossible times", "[time]") {
  const char* bad[] = {
      "",
      "2026-11-23",
      "2026-11-23T10:00:00",        // no zone
      "2026-11-23T10:00Z",          // no seconds
      "2026-11-23T10:00:00.Z",      // empty fraction
      "2026-13-01T00:00:00Z",       // month
      "2026-02-29T00:00:00Z",       // not a leap year
      "2026-11-31T00:00:00Z",       // day
      "2026-11-23T24:00:00Z",       // hour
      "2026-11-23T10:60:00Z",       // minute
      "2026-11-23T10:00:60Z",       // leap second
      "2026-11-23T10:00:00+1:00",   // offset digits
      "2026-11-23T10:00:00+24:00",  // offset range
      "2026-11-23T10:00:00Zjunk",
      "26-11-23T10:00:00Z",
      "2026/11/23T10:00:00Z",
  };
  for (const char* text : bad) {
    INFO('"' << text << '"');
    CHECK_FALSE(parse_rfc3339(text));
  }
}
