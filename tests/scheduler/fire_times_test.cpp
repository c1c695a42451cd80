#include "scheduler/fire_times.hpp"

#include <catch2/catch.hpp>
#include <set>

using namespace saga;
using namespace std::chrono;

namespace {

TimePoint utc(const char* text) {
  auto t = parse_rfc3339(text);
  REQUIRE(t);
  return *t;
}

std::string show(std::optional<TimePoint> t) {
  return t ? format_rfc3339(*t) : std::string("none");
}

std::vector<std::string> shown(const std::vector<TimePoint>& times) {
  std::vector<std::string> out;
  for (auto t : times) out.push_back(format_rfc3339(t));
  return out;
}

}  // namespace

TEST_CASE("next fire in a time zone, across daylight saving transitions", "[fire_times]") {
  struct Case {
    const char* what;
    const char* zone;
    const char* cron;
    const char* after;
    const char* next;
  };
  const Case cases[] = {
      {"UTC is the plain case", "UTC", "0 3 * * *", "2026-11-23T02:00:00.000Z",
       "2026-11-23T03:00:00.000Z"},
      {"strictly after", "UTC", "0 3 * * *", "2026-11-23T03:00:00.000Z",
       "2026-11-24T03:00:00.000Z"},
      {"milliseconds are after the second", "UTC", "* * * * * *", "2026-11-23T03:00:00.001Z",
       "2026-11-23T03:00:01.000Z"},
      {"a half-hour offset", "Asia/Kolkata", "0 9 * * *", "2026-06-01T00:00:00.000Z",
       "2026-06-01T03:30:00.000Z"},
      {"New York winter", "America/New_York", "0 9 * * *", "2026-01-10T00:00:00.000Z",
       "2026-01-10T14:00:00.000Z"},
      {"New York summer", "America/New_York", "0 9 * * *", "2026-07-10T00:00:00.000Z",
       "2026-07-10T13:00:00.000Z"},
      // 2026-03-08 02:00 EST -> 03:00 EDT: 02:30 does not exist and fires at 03:00 EDT.
      {"New York spring-forward gap", "America/New_York", "30 2 * * *", "2026-03-07T08:00:00.000Z",
       "2026-03-08T07:00:00.000Z"},
      {"New York after the gap", "America/New_York", "30 2 * * *", "2026-03-08T07:00:00.000Z",
       "2026-03-09T06:30:00.000Z"},
      {"New York 03:00 on the gap day fires once", "America/New_York", "0 3 * * *",
       "2026-03-08T06:59:00.000Z", "2026-03-08T07:00:00.000Z"},
      {"New York every 30 min across the gap", "America/New_York", "*/30 * * * *",
       "2026-03-08T06:30:00.000Z", "2026-03-08T07:00:00.000Z"},
      {"New York every 30 min after the gap", "America/New_York", "*/30 * * * *",
       "2026-03-08T07:00:00.000Z", "2026-03-08T07:30:00.000Z"},
      // 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice and fires at the first.
      {"New York fall-back, first 01:30", "America/New_York", "30 1 * * *",
       "2026-10-31T12:00:00.000Z", "2026-11-01T05:30:00.000Z"},
      {"New York fall-back, no second 01:30", "America/New_York", "30 1 * * *",
       "2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"},
      {"New York fall-back, asked during the repeat", "America/New_York", "30 1 * * *",
       "2026-11-01T06:10:00.000Z", "2026-11-02T06:30:00.000Z"},
      {"New York every 30 min runs through the repeated hour", "America/New_York", "*/30 * * * *",
       "2026-11-01T05:30:00.000Z", "2026-11-01T06:00:00.000Z"},
      {"New York every 30 min, second 01:30", "America/New_York", "*/30 * * * *",
       "2026-11-01T06:00:00.000Z", "2026-11-01T06:30:00.000Z"},
      // 2026-03-29 02:00 CET -> 03:00 CEST.
      {"Berlin spring-forward gap", "Europe/Berlin", "30 2 * * *", "2026-03-28T12:00:00.000Z",
       "2026-03-29T01:00:00.000Z"},
      {"Berlin gap fire from the last second before it", "Europe/Berlin", "30 2 * * *",
       "2026-03-29T00:59:59.000Z", "2026-03-29T01:00:00.000Z"},
      {"Berlin gap fire from within the last second before it", "Europe/Berlin", "0 30 2 * * *",
       "2026-03-29T00:59:59.500Z", "2026-03-29T01:00:00.000Z"},
      {"Berlin: a fire at the end of the gap is not found again", "Europe/Berlin", "30 2 * * *",
       "2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"},
      {"Berlin hourly across the gap", "Europe/Berlin", "0 * * * *", "2026-03-29T00:30:00.000Z",
       "2026-03-29T01:00:00.000Z"},
      {"Berlin hourly after the gap", "Europe/Berlin", "0 * * * *", "2026-03-29T01:00:00.000Z",
       "2026-03-29T02:00:00.000Z"},
      // 2026-10-25 03:00 CEST -> 02:00 CET.
      {"Berlin fall-back, first 02:30", "Europe/Berlin", "30 2 * * *", "2026-10-24T12:00:00.000Z",
       "2026-10-25T00:30:00.000Z"},
      {"Berlin fall-back, no second 02:30", "Europe/Berlin", "30 2 * * *",
       "2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"},
      {"Berlin hourly repeats the hour", "Europe/Berlin", "0 * * * *", "2026-10-25T00:30:00.000Z",
       "2026-10-25T01:00:00.000Z"},
      {"Berlin every other hour repeats the hour too", "Europe/Berlin", "0 */1 * * *",
       "2026-10-25T00:30:00.000Z", "2026-10-25T01:00:00.000Z"},
      {"Berlin every 15 minutes of 02:xx runs through both", "Europe/Berlin", "*/15 2 * * *",
       "2026-10-25T00:45:00.000Z", "2026-10-25T01:00:00.000Z"},
      {"Berlin Feb 29", "Europe/Berlin", "0 0 29 2 *", "2026-01-01T00:00:00.000Z",
       "2028-02-28T23:00:00.000Z"},
      {"Berlin last day of a 31-day month", "Europe/Berlin", "0 12 31 * *",
       "2026-04-01T00:00:00.000Z", "2026-05-31T10:00:00.000Z"},
      {"never", "UTC", "0 0 30 2 *", "2026-01-01T00:00:00.000Z", "none"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what, c.zone, c.cron, c.after);
    auto cron = CronExpr::parse(c.cron);
    REQUIRE(cron);
    const date::time_zone* zone = find_zone(c.zone);
    REQUIRE(zone);
    CHECK(show(next_fire(*cron, *zone, utc(c.after))) == c.next);
  }
}

TEST_CASE("a 02:30 schedule runs once on each transition day", "[fire_times]") {
  for (const char* name : {"America/New_York", "Europe/Berlin"}) {
    CAPTURE(name);
    auto cron = CronExpr::parse("30 2 * * *");
    const date::time_zone* zone = find_zone(name);
    REQUIRE(zone);
    // A whole year: one fire per local day, 365 of them.
    TimePoint t = utc("2026-01-01T12:00:00Z");
    int fires = 0;
    std::set<std::string> days;
    while (auto next = next_fire(*cron, *zone, t)) {
      if (*next >= utc("2027-01-01T12:00:00Z")) break;
      ++fires;
      auto local = zone->to_local(date::sys_seconds(floor<seconds>(next->time_since_epoch())));
      days.insert(date::format("%F", local));
      t = *next;
    }
    CHECK(fires == 365);
    CHECK(days.size() == 365);
  }
}

TEST_CASE("unknown time zones are not found", "[fire_times]") {
  CHECK(find_zone("Europe/Berlin") != nullptr);
  CHECK(find_zone("Mars/Olympus_Mons") == nullptr);
  CHECK(find_zone("") == nullptr);
}

TEST_CASE("catch-up plans after a downtime", "[fire_times]") {
  auto cron = CronExpr::parse("0 * * * *");
  const date::time_zone* utc_zone = find_zone("UTC");
  const TimePoint down = utc("2026-11-23T00:30:00Z");
  const TimePoint up = utc("2026-11-23T05:10:00Z");  // missed 01:00 .. 05:00

  FirePlan none = plan_fires(*cron, *utc_zone, down, up, Catchup::none, 100);
  CHECK(none.fire.empty());
  CHECK(none.skipped == 5);
  CHECK(show(none.first_skipped) == "2026-11-23T01:00:00.000Z");
  CHECK(show(none.last_skipped) == "2026-11-23T05:00:00.000Z");
  CHECK(show(none.newest_due) == "2026-11-23T05:00:00.000Z");

  FirePlan latest = plan_fires(*cron, *utc_zone, down, up, Catchup::latest, 100);
  CHECK(shown(latest.fire) == std::vector<std::string>{"2026-11-23T05:00:00.000Z"});
  CHECK(latest.skipped == 4);
  CHECK(show(latest.last_skipped) == "2026-11-23T04:00:00.000Z");

  FirePlan all = plan_fires(*cron, *utc_zone, down, up, Catchup::all, 100);
  CHECK(all.fire.size() == 5);
  CHECK(all.skipped == 0);
  CHECK(!all.first_skipped);

  FirePlan capped = plan_fires(*cron, *utc_zone, down, up, Catchup::all, 2);
  CHECK(shown(capped.fire) ==
        std::vector<std::string>{"2026-11-23T04:00:00.000Z", "2026-11-23T05:00:00.000Z"});
  CHECK(capped.skipped == 3);
  CHECK(show(capped.first_skipped) == "2026-11-23T01:00:00.000Z");
  CHECK(show(capped.last_skipped) == "2026-11-23T03:00:00.000Z");

  FirePlan nothing =
      plan_fires(*cron, *utc_zone, down, utc("2026-11-23T00:59:59Z"), Catchup::all, 100);
  CHECK(nothing.fire.empty());
  CHECK(nothing.skipped == 0);
  CHECK(!nothing.newest_due);
}

TEST_CASE("catch-up after a long downtime of an every-second schedule stays cheap",
          "[fire_times]") {
  auto cron = CronExpr::parse("* * * * * *");
  const date::time_zone* zone = find_zone("UTC");
  const TimePoint down = utc("2026-11-01T00:00:00Z");
  const TimePoint up = utc("2026-11-23T00:00:00Z");  // 22 days: 1.9 million fires
  FirePlan plan = plan_fires(*cron, *zone, down, up, Catchup::all, 3);
  CHECK(shown(plan.fire) == std::vector<std::string>{"2026-11-22T23:59:58.000Z",
                                                     "2026-11-22T23:59:59.000Z",
                                                     "2026-11-23T00:00:00.000Z"});
  CHECK(plan.skipped_is_lower_bound);
  CHECK(plan.skipped >= 10'000);
  CHECK(show(plan.newest_due) == "2026-11-23T00:00:00.000Z");
}

TEST_CASE("fire ids name the workflow, the schedule and the fire time", "[fire_times]") {
  const TimePoint t = utc("2026-11-23T03:00:00Z");
  CHECK(fire_id("nightly", 0, t) == "nightly@2026-11-23T03:00:00Z");
  CHECK(fire_id("nightly", 1, t) == "nightly#2@2026-11-23T03:00:00Z");
  auto ref = parse_fire_id("nightly#2@2026-11-23T03:00:00Z");
  REQUIRE(ref);
  CHECK(ref->workflow == "nightly");
  CHECK(ref->index == 1);
  CHECK(ref->fire == t);
  auto first = parse_fire_id("a.b-c@2026-11-23T03:00:00Z");
  REQUIRE(first);
  CHECK(first->workflow == "a.b-c");
  CHECK(first->index == 0);
  for (const char* bad :
       {"nightly", "@2026-11-23T03:00:00Z", "nightly@yesterday", "nightly@2026-11-23T03:00:00.000Z",
        "nightly#1@2026-11-23T03:00:00Z", "nightly#x@2026-11-23T03:00:00Z", "0193a-00000001"}) {
    CAPTURE(bad);
    CHECK(!parse_fire_id(bad));
  }
}
