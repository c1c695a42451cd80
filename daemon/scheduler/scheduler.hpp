// The schedules of the current workflow definitions: which fire is due, what missed fires to
// catch up on after a restart, which fires an overlap skips, and their journaled bookkeeping.
// It decides; the daemon (a ScheduleHost) starts instances and journals records. Time comes from
// an injectable Clock, so tests can simulate downtime. Loop thread only.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/definition.hpp"
#include "engine/error.hpp"
#include "engine/time.hpp"
#include "scheduler/cron.hpp"
#include "scheduler/fire_times.hpp"

namespace saga {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint now() const override { return now_ms(); }
};

class ScheduleHost {
 public:
  virtual ~ScheduleHost() = default;
  // Starts the instance of a fire under `id`. `exists` when an instance with that id exists
  // already (it was started before a crash): it is not started a second time. `failed` when it
  // could not be started (the host logged why).
  enum class FireStart { started, exists, failed };
  virtual FireStart start_fire(const DefinitionPtr& def, const std::string& id, json input) = 0;
  // True while instance `id` runs or compensates.
  virtual bool is_running(const std::string& id) const = 0;
  // Journals a bookkeeping record (nullopt deletes it); `on_durable`, when set, runs once it is.
  virtual void persist(const std::string& key, std::optional<std::string> value,
                       std::function<void()> on_durable) = 0;
};

class Scheduler {
 public:
  // `clock` and `host` must outlive the scheduler.
  Scheduler(const Clock& clock, ScheduleHost& host) : clock_(clock), host_(host) {}
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // The records an earlier run journaled (key, value). Call before the first sync().
  void restore(const std::vector<std::pair<std::string, std::string>>& records);
  // Whether a workflow missing from the current definitions may still be defined: its file is
  // there but failed to load, with no good version to serve (after a restart).
  using Unloaded = std::function<bool(std::string_view workflow)>;
  // Applies the current definitions: new schedules start counting now, changed ones (cron or
  // time zone) start over, removed ones are forgotten. A schedule whose workflow is `unloaded`
  // stops firing but keeps its journaled record (cursor, counters) for the sync that finds the
  // workflow again. Catches up, under each schedule's policy, on the fires missed while sagad was
  // down or the workflow could not be loaded.
  void sync(const std::vector<DefinitionPtr>& current, const Unloaded& unloaded = {});
  // Starts every fire due by now. A fire more than a minute late was missed (the machine was
  // suspended, the clock jumped) and its schedule's `catchup` applies. Call it at least every few
  // seconds while schedules exist, not only when next_wakeup() comes: the clock may be set back.
  void tick();
  // When tick() has something to do next; nullopt: never (no active schedule).
  std::optional<TimePoint> next_wakeup() const;

  // Durable across restarts. Pausing skips every fire until resume; resume does not catch up.
  Result<void> pause(const std::string& workflow, std::function<void()> on_durable);
  Result<void> resume(const std::string& workflow, std::function<void()> on_durable);

  // {"schedules": [{"workflow", "schedule", "cron", "timezone", "next_fire", "last_fire",
  // "paused", ...}]}
  json list() const;

 private:
  struct Entry {
    DefinitionPtr def;
    uint32_t index = 0;
    ScheduleDef spec;
    CronExpr cron;
    const date::time_zone* zone = nullptr;
    TimePoint cursor{};  // every fire up to here has been decided
    std::optional<TimePoint> last_fire;
    std::optional<TimePoint> next;
    uint64_t started = 0, skipped_overlap = 0, skipped_catchup = 0;
  };

  // Why fires were missed: the policy applies to all but the last, which is fires that came due
  // since the last tick (and less than a minute ago).
  enum class Missed { downtime, unloaded, late, while_running };
  void catch_up(const std::string& key, Entry& e, TimePoint now, Missed why);
  void fire(Entry& e, TimePoint at);
  // A cursor ahead of the clock starts over now (true; not saved).
  bool rewind_if_ahead(Entry& e, TimePoint now);
  static json record(const Entry& e);
  void save(const std::string& key, const Entry& e);
  bool has_schedules(const std::string& workflow) const;
  static std::string label(const Entry& e);

  const Clock& clock_;
  ScheduleHost& host_;
  std::map<std::string, Entry> entries_;  // "schedule/WORKFLOW/INDEX"
  std::set<std::string> paused_;          // workflow names
  // Journaled records without an entry: the previous run's until the first sync, then those of
  // unloaded workflows.
  std::map<std::string, json> restored_;
  bool synced_ = false;
};

}  // namespace saga
