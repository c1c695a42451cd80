// Cron expressions (DESIGN §3 `schedule:`): 5 fields (minute hour day-of-month month
// day-of-week), 6 with leading seconds, or a macro (@hourly, @daily, @weekly, @monthly, @yearly).
// Matching is on civil (local) time; time zones are the concern of zoned_schedule.hpp.
#pragma once

#include <date/date.h>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace saga {

struct CronError {
  size_t offset = 0;  // into the expression text, 0-based: where the problem starts
  std::string message;
};

class CronExpr {
 public:
  // Parses `text`; an error says which field is wrong and why.
  static std::expected<CronExpr, CronError> parse(std::string_view text);

  bool matches(date::local_seconds t) const;
  // The first matching local time in [from, limit], or nullopt.
  std::optional<date::local_seconds> next_match(date::local_seconds from,
                                                date::local_seconds limit) const;
  // The minute or the hour field starts with `*` (`*`, `*/15`): the schedule is about intervals
  // rather than a time of day, so a local hour that occurs twice (a fall-back) fires in both
  // occurrences. Vixie cron's "wildcard jobs" rule.
  bool runs_through() const { return runs_through_; }
  const std::string& text() const { return text_; }

 private:
  bool day_matches(const date::year_month_day& ymd) const;

  std::string text_;
  uint64_t seconds_ = 0;  // bit n: second n
  uint64_t minutes_ = 0;
  uint32_t hours_ = 0;
  uint32_t days_ = 0;     // bit n: day of month n (1-31)
  uint16_t months_ = 0;   // bit n: month n (1-12)
  uint8_t weekdays_ = 0;  // bit n: weekday n (0 = Sunday)
  // Vixie cron's rule: a day field written starting with `*` is unrestricted; when both day
  // fields are restricted a day matches either, otherwise it must match both.
  bool dom_star_ = false;
  bool dow_star_ = false;
  bool runs_through_ = false;
};

}  // namespace saga
