#include "scheduler/scheduler.hpp"

#include <catch2/catch.hpp>

using namespace saga;
using namespace std::chrono;

namespace {

TimePoint utc(const char* text) {
  auto t = parse_rfc3339(text);
  REQUIRE(t);
  return *t;
}

class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint t) : t_(t) {}
  TimePoint now() const override { return t_; }
  void set(const char* text) { t_ = utc(text); }

 private:
  TimePoint t_;
};

// Stands in for the daemon and its journal: instances by id, and the journaled records.
class FakeHost final : public ScheduleHost {
 public:
  FireStart start_fire(const DefinitionPtr&, const std::string& id, json input) override {
    ++start_calls[id];
    if (fail_starts) return FireStart::failed;
    if (instances.contains(id)) return FireStart::exists;
    instances[id] = {true, std::move(input)};
    order.push_back(id);
    return FireStart::started;
  }
  bool is_running(const std::string& id) const override {
    auto it = instances.find(id);
    return it != instances.end() && it->second.running;
  }
  void persist(const std::string& key, std::optional<std::string> value,
               std::function<void()> on_durable) override {
    if (!journal_works) return;  // a crash: nothing more reaches the disk
    if (value) {
      records[key] = *value;
    } else {
      records.erase(key);
    }
    if (on_durable) on_durable();
  }
  std::vector<std::pair<std::string, std::string>> journaled() const {
    return {records.begin(), records.end()};
  }
  void finish_all() {
    for (auto& [id, inst] : instances) inst.running = false;
  }

  struct Inst {
    bool running = true;
    json input;
  };
  std::map<std::string, Inst> instances;
  std::vector<std::string> order;
  std::map<std::string, int> start_calls;
  std::map<std::string, std::string> records;
  bool journal_works = true;
  bool fail_starts = false;
};

DefinitionPtr workflow(const std::string& name, std::vector<ScheduleDef> schedules) {
  auto def = std::make_shared<Definition>();
  def->name = name;
  def->schedules = std::move(schedules);
  return def;
}

ScheduleDef hourly(Catchup catchup = Catchup::latest, Overlap overlap = Overlap::allow,
                   uint32_t max_catchup = 100) {
  ScheduleDef s;
  s.cron = "0 * * * *";
  s.catchup = catchup;
  s.overlap = overlap;
  s.max_catchup = max_catchup;
  return s;
}

// A run of sagad from 00:30 to just after the hourly fire at 01:00, which each schedule starts.
void run_until_first_fire(FakeClock& clock, FakeHost& host, const DefinitionPtr& def) {
  clock.set("2026-11-23T00:30:00Z");
  Scheduler before(clock, host);
  before.restore(host.journaled());
  before.sync({def});
  clock.set("2026-11-23T01:00:00Z");
  before.tick();
  REQUIRE(host.order.size() == def->schedules.size());
}

std::string show(std::optional<TimePoint> t) {
  return t ? format_rfc3339(*t) : std::string("none");
}

}  // namespace

TEST_CASE("a new schedule fires on time, never for times before it was loaded", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  Scheduler s(clock, host);
  ScheduleDef spec = hourly();
  spec.input = {{"source", "nightly"}};
  s.restore(host.journaled());
  s.sync({workflow("wf", {spec})});
  CHECK(show(s.next_wakeup()) == "2026-11-23T01:00:00.000Z");
  s.tick();
  CHECK(host.order.empty());
  clock.set("2026-11-23T01:00:00.004Z");
  s.tick();
  CHECK(host.order == std::vector<std::string>{"wf@2026-11-23T01:00:00Z"});
  CHECK(host.instances["wf@2026-11-23T01:00:00Z"].input == json{{"source", "nightly"}});
  CHECK(show(s.next_wakeup()) == "2026-11-23T02:00:00.000Z");
  json listed = s.list()["schedules"][0];
  CHECK(listed["last_fire"] == "2026-11-23T01:00:00.000Z");
  CHECK(listed["next_fire"] == "2026-11-23T02:00:00.000Z");
  CHECK(listed["paused"] == false);
  CHECK(listed["started"] == 1);
  // The last fire is journaled.
  json record = json::parse(host.records.at("schedule/wf/0"));
  CHECK(record["last_fire"] == "2026-11-23T01:00:00.000Z");
}

TEST_CASE("catch-up policies across a simulated downtime", "[scheduler]") {
  struct Case {
    Catchup policy;
    uint32_t max_catchup;
    std::vector<std::string> started_after_restart;
    uint64_t skipped;
  };
  const Case cases[] = {
      {Catchup::none, 100, {}, 4},
      {Catchup::latest, 100, {"wf@2026-11-23T05:00:00Z"}, 3},
      {Catchup::all,
       100,
       {"wf@2026-11-23T02:00:00Z", "wf@2026-11-23T03:00:00Z", "wf@2026-11-23T04:00:00Z",
        "wf@2026-11-23T05:00:00Z"},
       0},
      {Catchup::all, 2, {"wf@2026-11-23T04:00:00Z", "wf@2026-11-23T05:00:00Z"}, 2},
  };
  for (const Case& c : cases) {
    CAPTURE(static_cast<int>(c.policy), c.max_catchup);
    FakeClock clock(utc("2026-11-23T00:30:00Z"));
    FakeHost host;
    auto def = workflow("wf", {hourly(c.policy, Overlap::allow, c.max_catchup)});
    run_until_first_fire(clock, host, def);
    // sagad is down from 01:00:05 to 05:10: the fires at 02, 03, 04 and 05 are missed.
    clock.set("2026-11-23T05:10:00Z");
    Scheduler after(clock, host);
    after.restore(host.journaled());
    after.sync({def});
    std::vector<std::string> started(host.order.begin() + 1, host.order.end());
    CHECK(started == c.started_after_restart);
    json listed = after.list()["schedules"][0];
    CHECK(listed["skipped_catchup"] == c.skipped);
    CHECK(listed["next_fire"] == "2026-11-23T06:00:00.000Z");
    // What was decided is journaled: a second restart catches up on nothing more.
    Scheduler again(clock, host);
    again.restore(host.journaled());
    again.sync({def});
    CHECK(host.order.size() == 1 + c.started_after_restart.size());
  }
}

TEST_CASE("overlap: skip waits for the previous instance, allow does not", "[scheduler]") {
  for (Overlap overlap : {Overlap::skip, Overlap::allow}) {
    CAPTURE(static_cast<int>(overlap));
    FakeClock clock(utc("2026-11-23T00:30:00Z"));
    FakeHost host;
    Scheduler s(clock, host);
    s.restore({});
    s.sync({workflow("wf", {hourly(Catchup::latest, overlap)})});
    clock.set("2026-11-23T01:00:00Z");
    s.tick();
    clock.set("2026-11-23T02:00:00Z");
    s.tick();  // the 01:00 instance still runs
    host.finish_all();
    clock.set("2026-11-23T03:00:00Z");
    s.tick();
    json listed = s.list()["schedules"][0];
    if (overlap == Overlap::skip) {
      CHECK(host.order ==
            std::vector<std::string>{"wf@2026-11-23T01:00:00Z", "wf@2026-11-23T03:00:00Z"});
      CHECK(listed["skipped_overlap"] == 1);
    } else {
      CHECK(host.order.size() == 3);
      CHECK(listed["skipped_overlap"] == 0);
    }
    CHECK(listed["last_fire"] == "2026-11-23T03:00:00.000Z");
  }
}

TEST_CASE("overlap: skip also holds after a restart", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  auto def = workflow("wf", {hourly(Catchup::latest, Overlap::skip)});
  {
    Scheduler s(clock, host);
    s.restore({});
    s.sync({def});
    clock.set("2026-11-23T01:00:00Z");
    s.tick();
  }
  clock.set("2026-11-23T02:00:30Z");
  Scheduler s(clock, host);
  s.restore(host.journaled());
  s.sync({def});  // 02:00 was missed, but the 01:00 instance (recovered) still runs
  CHECK(host.order.size() == 1);
  CHECK(s.list()["schedules"][0]["skipped_overlap"] == 1);
}

TEST_CASE("a crash between starting a fire and journaling it never starts it twice",
          "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  auto def = workflow("wf", {hourly(Catchup::all, Overlap::allow)});
  {
    Scheduler s(clock, host);
    s.restore({});
    s.sync({def});
    clock.set("2026-11-23T01:00:00Z");
    // The instance's start reaches the journal, then sagad is killed before the schedule's
    // record does.
    s.tick();
    json record = json::parse(host.records["schedule/wf/0"]);
    record["cursor"] = "2026-11-23T00:30:00.000Z";
    record["last_fire"] = nullptr;
    host.records["schedule/wf/0"] = record.dump();  // as it was before the fire
  }
  clock.set("2026-11-23T01:00:02Z");
  Scheduler s(clock, host);
  s.restore(host.journaled());
  s.sync({def});
  CHECK(host.start_calls["wf@2026-11-23T01:00:00Z"] == 2);  // asked again after the restart
  CHECK(host.order == std::vector<std::string>{"wf@2026-11-23T01:00:00Z"});  // started once
  CHECK(s.list()["schedules"][0]["last_fire"] == "2026-11-23T01:00:00.000Z");
}

TEST_CASE("pause and resume are journaled; resume does not catch up", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  auto def = workflow("wf", {hourly(Catchup::all)});
  {
    Scheduler s(clock, host);
    s.restore({});
    s.sync({def});
    bool durable = false;
    REQUIRE(s.pause("wf", [&] { durable = true; }));
    CHECK(durable);
    CHECK(!s.next_wakeup());
    CHECK(s.list()["schedules"][0]["paused"] == true);
    CHECK(s.list()["schedules"][0]["next_fire"].is_null());
    clock.set("2026-11-23T01:00:00Z");
    s.tick();
    CHECK(host.order.empty());
    auto missing = s.pause("other", nullptr);
    REQUIRE(!missing);
    CHECK(missing.error().message ==
          "workflow other has no schedule (sagactl schedules lists them)");
  }
  // Paused across a restart: no catch-up either.
  clock.set("2026-11-23T03:10:00Z");
  Scheduler s(clock, host);
  s.restore(host.journaled());
  s.sync({def});
  CHECK(host.order.empty());
  CHECK(s.list()["schedules"][0]["paused"] == true);
  REQUIRE(s.resume("wf", nullptr));
  CHECK(host.order.empty());
  CHECK(show(s.next_wakeup()) == "2026-11-23T04:00:00.000Z");
  CHECK(!host.records.contains("paused/wf"));
}

TEST_CASE("changing or removing a schedule takes effect on sync", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  Scheduler s(clock, host);
  s.restore({});
  s.sync({workflow("wf", {hourly(), hourly()})});
  CHECK(s.list()["schedules"].size() == 2);
  CHECK(host.records.contains("schedule/wf/1"));
  ScheduleDef daily = hourly();
  daily.cron = "0 3 * * *";
  daily.timezone = "Europe/Berlin";
  clock.set("2026-11-23T00:40:00Z");
  s.sync({workflow("wf", {daily})});
  json listed = s.list()["schedules"];
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["cron"] == "0 3 * * *");
  CHECK(listed[0]["next_fire"] == "2026-11-23T02:00:00.000Z");
  CHECK(!host.records.contains("schedule/wf/1"));
  s.sync({});
  CHECK(s.list()["schedules"].empty());
  CHECK(!s.next_wakeup());
  CHECK(host.records.empty());
}

TEST_CASE("a schedule's second entry has its own ids", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  Scheduler s(clock, host);
  s.restore({});
  s.sync({workflow("wf", {hourly(), hourly()})});
  clock.set("2026-11-23T01:00:00Z");
  s.tick();
  CHECK(host.order ==
        std::vector<std::string>{"wf@2026-11-23T01:00:00Z", "wf#2@2026-11-23T01:00:00Z"});
}

TEST_CASE("while running, fires less than a minute late all start", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  Scheduler s(clock, host);
  s.restore({});
  ScheduleDef every_second = hourly(Catchup::none, Overlap::allow, 100);
  every_second.cron = "* * * * * *";
  s.sync({workflow("wf", {every_second})});
  clock.set("2026-11-23T00:30:03Z");  // a loop held up for three seconds
  s.tick();
  CHECK(host.order == std::vector<std::string>{"wf@2026-11-23T00:30:01Z", "wf@2026-11-23T00:30:02Z",
                                               "wf@2026-11-23T00:30:03Z"});
  CHECK(s.list()["schedules"][0]["skipped_catchup"] == 0);
}

TEST_CASE("while running, fires more than a minute late (suspend, clock jump) follow catchup",
          "[scheduler]") {
  struct Case {
    Catchup catchup;
    std::vector<std::string> started;
    int skipped;
  };
  // Ten fires due, 00:31 .. 00:40: those up to 00:38 are more than a minute late.
  const Case cases[] = {
      {Catchup::none, {"wf@2026-11-23T00:39:00Z", "wf@2026-11-23T00:40:00Z"}, 8},
      {Catchup::latest,
       {"wf@2026-11-23T00:38:00Z", "wf@2026-11-23T00:39:00Z", "wf@2026-11-23T00:40:00Z"},
       7},
      {Catchup::all,
       {"wf@2026-11-23T00:36:00Z", "wf@2026-11-23T00:37:00Z", "wf@2026-11-23T00:38:00Z",
        "wf@2026-11-23T00:39:00Z", "wf@2026-11-23T00:40:00Z"},
       5},
  };
  for (const Case& c : cases) {
    CAPTURE(static_cast<int>(c.catchup));
    FakeClock clock(utc("2026-11-23T00:30:00Z"));
    FakeHost host;
    Scheduler s(clock, host);
    s.restore({});
    ScheduleDef every_minute = hourly(c.catchup, Overlap::allow, 3);
    every_minute.cron = "* * * * *";
    s.sync({workflow("wf", {every_minute})});
    clock.set("2026-11-23T00:40:00Z");
    s.tick();
    CHECK(host.order == c.started);
    CHECK(s.list()["schedules"][0]["skipped_catchup"] == c.skipped);
    CHECK(show(s.next_wakeup()) == "2026-11-23T00:41:00.000Z");
  }
}

TEST_CASE("a clock set back does not silence a schedule", "[scheduler]") {
  FakeClock clock(utc("2027-11-23T00:30:00Z"));  // a year ahead
  FakeHost host;
  auto def = workflow("wf", {hourly()});
  {
    Scheduler s(clock, host);
    s.restore({});
    s.sync({def});
    // Set back while running: the next tick counts from the clock's time.
    clock.set("2026-11-23T00:30:00Z");
    s.tick();
    CHECK(show(s.next_wakeup()) == "2026-11-23T01:00:00.000Z");
    clock.set("2026-11-23T01:00:00Z");
    s.tick();
    CHECK(host.order == std::vector<std::string>{"wf@2026-11-23T01:00:00Z"});
  }
  {
    // Journaled a year ahead, restarted with the right time.
    FakeHost ahead;
    clock.set("2027-11-23T00:30:00Z");
    Scheduler s1(clock, ahead);
    s1.restore({});
    s1.sync({def});
    clock.set("2026-11-23T00:30:00Z");
    Scheduler s2(clock, ahead);
    s2.restore(ahead.journaled());
    s2.sync({def});
    CHECK(show(s2.next_wakeup()) == "2026-11-23T01:00:00.000Z");
    CHECK(ahead.order.empty());
  }
}

TEST_CASE("removing a paused workflow's schedules forgets the pause", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  Scheduler s(clock, host);
  s.restore({});
  s.sync({workflow("wf", {hourly()}), workflow("other", {hourly()})});
  REQUIRE(s.pause("wf", nullptr));
  REQUIRE(s.pause("other", nullptr));
  CHECK(host.records.contains("paused/wf"));
  s.sync({workflow("wf", {}), workflow("other", {hourly()})});  // wf keeps no schedule
  CHECK(!host.records.contains("paused/wf"));
  CHECK(host.records.contains("paused/other"));
  s.sync({workflow("wf", {hourly()}), workflow("other", {hourly()})});
  const json listed = s.list()["schedules"];
  REQUIRE(listed.size() == 2);
  CHECK(listed[0]["workflow"] == "other");
  CHECK(listed[0]["paused"] == true);
  CHECK(listed[1]["workflow"] == "wf");
  CHECK(listed[1]["paused"] == false);
}

TEST_CASE("a schedule in a time zone fires at its local time", "[scheduler]") {
  FakeClock clock(utc("2026-03-28T12:00:00Z"));
  FakeHost host;
  Scheduler s(clock, host);
  s.restore({});
  ScheduleDef spec = hourly();
  spec.cron = "30 2 * * *";
  spec.timezone = "Europe/Berlin";
  s.sync({workflow("wf", {spec})});
  // The spring-forward night: 02:30 does not exist and fires at 03:00 CEST.
  CHECK(show(s.next_wakeup()) == "2026-03-29T01:00:00.000Z");
  clock.set("2026-03-29T01:00:00Z");
  s.tick();
  CHECK(host.order == std::vector<std::string>{"wf@2026-03-29T01:00:00Z"});
  CHECK(show(s.next_wakeup()) == "2026-03-30T00:30:00.000Z");
}

TEST_CASE("a workflow that fails to load after a restart keeps its schedules where they were",
          "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  auto def = workflow("wf", {hourly(Catchup::latest)});
  run_until_first_fire(clock, host, def);
  // Restarted at 03:10 with the workflow's file broken: nothing fires, the record stays.
  clock.set("2026-11-23T03:10:00Z");
  Scheduler after(clock, host);
  after.restore(host.journaled());
  auto broken = [](std::string_view name) { return name == "wf"; };
  after.sync({}, broken);
  CHECK(!after.next_wakeup());
  // Listed as its record has it, not loaded.
  json held = after.list()["schedules"];
  REQUIRE(held.size() == 1);
  CHECK(held[0]["workflow"] == "wf");
  CHECK(held[0]["schedule"] == 1);
  CHECK(held[0]["cron"] == "0 * * * *");
  CHECK(held[0]["loaded"] == false);
  CHECK(held[0]["next_fire"] == nullptr);
  CHECK(held[0]["last_instance"] == "wf@2026-11-23T01:00:00Z");
  CHECK(held[0]["started"] == 1);
  CHECK(host.records.contains("schedule/wf/0"));
  // A reload for another workflow's sake keeps it as well.
  after.sync({workflow("other", {hourly()})}, broken);
  CHECK(host.records.contains("schedule/wf/0"));
  CHECK(host.order.size() == 1);
  // The file is fixed at 05:10: the schedule goes on from its record, counters and all, and
  // catches up under its policy on the fires missed meanwhile (02:00 to 05:00).
  clock.set("2026-11-23T05:10:00Z");
  after.sync({def, workflow("other", {hourly()})}, [](std::string_view) { return false; });
  CHECK(host.order ==
        std::vector<std::string>{"wf@2026-11-23T01:00:00Z", "wf@2026-11-23T05:00:00Z"});
  json listed = after.list()["schedules"][1];
  REQUIRE(listed["workflow"] == "wf");
  CHECK(listed["started"] == 2);
  CHECK(listed["skipped_catchup"] == 3);
  CHECK(listed["next_fire"] == "2026-11-23T06:00:00.000Z");
}

TEST_CASE("a schedule stops while its workflow cannot be loaded", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  Scheduler s(clock, host);
  auto def = workflow("wf", {hourly(Catchup::all)});
  s.restore({});
  s.sync({def});
  clock.set("2026-11-23T01:00:00Z");
  s.tick();
  REQUIRE(host.order.size() == 1);
  // Its file fails to load with no version to fall back on: the schedule stops, its record stays.
  s.sync({}, [](std::string_view name) { return name == "wf"; });
  REQUIRE(s.list()["schedules"].size() == 1);
  CHECK(s.list()["schedules"][0]["loaded"] == false);
  CHECK(!s.next_wakeup());
  REQUIRE(host.records.contains("schedule/wf/0"));
  CHECK(json::parse(host.records.at("schedule/wf/0"))["started"] == 1);
  clock.set("2026-11-23T03:10:00Z");

  SECTION("and goes once its file is deleted") {
    s.sync({}, [](std::string_view) { return false; });
    CHECK(!host.records.contains("schedule/wf/0"));
    // A workflow of that name added later is a new one.
    s.sync({def});
    CHECK(host.order.size() == 1);
    CHECK(s.list()["schedules"][0]["started"] == 0);
    CHECK(show(s.next_wakeup()) == "2026-11-23T04:00:00.000Z");
  }
  SECTION("and resumes from where it stopped once its file loads") {
    // A name that is loaded is never held, whatever the registry says.
    auto other = workflow("other", {hourly()});
    s.sync({other}, [](std::string_view) { return true; });
    REQUIRE(s.list()["schedules"].size() == 2);
    CHECK(s.list()["schedules"][0]["loaded"] == true);  // "other" sorts first
    s.sync({def, other});
    // catchup: all starts the fires at 02:00 and 03:00, and the counters go on.
    CHECK(host.order == std::vector<std::string>{"wf@2026-11-23T01:00:00Z",
                                                 "wf@2026-11-23T02:00:00Z",
                                                 "wf@2026-11-23T03:00:00Z"});
    json listed = s.list()["schedules"][1];
    REQUIRE(listed["workflow"] == "wf");
    CHECK(listed["loaded"] == true);
    CHECK(listed["started"] == 3);
    CHECK(json::parse(host.records.at("schedule/wf/0"))["started"] == 3);
  }
}

TEST_CASE("pausing and resuming a workflow that is not loaded", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  auto def = workflow("wf", {hourly(Catchup::all)});
  run_until_first_fire(clock, host, def);
  auto broken = [](std::string_view name) { return name == "wf"; };
  clock.set("2026-11-23T02:10:00Z");
  Scheduler s(clock, host);
  s.restore(host.journaled());
  s.sync({}, broken);
  // It can be paused while its file is broken: loading it then catches up on nothing.
  REQUIRE(s.pause("wf", nullptr));
  CHECK(s.list()["schedules"][0]["paused"] == true);
  CHECK(!s.pause("nope", nullptr));
  clock.set("2026-11-23T03:10:00Z");
  s.sync({def}, broken);
  CHECK(host.order.size() == 1);
  s.sync({}, broken);  // broken again
  // Resumed while not loaded: fires that fell into the pause are not caught up when it loads.
  clock.set("2026-11-23T04:30:00Z");
  REQUIRE(s.resume("wf", nullptr));
  CHECK(s.list()["schedules"][0]["paused"] == false);
  clock.set("2026-11-23T05:10:00Z");
  s.sync({def});
  CHECK(host.order ==
        std::vector<std::string>{"wf@2026-11-23T01:00:00Z", "wf@2026-11-23T05:00:00Z"});
}

TEST_CASE("a schedule changed while its workflow was not loaded starts over", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  auto def = workflow("wf", {hourly(Catchup::all), hourly()});
  run_until_first_fire(clock, host, def);
  REQUIRE(host.order.size() == 2);
  clock.set("2026-11-23T03:10:00Z");
  Scheduler s(clock, host);
  s.restore(host.journaled());
  s.sync({}, [](std::string_view name) { return name == "wf"; });
  CHECK(s.list()["schedules"].size() == 2);
  // Fixed with another cron for the first schedule and without the second (while some other file
  // fails to load that may define any workflow: a loaded one is not in doubt).
  ScheduleDef daily = hourly(Catchup::all);
  daily.cron = "0 3 * * *";
  s.sync({workflow("wf", {daily})}, [](std::string_view) { return true; });
  CHECK(host.order.size() == 2);
  json listed = s.list()["schedules"];
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["cron"] == "0 3 * * *");
  CHECK(listed[0]["started"] == 0);
  CHECK(!host.records.contains("schedule/wf/1"));
}

TEST_CASE("a damaged schedule record is read as empty, never thrown on", "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  host.records["schedule/wf/0"] = R"({"cron": 5, "timezone": [], "started": "x"})";
  host.records["schedule/wf/x"] = R"({"cron": "0 * * * *", "started": -1})";
  host.records["schedule/wf"] = R"({"cron": "0 * * * *"})";  // no index
  Scheduler s(clock, host);
  s.restore(host.journaled());
  s.sync({}, [](std::string_view) { return true; });
  json listed = s.list()["schedules"];
  REQUIRE(listed.size() == 3);
  CHECK(listed[0]["cron"] == "0 * * * *");  // "schedule/wf" sorts first
  CHECK(listed[0]["schedule"] == 1);
  listed.erase(0);
  CHECK(listed[0]["cron"] == "");
  CHECK(listed[0]["started"] == 0);
  CHECK(listed[1]["started"] == 0);
  s.sync({workflow("wf", {hourly()})});
  listed = s.list()["schedules"];
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["started"] == 0);
  CHECK(listed[0]["next_fire"] == "2026-11-23T01:00:00.000Z");
}

TEST_CASE("a fire that cannot be started is not counted as started nor as the last fire",
          "[scheduler]") {
  FakeClock clock(utc("2026-11-23T00:30:00Z"));
  FakeHost host;
  Scheduler s(clock, host);
  s.restore({});
  s.sync({workflow("wf", {hourly(Catchup::latest, Overlap::skip)})});
  host.fail_starts = true;
  clock.set("2026-11-23T01:00:00Z");
  s.tick();
  CHECK(host.start_calls["wf@2026-11-23T01:00:00Z"] == 1);
  const json listed = s.list()["schedules"][0];
  CHECK(listed["started"] == 0);
  CHECK(listed["last_fire"].is_null());
  CHECK(show(s.next_wakeup()) == "2026-11-23T02:00:00.000Z");
}
