// GCC 12 at -O2 reports -Wmaybe-uninitialized inside date.h's parser, which this file never
// calls (a false positive that depends on what else the file inlines).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <date/date.h>
#pragma GCC diagnostic pop

#include "scheduler/cron.hpp"

#include <catch2/catch.hpp>

using namespace saga;
using namespace std::chrono;

namespace {

date::local_seconds local(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  return date::local_days(date::year(y) / mo / d) + hours(h) + minutes(mi) + seconds(s);
}

std::string show(std::optional<date::local_seconds> t) {
  return t ? date::format("%F %T", *t) : std::string("none");
}

}  // namespace

TEST_CASE("cron expressions match local times", "[cron]") {
  struct Case {
    const char* cron;
    date::local_seconds from;
    const char* next;
  };
  const Case cases[] = {
      {"0 3 * * *", local(2026, 11, 23, 2, 59, 59), "2026-11-23 03:00:00"},
      {"0 3 * * *", local(2026, 11, 23, 3, 0, 1), "2026-11-24 03:00:00"},
      {"*/15 * * * *", local(2026, 1, 1, 0, 1), "2026-01-01 00:15:00"},
      {"5-10/5 * * * *", local(2026, 1, 1, 0, 6), "2026-01-01 00:10:00"},
      {"7/20 * * * *", local(2026, 1, 1, 0, 8), "2026-01-01 00:27:00"},
      {"0 0,12 * * *", local(2026, 1, 1, 0, 1), "2026-01-01 12:00:00"},
      {"0 9 * JAN-MAR mon-FRI", local(2026, 3, 28), "2026-03-30 09:00:00"},
      {"0 9 * * 7", local(2026, 11, 2), "2026-11-08 09:00:00"},
      {"0 9 * * 0", local(2026, 11, 2), "2026-11-08 09:00:00"},
      {"0 9 * * 5-7", local(2026, 11, 2), "2026-11-06 09:00:00"},
      // Feb 29 only in leap years; day 31 only in long months; day 30 never in February.
      {"0 12 29 2 *", local(2026, 1, 1), "2028-02-29 12:00:00"},
      {"0 0 31 * *", local(2026, 4, 1), "2026-05-31 00:00:00"},
      {"0 0 30 * *", local(2026, 1, 31), "2026-03-30 00:00:00"},
      {"59 23 31 12 *", local(2026, 12, 31, 23, 59, 1), "2027-12-31 23:59:00"},
      // Vixie cron: both day fields restricted -> either matches (the 13th or a Friday).
      {"0 0 13 * 5", local(2026, 11, 2), "2026-11-06 00:00:00"},
      {"0 0 13 * 5", local(2026, 11, 7), "2026-11-13 00:00:00"},
      // A day field starting with '*' is unrestricted -> both must match.
      {"0 0 */10 * 1", local(2026, 1, 2), "2026-05-11 00:00:00"},
      {"0 0 1 * *", local(2026, 2, 2), "2026-03-01 00:00:00"},
      // Seconds first when there are six fields.
      {"*/15 * * * * *", local(2026, 1, 1, 0, 0, 7), "2026-01-01 00:00:15"},
      {"30 0 0 1 1 *", local(2026, 1, 1, 0, 0, 31), "2027-01-01 00:00:30"},
      {"@hourly", local(2026, 1, 1, 5, 0, 1), "2026-01-01 06:00:00"},
      {"@daily", local(2026, 1, 1, 5), "2026-01-02 00:00:00"},
      {"@weekly", local(2026, 11, 2), "2026-11-08 00:00:00"},
      {"@monthly", local(2026, 11, 2), "2026-12-01 00:00:00"},
      {"@yearly", local(2026, 11, 2), "2027-01-01 00:00:00"},
      {"0 0 31 2 *", local(2026, 1, 1), "none"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.cron, show(c.from));
    auto cron = CronExpr::parse(c.cron);
    REQUIRE(cron);
    auto next = cron->next_match(c.from, c.from + date::years(10));
    if (std::string(c.next) == "none") {
      CHECK(!next);
    } else {
      REQUIRE(next);
      std::istringstream in(c.next);
      date::local_seconds want;
      in >> date::parse("%F %T", want);
      CHECK(show(next) == show(want));
    }
  }
}

TEST_CASE("a minute or hour field starting with * runs through the day (Vixie's wildcard jobs)",
          "[cron]") {
  CHECK(CronExpr::parse("0 * * * *")->runs_through());
  CHECK(CronExpr::parse("@hourly")->runs_through());
  CHECK(CronExpr::parse("* * * * * *")->runs_through());
  CHECK(CronExpr::parse("0 */2 * * *")->runs_through());
  CHECK(CronExpr::parse("*/15 2 * * *")->runs_through());
  CHECK(CronExpr::parse("0 */15 2 * * *")->runs_through());
  CHECK_FALSE(CronExpr::parse("30 2 * * *")->runs_through());
  CHECK_FALSE(CronExpr::parse("0,30 1-3 * * *")->runs_through());
  CHECK_FALSE(CronExpr::parse("@daily")->runs_through());
}

TEST_CASE("a step larger than the field fires at the start of the range only", "[cron]") {
  auto c = CronExpr::parse("5/2147483647 * * * *");
  REQUIRE(c.has_value());
  CHECK(show(c->next_match(local(2026, 1, 1), local(2026, 1, 2))) == "2026-01-01 00:05:00");
  CHECK(show(c->next_match(local(2026, 1, 1, 0, 6), local(2026, 1, 2))) == "2026-01-01 01:05:00");
}

TEST_CASE("SUN ends a day-of-week range as 7", "[cron]") {
  auto c = CronExpr::parse("0 0 * * fri-sun");
  REQUIRE(c.has_value());
  // 2026-11-27 is a Friday: Friday, Saturday, Sunday, then the next Friday.
  std::vector<std::string> fires;
  for (auto t = local(2026, 11, 26); fires.size() < 4;) {
    auto next = c->next_match(t, local(2027, 1, 1));
    REQUIRE(next.has_value());
    fires.push_back(show(next));
    t = *next + seconds(1);
  }
  CHECK(fires == std::vector<std::string>{"2026-11-27 00:00:00", "2026-11-28 00:00:00",
                                          "2026-11-29 00:00:00", "2026-12-04 00:00:00"});
  CHECK_FALSE(CronExpr::parse("0 0 * * mon-0").has_value());
  for (const char* sunday_only : {"0 0 * * sun-sun", "0 0 * * 0-sun"}) {
    auto s = CronExpr::parse(sunday_only);
    REQUIRE(s.has_value());
    CHECK(show(s->next_match(local(2026, 11, 23), local(2027, 1, 1))) == "2026-11-29 00:00:00");
  }
}

TEST_CASE("invalid cron expressions say where and why", "[cron]") {
  struct Case {
    const char* cron;
    size_t offset;
    const char* message;
  };
  const Case cases[] = {
      {"0 3 * *", 0,
       "a cron expression has 5 fields (minute hour day-of-month month day-of-week), 6 with "
       "leading seconds, or is a macro such as @daily; this one has 4"},
      {"", 0,
       "a cron expression has 5 fields (minute hour day-of-month month day-of-week), 6 with "
       "leading seconds, or is a macro such as @daily; this one has 0"},
      {"0 3 * * * * *", 0,
       "a cron expression has 5 fields (minute hour day-of-month month day-of-week), 6 with "
       "leading seconds, or is a macro such as @daily; this one has 7"},
      {"0 25 * * *", 2, "cron field hour: 25 is out of range 0-23"},
      {"60 * * * *", 0, "cron field minute: 60 is out of range 0-59"},
      {"0 0 0 * *", 4, "cron field day-of-month: 0 is out of range 1-31"},
      {"0 0 1 13 *", 6, "cron field month: 13 is out of range 1-12"},
      {"0 0 * * 8", 8, "cron field day-of-week: 8 is out of range 0-7"},
      {"61 0 0 * * *", 0, "cron field second: 61 is out of range 0-59"},
      {"0 0 * FOO *", 6, "cron field month: \"FOO\" is not a number; months are 1-12 or JAN-DEC"},
      {"0 0 * * MONDAY", 8,
       "cron field day-of-week: \"MONDAY\" is not a number; days of the week are 0-7 or SUN-SAT"},
      {"0 MON * * *", 2, "cron field hour: \"MON\" is not a number"},
      {"*/0 * * * *", 2,
       "cron field minute: the step \"0\" after '/' must be a whole number from 1"},
      {"*/x * * * *", 2,
       "cron field minute: the step \"x\" after '/' must be a whole number from 1"},
      {"0 10-2 * * *", 2,
       "cron field hour: the range \"10-2\" runs backwards and ranges do not wrap around; write it "
       "as two ranges (22-23,0-2) or list the values"},
      {"1,,2 * * * *", 2, "cron field minute: an empty item in a list"},
      {"0 0 L * *", 4,
       "cron field day-of-month: \"L\" is not supported; use numbers, names, lists, ranges and "
       "steps"},
      {"0 0 15W * *", 4,
       "cron field day-of-month: \"15W\" is not supported; use numbers, names, lists, ranges and "
       "steps"},
      {"0 0 * * 5#2", 8,
       "cron field day-of-week: \"5#2\" is not supported; use numbers, names, lists, ranges and "
       "steps"},
      {"@fortnightly", 0,
       "unknown cron macro \"@fortnightly\"; use @hourly, @daily, @weekly, @monthly or @yearly"},
      {"@reboot", 0,
       "unknown cron macro \"@reboot\"; use @hourly, @daily, @weekly, @monthly or @yearly"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.cron);
    auto cron = CronExpr::parse(c.cron);
    REQUIRE_FALSE(cron);
    CHECK(cron.error().message == c.message);
    CHECK(cron.error().offset == c.offset);
  }
}
