// When a schedule fires: cron matches in a time zone, the fires due after a downtime, and the
// instance id each fire starts. Pure functions of their arguments (no clock, no I/O).
//
// Daylight saving time, decided once for every schedule:
// - A local time skipped by a spring-forward (02:30 in a 02:00->03:00 gap) fires once, at the
//   first instant after the gap (03:00 local), like Vixie cron's "run it right after the jump".
// - A local time that occurs twice at a fall-back fires once, at its first occurrence, unless the
//   hour field is `*`: such a schedule runs through the day, and fires in both occurrences.
#pragma once

#include <date/tz.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/definition.hpp"
#include "engine/time.hpp"
#include "scheduler/cron.hpp"

namespace saga {

// The first fire strictly after `after`, or nullopt when the expression does not fire within
// ten years (an impossible date such as Feb 30).
std::optional<TimePoint> next_fire(const CronExpr& cron, const date::time_zone& zone,
                                   TimePoint after);

// Which of the fires due in (cursor, now] to start.
struct FirePlan {
  std::vector<TimePoint> fire;          // oldest first
  uint64_t skipped = 0;                 // due fires that are not started
  bool skipped_is_lower_bound = false;  // too many to count one by one
  std::optional<TimePoint> first_skipped, last_skipped;
  std::optional<TimePoint> newest_due;  // the new cursor; nullopt: nothing was due
};

// `none` starts nothing, `latest` the newest due fire, `all` every due fire up to the newest
// `max_fires`.
FirePlan plan_fires(const CronExpr& cron, const date::time_zone& zone, TimePoint cursor,
                    TimePoint now, Catchup policy, uint32_t max_fires);

// The instance id of a fire: `WORKFLOW@2026-11-23T03:00:00Z` for a workflow's first schedule,
// `WORKFLOW#N@...` for its N-th (1-based). Deterministic, so a fire that was started before a
// crash is found again instead of started twice.
std::string fire_id(std::string_view workflow, uint32_t index, TimePoint fire);

struct FireRef {
  std::string workflow;
  uint32_t index = 0;
  TimePoint fire{};
};
std::optional<FireRef> parse_fire_id(std::string_view id);

// Looks a zone up in the system tz database; nullopt when unknown.
const date::time_zone* find_zone(const std::string& name);

}  // namespace saga
