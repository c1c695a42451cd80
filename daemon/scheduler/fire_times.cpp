#include "scheduler/fire_times.hpp"

#include <charconv>
#include <deque>
#include <exception>

namespace saga {
namespace {

using namespace std::chrono;

constexpr auto kHorizon = date::years(10);
// Past this many due fires, plan_fires stops walking them one by one.
constexpr uint64_t kWalkLimit = 10'000;

date::local_seconds to_local(date::sys_seconds t, seconds offset) {
  return date::local_seconds((t + offset).time_since_epoch());
}
date::sys_seconds to_sys(date::local_seconds t, seconds offset) {
  return date::sys_seconds(t.time_since_epoch()) - offset;
}

}  // namespace

const date::time_zone* find_zone(const std::string& name) {
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    return nullptr;
  }
}

std::optional<TimePoint> next_fire(const CronExpr& cron, const date::time_zone& zone,
                                   TimePoint after) {
  // Fires are whole seconds; the first candidate is the second after `after`.
  date::sys_seconds from = floor<seconds>(after) + seconds(1);
  const date::sys_seconds horizon = from + kHorizon;
  // Local times that a forward jump skips fire at the first instant after the gap (below); when
  // that instant is where the search starts, the segment before it is not walked.
  if (const date::sys_info seg = zone.get_info(from); seg.begin == from) {
    const date::sys_info before = zone.get_info(from - seconds(1));
    const date::local_seconds gap_begin = to_local(from, before.offset);
    const date::local_seconds gap_end = to_local(from, seg.offset);
    if (gap_end > gap_begin && cron.next_match(gap_begin, gap_end - seconds(1))) {
      return time_point_cast<Millis>(from);
    }
  }
  // Walk the offset segments of the zone (between two transitions local time is the instant
  // plus a fixed offset) until one holds a fire.
  while (from < horizon) {
    const date::sys_info seg = zone.get_info(from);
    const date::sys_seconds end = std::min(seg.end, horizon);
    const date::local_seconds local_end = to_local(end, seg.offset);  // exclusive
    date::local_seconds look = to_local(from, seg.offset);
    while (auto m = cron.next_match(look, local_end - seconds(1))) {
      const date::sys_seconds at = to_sys(*m, seg.offset);
      if (!cron.runs_through()) {
        // The second occurrence of a local time that a fall-back repeats does not fire again.
        const date::local_info li = zone.get_info(*m);
        if (li.result == date::local_info::ambiguous && at != to_sys(*m, li.first.offset)) {
          look = *m + seconds(1);
          continue;
        }
      }
      return time_point_cast<Millis>(at);
    }
    if (end == horizon) break;
    // Local times that a forward jump skips fire at the first instant after the gap.
    const date::sys_info next = zone.get_info(end);
    const date::local_seconds next_begin = to_local(end, next.offset);
    if (next_begin > local_end && cron.next_match(local_end, next_begin - seconds(1))) {
      return time_point_cast<Millis>(end);
    }
    from = end;
  }
  return std::nullopt;
}

FirePlan plan_fires(const CronExpr& cron, const date::time_zone& zone, TimePoint cursor,
                    TimePoint now, Catchup policy, uint32_t max_fires) {
  const size_t keep = policy == Catchup::none ? 0 : policy == Catchup::latest ? 1 : max_fires;
  FirePlan plan;
  // Walks the due fires after `start`, keeping the newest keep + 1 (the one before those kept
  // is the newest skipped). Returns how many it saw and the last one.
  std::deque<TimePoint> newest;
  auto walk = [&](TimePoint start, uint64_t limit) {
    uint64_t n = 0;
    TimePoint at = start;
    while (n < limit) {
      auto f = next_fire(cron, zone, at);
      if (!f || *f > now) break;
      if (!plan.first_skipped) plan.first_skipped = *f;
      ++n;
      newest.push_back(*f);
      if (newest.size() > keep + 1) newest.pop_front();
      at = *f;
    }
    return std::pair(n, at);
  };
  auto [due, reached] = walk(cursor, kWalkLimit);
  if (due == kWalkLimit) {
    // Too many to walk one by one: the newest lie in a window that ends now; widen it until it
    // holds enough of them or reaches where the walk stopped.
    const std::deque<TimePoint> walked = newest;
    for (Millis window = hours(1);; window *= 4) {
      const TimePoint start = std::max(reached, now - window);
      newest = start == reached ? walked : std::deque<TimePoint>();
      auto [n, last] = walk(start, UINT64_MAX);
      (void)last;
      if (newest.size() > keep || start == reached) {
        plan.skipped_is_lower_bound = start != reached;
        due += n;
        break;
      }
    }
  }
  if (due == 0) {
    plan.first_skipped.reset();
    return plan;
  }
  plan.newest_due = newest.back();
  if (newest.size() > keep) {
    plan.last_skipped = newest.front();
    newest.pop_front();
  }
  plan.fire.assign(newest.begin(), newest.end());
  plan.skipped = due - plan.fire.size();
  if (plan.skipped == 0) plan.first_skipped.reset();
  return plan;
}

std::string fire_id(std::string_view workflow, uint32_t index, TimePoint fire) {
  std::string id(workflow);
  if (index > 0) id += "#" + std::to_string(index + 1);
  id += "@" + date::format("%FT%TZ", floor<seconds>(fire));
  return id;
}

std::optional<FireRef> parse_fire_id(std::string_view id) {
  const size_t at = id.rfind('@');
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  FireRef ref;
  std::string_view name = id.substr(0, at);
  if (size_t hash = name.rfind('#'); hash != std::string_view::npos) {
    uint32_t n = 0;
    std::string_view digits = name.substr(hash + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec != std::errc() || end != digits.data() + digits.size() || n < 2) return std::nullopt;
    ref.index = n - 1;
    name = name.substr(0, hash);
  }
  if (name.empty()) return std::nullopt;
  ref.workflow = std::string(name);
  std::string_view when = id.substr(at + 1);
  // Exactly the form fire_id writes: 2026-11-23T03:00:00Z.
  if (when.size() != 20 || when.back() != 'Z') return std::nullopt;
  auto parsed = parse_rfc3339(when);
  if (!parsed) return std::nullopt;
  ref.fire = *parsed;
  return ref;
}

}  // namespace saga
