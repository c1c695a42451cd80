#include "engine/engine.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace saga;

namespace {

struct StepSpec {
  std::string name;
  std::vector<std::string> depends_on = {"<previous>"};
  bool compensate = true;
  uint32_t max_attempts = 3;
  bool continue_on_failure = false;
};

Definition make_def(std::vector<StepSpec> specs, OnFailure on_failure = OnFailure::compensate) {
  Definition def;
  def.name = "wf";
  def.version = "v1";
  def.on_failure = on_failure;
  for (size_t i = 0; i < specs.size(); ++i) {
    StepDef s;
    s.name = specs[i].name;
    s.run.uses = "testing.noop";
    if (specs[i].compensate) s.compensate = Invocation{"testing.noop", json::object()};
    s.retry.max_attempts = specs[i].max_attempts;
    s.continue_on_failure = specs[i].continue_on_failure;
    def.steps.push_back(s);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    for (const auto& d : specs[i].depends_on) {
      if (d == "<previous>") {
        if (i > 0) def.steps[i].depends_on.push_back(static_cast<uint32_t>(i - 1));
      } else {
        def.steps[i].depends_on.push_back(*def.step_index(d));
      }
    }
  }
  return def;
}

// Drives an instance the way the daemon does and keeps the whole history.
struct Sim {
  Definition def;
  Instance inst;
  std::vector<Event> history;
  std::vector<Action> actions;  // of the last operation
  TimePoint now = from_unix_ms(1'700'000'000'000);

  explicit Sim(Definition d) : def(std::move(d)) {}

  void take(Transition t) {
    for (auto& e : t.events) history.push_back(e);
    actions = std::move(t.actions);
  }
  void start(json input = json::object()) {
    take(saga::start(def, inst, "i-1", std::move(input), Caller{1000, 1000}, now));
  }
  void result(const std::string& step, Outcome outcome, Phase phase = Phase::run,
              std::string error = "boom") {
    uint32_t i = *def.step_index(step);
    const auto& c = phase == Phase::run ? inst.steps[i].run : inst.steps[i].comp;
    AttemptResult r{i,
                    phase,
                    c.attempts,
                    outcome,
                    outcome == Outcome::ok ? json{{"from", step}} : json(),
                    outcome == Outcome::ok ? "" : error};
    take(on_attempt_result(def, inst, r, now));
  }
  void fire_timers() {
    auto pending = actions;
    for (const auto& a : pending) {
      if (a.kind != Action::Kind::arm_timer) continue;
      now = std::max(now, a.at);
      take(on_timer(def, inst, a.step, a.phase, now));
    }
  }
  std::vector<std::string> dispatched(Phase phase = Phase::run) const {
    std::vector<std::string> out;
    for (const auto& a : actions) {
      if (a.kind == Action::Kind::run_attempt && a.phase == phase)
        out.push_back(def.steps[a.step].name);
    }
    return out;
  }
  std::vector<std::string> events_of(EventType type) const {
    std::vector<std::string> out;
    for (const auto& e : history) {
      if (e.type == type) out.push_back(e.step);
    }
    return out;
  }
  const StepRun& step(const std::string& name) const { return inst.steps[*def.step_index(name)]; }
  void check_replay() const {
    Instance rebuilt = replay(def, inst.id, history);
    CHECK(instance_to_json(def, rebuilt) == instance_to_json(def, inst));
    for (size_t i = 0; i < history.size(); ++i) {
      CHECK(history[i].seq == i + 1);
      // What the journal stores reads back as the same event.
      Event back = event_from_json(event_to_json(history[i]));
      CHECK(event_to_json(back) == event_to_json(history[i]));
      Event read = event_from_json_text(event_json_text(history[i]));
      CHECK(event_to_json(read) == event_to_json(history[i]));
    }
  }
};

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("a sequence runs one step at a time and completes") {
  Sim sim(make_def({{"a"}, {"b"}, {"c"}}));
  sim.start();
  CHECK(sim.dispatched() == V{"a"});
  sim.result("a", Outcome::ok);
  CHECK(sim.dispatched() == V{"b"});
  sim.result("b", Outcome::ok);
  CHECK(sim.dispatched() == V{"c"});
  sim.result("c", Outcome::ok);
  CHECK(sim.dispatched().empty());
  CHECK(sim.inst.state == InstanceState::completed);
  CHECK(sim.events_of(EventType::step_started) == V{"a", "b", "c"});
  CHECK(sim.step("b").output == json{{"from", "b"}});
  CHECK(sim.step("b").run.attempts == 1);
  sim.check_replay();
}

TEST_CASE("a transient failure is retried after a durable backoff, then succeeds") {
  Sim sim(make_def({{"a"}}));
  sim.start();
  sim.result("a", Outcome::retry);
  REQUIRE(sim.actions.size() == 1);
  CHECK(sim.actions[0].kind == Action::Kind::arm_timer);
  CHECK(sim.actions[0].at - sim.now == Millis(1000));
  CHECK(sim.step("a").state == StepState::pending);
  CHECK(sim.step("a").run.error == "boom");
  CHECK(sim.step("a").run.retry_at.has_value());
  sim.fire_timers();
  CHECK(sim.dispatched() == V{"a"});
  sim.result("a", Outcome::retry);
  CHECK(sim.actions[0].at - sim.now == Millis(2000));
  sim.fire_timers();
  sim.result("a", Outcome::ok);
  CHECK(sim.inst.state == InstanceState::completed);
  CHECK(sim.step("a").run.attempts == 3);
  sim.check_replay();
}

TEST_CASE("an early timer does not start a step before its time, a due one does") {
  Sim sim(make_def({{"a"}}));
  sim.start();
  sim.result("a", Outcome::retry);
  auto at = sim.actions[0].at;
  // The core trusts the timer: the caller's clock may lag by a millisecond.
  sim.take(on_timer(sim.def, sim.inst, 0, Phase::run, at - Millis(1)));
  CHECK(sim.dispatched() == V{"a"});
  CHECK(sim.step("a").run.attempts == 2);
}

TEST_CASE("retries exhausted fail the step and compensate the earlier steps in reverse") {
  Sim sim(make_def({{"a"}, {"b"}, {"c", {"<previous>"}, true, 2}}));
  sim.start();
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::ok);
  sim.result("c", Outcome::retry);
  sim.fire_timers();
  sim.result("c", Outcome::retry);
  CHECK(sim.step("c").state == StepState::failed);
  CHECK(sim.inst.state == InstanceState::compensating);
  CHECK(sim.inst.cause == "step_failed");
  CHECK(sim.dispatched(Phase::compensate) == V{"b"});
  sim.result("b", Outcome::ok, Phase::compensate);
  CHECK(sim.dispatched(Phase::compensate) == V{"a"});
  sim.result("a", Outcome::ok, Phase::compensate);
  CHECK(sim.inst.state == InstanceState::compensated);
  CHECK(sim.events_of(EventType::compensation_succeeded) == V{"b", "a"});
  CHECK(sim.step("a").state == StepState::compensated);
  CHECK(sim.step("a").compensation == CompensationState::compensated);
  CHECK(sim.step("c").run.attempts == 2);
  sim.check_replay();
}

TEST_CASE("a failure without a message is recorded as one, in the run and compensation") {
  Sim sim(make_def({{"a", {}, true}, {"b", {"<previous>"}, true, 1}}));
  sim.start();
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::fail, Phase::run, "");
  CHECK(sim.step("b").state == StepState::failed);
  sim.result("a", Outcome::fail, Phase::compensate, "");
  // As `inspect` shows them.
  json steps = instance_to_json(sim.def, sim.inst)["steps"];
  CHECK(steps[1]["error"] == "the step type failed without a message");
  CHECK(steps[0]["compensation"]["error"] == "the step type failed without a message");
  sim.check_replay();
}

TEST_CASE("compensation follows the order of completion, not of the list") {
  Sim sim(make_def({{"a", {}}, {"b", {}}, {"c", {"a", "b"}}}));
  sim.start();
  CHECK(sim.dispatched() == V{"a", "b"});
  sim.result("b", Outcome::ok);
  sim.result("a", Outcome::ok);
  sim.result("c", Outcome::fail);
  CHECK(sim.dispatched(Phase::compensate) == V{"a"});
  sim.result("a", Outcome::ok, Phase::compensate);
  CHECK(sim.dispatched(Phase::compensate) == V{"b"});
  sim.result("b", Outcome::ok, Phase::compensate);
  CHECK(sim.inst.state == InstanceState::compensated);
}

TEST_CASE("steps without a compensation are passed over; nothing to undo means failed") {
  SECTION("first step fails") {
    Sim sim(make_def({{"a"}, {"b"}}));
    sim.start();
    sim.result("a", Outcome::fail);
    CHECK(sim.inst.state == InstanceState::failed);
    CHECK(sim.step("b").state == StepState::pending);
  }
  SECTION("only the step without compensation succeeded") {
    Sim sim(make_def({{"a", {"<previous>"}, false}, {"b"}}));
    sim.start();
    sim.result("a", Outcome::ok);
    sim.result("b", Outcome::fail);
    CHECK(sim.inst.state == InstanceState::failed);
  }
  SECTION("mixed") {
    Sim sim(make_def({{"a"}, {"b", {"<previous>"}, false}, {"c"}}));
    sim.start();
    sim.result("a", Outcome::ok);
    sim.result("b", Outcome::ok);
    sim.result("c", Outcome::fail);
    CHECK(sim.dispatched(Phase::compensate) == V{"a"});
    sim.result("a", Outcome::ok, Phase::compensate);
    CHECK(sim.inst.state == InstanceState::compensated);
    CHECK(sim.step("b").state == StepState::succeeded);
  }
}

TEST_CASE("halt parks the instance as failed; retry resumes at the failed step") {
  Sim sim(make_def({{"a"}, {"b", {"<previous>"}, true, 2}, {"c"}}, OnFailure::halt));
  sim.start();
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::retry);
  sim.fire_timers();
  sim.result("b", Outcome::retry);
  CHECK(sim.inst.state == InstanceState::failed);
  CHECK(sim.step("b").run.attempts == 2);

  auto t = retry(sim.def, sim.inst, std::nullopt, nullptr, Caller{7, 7}, sim.now);
  REQUIRE(t.has_value());
  sim.take(std::move(*t));
  CHECK(sim.inst.state == InstanceState::running);
  CHECK(sim.dispatched() == V{"b"});
  CHECK(sim.step("b").run.attempts == 3);
  // A fresh budget: two more attempts although three have run.
  sim.result("b", Outcome::retry);
  CHECK(sim.step("b").state == StepState::pending);
  sim.fire_timers();
  sim.result("b", Outcome::ok);
  sim.result("c", Outcome::ok);
  CHECK(sim.inst.state == InstanceState::completed);
  CHECK(sim.events_of(EventType::step_started) == V{"a", "b", "b", "b", "b", "c"});
  REQUIRE(sim.history.size() > 0);
  sim.check_replay();
}

TEST_CASE("retry --from re-runs the step and its downstream with new input") {
  Sim sim(make_def({{"a"}, {"b"}, {"c"}}, OnFailure::halt));
  sim.start({{"n", 1}});
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::ok);
  sim.result("c", Outcome::fail);
  CHECK(sim.inst.state == InstanceState::failed);
  auto t = retry(sim.def, sim.inst, std::string("b"), json{{"n", 2}}, Caller{7, 7}, sim.now);
  REQUIRE(t.has_value());
  sim.take(std::move(*t));
  CHECK(sim.inst.input == json{{"n", 2}});
  CHECK(sim.dispatched() == V{"b"});
  CHECK(sim.step("c").state == StepState::pending);
  CHECK(sim.step("a").state == StepState::succeeded);
  sim.result("b", Outcome::ok);
  sim.result("c", Outcome::ok);
  CHECK(sim.inst.state == InstanceState::completed);
  CHECK(sim.events_of(EventType::step_started) == V{"a", "b", "c", "b", "c"});
  CHECK(sim.history.back().type == EventType::instance_completed);
  bool journaled_uid = false;
  for (const auto& e : sim.history) {
    if (e.type == EventType::instance_retried) journaled_uid = e.uid == 7u && e.step == "b";
  }
  CHECK(journaled_uid);
  sim.check_replay();
}

TEST_CASE("retry --from is refused while a step outside what it re-runs stays failed") {
  Sim sim(make_def({{"a"}, {"b"}, {"c"}}, OnFailure::halt));
  sim.start({{"n", 1}});
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::fail);
  REQUIRE(sim.inst.state == InstanceState::failed);
  // c is downstream of b, which failed: from c, b would stay failed and nothing would run.
  auto r = retry(sim.def, sim.inst, std::string("c"), json{{"n", 2}}, std::nullopt, sim.now);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::invalid_argument);
  CHECK(r.error().message ==
        "step b failed and is not downstream of c, so the instance would fail again at once; "
        "retry --from b, or without --from to run every failed step again");
  CHECK(sim.inst.input == json{{"n", 1}});  // nothing changed
  CHECK(sim.inst.state == InstanceState::failed);
  // From a or b, b runs again.
  auto t = retry(sim.def, sim.inst, std::string("a"), nullptr, std::nullopt, sim.now);
  REQUIRE(t.has_value());
  sim.take(std::move(*t));
  CHECK(sim.dispatched() == V{"a"});
  sim.check_replay();
}

TEST_CASE("retry and cancel are refused in states that do not allow them") {
  Sim sim(make_def({{"a"}}));
  sim.start();
  auto r = retry(sim.def, sim.inst, std::nullopt, nullptr, std::nullopt, sim.now);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::failed_precondition);
  CHECK(r.error().message.find("is running") != std::string::npos);
  sim.result("a", Outcome::ok);
  auto c = cancel(sim.def, sim.inst, "", std::nullopt, sim.now);
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().message.find("is completed") != std::string::npos);
  CHECK(sim.inst.state == InstanceState::completed);
}

TEST_CASE("a compensation that fails for good parks the instance; retry resumes it") {
  Sim sim(make_def({{"a", {"<previous>"}, true, 1}, {"b", {"<previous>"}, true, 1}, {"c"}}));
  sim.start();
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::ok);
  sim.result("c", Outcome::fail);
  sim.result("b", Outcome::retry, Phase::compensate);
  CHECK(sim.inst.state == InstanceState::compensation_failed);
  CHECK(sim.step("b").state == StepState::compensation_failed);
  CHECK(sim.step("b").comp.error == "boom");
  CHECK(sim.step("a").state == StepState::succeeded);

  auto bad = retry(sim.def, sim.inst, std::string("a"), nullptr, std::nullopt, sim.now);
  CHECK_FALSE(bad.has_value());
  // New input, for what the compensations' templates read.
  auto t = retry(sim.def, sim.inst, std::nullopt, json{{"undo", 1}}, std::nullopt, sim.now);
  REQUIRE(t.has_value());
  sim.take(std::move(*t));
  CHECK(sim.inst.state == InstanceState::compensating);
  CHECK(sim.inst.input == json{{"undo", 1}});
  CHECK(sim.dispatched(Phase::compensate) == V{"b"});
  CHECK(sim.step("b").comp.attempts == 2);
  sim.result("b", Outcome::ok, Phase::compensate);
  sim.result("a", Outcome::ok, Phase::compensate);
  CHECK(sim.inst.state == InstanceState::compensated);
  sim.check_replay();
}

TEST_CASE("cancel stops running attempts and compensates what finished, even late") {
  Sim sim(make_def({{"a"}, {"b"}, {"c"}}));
  sim.start();
  sim.result("a", Outcome::ok);
  CHECK(sim.dispatched() == V{"b"});
  auto t = cancel(sim.def, sim.inst, "customer asked", Caller{42, 1042}, sim.now);
  REQUIRE(t.has_value());
  sim.take(std::move(*t));
  CHECK(sim.history.back().uid == 42u);
  CHECK(sim.history.back().gid == 1042u);
  CHECK(sim.inst.state == InstanceState::compensating);
  CHECK(sim.inst.cause == "cancelled");
  REQUIRE(sim.actions.size() == 1);
  CHECK(sim.actions[0].kind == Action::Kind::stop_attempts);
  CHECK(sim.step("c").state == StepState::skipped);
  // b finished despite the stop request: it must be undone too, before a.
  sim.result("b", Outcome::ok);
  CHECK(sim.dispatched(Phase::compensate) == V{"b"});
  sim.result("b", Outcome::ok, Phase::compensate);
  sim.result("a", Outcome::ok, Phase::compensate);
  CHECK(sim.inst.state == InstanceState::compensated);
  sim.check_replay();
}

TEST_CASE("a step cancelled while it waits for its next attempt shows failed, with its error") {
  Sim sim(make_def({{"a"}, {"b"}, {"c"}}));
  sim.start();
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::retry, Phase::run, "connection refused");
  REQUIRE(sim.step("b").state == StepState::pending);
  auto t = cancel(sim.def, sim.inst, "", std::nullopt, sim.now);
  REQUIRE(t.has_value());
  sim.take(std::move(*t));
  CHECK(sim.step("b").state == StepState::failed);
  CHECK(sim.step("b").run.error == "connection refused");
  CHECK(sim.step("b").ended_at);
  CHECK(!sim.step("b").run.retry_at);
  CHECK(sim.step("c").state == StepState::skipped);  // never ran
  CHECK(sim.dispatched(Phase::compensate) == V{"a"});
  // b's backoff timer, when it fires, is stale.
  Transition stale = on_timer(sim.def, sim.inst, 1, Phase::run, sim.now + Millis(3600000));
  CHECK(stale.events.empty());
  CHECK(stale.actions.empty());
  sim.result("a", Outcome::ok, Phase::compensate);
  CHECK(sim.inst.state == InstanceState::compensated);
  sim.check_replay();
}

TEST_CASE("cancel of a failed instance compensates it") {
  Sim sim(make_def({{"a"}, {"b"}}, OnFailure::halt));
  sim.start();
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::fail);
  CHECK(sim.inst.state == InstanceState::failed);
  auto t = cancel(sim.def, sim.inst, "", std::nullopt, sim.now);
  REQUIRE(t.has_value());
  sim.take(std::move(*t));
  CHECK(sim.dispatched(Phase::compensate) == V{"a"});
  sim.result("a", Outcome::ok, Phase::compensate);
  CHECK(sim.inst.state == InstanceState::compensated);
  CHECK(sim.inst.cause == "cancelled");
}

TEST_CASE("the instance deadline cancels with cause timed_out") {
  Definition def = make_def({{"a"}, {"b"}});
  def.timeout = Millis(5000);
  Sim sim(def);
  sim.start();
  bool armed = false;
  for (const auto& a : sim.actions) {
    if (a.kind == Action::Kind::arm_deadline) armed = a.at == sim.now + Millis(5000);
  }
  CHECK(armed);
  sim.result("a", Outcome::ok);
  sim.now += Millis(5000);
  sim.take(on_deadline(sim.def, sim.inst, sim.now));
  CHECK(sim.inst.cause == "timed_out");
  sim.result("b", Outcome::retry);  // the stopped attempt reports back
  CHECK(sim.step("b").state == StepState::failed);
  CHECK(sim.dispatched(Phase::compensate) == V{"a"});
  sim.result("a", Outcome::ok, Phase::compensate);
  CHECK(sim.inst.state == InstanceState::compensated);
  sim.check_replay();
}

TEST_CASE("a retried instance gets its timeout afresh, live and after recovery alike") {
  Definition def = make_def({{"a", {"<previous>"}, true, 1}, {"b"}}, OnFailure::halt);
  def.timeout = Millis(5000);
  Sim sim(def);
  sim.start();
  sim.result("a", Outcome::fail);
  REQUIRE(sim.inst.state == InstanceState::failed);
  // Parked for an operator: the deadline passing does nothing.
  sim.now += Millis(60000);
  sim.take(on_deadline(sim.def, sim.inst, sim.now));
  CHECK(sim.inst.state == InstanceState::failed);

  auto t = retry(sim.def, sim.inst, std::nullopt, json(), Caller{7, 7}, sim.now);
  REQUIRE(t);
  sim.take(std::move(*t));
  REQUIRE(sim.inst.deadline);
  CHECK(*sim.inst.deadline == sim.now + Millis(5000));
  bool armed = false;
  for (const auto& a : sim.actions) {
    if (a.kind == Action::Kind::arm_deadline) armed = a.at == sim.now + Millis(5000);
  }
  CHECK(armed);
  sim.check_replay();

  // A restart inside the new timeout resumes the run with the same deadline, not a timed-out one.
  sim.now += Millis(1000);
  Instance rebuilt = replay(sim.def, sim.inst.id, sim.history);
  Transition resumed = recover(sim.def, rebuilt, sim.now);
  CHECK(rebuilt.state == InstanceState::running);
  CHECK(rebuilt.cause.empty());
  bool rearmed = false;
  for (const auto& a : resumed.actions) {
    if (a.kind == Action::Kind::arm_deadline) rearmed = a.at == *sim.inst.deadline;
  }
  CHECK(rearmed);

  // And the new deadline times the run out as the first would have.
  sim.now = *sim.inst.deadline;
  sim.take(on_deadline(sim.def, sim.inst, sim.now));
  CHECK(sim.inst.cause == "timed_out");
}

TEST_CASE(
    "a transition that may start nothing leaves the next steps to recovery, as first "
    "attempts") {
  Sim sim(make_def({{"a"}, {"b"}}));
  sim.start();
  // sagad is shutting down when a's result comes in.
  AttemptResult r{0, Phase::run, 1, Outcome::ok, json::object(), ""};
  sim.take(on_attempt_result(sim.def, sim.inst, r, sim.now, Starts::none));
  CHECK(sim.step("a").state == StepState::succeeded);
  CHECK(sim.step("b").state == StepState::pending);
  CHECK(sim.step("b").run.attempts == 0);
  CHECK(sim.actions.empty());
  for (const auto& e : sim.history) CHECK(e.type != EventType::step_interrupted);

  Instance rebuilt = replay(sim.def, sim.inst.id, sim.history);
  Transition resumed = recover(sim.def, rebuilt, sim.now);
  REQUIRE(resumed.events.size() == 1);
  CHECK(resumed.events[0].type == EventType::step_started);
  CHECK(resumed.events[0].step == "b");
  CHECK(resumed.events[0].attempt == 1);
}

TEST_CASE("independent steps run in parallel up to max_parallel") {
  Definition def = make_def({{"a", {}}, {"b", {}}, {"c", {}}, {"d", {"a", "b", "c"}}});
  SECTION("unbounded") {
    Sim sim(def);
    sim.start();
    CHECK(sim.dispatched() == V{"a", "b", "c"});
    sim.result("a", Outcome::ok);
    CHECK(sim.dispatched().empty());
    sim.result("c", Outcome::ok);
    sim.result("b", Outcome::ok);
    CHECK(sim.dispatched() == V{"d"});
  }
  SECTION("max_parallel 2") {
    def.max_parallel = 2;
    Sim sim(def);
    sim.start();
    CHECK(sim.dispatched() == V{"a", "b"});
    sim.result("b", Outcome::ok);
    CHECK(sim.dispatched() == V{"c"});
  }
}

TEST_CASE("continue_on_failure lets the instance complete and its dependents run") {
  Sim sim(make_def({{"a"}, {"b", {"<previous>"}, true, 1, true}, {"c"}}));
  sim.start();
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::fail);
  CHECK(sim.dispatched() == V{"c"});
  sim.result("c", Outcome::ok);
  CHECK(sim.inst.state == InstanceState::completed);
  CHECK(sim.step("b").state == StepState::failed);
}

TEST_CASE("recovery re-runs interrupted attempts without counting them") {
  Sim sim(make_def({{"a", {"<previous>"}, true, 1}, {"b"}}));
  sim.start();
  // sagad dies while attempt 1 of a runs; the journal has the history so far.
  Instance rebuilt = replay(sim.def, "i-1", sim.history);
  sim.inst = rebuilt;
  sim.take(recover(sim.def, sim.inst, sim.now));
  CHECK(sim.events_of(EventType::step_interrupted) == V{"a"});
  CHECK(sim.dispatched() == V{"a"});
  CHECK(sim.step("a").run.attempts == 2);
  // With max_attempts 1 the re-run is the attempt that counts: its retry fails the step.
  sim.result("a", Outcome::retry);
  CHECK(sim.step("a").state == StepState::failed);
  CHECK(sim.inst.state == InstanceState::failed);
  sim.check_replay();
}

TEST_CASE("a step a restart interrupted during or before a cancel shows that it ran") {
  const std::string why =
      "interrupted by a restart and not run again, as the instance is being compensated; what "
      "the attempt did is not undone";
  SECTION("cancelled while it ran, then sagad died") {
    Sim sim(make_def({{"a", {"<previous>"}, true, 1}, {"b"}}));
    sim.start();
    sim.result("a", Outcome::ok);
    auto c = cancel(sim.def, sim.inst, "", std::nullopt, sim.now);
    REQUIRE(c.has_value());
    sim.take(std::move(*c));
    sim.inst = replay(sim.def, "i-1", sim.history);
    sim.take(recover(sim.def, sim.inst, sim.now));
    CHECK(sim.step("b").state == StepState::failed);
    CHECK(sim.step("b").run.error == why);
    CHECK(sim.step("b").ended_at.has_value());
    CHECK(sim.dispatched(Phase::compensate) == V{"a"});
    sim.check_replay();
  }
  SECTION("its deadline passed while sagad was down") {
    Definition def = make_def({{"a", {"<previous>"}, true, 1}, {"b"}, {"c"}});
    def.timeout = Millis(5000);
    Sim sim(def);
    sim.start();
    sim.result("a", Outcome::ok);
    sim.now += Millis(6000);
    sim.inst = replay(sim.def, "i-1", sim.history);
    sim.take(recover(sim.def, sim.inst, sim.now));
    CHECK(sim.inst.state == InstanceState::compensating);
    CHECK(sim.step("b").state == StepState::failed);
    CHECK(sim.step("b").run.error == why);
    CHECK(sim.step("c").state == StepState::skipped);  // never ran
    sim.check_replay();
  }
}

TEST_CASE("recovery re-arms a backoff timer for the time that is left") {
  Sim sim(make_def({{"a"}}));
  sim.start();
  sim.result("a", Outcome::retry);
  TimePoint retry_at = *sim.step("a").run.retry_at;
  sim.now += Millis(400);
  sim.inst = replay(sim.def, "i-1", sim.history);
  sim.take(recover(sim.def, sim.inst, sim.now));
  REQUIRE(sim.actions.size() == 1);
  CHECK(sim.actions[0].kind == Action::Kind::arm_timer);
  CHECK(sim.actions[0].at == retry_at);
  CHECK(sim.dispatched().empty());
  sim.now = retry_at;
  sim.take(recover(sim.def, sim.inst, sim.now));  // a restart after the time: runs at once
  CHECK(sim.dispatched() == V{"a"});
}

TEST_CASE("recovery of a compensating instance resumes the compensation") {
  Sim sim(make_def({{"a"}, {"b"}, {"c"}}));
  sim.start();
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::ok);
  sim.result("c", Outcome::fail);
  CHECK(sim.dispatched(Phase::compensate) == V{"b"});
  sim.inst = replay(sim.def, "i-1", sim.history);
  sim.take(recover(sim.def, sim.inst, sim.now));
  CHECK(sim.events_of(EventType::compensation_interrupted) == V{"b"});
  CHECK(sim.dispatched(Phase::compensate) == V{"b"});
  CHECK(sim.step("b").comp.attempts == 2);
  sim.result("b", Outcome::ok, Phase::compensate);
  sim.result("a", Outcome::ok, Phase::compensate);
  CHECK(sim.inst.state == InstanceState::compensated);
  sim.check_replay();
}

TEST_CASE("stale results change nothing") {
  Sim sim(make_def({{"a"}}));
  sim.start();
  auto before = sim.history.size();
  sim.take(on_attempt_result(sim.def, sim.inst, {0, Phase::run, 5, Outcome::ok, {}, ""}, sim.now));
  sim.take(on_attempt_result(sim.def, sim.inst, {0, Phase::compensate, 1, Outcome::ok, {}, ""},
                             sim.now));
  sim.take(on_attempt_result(sim.def, sim.inst, {9, Phase::run, 1, Outcome::ok, {}, ""}, sim.now));
  CHECK(sim.history.size() == before);
  CHECK(sim.inst.state == InstanceState::running);
}

TEST_CASE("retry delay grows by the backoff up to the maximum, jitter only shortens") {
  RetryPolicy p;
  p.initial_interval = Millis(100);
  p.backoff = 3.0;
  p.max_interval = Millis(1000);
  CHECK(retry_delay(p, 1, 0) == Millis(100));
  CHECK(retry_delay(p, 2, 0) == Millis(300));
  CHECK(retry_delay(p, 3, 0) == Millis(900));
  CHECK(retry_delay(p, 4, 0) == Millis(1000));
  p.jitter = 0.5;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Millis d = retry_delay(p, 2, seed);
    CHECK(d <= Millis(300));
    CHECK(d >= Millis(150));
  }
}

TEST_CASE("events round-trip through JSON") {
  Sim sim(make_def({{"a"}, {"b"}}));
  sim.start({{"k", "v"}});
  sim.result("a", Outcome::retry);
  sim.fire_timers();
  sim.result("a", Outcome::ok);
  sim.result("b", Outcome::fail);
  std::vector<Event> decoded;
  for (const auto& e : sim.history) {
    json j = event_to_json(e);
    CHECK(j.at("type") == std::string(to_string(e.type)));
    decoded.push_back(event_from_json(json::parse(j.dump())));
  }
  CHECK(instance_to_json(sim.def, replay(sim.def, "i-1", decoded)) ==
        instance_to_json(sim.def, sim.inst));
}

TEST_CASE("the instance JSON has the documented shape") {
  Sim sim(make_def({{"a"}}));
  sim.start({{"order", 7}});
  sim.result("a", Outcome::ok);
  json j = instance_to_json(sim.def, sim.inst);
  for (const char* key : {"id", "workflow", "version", "state", "cause", "input", "created_at",
                          "updated_at", "steps"}) {
    CHECK(j.contains(key));
  }
  CHECK(j["state"] == "completed");
  CHECK(j["cause"].is_null());
  const json& s = j["steps"][0];
  for (const char* key :
       {"name", "state", "attempts", "output", "error", "started_at", "ended_at", "compensation"}) {
    CHECK(s.contains(key));
  }
  CHECK(s["compensation"]["state"] == "none");
  CHECK(j["created_at"].get<std::string>().size() == 24);
}

TEST_CASE("the header of an instance is its full JSON without input and steps") {
  Sim sim(make_def({{"a"}, {"b"}}));
  sim.start({{"order", 7}});
  sim.result("a", Outcome::ok);
  json full = instance_to_json(sim.def, sim.inst);
  json header = json::parse(instance_header_json_text(sim.inst));
  CHECK(is_instance_header(header));
  CHECK_FALSE(is_instance_header(full));
  json expected = full;
  expected.erase("input");
  expected.erase("steps");
  CHECK(header == expected);
  CHECK(header["state"] == "running");
}

TEST_CASE("journaled text escapes what JSON must escape and survives bytes that are not UTF-8") {
  Sim sim(make_def({{"a"}}));
  sim.start(json{{"note", "quote \" backslash \\ newline \n tab \t"}});
  sim.result("a", Outcome::fail, Phase::run, std::string("bad \xff byte and \"quotes\""));
  auto text = json::parse(instance_json_text(sim.def, sim.inst));
  CHECK(text["input"]["note"] == "quote \" backslash \\ newline \n tab \t");
  CHECK(text["steps"][0]["error"].get<std::string>().starts_with("bad "));
  CHECK(text["steps"][0]["error"].get<std::string>().ends_with(" byte and \"quotes\""));
  for (const auto& e : sim.history) {
    auto j = json::parse(event_json_text(e));
    CHECK(j["type"] == std::string(to_string(e.type)));
    if (!e.error.empty()) CHECK(j["error"].get<std::string>().ends_with("\"quotes\""));
  }
}
