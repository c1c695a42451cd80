#include "scheduler/scheduler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

namespace saga {
namespace {

constexpr std::string_view kSchedulePrefix = "schedule/";
// A fire found due more than this late was missed, not merely reached late: the machine was
// suspended or the clock jumped forward. Its schedule's `catchup` decides, as after a downtime.
constexpr Millis kLateness{60'000};
constexpr std::string_view kPausedPrefix = "paused/";

std::string entry_key(const std::string& workflow, uint32_t index) {
  return std::string(kSchedulePrefix) + workflow + "/" + std::to_string(index);
}

json time_json(const std::optional<TimePoint>& t) {
  return t ? json(format_rfc3339(*t)) : json();
}

std::optional<TimePoint> time_from(const json& record, const char* field) {
  auto it = record.find(field);
  if (it == record.end() || !it->is_string()) return std::nullopt;
  return parse_rfc3339(it->get<std::string>());
}

// A record's fields as written by Scheduler::record(); a record damaged on disk reads as empty
// and zero instead of throwing.
std::string text_from(const json& record, const char* field) {
  auto it = record.find(field);
  return it != record.end() && it->is_string() ? it->get<std::string>() : std::string();
}
uint64_t count_from(const json& record, const char* field) {
  auto it = record.find(field);
  return it != record.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// "schedule/WORKFLOW/INDEX" -> WORKFLOW (workflow names hold no '/').
std::string_view key_workflow(std::string_view key) {
  key.remove_prefix(kSchedulePrefix.size());
  return key.substr(0, key.rfind('/'));
}

std::string_view catchup_name(Catchup c) {
  switch (c) {
    case Catchup::none:
      return "none";
    case Catchup::latest:
      return "latest";
    case Catchup::all:
      return "all";
  }
  return "latest";
}

}  // namespace

std::string Scheduler::label(const Entry& e) {
  return e.def->name + (e.index > 0 ? "#" + std::to_string(e.index + 1) : "");
}

void Scheduler::restore(const std::vector<std::pair<std::string, std::string>>& records) {
  for (const auto& [key, value] : records) {
    if (key.starts_with(kPausedPrefix)) {
      paused_.insert(key.substr(kPausedPrefix.size()));
    } else if (key.starts_with(kSchedulePrefix)) {
      json record = json::parse(value, nullptr, false);
      if (record.is_object()) restored_[key] = std::move(record);
    }
  }
}

void Scheduler::sync(const std::vector<DefinitionPtr>& current, const Unloaded& unloaded) {
  const TimePoint now = clock_.now();
  const bool first = !synced_;
  synced_ = true;
  std::set<std::string_view> loaded;
  for (const DefinitionPtr& def : current) loaded.insert(def->name);
  auto held = [&](std::string_view workflow) {
    return !loaded.contains(workflow) && unloaded && unloaded(workflow);
  };
  std::set<std::string> seen;
  for (const DefinitionPtr& def : current) {
    for (uint32_t i = 0; i < def->schedules.size(); ++i) {
      const ScheduleDef& spec = def->schedules[i];
      auto cron = CronExpr::parse(spec.cron);
      const date::time_zone* zone = find_zone(spec.timezone);
      if (!cron || !zone) {
        spdlog::error("workflow {}: schedule {} cannot be used (cron \"{}\", time zone {})",
                      def->name, i + 1, spec.cron, spec.timezone);
        continue;
      }
      const std::string key = entry_key(def->name, i);
      seen.insert(key);
      auto it = entries_.find(key);
      if (it == entries_.end()) {
        Entry e{def, i, spec, std::move(*cron), zone, now, std::nullopt, std::nullopt, 0, 0, 0};
        bool resumed = false;
        if (auto r = restored_.find(key); r != restored_.end() &&
                                          text_from(r->second, "cron") == spec.cron &&
                                          text_from(r->second, "timezone") == spec.timezone) {
          const json& rec = r->second;
          e.cursor = time_from(rec, "cursor").value_or(now);
          e.last_fire = time_from(rec, "last_fire");
          e.started = count_from(rec, "started");
          e.skipped_overlap = count_from(rec, "skipped_overlap");
          e.skipped_catchup = count_from(rec, "skipped_catchup");
          resumed = true;
        }
        Entry& added = entries_.emplace(key, std::move(e)).first->second;
        if (resumed && rewind_if_ahead(added, now)) {
          save(key, added);
        } else if (resumed) {
          catch_up(key, added, now, first ? Missed::downtime : Missed::unloaded);
        } else {
          save(key, added);
        }
        added.next = next_fire(added.cron, *added.zone, added.cursor);
        spdlog::info("schedule {} ({} in {}): {}", label(added), spec.cron, spec.timezone,
                     paused_.contains(def->name) ? std::string("paused")
                     : added.next                ? "next fire " + format_rfc3339(*added.next)
                                                 : std::string("never fires"));
        continue;
      }
      Entry& e = it->second;
      const bool changed = e.spec.cron != spec.cron || e.spec.timezone != spec.timezone;
      e.def = def;
      e.spec = spec;
      e.cron = std::move(*cron);
      e.zone = zone;
      if (changed) {
        // A changed schedule is a new one: it never fires for times before this moment.
        e.cursor = now;
        save(key, e);
        e.next = next_fire(e.cron, *e.zone, e.cursor);
        spdlog::info("schedule {} changed to {} in {}: next fire {}", label(e), spec.cron,
                     spec.timezone, e.next ? format_rfc3339(*e.next) : "never");
      }
    }
  }
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (seen.contains(it->first)) {
      ++it;
      continue;
    }
    if (held(it->second.def->name)) {
      spdlog::warn(
          "schedule {} stopped: workflow {} is no longer loaded, and a file that may define it "
          "failed to load; it resumes where it was when the workflow loads",
          label(it->second), it->second.def->name);
      restored_[it->first] = record(it->second);
    } else {
      spdlog::info("schedule {} removed", label(it->second));
      host_.persist(it->first, std::nullopt, nullptr);
    }
    it = entries_.erase(it);
  }
  std::set<std::string_view> reported;
  for (auto it = restored_.begin(); it != restored_.end();) {
    const std::string& key = it->first;
    const std::string_view workflow = key_workflow(key);
    if (entries_.contains(key)) {  // resumed, or replaced by a changed schedule
      it = restored_.erase(it);
    } else if (held(workflow)) {
      if (first && reported.insert(workflow).second) {
        spdlog::warn(
            "the schedules of workflow {} are not running: a file that may define it "
            "failed to load; they resume where they were when it loads",
            workflow);
      }
      ++it;
    } else {
      // The schedule went away (or changed) while sagad was down or its file did not load.
      host_.persist(key, std::nullopt, nullptr);
      it = restored_.erase(it);
    }
  }
  // A pause goes with the last schedule of its workflow: hidden, it would hold the schedules of
  // a workflow added later under the same name.
  for (auto it = paused_.begin(); it != paused_.end();) {
    if (has_schedules(*it)) {
      ++it;
      continue;
    }
    spdlog::info("schedules of {}: the pause is forgotten with the last of them", *it);
    host_.persist(std::string(kPausedPrefix) + *it, std::nullopt, nullptr);
    it = paused_.erase(it);
  }
}

void Scheduler::catch_up(const std::string& key, Entry& e, TimePoint now, Missed why) {
  if (paused_.contains(e.def->name)) return;
  const Catchup policy = why == Missed::while_running ? Catchup::all : e.spec.catchup;
  FirePlan plan = plan_fires(e.cron, *e.zone, e.cursor, now, policy, e.spec.max_catchup);
  if (!plan.newest_due) return;
  // What was started is known once the fires have run (overlap: skip may skip one).
  const uint64_t started_before = e.started;
  for (TimePoint at : plan.fire) fire(e, at);
  if (plan.skipped > 0) {
    e.skipped_catchup += plan.skipped;
    spdlog::warn(
        "schedule {}: skipped {}{} fires due from {} to {} {} (catchup: {}, max_catchup: {}); "
        "started {}",
        label(e), plan.skipped_is_lower_bound ? "at least " : "", plan.skipped,
        plan.first_skipped ? format_rfc3339(*plan.first_skipped) : "?",
        plan.last_skipped ? format_rfc3339(*plan.last_skipped) : "?",
        why == Missed::downtime   ? "while sagad was down"
        : why == Missed::unloaded ? "while its workflow was not loaded"
        : why == Missed::late     ? "while sagad could not run them (the machine was suspended, "
                                    "or the clock jumped forward)"
                                  : "at once (was the clock changed?)",
        catchup_name(policy), e.spec.max_catchup, e.started - started_before);
  }
  e.cursor = *plan.newest_due;
  save(key, e);
}

void Scheduler::fire(Entry& e, TimePoint at) {
  if (e.spec.overlap == Overlap::skip && e.last_fire) {
    const std::string previous = fire_id(e.def->name, e.index, *e.last_fire);
    if (host_.is_running(previous)) {
      ++e.skipped_overlap;
      spdlog::warn("schedule {}: skipped the fire at {}: {} is still running (overlap: skip)",
                   label(e), format_rfc3339(at), previous);
      return;
    }
  }
  const std::string id = fire_id(e.def->name, e.index, at);
  switch (host_.start_fire(e.def, id, e.spec.input)) {
    case ScheduleHost::FireStart::started:
      ++e.started;
      spdlog::info("schedule {}: started {}", label(e), id);
      break;
    case ScheduleHost::FireStart::exists:
      spdlog::info("schedule {}: {} exists already; not starting it again", label(e), id);
      break;
    case ScheduleHost::FireStart::failed:
      spdlog::error("schedule {}: the fire at {} was not started (see above)", label(e),
                    format_rfc3339(at));
      return;
  }
  e.last_fire = at;
}

void Scheduler::tick() {
  const TimePoint now = clock_.now();
  for (auto& [key, e] : entries_) {
    if (paused_.contains(e.def->name)) continue;
    if (rewind_if_ahead(e, now)) {
      save(key, e);
      continue;
    }
    if (!e.next || *e.next > now) continue;
    // Missed: due more than a minute ago.
    if (*e.next < now - kLateness) catch_up(key, e, now - kLateness - Millis(1), Missed::late);
    catch_up(key, e, now, Missed::while_running);
    e.next = next_fire(e.cron, *e.zone, e.cursor);
  }
}

bool Scheduler::rewind_if_ahead(Entry& e, TimePoint now) {
  if (e.cursor <= now + kLateness) return false;
  // The clock was ahead when these fires were decided, or has been set back since. Left as it
  // is, the schedule would wait, silent, for the clock to catch up with it.
  spdlog::warn(
      "schedule {}: fires up to {} were decided, which is later than now ({}): the clock was "
      "set back; counting starts over now",
      label(e), format_rfc3339(e.cursor), format_rfc3339(now));
  e.cursor = now;
  e.next = next_fire(e.cron, *e.zone, e.cursor);
  return true;
}

std::optional<TimePoint> Scheduler::next_wakeup() const {
  std::optional<TimePoint> soonest;
  for (const auto& [key, e] : entries_) {
    if (paused_.contains(e.def->name) || !e.next) continue;
    if (!soonest || *e.next < *soonest) soonest = e.next;
  }
  return soonest;
}

bool Scheduler::has_schedules(const std::string& workflow) const {
  for (const auto& [key, e] : entries_) {
    if (e.def->name == workflow) return true;
  }
  // Those of a workflow that is not loaded now count too: pausing stops the catch-up that loading
  // it would start.
  for (const auto& [key, record] : restored_) {
    if (key_workflow(key) == workflow) return true;
  }
  return false;
}

Result<void> Scheduler::pause(const std::string& workflow, std::function<void()> on_durable) {
  if (!has_schedules(workflow) && !paused_.contains(workflow)) {
    return make_error(ErrorCode::not_found,
                      "workflow " + workflow + " has no schedule (sagactl schedules lists them)");
  }
  if (paused_.insert(workflow).second) spdlog::info("schedules of {} paused", workflow);
  host_.persist(std::string(kPausedPrefix) + workflow, std::string("{}"), std::move(on_durable));
  return {};
}

Result<void> Scheduler::resume(const std::string& workflow, std::function<void()> on_durable) {
  if (!has_schedules(workflow) && !paused_.contains(workflow)) {
    return make_error(ErrorCode::not_found,
                      "workflow " + workflow + " has no schedule (sagactl schedules lists them)");
  }
  if (paused_.erase(workflow) > 0) {
    // Fires that fell into the pause are not caught up: counting starts over now.
    const TimePoint now = clock_.now();
    for (auto& [key, e] : entries_) {
      if (e.def->name != workflow) continue;
      e.cursor = now;
      e.next = next_fire(e.cron, *e.zone, e.cursor);
      save(key, e);
    }
    for (auto& [key, record] : restored_) {
      if (key_workflow(key) != workflow) continue;
      record["cursor"] = format_rfc3339(now);
      host_.persist(key, record.dump(), nullptr);
    }
    spdlog::info("schedules of {} resumed", workflow);
  }
  host_.persist(std::string(kPausedPrefix) + workflow, std::nullopt, std::move(on_durable));
  return {};
}

json Scheduler::record(const Entry& e) {
  return {{"cron", e.spec.cron},
          {"timezone", e.spec.timezone},
          {"cursor", format_rfc3339(e.cursor)},
          {"last_fire", time_json(e.last_fire)},
          {"started", e.started},
          {"skipped_overlap", e.skipped_overlap},
          {"skipped_catchup", e.skipped_catchup}};
}

void Scheduler::save(const std::string& key, const Entry& e) {
  host_.persist(key, record(e).dump(), nullptr);
}

json Scheduler::list() const {
  std::vector<std::pair<std::string_view, json>> rows;
  for (const auto& [key, e] : entries_) {
    const bool paused = paused_.contains(e.def->name);
    rows.emplace_back(
        key, json{{"workflow", e.def->name},
                  {"schedule", e.index + 1},
                  {"cron", e.spec.cron},
                  {"timezone", e.spec.timezone},
                  {"catchup", catchup_name(e.spec.catchup)},
                  {"overlap", e.spec.overlap == Overlap::skip ? "skip" : "allow"},
                  {"next_fire", paused ? json() : time_json(e.next)},
                  {"last_fire", time_json(e.last_fire)},
                  {"last_instance",
                   e.last_fire ? json(fire_id(e.def->name, e.index, *e.last_fire)) : json()},
                  {"paused", paused},
                  {"loaded", true},
                  {"started", e.started},
                  {"skipped_overlap", e.skipped_overlap},
                  {"skipped_catchup", e.skipped_catchup}});
  }
  // The schedules of a workflow that is not loaded, as their records have them.
  if (synced_) {
    for (const auto& [key, record] : restored_) {
      const std::string workflow(key_workflow(key));
      std::string_view number(key);
      // "schedule/WORKFLOW/INDEX"; a damaged key without its index reads as the first.
      number.remove_prefix(std::min(number.size(), kSchedulePrefix.size() + workflow.size() + 1));
      uint32_t index = 0;
      std::from_chars(number.data(), number.data() + number.size(), index);
      auto last_fire = time_from(record, "last_fire");
      rows.emplace_back(key, json{{"workflow", workflow},
                                  {"schedule", index + 1},
                                  {"cron", text_from(record, "cron")},
                                  {"timezone", text_from(record, "timezone")},
                                  {"next_fire", nullptr},
                                  {"last_fire", time_json(last_fire)},
                                  {"last_instance",
                                   last_fire ? json(fire_id(workflow, index, *last_fire)) : json()},
                                  {"paused", paused_.contains(workflow)},
                                  {"loaded", false},
                                  {"started", count_from(record, "started")},
                                  {"skipped_overlap", count_from(record, "skipped_overlap")},
                                  {"skipped_catchup", count_from(record, "skipped_catchup")}});
    }
  }
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  json out = json::array();
  for (auto& [key, row] : rows) out.push_back(std::move(row));
  return {{"schedules", std::move(out)}};
}

}  // namespace saga
